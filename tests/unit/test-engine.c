/* The token engine (broker/engine: accounts.c, refresh.c, token-cache.c) without sockets, a
 * store or HTTPS: the store worker, the identity provider, the grant helpers and the audit log
 * are replaced below by fakes of the same names that record what the engine asked for, and the
 * test completes those requests by hand. Covers account loading, single flight, cache expiry,
 * the refresh-state transitions and how waiters are answered. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accounts.h"
#include "audit.h"
#include "broker.h"
#include "config.h"
#include "grant.h"
#include "idp.h"
#include "refresh.h"
#include "secret.h"
#include "store-worker.h"
#include "tap.h"
#include "token-cache.h"
#include "util.h"
#include "waiter.h"

#define SCOPE_A "https://graph.microsoft.com/Mail.Send"
#define SCOPE_B "https://graph.microsoft.com/Mail.Read"
#define META                                                                                       \
        "{\"tenant\":\"contoso.onmicrosoft.com\",\"client_id\":\"11111111-2222\",\"flow\":"        \
        "\"device\"}"

/* ---- fake store worker: jobs wait until the test completes them, oldest first ---- */

struct pending_job {
        struct store_job *job;
        store_job_done_fn done;
        void *userdata;
};
static struct pending_job jobs[32];
static size_t n_jobs;

int store_job_new(enum store_job_kind kind, const char *account, struct store_job **ret)
{
        struct store_job *job = calloc(1, sizeof(*job));

        if (!job)
                return -ENOMEM;
        job->kind = kind;
        snprintf(job->account, sizeof(job->account), "%s", account);
        *ret = job;
        return 0;
}

void store_job_free(struct store_job *job)
{
        if (!job)
                return;
        secret_free(job->refresh_token);
        free(job->meta_json);
        free(job);
}

int store_worker_submit(struct store_worker *w, struct store_job *job, store_job_done_fn done,
                        void *userdata)
{
        (void)w;
        if (n_jobs == sizeof(jobs) / sizeof(jobs[0]))
                return -EAGAIN;
        jobs[n_jobs++] = (struct pending_job){job, done, userdata};
        return 0;
}

/* The kind of the oldest job not yet completed; -1 when none. */
static int next_job_kind(void)
{
        return n_jobs ? (int)jobs[0].job->kind : -1;
}

/* Completes the oldest job with result; meta is GET_META's answer, a refresh token is made up
 * for READ_REFRESH_TOKEN. */
static void complete_job(int result, const char *meta)
{
        struct pending_job p = jobs[0];

        memmove(jobs, jobs + 1, (n_jobs - 1) * sizeof(jobs[0]));
        n_jobs--;
        p.job->result = result;
        if (result == 0 && meta)
                p.job->meta_json = strdup(meta);
        if (result == 0 && p.job->kind == STORE_JOB_READ_REFRESH_TOKEN) {
                (void)secret_new_from("refresh-1", 9, &p.job->refresh_token);
                p.job->generation = 1;
        }
        p.done(p.job, p.userdata);
        store_job_free(p.job);
}

/* Completes every job of a kind that does not take part in single flight (markers). */
static void drop_marker_jobs(void)
{
        for (size_t i = 0; i < n_jobs;) {
                if (jobs[i].job->kind != STORE_JOB_CLEAR_REFRESH_MARK) {
                        i++;
                        continue;
                }
                struct pending_job p = jobs[i];
                memmove(jobs + i, jobs + i + 1, (n_jobs - i - 1) * sizeof(jobs[0]));
                n_jobs--;
                p.done(p.job, p.userdata);
                store_job_free(p.job);
        }
}

/* ---- fake identity provider: requests wait until the test answers them, oldest first ---- */

static unsigned n_upstream;
static struct {
        idp_done_fn done;
        void *userdata;
} upstream[64];
static size_t n_pending, max_pending; /* requests at the token endpoint now, and at most */
static char upstream_scope[256];

static void upstream_add(idp_done_fn done, void *userdata)
{
        n_upstream++;
        if (n_pending == sizeof(upstream) / sizeof(upstream[0]))
                abort();
        upstream[n_pending].done = done;
        upstream[n_pending++].userdata = userdata;
        if (n_pending > max_pending)
                max_pending = n_pending;
}

int idp_request_refresh(struct idp *idp, const struct idp_refresh_grant *grant, idp_done_fn done,
                        void *userdata)
{
        (void)idp;
        upstream_add(done, userdata);
        snprintf(upstream_scope, sizeof(upstream_scope), "%s", grant->scope);
        return 0;
}

/* Answers the oldest request at the token endpoint. */
static void upstream_answers(enum idp_outcome outcome, uint64_t expires_in)
{
        struct idp_result result = {.outcome = outcome, .expires_in = expires_in};
        idp_done_fn done = upstream[0].done;
        void *userdata = upstream[0].userdata;

        memmove(upstream, upstream + 1, (n_pending - 1) * sizeof(upstream[0]));
        n_pending--;
        result.sent_at_usec = now_boottime_usec();
        if (outcome == IDP_OK)
                (void)secret_new_from("access", 6, &result.access_token);
        else
                snprintf(result.message, sizeof(result.message), "test failure");
        done(&result, userdata);
        secret_free(result.access_token);
}

bool grant_credential_refused(struct grant_credential_call *call, struct idp_result *result)
{
        (void)call;
        (void)result;
        return false;
}

int grant_post_client_credentials(struct idp *idp, const struct account_meta *m,
                                  const char *token_endpoint, const char *scope,
                                  struct grant_credential_call *call, idp_done_fn done,
                                  void *userdata)
{
        (void)idp, (void)m, (void)token_endpoint, (void)scope, (void)call;
        upstream_add(done, userdata);
        return 0;
}

int grant_app_only_scope(const char *scope_key, const char *graph_resource, bool generic,
                         char **ret)
{
        (void)graph_resource;
        (void)generic;
        *ret = strdup(scope_key);
        return *ret ? 0 : -ENOMEM;
}

int grant_credential_call_init(struct grant_credential_call *call, const char *account,
                               enum account_flow flow, const char *token_endpoint,
                               const char *client_id)
{
        (void)call, (void)account, (void)flow, (void)token_endpoint, (void)client_id;
        return 0;
}

void grant_credential_call_set_alg(struct grant_credential_call *call, const struct account_meta *m)
{
        (void)call, (void)m;
}

int grant_credential_fetch(struct store *store, void *userdata)
{
        (void)store, (void)userdata;
        return 0;
}

int grant_granted_scope(const char *scope_key, const char *granted, char **ret)
{
        (void)scope_key, (void)granted;
        *ret = NULL;
        return 0;
}

/* ---- fake audit log ---- */

int audit_write(struct audit *a, const struct audit_record *r)
{
        (void)a, (void)r;
        return 0;
}

void audit_fingerprint(const struct audit *a, const struct secret *token, char out[static 17])
{
        (void)a, (void)token;
        memcpy(out, "0123456789abcdef", 17);
}

/* ---- waiters whose answers are recorded ---- */

static struct {
        const struct waiter *w;
        enum refresh_outcome outcome;
} answers[32];
static size_t n_answers;

static void on_answer(struct broker *b, struct waiter *w, enum refresh_outcome outcome)
{
        (void)b;
        if (n_answers < sizeof(answers) / sizeof(answers[0]))
                answers[n_answers++] = (typeof(answers[0])){w, outcome};
        waiter_free(w);
}

static struct waiter *add_waiter(struct account *a, const char *scope_key, uint32_t min_ttl)
{
        struct waiter *w = calloc(1, sizeof(*w));

        if (!w || !(w->scope_key = strdup(scope_key)))
                abort();
        w->account = a;
        w->min_ttl = min_ttl;
        w->answer = on_answer;
        account_add_waiter(a, w);
        return w;
}

static size_t count_waiters(const struct account *a)
{
        size_t n = 0;

        for (const struct waiter *w = a->waiters; w; w = w->next)
                n++;
        return n;
}

static struct config config = {.min_refresh_interval_sec = 30};
static struct broker broker = {
    .config = &config,
    .epfd = -1,
    .store_worker = (struct store_worker *)&jobs, /* never dereferenced by the fakes */
};

static void reset(void)
{
        while (n_jobs)
                complete_job(-ECANCELED, NULL);
        accounts_free(&broker.accounts);
        token_cache_clear(&broker.cache);
        n_upstream = 0;
        n_pending = max_pending = 0;
        n_answers = 0;
}

/* Puts a token in the cache for account/scope_key sent `age` seconds ago, valid `lifetime`. Ages
 * stay at a few minutes: CLOCK_BOOTTIME counts from the machine's boot, and a fresh CI machine
 * runs these tests within the hour of it; an age beyond the uptime wraps around (an age of
 * 3,000 s failed that way), so it aborts the test. */
static void cache_token(const char *account, const char *scope_key, uint64_t age, uint64_t lifetime)
{
        struct secret *token = NULL;
        struct cached_token *t;

        if (age * USEC_PER_SEC >= now_boottime_usec() || secret_new_from("cached", 6, &token) < 0 ||
            token_cache_put(&broker.cache, account, scope_key, &token, NULL,
                            now_boottime_usec() - age * USEC_PER_SEC, lifetime, &t) < 0)
                abort();
}

/* ---- the tests ---- */

static void test_load_once(void)
{
        struct account *a = NULL, *again = NULL;

        reset();
        is_int(accounts_get(&broker, "mail", &a), 0, "accounts_get creates the account");
        is_int(a->refresh, ACCOUNT_REFRESH_LOADING, "its metadata is being read");
        ok(!a->loaded, "not loaded yet");
        is_int(next_job_kind(), STORE_JOB_GET_META, "one GET_META job submitted");
        is_int(accounts_get(&broker, "mail", &again), 0, "a second accounts_get");
        ok(again == a, "finds the same account");
        is_int(n_jobs, 1, "and submits no second metadata read");
        ok(accounts_cached_token(&broker.cache, a, SCOPE_A, 0, 30, now_boottime_usec()) == NULL,
           "an account being loaded serves nothing from the cache");
}

/* Metadata read, refresh token read, token endpoint: one of each however many ask. */
static void test_single_flight(void)
{
        struct account *a = NULL;

        reset();
        (void)accounts_get(&broker, "mail", &a);
        add_waiter(a, SCOPE_A, 0);
        add_waiter(a, SCOPE_A, 0);
        refresh_start(&broker, a, SCOPE_A);
        is_int(n_jobs, 1, "loading: a refresh asked for starts no store job");

        complete_job(0, META);
        ok(a->loaded, "the metadata loaded the account");
        is_int(a->refresh, ACCOUNT_REFRESH_STORE, "loaded with waiters: refresh token being read");
        is_int(next_job_kind(), STORE_JOB_READ_REFRESH_TOKEN, "the refresh token read is queued");
        is_int(n_jobs, 1, "one store job");
        refresh_start(&broker, a, SCOPE_A);
        refresh_start(&broker, a, SCOPE_B);
        is_int(n_jobs, 1, "reading the refresh token: no second job, whatever the scope set");
        is_int(n_answers, 0, "no waiter answered yet");

        complete_job(0, NULL);
        is_int(a->refresh, ACCOUNT_REFRESH_UPSTREAM, "the refresh token read: request upstream");
        is_int(n_upstream, 1, "one request sent to the token endpoint");
        is_str(upstream_scope, SCOPE_A " offline_access", "for the waiters' scopes");
        ok(a->last_upstream_usec != 0, "the upstream request time is kept");
        add_waiter(a, SCOPE_A, 0);
        refresh_start(&broker, a, SCOPE_A);
        is_int(n_upstream, 1, "upstream: a new waiter starts no second request");
        is_int(n_jobs, 0, "nor a store job");

        upstream_answers(IDP_OK, 3600);
        drop_marker_jobs();
        is_int(a->refresh, ACCOUNT_REFRESH_IDLE, "the answer ends the refresh");
        is_int(n_answers, 3, "every waiter is answered");
        for (size_t i = 0; i < n_answers; i++)
                is_int(answers[i].outcome, REFRESH_FRESH, "with a fresh token");
        ok(a->waiters == NULL, "no waiter left");
        ok(accounts_cached_token(&broker.cache, a, SCOPE_A, 0, 30, now_boottime_usec()),
           "the new token is in the cache");
        is_int(n_upstream, 1, "still one upstream request in all");
}

/* A token at or below the floor, or expired, is never handed out; a fresh one is. */
static void test_cache_expiry(void)
{
        struct account *a = NULL;
        uint64_t now;

        reset();
        (void)accounts_get(&broker, "mail", &a);
        complete_job(0, META);
        now = now_boottime_usec();
        cache_token("mail", SCOPE_A, 10, 3600);
        ok(accounts_cached_token(&broker.cache, a, SCOPE_A, 0, 30, now), "a fresh token serves");
        ok(accounts_cached_token(&broker.cache, a, SCOPE_A, 3000, 30, now),
           "and meets a min_ttl it has");
        cache_token("mail", SCOPE_A, 100, 90);
        ok(!accounts_cached_token(&broker.cache, a, SCOPE_A, 0, 30, now_boottime_usec()),
           "an expired token does not serve");
        cache_token("mail", SCOPE_A, 80, 90);
        ok(!accounts_cached_token(&broker.cache, a, SCOPE_A, 0, 30, now_boottime_usec()),
           "nor one with less than the floor left");
        cache_token("mail", SCOPE_B, 60, 660);
        ok(!accounts_cached_token(&broker.cache, a, SCOPE_B, 900, 0, now_boottime_usec()),
           "nor one short of min_ttl when the account may refresh");
}

/* Loading an account answers from the cache only what the cache can serve. */
static void test_load_answers_from_cache(void)
{
        struct account *a = NULL;
        const struct waiter *fresh, *expired;

        reset();
        cache_token("mail", SCOPE_A, 10, 3600);
        cache_token("mail", SCOPE_B, 100, 90);
        (void)accounts_get(&broker, "mail", &a);
        fresh = add_waiter(a, SCOPE_A, 0);
        expired = add_waiter(a, SCOPE_B, 0);
        complete_job(0, META);
        is_int(n_answers, 1, "one waiter answered at load");
        ok(n_answers == 1 && answers[0].w == fresh, "the one with a fresh token");
        is_int(n_answers ? (int)answers[0].outcome : -1, REFRESH_CACHED, "from the cache");
        ok(a->waiters == expired && count_waiters(a) == 1, "the expired one still waits");
        is_int(a->refresh, ACCOUNT_REFRESH_STORE, "on a refresh");
        is_int(next_job_kind(), STORE_JOB_READ_REFRESH_TOKEN, "which reads the refresh token");
}

/* A refresh for one scope set answers its waiters; the others wait for a refresh of their own. */
static void test_other_scope_waits(void)
{
        struct account *a = NULL;
        const struct waiter *b_waiter;

        reset();
        (void)accounts_get(&broker, "mail", &a);
        add_waiter(a, SCOPE_A, 0);
        b_waiter = add_waiter(a, SCOPE_B, 0);
        complete_job(0, META);
        complete_job(0, NULL);
        upstream_answers(IDP_OK, 3600);
        drop_marker_jobs();
        is_int(n_answers, 1, "the scope set refreshed is answered");
        ok(a->waiters == b_waiter, "the other waits");
        is_int(a->refresh, ACCOUNT_REFRESH_STORE, "on a refresh started for it");
        complete_job(0, NULL);
        is_str(upstream_scope, SCOPE_B " offline_access", "for its scope set");
        upstream_answers(IDP_OK, 3600);
        drop_marker_jobs();
        is_int(n_answers, 2, "then it is answered");
        is_int(n_upstream, 2, "two upstream requests for two scope sets");
}

/* A transient failure answers every waiter, backs off, and a refresh asked for meanwhile is
 * answered at once without a store job or a request. */
static void test_failure_backs_off(void)
{
        struct account *a = NULL;

        reset();
        (void)accounts_get(&broker, "mail", &a);
        add_waiter(a, SCOPE_A, 0);
        add_waiter(a, SCOPE_B, 0);
        complete_job(0, META);
        complete_job(0, NULL);
        upstream_answers(IDP_TRANSIENT, 0);
        is_int(n_answers, 2, "a failure of the account answers every waiter");
        is_int(answers[0].outcome, REFRESH_FAILED, "first: failed");
        is_int(answers[1].outcome, REFRESH_FAILED, "second: failed");
        is_int(a->refresh, ACCOUNT_REFRESH_IDLE, "idle");
        ok(a->retry_at_usec > now_boottime_usec(), "backing off");
        add_waiter(a, SCOPE_A, 0);
        refresh_start(&broker, a, SCOPE_A);
        is_int(n_answers, 3, "backing off: answered at once");
        is_int(n_jobs, 0, "no store job");
        is_int(n_upstream, 1, "no upstream request");
}

static void test_reauth(void)
{
        struct account *a = NULL;

        reset();
        (void)accounts_get(&broker, "mail", &a);
        add_waiter(a, SCOPE_A, 0);
        complete_job(0, META);
        complete_job(-ENOENT, NULL);
        is_int(a->state, ACCOUNT_NEEDS_REAUTH, "no refresh token: needs reauth");
        ok(account_message(a)[0] != 0, "and its message says why");
        is_int(n_answers, 1, "the waiter is answered");
        is_int(answers[0].outcome, REFRESH_FAILED, "failed");
        is_int(n_upstream, 0, "nothing sent upstream");
        is_int(a->refresh, ACCOUNT_REFRESH_IDLE, "idle");
}

static void test_not_provisioned(void)
{
        struct account *a = NULL;

        reset();
        (void)accounts_get(&broker, "gone", &a);
        add_waiter(a, SCOPE_A, 0);
        complete_job(-ENOENT, NULL);
        is_int(n_answers, 1, "the waiter is answered");
        is_int(answers[0].outcome, REFRESH_NOT_PROVISIONED, "not provisioned");
        ok(accounts_first(broker.accounts) == NULL,
           "the account is dropped, to be read again next time");
}

/* A store that does not answer: waiters that waited STORE_WAIT_SEC are answered unavailable,
 * the job goes on, and its result still lands. */
static void test_store_stall(void)
{
        struct account *a = NULL;
        struct waiter *old, *young;
        uint64_t now = now_boottime_usec();

        reset();
        (void)accounts_get(&broker, "mail", &a);
        old = add_waiter(a, SCOPE_A, 0);
        young = add_waiter(a, SCOPE_A, 0);
        refresh_store_tick(&broker);
        is_int(n_answers, 0, "a young store job answers nobody");
        a->store_since_usec = now - (STORE_WAIT_SEC + 1) * USEC_PER_SEC;
        old->since_usec = a->store_since_usec;
        refresh_store_tick(&broker);
        is_int(n_answers, 1, "the store has not answered for too long: one waiter answered");
        ok(n_answers == 1 && answers[0].w == old, "the one that waited long enough");
        is_int(n_answers ? (int)answers[0].outcome : -1, REFRESH_STORE_UNAVAILABLE, "unavailable");
        ok(a->waiters == young, "the younger one still waits");
        is_int(a->refresh, ACCOUNT_REFRESH_LOADING, "the job goes on");
        complete_job(0, META);
        ok(a->loaded, "and its result lands");
}

/* Forgetting (reload, account removal) never frees an account with work in flight. */
static void test_forget(void)
{
        struct account *a = NULL, *b = NULL;

        reset();
        (void)accounts_get(&broker, "busy", &a);
        (void)accounts_get(&broker, "idle", &b);
        complete_job(0, META); /* "busy": loaded, idle */
        complete_job(0, META); /* "idle" */
        add_waiter(a, SCOPE_A, 0);
        refresh_start(&broker, a, SCOPE_A);
        accounts_forget(&broker, "busy");
        ok(account_find(broker.accounts, "busy") == a, "a busy account is not forgotten");
        accounts_forget_idle(&broker.accounts);
        ok(account_find(broker.accounts, "busy") == a, "nor by a reload");
        ok(account_find(broker.accounts, "idle") == NULL, "an idle one is");
        complete_job(0, NULL);
        upstream_answers(IDP_OK, 3600);
        drop_marker_jobs();
        accounts_forget(&broker, "busy");
        ok(accounts_first(broker.accounts) == NULL, "once idle, forgotten");
}

/* ---- scale (issue 14): lookups stay flat, refreshes are bounded and due-ordered ---- */

#define SCALE_ACCOUNTS 10000
#define LOOKUPS        1000000

static double elapsed_ns(const struct timespec *t0)
{
        struct timespec t1;

        clock_gettime(CLOCK_MONOTONIC, &t1);
        return (double)(t1.tv_sec - t0->tv_sec) * 1e9 + (double)(t1.tv_nsec - t0->tv_nsec);
}

/* Loads n accounts acct-0.. with two cached scope sets each. */
static void load_accounts(size_t n)
{
        char name[32];
        struct account *a;

        for (size_t i = 0; i < n; i++) {
                snprintf(name, sizeof(name), "acct-%zu", i);
                if (accounts_get(&broker, name, &a) < 0)
                        abort();
                complete_job(0, META);
                cache_token(name, SCOPE_A, 10, 3600);
                cache_token(name, SCOPE_B, 10, 3600);
        }
}

/* ns per lookup (account by name, then its token for a scope set) over n accounts. */
static double time_lookups(size_t n, unsigned *found)
{
        struct timespec t0;
        char names[64][32];

        for (size_t i = 0; i < 64; i++)
                snprintf(names[i], sizeof(names[i]), "acct-%zu", (i * 7919) % n);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < LOOKUPS; i++) {
                const char *name = names[i % 64];
                struct account *a = account_find(broker.accounts, name);

                *found +=
                    a && token_cache_get(&broker.cache, a->name, i % 2 ? SCOPE_A : SCOPE_B) != NULL;
        }
        return elapsed_ns(&t0) / LOOKUPS;
}

static size_t count_cache(void)
{
        size_t n = 0;
        const struct cached_token *prev = NULL;

        for (const struct cached_token *t = broker.cache.entries; t; prev = t, t = t->next)
                if (t->prev == prev)
                        n++;
        return n;
}

/* Account and cached-token lookups cost about the same with 10,000 accounts as with one; the
 * cache's list (admin status) and the per-account drops still work. */
static void test_scale_lookups(void)
{
        unsigned found_one = 0, found_many = 0;
        double one, many;
        char name[32];
        size_t left = 0;

        reset();
        load_accounts(1);
        one = time_lookups(1, &found_one);
        reset();
        load_accounts(SCALE_ACCOUNTS);
        many = time_lookups(SCALE_ACCOUNTS, &found_many);
        printf("# 1e6 account + cached-token lookups: %.1f ns each with 1 account, %.1f ns each "
               "with %d accounts x 2 scope sets (%.2fx)\n",
               one, many, SCALE_ACCOUNTS, many / one);
        ok(found_one == LOOKUPS && found_many == LOOKUPS, "every lookup found its token");
        is_int(count_cache(), 2 * SCALE_ACCOUNTS,
               "the cache's list holds every token, linked both ways");

        for (size_t i = 0; i < SCALE_ACCOUNTS; i += 3) {
                snprintf(name, sizeof(name), "acct-%zu", i);
                token_cache_drop_account(&broker.cache, name);
        }
        snprintf(name, sizeof(name), "acct-%d", 1);
        is_int(token_cache_drop_token(&broker.cache, name, "cached", 6), 1, "drop_token drops one");
        is_int(token_cache_drop_token(&broker.cache, name, "other", 5), 0, "not another token");
        for (size_t i = 0; i < SCALE_ACCOUNTS; i++) {
                snprintf(name, sizeof(name), "acct-%zu", i);
                bool want_a = i % 3 != 0, want_b = i % 3 != 0 && i != 1;
                const struct cached_token *ta = token_cache_get(&broker.cache, name, SCOPE_A),
                                          *tb = token_cache_get(&broker.cache, name, SCOPE_B);
                if ((ta != NULL) == want_a && (tb != NULL) == want_b &&
                    (!ta || strcmp(ta->account, name) == 0))
                        left++;
        }
        is_int(left, SCALE_ACCOUNTS, "drop_account and drop_token took exactly theirs");
        is_int(count_cache(), 2 * (SCALE_ACCOUNTS - (SCALE_ACCOUNTS + 2) / 3) - 1,
               "and the list agrees");
        /* An entry behind the account's first one (the scope set cached first). */
        struct secret *ta = NULL, *tb = NULL;
        struct cached_token *t;
        if (secret_new_from("tok-a", 5, &ta) < 0 || secret_new_from("tok-b", 5, &tb) < 0 ||
            token_cache_put(&broker.cache, "acct-0", SCOPE_A, &ta, NULL, now_boottime_usec(), 3600,
                            &t) < 0 ||
            token_cache_put(&broker.cache, "acct-0", SCOPE_B, &tb, NULL, now_boottime_usec(), 3600,
                            &t) < 0)
                abort();
        ok(token_cache_first_of(&broker.cache, "acct-0") == t, "the newest entry comes first");
        is_int(token_cache_drop_token(&broker.cache, "acct-0", "tok-a", 5), 1,
               "drop_token drops the entry behind the first");
        ok(token_cache_get(&broker.cache, "acct-0", SCOPE_A) == NULL &&
               token_cache_first_of(&broker.cache, "acct-0") == t && t->next_of_account == NULL,
           "the account's chain skips it");
        token_cache_drop_account(&broker.cache, "acct-0");
        accounts_forget_idle(&broker.accounts);
        ok(accounts_first(broker.accounts) == NULL, "a reload forgets every idle account");
        ok(account_find(broker.accounts, "acct-5") == NULL, "and the table with them");
}

/* The refresh-ahead point is spread over the configured share of the lifetime before 75%. */
static void test_refresh_spread(void)
{
        uint64_t lo = UINT64_MAX, hi = 0, life = 3600 * USEC_PER_SEC;
        bool inside = true;
        char name[32];

        reset();
        broker.cache.refresh_spread_pct = 15;
        for (int i = 0; i < 1000; i++) {
                struct secret *token = NULL;
                struct cached_token *t;

                snprintf(name, sizeof(name), "acct-%d", i);
                if (secret_new_from("x", 1, &token) < 0 ||
                    token_cache_put(&broker.cache, name, SCOPE_A, &token, NULL, 1000, 3600, &t) < 0)
                        abort();
                uint64_t at = t->refresh_usec - 1000;
                if (at < life * 60 / 100 || at > life * 3 / 4)
                        inside = false;
                lo = at < lo ? at : lo;
                hi = at > hi ? at : hi;
                if (i == 0)
                        ok(cached_token_fits(t, 0, 1000 + life - 61 * USEC_PER_SEC) &&
                               !cached_token_fits(t, 0, 1000 + life - 59 * USEC_PER_SEC),
                           "the floor is still a quarter of the lifetime, capped at 60 s");
        }
        printf("# refresh-ahead points of 1000 tokens: %.0f s to %.0f s of 3600 s\n",
               (double)lo / USEC_PER_SEC, (double)hi / USEC_PER_SEC);
        ok(inside, "every refresh-ahead point lies in [60%, 75%] of the lifetime");
        ok(hi - lo > life / 10, "and they spread over more than 10% of it");
        broker.cache.refresh_spread_pct = 0;
        token_cache_clear(&broker.cache);
}

static struct account *loaded_account(const char *name)
{
        struct account *a = NULL;

        if (accounts_get(&broker, name, &a) < 0)
                abort();
        complete_job(0, META);
        return a;
}

/* Runs every job and answers every upstream request until nothing is left, writing the accounts
 * whose refresh token was read (the order refreshes started in) to order. */
static void run_refreshes(char *order, size_t size, unsigned *max_in_flight, const char *endpoint)
{
        while (n_jobs || n_pending) {
                unsigned in_flight = refresh_in_flight(&broker, endpoint);

                if (in_flight > *max_in_flight)
                        *max_in_flight = in_flight;
                drop_marker_jobs();
                if (!n_jobs && !n_pending)
                        break;
                if (n_jobs && jobs[0].job->kind == STORE_JOB_READ_REFRESH_TOKEN) {
                        size_t len = strlen(order);
                        snprintf(order + len, size - len, "%s%s", len ? " " : "",
                                 jobs[0].job->account);
                        complete_job(0, NULL);
                } else if (n_jobs) {
                        complete_job(0, NULL);
                } else {
                        upstream_answers(IDP_OK, 3600);
                }
        }
}

/* With a limit of 2 per authority: two refreshes in flight, the rest queued and started earliest
 * deadline first (a request waiting is due now; a refresh ahead, at its token's expiry), and a
 * request arriving for a queued account moves it up. */
static void test_refresh_concurrency(void)
{
        static const uint64_t expires_in[] = {500, 400, 300, 200, 100};
        struct account *acct[6];
        char name[8], order[128] = "";
        unsigned max_in_flight = 0;

        reset();
        config.refresh_concurrency_per_authority = 2;
        for (int i = 0; i < 6; i++) {
                snprintf(name, sizeof(name), "a%d", i);
                acct[i] = loaded_account(name);
                if (i < 5)
                        cache_token(name, SCOPE_A, 100, 100 + expires_in[i]);
        }
        for (int i = 0; i < 5; i++)
                refresh_start(&broker, acct[i], SCOPE_A);
        const char *endpoint = acct[0]->token_endpoint;
        is_int(refresh_in_flight(&broker, endpoint), 2, "two refreshes in flight");
        is_int(refresh_queued(&broker, endpoint), 3, "three queued");
        is_int(acct[4]->refresh, ACCOUNT_REFRESH_QUEUED, "a queued account is busy");
        add_waiter(acct[5], SCOPE_A, 0);
        refresh_start(&broker, acct[5], SCOPE_A);
        usleep(2000); /* a later arrival, whatever the clock's resolution */
        add_waiter(acct[2], SCOPE_A, 0);
        refresh_start(&broker, acct[2], SCOPE_A);
        refresh_start(&broker, acct[2], SCOPE_A);
        is_int(refresh_queued(&broker, endpoint), 4,
               "a request for a queued account queues nothing more");
        run_refreshes(order, sizeof(order), &max_in_flight, endpoint);
        is_str(order, "a0 a1 a5 a2 a4 a3", "earliest deadline first, waiting requests first");
        is_int(max_in_flight, 2, "never more than two in flight");
        is_int(max_pending, 2, "never more than two at the token endpoint");
        is_int(n_upstream, 6, "each account refreshed once");
        is_int(n_answers, 2, "both waiting requests answered");
        ok(n_answers == 2 && answers[0].outcome == REFRESH_FRESH &&
               answers[1].outcome == REFRESH_FRESH,
           "with fresh tokens");
        is_int(refresh_in_flight(&broker, endpoint), 0, "every place given back");
        config.refresh_concurrency_per_authority = 0;
}

/* A queued refresh whose account went unusable meanwhile gives its place back at once. */
static void test_refresh_queue_failure(void)
{
        struct account *a, *b, *c;
        char order[64] = "";
        unsigned max_in_flight = 0;

        reset();
        config.refresh_concurrency_per_authority = 1;
        a = loaded_account("qa");
        b = loaded_account("qb");
        c = loaded_account("qc");
        refresh_start(&broker, a, SCOPE_A);
        add_waiter(b, SCOPE_A, 0);
        refresh_start(&broker, b, SCOPE_A);
        refresh_start(&broker, c, SCOPE_A);
        b->state = ACCOUNT_NEEDS_REAUTH; /* e.g. an administrator's action while it waited */
        run_refreshes(order, sizeof(order), &max_in_flight, a->token_endpoint);
        is_str(order, "qa qc", "the unusable account is skipped, the next one runs");
        is_int(n_answers, 1, "its waiter is answered");
        is_int(n_answers ? (int)answers[0].outcome : -1, REFRESH_FAILED, "with a failure");
        is_int(refresh_in_flight(&broker, a->token_endpoint), 0, "no place leaked");
        ok(b->refresh == ACCOUNT_REFRESH_IDLE, "the skipped account is idle");
        config.refresh_concurrency_per_authority = 0;
}

/* A cached token's framed reply is freed once it can no longer be sent: request.c reuses it only
 * while the token's seconds left are those it was built with. */
static void test_reply_sweep(void)
{
        struct cached_token *t, *u;
        uint64_t now;

        reset();
        cache_token("mail", SCOPE_A, 10, 3600);
        cache_token("mail", SCOPE_B, 10, 3600);
        now = now_boottime_usec();
        t = token_cache_get(&broker.cache, "mail", SCOPE_A);
        u = token_cache_get(&broker.cache, "mail", SCOPE_B);
        if (!t || !u || secret_new_from("reply-a", 7, &t->reply) < 0 ||
            secret_new_from("reply-b", 7, &u->reply) < 0)
                abort();
        t->reply_expires_in = cached_token_ttl(t, now);
        u->reply_expires_in = cached_token_ttl(u, now) + 1; /* built a second ago */
        broker.cache.replies_swept_usec = 0;
        token_cache_sweep_replies(&broker.cache, now);
        ok(t->reply != NULL, "a reply of this second is kept");
        ok(u->reply == NULL, "one of an earlier second, never to be sent again, is freed");
        if (secret_new_from("reply-b", 7, &u->reply) < 0)
                abort();
        token_cache_sweep_replies(&broker.cache, now + USEC_PER_SEC);
        ok(u->reply != NULL, "the cache is run through at most once per TOKEN_CACHE_SWEEP_SEC");
        token_cache_sweep_replies(&broker.cache, now + TOKEN_CACHE_SWEEP_SEC * USEC_PER_SEC);
        ok(!t->reply && !u->reply, "and then both, stale by then, are freed");
}

/* The status sentence is allocated only when there is one, and cut where the buffer it
 * replaced cut it. */
static void test_account_message(void)
{
        struct account *a = NULL;
        char longer[400];

        reset();
        (void)accounts_get(&broker, "mail", &a);
        is_str(account_message(a), "", "no message at first");
        ok(!a->status_message, "and nothing allocated for it");
        memset(longer, 'x', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = 0;
        account_set_message(a, "%s", longer);
        is_int(strlen(account_message(a)), ACCOUNT_MESSAGE_MAX - 1, "a long sentence is cut");
        account_set_message(a, "second %d", 2);
        is_str(account_message(a), "second 2", "a new one replaces it");
        account_clear_message(a);
        is_str(account_message(a), "", "cleared");
        ok(!a->status_message, "and freed");
}

int main(void)
{
        test_load_once();
        test_single_flight();
        test_cache_expiry();
        test_load_answers_from_cache();
        test_other_scope_waits();
        test_failure_backs_off();
        test_reauth();
        test_not_provisioned();
        test_store_stall();
        test_forget();
        test_scale_lookups();
        test_refresh_spread();
        test_refresh_concurrency();
        test_refresh_queue_failure();
        test_account_message();
        test_reply_sweep();
        reset();
        return done_testing();
}
