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
        struct account_meta meta;
        char *token_endpoint;
        enum account_state state;

        /* Single flight: at most one upstream request per account (design.md §5). */
        bool refreshing;
        unsigned failures;      /* consecutive transient failures, for backoff */
        uint64_t retry_at_usec; /* boottime before which no new request is sent */
        struct waiter *waiters; /* FIFO of requests waiting on this account */
        struct waiter **waiters_tail;

        struct account *next;
};

/* Builds an account from its meta JSON and the configured default authority. */
int account_new(const char *name, const char *meta_json, const struct config *config,
                struct account **ret);
void account_free(struct account *a);

struct account *account_find(struct account *list, const char *name);
void account_add_waiter(struct account *a, struct waiter *w);
/* Takes the whole waiter list out of the account. */
struct waiter *account_take_waiters(struct account *a);
void account_remove_waiter(struct account *a, struct waiter *w);

/* Backoff after a transient failure: capped exponential with full jitter, at least what the
 * server asked for in Retry-After. Returns the delay chosen, in seconds (≥ 1). */
uint32_t account_backoff(struct account *a, uint32_t retry_after, uint64_t now_usec);
