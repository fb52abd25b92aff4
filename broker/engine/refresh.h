/* Refreshing an account's access token (refresh.c): single flight per account, the store steps
 * on the store worker, the HTTPS request through idp/. */
#pragma once

#include <stddef.h>

struct account;
struct broker;
struct refresh_authorities;

/* How long a request waits on the credential store before it is answered `unavailable`, and
 * the retry_after it is told. */
#define STORE_WAIT_SEC        5
#define STORE_RETRY_AFTER_SEC 5

/* Starts a refresh of account a for scope_key unless one is in flight or queued. When none can
 * start (backing off, account unusable, store unreadable) the account's waiters are answered
 * now. A refresh waits its turn when its authority has [broker]
 * refresh_concurrency_per_authority in flight already: earliest deadline first, a request
 * that waits on the account being due now, a refresh ahead of expiry at the token's expiry. */
void refresh_start(struct broker *b, struct account *a, const char *scope_key);
/* The store worker's tick: answers requests that have waited on the store too long. */
void refresh_store_tick(void *broker);
/* The registry's per-authority queues (accounts_free()). */
void refresh_authorities_free(struct refresh_authorities *all);
/* For tests and status: refreshes in flight and queued for the token endpoint's authority. */
unsigned refresh_in_flight(struct broker *b, const char *token_endpoint);
size_t refresh_queued(struct broker *b, const char *token_endpoint);
