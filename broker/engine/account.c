/* Runtime account state; see account.h. */
#include "account.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "util.h"

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
        secret_free(a->unstored_refresh_token);
        free(a);
}

struct account *account_find(struct account *list, const char *name)
{
        for (; list; list = list->next)
                if (strcmp(list->name, name) == 0)
                        return list;
        return NULL;
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
