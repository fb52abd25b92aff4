/* An account as the broker runs it: settings read from the store's meta object, and its
 * upstream state (single flight, backoff, reauth). No secret lives here: the refresh token is
 * read from the store for each refresh and wiped after. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "account-meta.h"
#include "config.h"

struct waiter;

enum account_state {
        ACCOUNT_OK,
        ACCOUNT_NEEDS_REAUTH,
        ACCOUNT_NEEDS_CONFIG,
};

struct account {
        char *name;
        /* meta and token_endpoint are set once the store worker has read the meta object;
         * until then the account exists only so that requests can wait on it. */
        bool loaded;
        struct account_meta meta;
        char *token_endpoint;
        enum account_state state;

        /* Single flight: at most one upstream request per account (design.md §5). Also true
         * while a store job for the account is outstanding (reading its metadata or refresh
         * token, storing a rotated one), so no second job starts and a reload does not free
         * the account under it. */
        bool refreshing;
        uint64_t store_since_usec; /* boottime a store job for it was submitted; 0: none */
        unsigned failures;         /* consecutive transient failures, for backoff */
        uint64_t retry_at_usec;    /* boottime before which no new request is sent */
        struct waiter *waiters;    /* FIFO of requests waiting on this account */
        struct waiter **waiters_tail;

        /* For status (admin socket): the last successful refresh (unix seconds, 0: none since
         * the broker started) and the last failure's sentence. */
        uint64_t last_refresh_at;
        char message[256];

        struct account *next;
};

/* An account not loaded yet: a name and nothing else. */
int account_new(const char *name, struct account **ret);
/* Loads the account's settings from its meta JSON and the configured default authority. */
int account_set_meta(struct account *a, const char *meta_json, const struct config *config);
void account_free(struct account *a);

struct account *account_find(struct account *list, const char *name);
/* Appends w; a waiter added for the first time is stamped with the time, for how long it may
 * wait on the credential store (refresh.c). */
void account_add_waiter(struct account *a, struct waiter *w);
/* Takes the whole waiter list out of the account. */
struct waiter *account_take_waiters(struct account *a);
void account_remove_waiter(struct account *a, struct waiter *w);

/* Backoff after a transient failure: capped exponential with full jitter, at least what the
 * server asked for in Retry-After. Returns the delay chosen, in seconds (≥ 1). */
uint32_t account_backoff(struct account *a, uint32_t retry_after, uint64_t now_usec);
