/* Keep-alive of refresh tokens; see keepalive.h. The store worker lists the stale accounts (the
 * store knows when each refresh token was written), except those whose refresh token this run
 * stored since the cut-off; the loop starts an ordinary refresh for each, which stores the
 * rotated refresh token and so resets its age. */
#include "keepalive.h"

#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "broker.h"
#include "config.h"
#include "event.h"
#include "hashmap.h"
#include "log.h"
#include "policy.h"
#include "refresh.h"
#include "store-worker.h"
#include "util.h"

/* Hourly: a day's precision is all the 90-day limit needs, and a broker that was down for a
 * while catches up within the hour. */
#define KEEPALIVE_INTERVAL_SEC 3600
/* The first check waits a minute: the start-up's first tokens come first, and the check's scan
 * of every account in the token (O(objects) PKCS#11 calls) stays out of their way. */
#define KEEPALIVE_FIRST_CHECK_SEC 60
#define SECONDS_PER_DAY           86400
/* Accounts checked per store job. The worker runs one job at a time: a check of thousands of
 * accounts in one job held it for minutes on SoftHSM2, and every client's first token waited
 * behind it (answered `unavailable`). In batches, the jobs queued meanwhile run between them. */
#define KEEPALIVE_BATCH 16

struct keepalive {
        struct watch timer;
        struct broker *broker;
        bool checking;     /* a check is under way: one at a time */
        char **accounts;   /* this check's accounts, listed at its start */
        size_t n_accounts; /* and how many */
        size_t next;       /* the first not yet checked */
        uint64_t stale_before;
};

/* The scope set to refresh each account for: the first profile's that draws on it, by account
 * name (a table built for each batch that has stale accounts, not a walk of every profile for
 * each one; not kept across batches, as its values point into a policy a reload may free). An
 * account no profile uses is kept alive all the same once a profile names it. NULL when out of
 * memory. */
static struct hashmap *scope_keys_by_account(const struct policy_set *policy)
{
        struct hashmap *m = NULL;

        if (hashmap_new(&m) < 0)
                return NULL;
        for (size_t i = 0; i < policy_set_count(policy); i++) {
                const struct policy_profile *p = policy_set_get(policy, i);
                int r =
                    hashmap_put(m, policy_profile_account(p), (void *)policy_profile_scope_key(p));

                if (r < 0 && r != -EEXIST) {
                        hashmap_free(m);
                        return NULL;
                }
        }
        return m;
}

static void keep_alive(struct broker *b, const char *name, const char *scope_key)
{
        struct account *a;
        int r;

        if (!scope_key) {
                log_info("Account %s: refresh token due for keep-alive, but no profile uses the "
                         "account.",
                         name);
                return;
        }
        r = accounts_get(b, name, &a);
        if (r < 0) {
                log_warning_errno(r, "Account %s: cannot start its keep-alive refresh", name);
                return;
        }
        if (a->loaded && a->state != ACCOUNT_OK)
                return; /* parked until an administrator acts: a refresh would not be sent */
        log_info("Account %s: refresh token unused for %u days or more; refreshing it.", name,
                 b->config->keepalive_days);
        if (account_busy(a)) {
                /* Its metadata is still being read (the refresh starts once it is), or a refresh
                 * is in flight, which keeps the token alive by itself. */
                if (!a->loaded && !a->keepalive_scope_key)
                        a->keepalive_scope_key = strdup(scope_key);
                return;
        }
        refresh_start(b, a, scope_key);
}

static void check_done(struct keepalive *k)
{
        store_names_free(k->accounts, k->n_accounts);
        k->accounts = NULL;
        k->n_accounts = k->next = 0;
        k->checking = false;
}

static void next_batch(struct keepalive *k);

static void on_stale_kept(struct store_job *job, void *userdata)
{
        struct keepalive *k = userdata;
        struct broker *b = k->broker;
        struct hashmap *scope_keys;

        if (b->stopping) {
                check_done(k);
                return;
        }
        if (job->result < 0)
                log_warning_errno(job->result, "Keep-alive: cannot check the accounts");
        else if (job->n_names > 0) {
                scope_keys = scope_keys_by_account(b->policy);
                if (!scope_keys)
                        log_warning_errno(-ENOMEM, "Keep-alive: cannot look the profiles up");
                for (size_t i = 0; scope_keys && i < job->n_names; i++)
                        keep_alive(b, job->names[i], hashmap_get(scope_keys, job->names[i]));
                hashmap_free(scope_keys);
        }
        next_batch(k);
}

/* Asks the store worker which of the next KEEPALIVE_BATCH accounts are stale; the check ends
 * after the last batch. */
static void next_batch(struct keepalive *k)
{
        struct store_job *job = NULL;
        size_t n =
            k->n_accounts - k->next < KEEPALIVE_BATCH ? k->n_accounts - k->next : KEEPALIVE_BATCH;
        int r;

        if (n == 0 || k->broker->stopping) {
                check_done(k);
                return;
        }
        r = store_job_new(STORE_JOB_KEEP_STALE, "", &job);
        if (r == 0) {
                job->names = calloc(n, sizeof(char *));
                r = job->names ? 0 : -ENOMEM;
        }
        for (size_t i = 0; r == 0 && i < n; i++) {
                job->names[i] = TAKE_PTR(k->accounts[k->next + i]);
                job->n_names++;
        }
        if (r == 0) {
                k->next += n;
                job->stale_before = k->stale_before;
                r = store_worker_submit(k->broker->store_worker, job, on_stale_kept, k);
        }
        if (r < 0) {
                store_job_free(job);
                log_warning_errno(r, "Keep-alive: cannot queue the account check");
                check_done(k);
        }
}

/* Drops the accounts whose refresh token this run stored since the cut-off: the store would say
 * they are fresh too, after reading (wrapped: unsealing) each one's refresh token, an HSM call an
 * account every hour. Keeps the others, in order. */
static void drop_stored_since_cutoff(struct keepalive *k)
{
        size_t kept = 0;

        for (size_t i = 0; i < k->n_accounts; i++) {
                const struct account *a = account_find(k->broker->accounts, k->accounts[i]);

                if (a && a->refresh_token_stored_at >= k->stale_before)
                        free(k->accounts[i]);
                else
                        k->accounts[kept++] = k->accounts[i];
        }
        log_info("Keep-alive check: %zu account(s), %zu with a refresh token this run stored "
                 "within %u days; %zu to look up in the store.",
                 k->n_accounts, k->n_accounts - kept, k->broker->config->keepalive_days, kept);
        k->n_accounts = kept;
}

static void on_listed(struct store_job *job, void *userdata)
{
        struct keepalive *k = userdata;

        if (k->broker->stopping) {
                check_done(k);
                return;
        }
        if (job->result < 0) {
                log_warning_errno(job->result, "Keep-alive: cannot list the accounts");
                check_done(k);
                return;
        }
        k->accounts = TAKE_PTR(job->names);
        k->n_accounts = job->n_names;
        job->n_names = 0;
        k->next = 0;
        drop_stored_since_cutoff(k);
        next_batch(k);
}

static void check(struct keepalive *k)
{
        struct broker *b = k->broker;
        struct store_job *job = NULL;
        uint64_t now = now_realtime_usec() / USEC_PER_SEC;
        uint64_t age = (uint64_t)b->config->keepalive_days * SECONDS_PER_DAY;
        int r;

        if (k->checking || b->stopping)
                return;
        /* Written at or before now - age; with keepalive_days 0, every account. */
        k->stale_before = now >= age ? now - age + 1 : 0;
        r = store_job_new(STORE_JOB_LIST_ACCOUNTS, "", &job);
        if (r == 0)
                r = store_worker_submit(b->store_worker, job, on_listed, k);
        if (r < 0) {
                store_job_free(job);
                log_warning_errno(r, "Keep-alive: cannot queue the account check");
                return;
        }
        k->checking = true;
}

static void on_timer(struct watch *w, uint32_t events)
{
        struct keepalive *k = container_of(w, struct keepalive, timer);
        uint64_t expirations;

        (void)events;
        (void)!read(w->fd, &expirations, sizeof(expirations));
        check(k);
}

int keepalive_start(struct broker *b, struct keepalive **ret)
{
        struct itimerspec its = {
            .it_value = {.tv_sec = KEEPALIVE_FIRST_CHECK_SEC},
            .it_interval = {.tv_sec = KEEPALIVE_INTERVAL_SEC},
        };
        struct keepalive *k;
        int r;

        /* keepalive_days 0 (tests, diagnosis): every account at once, from the loop. */
        if (b->config->keepalive_days == 0)
                its.it_value = (struct timespec){.tv_nsec = 1};
#if ENABLE_FAULT_POINTS
        /* Test builds: CREDBROKER_TEST_KEEPALIVE_DELAY_MS runs the first check that long after
         * start instead, so a test can load an account through a client before it runs
         * (keepalive.test.js: loaded accounts are kept alive too). */
        {
                const char *delay = secure_getenv("CREDBROKER_TEST_KEEPALIVE_DELAY_MS");
                uint64_t ms;

                if (delay && parse_u64(delay, &ms) >= 0 && ms > 0 && ms < 3600 * 1000)
                        its.it_value = (struct timespec){.tv_sec = (time_t)(ms / 1000),
                                                         .tv_nsec = (long)(ms % 1000) * 1000000};
        }
#endif
        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->broker = b;
        /* Boot time: a machine that slept through the hour checks when it wakes. */
        k->timer = (struct watch){.fd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC),
                                  .fn = on_timer};
        if (k->timer.fd < 0) {
                r = -errno;
                free(k);
                return r;
        }
        if (timerfd_settime(k->timer.fd, 0, &its, NULL) < 0) {
                r = -errno;
                close(k->timer.fd);
                free(k);
                return r;
        }
        r = event_add(b->epfd, &k->timer, EPOLLIN);
        if (r < 0) {
                close(k->timer.fd);
                free(k);
                return r;
        }
        *ret = k;
        return 0;
}

void keepalive_free(struct keepalive *k)
{
        if (!k)
                return;
        event_remove(k->broker->epfd, &k->timer);
        close(k->timer.fd);
        store_names_free(k->accounts, k->n_accounts);
        free(k);
}
