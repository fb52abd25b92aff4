/* Refreshing an account's access token (refresh.c): single flight per account, the store steps
 * on the store worker, the HTTPS request through idp/. */
#pragma once

struct account;
struct broker;

/* How long a request waits on the credential store before it is answered `unavailable`, and
 * the retry_after it is told. */
#define STORE_WAIT_SEC        5
#define STORE_RETRY_AFTER_SEC 5

/* Starts a refresh of account a for scope_key unless one is in flight. When none can start
 * (backing off, account unusable, store unreadable) the account's waiters are answered now. */
void refresh_start(struct broker *b, struct account *a, const char *scope_key);
/* The store worker's tick: answers requests that have waited on the store too long. */
void refresh_store_tick(void *broker);
