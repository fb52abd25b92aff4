/* The queue of refreshes per authority (refresh-queue.c), and what it calls back in refresh.c.
 * Internal to the engine's refresh code. */
#pragma once

#include <stdint.h>

struct account;
struct broker;
struct refresh_authority;

/* The authority (scheme://host:port) of a token endpoint, created when missing; NULL when out
 * of memory. */
struct refresh_authority *refresh_authority_of(struct broker *b, const char *endpoint);
/* Queues a's refresh for scope_key (ACCOUNT_REFRESH_QUEUED), due by its deadline. */
int refresh_queue_add(struct broker *b, struct refresh_authority *auth, struct account *a,
                      const char *scope_key);
/* Starts queued refreshes, earliest deadline first, while auth has room for them. */
void refresh_queue_dispatch(struct broker *b, struct refresh_authority *auth);
/* A queued account a request now waits on is due now: it moves up its queue. */
void refresh_queue_hurry(struct broker *b, struct account *a);
/* Gives back a place in flight (auth may be NULL). */
void refresh_slot_release(struct refresh_authority *auth);

/* refresh.c: starts a's refresh holding a place of auth, which it gives back
 * (refresh_slot_release()) when it ends or cannot start. */
void refresh_begin(struct broker *b, struct account *a, const char *scope_key,
                   struct refresh_authority *auth);
