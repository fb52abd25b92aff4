/* The runtime accounts: the registry, loading an account's metadata through the store worker,
 * its waiters and its single-flight state; see accounts.h. */
#include "accounts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "hashmap.h"
#include "log.h"
#include "refresh.h"
#include "util.h"
#include "waiter.h"

#define BACKOFF_BASE_SEC 1
#define BACKOFF_CAP_SEC  300

int account_new(const char *name, struct account **ret)
{
        struct account *a;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->waiters_tail = &a->waiters;
        a->name = strdup(name);
        if (!a->name) {
                account_free(a);
                return -ENOMEM;
        }
        *ret = a;
        return 0;
}

int account_set_meta(struct account *a, const char *meta_json, const struct config *config)
{
        struct account_meta meta = {0};
        char *endpoint;
        int r;

        r = account_meta_from_json(meta_json, &meta);
        if (r < 0)
                return r;
        r = account_meta_token_endpoint(&meta, config->authority, &endpoint);
        if (r < 0) {
                account_meta_clear(&meta);
                return r;
        }
        account_meta_clear(&a->meta);
        free(a->token_endpoint);
        a->meta = meta;
        a->token_endpoint = endpoint;
        a->loaded = true;
        return 0;
}

void account_free(struct account *a)
{
        if (!a)
                return;
        while (a->waiters) {
                struct waiter *w = a->waiters;
                a->waiters = w->next;
                waiter_free(w);
        }
        free(a->name);
        account_meta_clear(&a->meta);
        free(a->token_endpoint);
        free(a->keepalive_scope_key);
        free(a->queued_scope_key);
        account_clear_message(a);
        secret_free(a->unstored_refresh_token);
        free(a);
}

/* The sentence an account keeps when its own could not be allocated (never freed). */
static char message_out_of_memory[] = "out of memory";

void account_set_message(struct account *a, const char *format, ...)
{
        char text[ACCOUNT_MESSAGE_MAX];
        va_list ap;

        va_start(ap, format);
        (void)vsnprintf(text, sizeof(text), format, ap);
        va_end(ap);
        account_clear_message(a);
        a->status_message = strdup(text);
        if (!a->status_message)
                a->status_message = message_out_of_memory;
}

void account_clear_message(struct account *a)
{
        if (a->status_message != message_out_of_memory)
                free(a->status_message);
        a->status_message = NULL;
}

struct account *account_find(const struct accounts *reg, const char *name)
{
        return reg ? hashmap_get(reg->by_name, name) : NULL;
}

void account_add_waiter(struct account *a, struct waiter *w)
{
        if (w->since_usec == 0)
                w->since_usec = now_boottime_usec();
        w->next = NULL;
        *a->waiters_tail = w;
        a->waiters_tail = &w->next;
}

struct waiter *account_take_waiters(struct account *a)
{
        struct waiter *list = a->waiters;

        a->waiters = NULL;
        a->waiters_tail = &a->waiters;
        return list;
}

void account_remove_waiter(struct account *a, struct waiter *w)
{
        struct waiter **link;

        for (link = &a->waiters; *link; link = &(*link)->next)
                if (*link == w) {
                        *link = w->next;
                        if (a->waiters_tail == &w->next)
                                a->waiters_tail = link;
                        return;
                }
}

bool account_token_serves(const struct account *a, const struct cached_token *t, uint32_t min_ttl,
                          uint32_t interval_sec, uint64_t now_usec)
{
        uint64_t interval = (uint64_t)interval_sec * USEC_PER_SEC;

        if (cached_token_fits(t, min_ttl, now_usec))
                return true;
        if (!cached_token_fits(t, 0, now_usec))
                return false; /* due for an ordinary refresh, whatever min_ttl says */
        return now_usec - t->sent_usec < interval ||
               (a->last_upstream_usec != 0 && now_usec - a->last_upstream_usec < interval);
}

uint32_t account_backoff(struct account *a, uint32_t retry_after, uint64_t now_usec)
{
        uint64_t ceiling = BACKOFF_BASE_SEC;
        uint32_t delay;

        if (a->failures < 30)
                a->failures++;
        for (unsigned i = 1; i < a->failures && ceiling < BACKOFF_CAP_SEC; i++)
                ceiling *= 2;
        if (ceiling > BACKOFF_CAP_SEC)
                ceiling = BACKOFF_CAP_SEC;
        /* Full jitter: many brokers failing together don't retry together. */
        delay = 1 + (uint32_t)random_below(ceiling);
        if (delay < retry_after)
                delay = retry_after;
        a->retry_at_usec = now_usec + (uint64_t)delay * USEC_PER_SEC;
        return delay;
}

struct cached_token *accounts_cached_token(struct token_cache *cache, const struct account *a,
                                           const char *scope_key, uint32_t min_ttl,
                                           uint32_t interval_sec, uint64_t now_usec)
{
        struct cached_token *t;

        /* An account still being read from the store has no mailbox for the reply yet. */
        if (!a->loaded)
                return NULL;
        t = token_cache_get(cache, a->name, scope_key);
        if (!t || !account_token_serves(a, t, min_ttl, interval_sec, now_usec))
                return NULL;
        return t;
}

/* ---- waiters ---- */

void waiter_free(struct waiter *w)
{
        if (!w)
                return;
        free(w->scope_key);
        free(w);
}

void waiter_answer(struct broker *b, struct waiter *w, enum refresh_outcome outcome)
{
        w->answer(b, w, outcome);
}

/* ---- single flight ---- */

void account_refresh_to(struct account *a, enum account_refresh to)
{
        /* One piece of work at a time: a new one starts only from idle. */
        if (to != ACCOUNT_REFRESH_IDLE && a->refresh != ACCOUNT_REFRESH_IDLE)
                log_error("Account %s: single flight broken (refresh state %d to %d).", a->name,
                          (int)a->refresh, (int)to);
        a->refresh = to;
        if (to == ACCOUNT_REFRESH_LOADING || to == ACCOUNT_REFRESH_STORE)
                a->store_since_usec = now_boottime_usec();
        else
                a->store_since_usec = 0;
}

int account_submit_store_job(struct store_worker *worker, struct account *a,
                             enum account_refresh next_state, struct store_job *job,
                             store_job_done_fn done, void *userdata)
{
        int r = store_worker_submit(worker, job, done, userdata);

        if (r < 0)
                return r;
        account_refresh_to(a, next_state);
        return 0;
}

void account_store_job_done(struct account *a)
{
        account_refresh_to(a, ACCOUNT_REFRESH_IDLE);
}

/* ---- the registry ---- */

static void account_unlink(struct accounts *reg, struct account *a)
{
        (void)hashmap_remove(reg->by_name, a->name);
        if (a->prev)
                a->prev->next = a->next;
        else
                reg->list = a->next;
        if (a->next)
                a->next->prev = a->prev;
        a->next = a->prev = NULL;
}

void accounts_remove(struct accounts *reg, struct account *a)
{
        account_unlink(reg, a);
        account_free(a);
}

static int accounts_new(struct accounts **ret)
{
        struct accounts *reg = calloc(1, sizeof(*reg));
        int r;

        if (!reg)
                return -ENOMEM;
        r = hashmap_new(&reg->by_name);
        if (r < 0) {
                free(reg);
                return r;
        }
        *ret = reg;
        return 0;
}

/* Adds a (not in yet) first in the registry. */
static int account_link(struct accounts *reg, struct account *a)
{
        int r = hashmap_put(reg->by_name, a->name, a);

        if (r < 0)
                return r;
        a->prev = NULL;
        a->next = reg->list;
        if (a->next)
                a->next->prev = a;
        reg->list = a;
        return 0;
}

/* Answers every waiter of a metadata read that failed, and drops the account, so the next
 * request reads the store again. */
static void account_load_failed(struct broker *b, struct account *a, enum refresh_outcome failure)
{
        struct waiter *list = account_take_waiters(a), *w;

        /* Unlinked first: answering runs the connections' next requests, which must start a
         * new account rather than find this one. */
        account_unlink(b->accounts, a);
        while ((w = list)) {
                list = w->next;
                w->next = NULL;
                waiter_answer(b, w, failure);
        }
        account_free(a);
}

/* The account is loaded: the requests that waited are answered from the cache when it can (an
 * account re-read after a reload keeps its cached tokens), the rest wait for a refresh. */
static void account_loaded(struct broker *b, struct account *a)
{
        struct waiter *list = account_take_waiters(a), *w;
        uint64_t now = now_boottime_usec();

        while ((w = list)) {
                list = w->next;
                w->next = NULL;
                if (accounts_cached_token(&b->cache, a, w->scope_key, w->min_ttl,
                                          b->config->min_refresh_interval_sec, now))
                        waiter_answer(b, w, REFRESH_CACHED);
                else
                        account_add_waiter(a, w);
        }
        if (a->waiters)
                refresh_start(b, a, a->waiters->scope_key);
        else if (a->keepalive_scope_key)
                refresh_start(b, a, a->keepalive_scope_key);
        free(a->keepalive_scope_key);
        a->keepalive_scope_key = NULL;
}

/* The account's metadata has been read, or could not be. */
static void on_account_meta_read(struct store_job *job, void *userdata)
{
        struct broker *b = userdata;
        struct account *a = account_find(b->accounts, job->account);
        enum refresh_outcome failure = REFRESH_STORE_UNAVAILABLE;
        int r = job->result;

        if (!a)
                return;
        account_store_job_done(a);
        if (r == 0) {
                r = account_set_meta(a, job->meta_json, b->config);
                if (r < 0) {
                        log_error_errno(r, "Account %s has invalid metadata in the token.",
                                        a->name);
                        failure = REFRESH_NOT_PROVISIONED;
                }
        } else if (r == -ENOENT) {
                log_warning("Account %s is not provisioned in the credential store.", a->name);
                failure = REFRESH_NOT_PROVISIONED;
        } else {
                log_warning_errno(r, "Account %s: cannot read its metadata from the store",
                                  a->name);
        }
        if (r < 0)
                account_load_failed(b, a, failure);
        else
                account_loaded(b, a);
}

int accounts_get(struct broker *b, const char *name, struct account **ret)
{
        struct account *a = account_find(b->accounts, name);
        struct store_job *job = NULL;
        int r = 0;

        if (a) {
                *ret = a;
                return 0;
        }
        if (!b->accounts)
                r = accounts_new(&b->accounts);
        if (r == 0)
                r = account_new(name, &a);
        /* In the table before the job is queued: its callback may find it only that way. */
        if (r == 0)
                r = account_link(b->accounts, a);
        if (r == 0)
                r = store_job_new(STORE_JOB_GET_META, name, &job);
        if (r == 0)
                r = account_submit_store_job(b->store_worker, a, ACCOUNT_REFRESH_LOADING, job,
                                             on_account_meta_read, b);
        if (r < 0) {
                store_job_free(job);
                if (a && account_find(b->accounts, name) == a)
                        account_unlink(b->accounts, a);
                account_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

void accounts_forget(struct broker *b, const char *name)
{
        struct account *a = account_find(b->accounts, name);

        if (!a || account_busy(a) || a->waiters)
                return; /* its refresh ends on its own; a reload forgets it later */
        accounts_remove(b->accounts, a);
}

void accounts_forget_idle(struct accounts **reg)
{
        struct account *a = accounts_first(*reg), *next;

        for (; a; a = next) {
                next = a->next;
                if (account_busy(a) || a->waiters || a->unstored_refresh_token)
                        continue;
                accounts_remove(*reg, a);
        }
}

void accounts_free(struct accounts **reg)
{
        struct accounts *r = *reg;

        if (!r)
                return;
        while (r->list) {
                struct account *a = r->list;
                r->list = a->next;
                account_free(a);
        }
        hashmap_free(r->by_name);
        refresh_authorities_free(r->authorities);
        free(r);
        *reg = NULL;
}
