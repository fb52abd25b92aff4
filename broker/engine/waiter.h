/* A request that waits for its account: its metadata read, or its refresh. The engine knows a
 * waiter only by what it asks (scope set, min_ttl) and answers it through the callback its
 * owner set: client/request.c for a token request, admin/provision-test.c for account.test. */
#pragma once

#include <stdint.h>

struct account;
struct broker;

enum refresh_outcome {
        REFRESH_FRESH,             /* a new token for the waiter's scope set is in the cache */
        REFRESH_CACHED,            /* no refresh needed: a token in the cache serves the waiter */
        REFRESH_FAILED,            /* transient, or the account needs an administrator */
        REFRESH_SCOPES_REFUSED,    /* the provider refused this scope set (invalid_scope) */
        REFRESH_STORE_UNAVAILABLE, /* the credential store failed or did not answer in time */
        REFRESH_NOT_PROVISIONED,   /* the store has no (valid) metadata for the account */
};

struct waiter {
        struct account *account;
        char *scope_key; /* sorted, space separated; waiter_free() frees it */
        uint32_t min_ttl;
        uint64_t since_usec; /* boottime it started waiting */
        /* Called exactly once with the outcome, taken out of the account's list; it owns the
         * waiter from then on and frees it (waiter_free()). */
        void (*answer)(struct broker *b, struct waiter *w, enum refresh_outcome outcome);
        void *answer_data;
        struct waiter *next;
};

/* Frees scope_key and w itself: a waiter embedded in a larger struct is its first member, and
 * that struct owns nothing else. */
void waiter_free(struct waiter *w);
/* Hands w its outcome (w->answer). */
void waiter_answer(struct broker *b, struct waiter *w, enum refresh_outcome outcome);
