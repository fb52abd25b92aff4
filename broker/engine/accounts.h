/* The accounts as the broker runs them (accounts.c): the registry (b->accounts, a hash table by
 * name and a list to walk), each account's
 * settings read from the store's meta object, its waiters, and its upstream state (single
 * flight, backoff, reauth). No secret lives here but a rotated refresh token the store could not
 * take: the refresh token is read from the store for each refresh and wiped after. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "account-meta.h"
#include "config.h"
#include "secret.h"
#include "store-worker.h"
#include "token-cache.h"

struct broker;
struct waiter;

enum account_state {
        ACCOUNT_OK,
        ACCOUNT_NEEDS_REAUTH,
        ACCOUNT_NEEDS_CONFIG,
};

/* Single flight (design.md §5): where the account's one piece of work in flight is. Changed only
 * by account_refresh_to(). While it is not idle no second job or upstream request starts for
 * the account, and neither a reload nor a removal frees it. */
enum account_refresh {
        ACCOUNT_REFRESH_IDLE,
        ACCOUNT_REFRESH_LOADING,  /* the store worker reads its metadata (accounts_get()) */
        ACCOUNT_REFRESH_STORE,    /* a store job of a refresh: refresh token or credential read,
                                   * rotated refresh token write */
        ACCOUNT_REFRESH_UPSTREAM, /* a token request is at the token endpoint */
        ACCOUNT_REFRESH_QUEUED,   /* waiting for a place among its authority's refreshes in
                                   * flight ([broker] refresh_concurrency_per_authority) */
};

struct account {
        char *name;
        /* meta and token_endpoint are set once the store worker has read the meta object;
         * until then the account exists only so that requests can wait on it. */
        bool loaded;
        struct account_meta meta;
        char *token_endpoint;
        enum account_state state;

        enum account_refresh refresh;
        uint64_t store_since_usec; /* boottime the store job in flight was submitted; 0: none */
        unsigned failures;         /* consecutive transient failures, for backoff */
        uint64_t retry_at_usec;    /* boottime before which no new request is sent */
        /* Boottime the last token request for the account was sent upstream, whatever its
         * scope set or reason (0: none since it was loaded). A request's min_ttl alone starts
         * no new one within [identity] min_refresh_interval of it (account_token_serves()). */
        uint64_t last_upstream_usec;
        struct waiter *waiters; /* FIFO of requests waiting on this account */
        struct waiter **waiters_tail;
        /* A keep-alive refresh asked for while the metadata was being read: it starts once the
         * account is loaded (keepalive.c). */
        char *keepalive_scope_key;

        /* For status (admin socket): the last successful refresh (unix seconds, 0: none since
         * the broker started) and the last failure's sentence (account_message(); allocated
         * when there is one, as most accounts have none: 256 bytes inline in each took 2.5 MB
         * for 10,000 accounts). */
        uint64_t last_refresh_at;
        /* Unix seconds this run last stored the account's refresh token (a rotated one, or one
         * kept in memory), 0: not since start. The keep-alive check takes a token stored since
         * its cut-off as fresh without reading it from the store (keepalive.c). */
        uint64_t refresh_token_stored_at;
        char *status_message;
        /* The refresh-token generation the previous run stopped during a refresh with (its
         * marker in the store named it, and it was still the newest), 0: none; and whether the
         * account is in needs_reauth because that token was refused (refresh.c). */
        uint64_t interrupted_generation;
        bool reauth_interrupted;

        /* The newest refresh token, when the store could not take it (refresh.c). It is the
         * only copy: a strict server has revoked the one in the store. The next refresh writes
         * it again first and sends it whatever that write does. */
        struct secret *unstored_refresh_token;

        /* Boottime of the last token.drop that dropped a token of this account (0: none): one
         * per minute at most, so a client cannot make the broker refresh in a loop. */
        uint64_t last_token_drop_usec;

        /* While ACCOUNT_REFRESH_QUEUED (refresh.c): the scope set to refresh, the deadline
         * that orders the queue (earliest first: a waiting request's arrival, else the cached
         * token's expiry), arrival order among equal deadlines, the place in the queue's heap. */
        char *queued_scope_key;
        uint64_t queue_deadline_usec;
        uint64_t queue_seq;
        size_t queue_index;

        struct account *next, *prev; /* the registry's list (accounts_first()) */
};

struct hashmap;
struct refresh_authorities;

/* The registry: b->accounts, created by the first accounts_get(). */
struct accounts {
        struct account *list; /* newest first */
        struct hashmap *by_name;
        /* refresh.c: the refreshes in flight and queued per authority; they point at
         * accounts, which live here. */
        struct refresh_authorities *authorities;
};

/* Every account: for (struct account *a = accounts_first(b->accounts); a; a = a->next). */
static inline struct account *accounts_first(const struct accounts *reg)
{
        return reg ? reg->list : NULL;
}

/* The runtime account of that name in b->accounts. The first time, it is created empty and the
 * store worker reads its metadata (ACCOUNT_REFRESH_LOADING); requests wait on it as on a
 * refresh, and its first refresh starts once the metadata is in. */
int accounts_get(struct broker *b, const char *name, struct account **ret);
/* Forgets the runtime account unless it is busy (its work ends on its own; a reload forgets it
 * later), so that the next request reads the store afresh. */
void accounts_forget(struct broker *b, const char *name);
/* Forgets every account that is idle, has no waiter and no unstored refresh token (reload). */
void accounts_forget_idle(struct accounts **reg);
/* Frees the registry and every account in it, and sets *reg to NULL. */
void accounts_free(struct accounts **reg);
/* Takes a out of the registry and frees it (a must not be busy). */
void accounts_remove(struct accounts *reg, struct account *a);

/* The one place an account's single-flight state changes; keeps store_since_usec with it. */
void account_refresh_to(struct account *a, enum account_refresh to);
/* Whether work for the account is in flight (any state but idle). */
static inline bool account_busy(const struct account *a)
{
        return a->refresh != ACCOUNT_REFRESH_IDLE;
}
/* Submits a store job of the account's (next_state: ACCOUNT_REFRESH_LOADING or _STORE), which
 * makes it busy until the job's callback calls account_store_job_done(). */
int account_submit_store_job(struct store_worker *worker, struct account *a,
                             enum account_refresh next_state, struct store_job *job,
                             store_job_done_fn done, void *userdata);
void account_store_job_done(struct account *a);

/* The last failure's sentence, "" when none. */
static inline const char *account_message(const struct account *a)
{
        return a->status_message ? a->status_message : "";
}
/* Sets it (at most ACCOUNT_MESSAGE_MAX - 1 bytes of it, as with the buffer it replaced); on
 * failure to allocate, the sentence is "out of memory". */
#define ACCOUNT_MESSAGE_MAX 256
void account_set_message(struct account *a, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
void account_clear_message(struct account *a);

/* An account not loaded yet: a name and nothing else. */
int account_new(const char *name, struct account **ret);
/* Loads the account's settings from its meta JSON and the configured default authority. */
int account_set_meta(struct account *a, const char *meta_json, const struct config *config);
void account_free(struct account *a);

/* The runtime account of that name, or NULL (reg may be NULL). */
struct account *account_find(const struct accounts *reg, const char *name);
/* Appends w; a waiter added for the first time is stamped with the time, for how long it may
 * wait on the credential store (refresh.c). */
void account_add_waiter(struct account *a, struct waiter *w);
/* Takes the whole waiter list out of the account. */
struct waiter *account_take_waiters(struct account *a);
void account_remove_waiter(struct account *a, struct waiter *w);

/* Whether the cached token t of account a may be handed out for a request asking for min_ttl:
 * it meets min_ttl (capped to the token's granted lifetime) and the floor; or, still above the
 * floor, it cannot be replaced for min_ttl's sake yet, because it was obtained, or the account
 * asked upstream for any token, less than interval_sec ago. The bound is the account's, not a
 * scope set's or a connection's: no mix of scope sets, min_ttl values and connections makes
 * more than one min_ttl-driven upstream request per account per interval. */
bool account_token_serves(const struct account *a, const struct cached_token *t, uint32_t min_ttl,
                          uint32_t interval_sec, uint64_t now_usec);

/* The cached token of account a for scope_key if it may be handed out for min_ttl now
 * (account_token_serves()); NULL otherwise, and while a is not loaded yet. */
struct cached_token *accounts_cached_token(struct token_cache *cache, const struct account *a,
                                           const char *scope_key, uint32_t min_ttl,
                                           uint32_t interval_sec, uint64_t now_usec);

/* Backoff after a transient failure: capped exponential with full jitter, at least what the
 * server asked for in Retry-After. Returns the delay chosen, in seconds (≥ 1). */
uint32_t account_backoff(struct account *a, uint32_t retry_after, uint64_t now_usec);
