/* Refreshes per authority: a bounded number in flight, the rest queued (refresh-queue.h).
 *
 * Each authority (scheme://host:port of the token endpoint) has at most [broker]
 * refresh_concurrency_per_authority refreshes in flight, from the refresh token read to the
 * token endpoint's answer; the others wait in a heap ordered by deadline, earliest first: a
 * refresh a request waits on is due at that request's arrival, a refresh ahead of expiry at the
 * cached token's expiry. So after a restart, or when thousands of tokens come due together, the
 * token endpoint sees a bounded number of requests and the account whose token runs out first
 * goes first: no account starves behind later ones. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "refresh-queue.h"

#include "accounts.h"
#include "broker.h"
#include "cleanup.h"
#include "config.h"
#include "hashmap.h"
#include "refresh.h"
#include "token-cache.h"
#include "util.h"
#include "waiter.h"

/* Deadline of a refresh nothing waits on and that no cached token needs (keep-alive). */
#define KEEPALIVE_DEADLINE_SEC 86400

struct refresh_authority {
        char *origin; /* the table's key */
        unsigned in_flight;
        bool dispatching;
        struct account **heap; /* queued accounts; heap[0] has the earliest deadline */
        size_t n, capacity;
};

struct refresh_authorities {
        struct hashmap *by_origin;
        uint64_t next_seq;
};

void refresh_authorities_free(struct refresh_authorities *all)
{
        struct hashmap_iter it = {0};
        void *v;

        if (!all)
                return;
        while (hashmap_next(all->by_origin, &it, &v)) {
                struct refresh_authority *auth = v;

                free(auth->heap);
                free(auth->origin);
                free(auth);
        }
        hashmap_free(all->by_origin);
        free(all);
}

void refresh_slot_release(struct refresh_authority *auth)
{
        if (auth && auth->in_flight > 0)
                auth->in_flight--;
}

/* The authority of a token endpoint, created when missing; NULL when out of memory. */
struct refresh_authority *refresh_authority_of(struct broker *b, const char *endpoint)
{
        struct refresh_authorities *all = b->accounts->authorities;
        const char *host = strstr(endpoint, "://"), *end;
        _cleanup_free_ char *origin = NULL;
        struct refresh_authority *auth;

        end = host ? strchr(host + 3, '/') : NULL;
        origin = end ? strndup(endpoint, (size_t)(end - endpoint)) : strdup(endpoint);
        if (!origin)
                return NULL;
        if (!all) {
                all = calloc(1, sizeof(*all));
                if (!all || hashmap_new(&all->by_origin) < 0) {
                        free(all);
                        return NULL;
                }
                b->accounts->authorities = all;
        }
        auth = hashmap_get(all->by_origin, origin);
        if (auth)
                return auth;
        auth = calloc(1, sizeof(*auth));
        if (!auth)
                return NULL;
        auth->origin = TAKE_PTR(origin);
        if (hashmap_put(all->by_origin, auth->origin, auth) < 0) {
                free(auth->origin);
                free(auth);
                return NULL;
        }
        return auth;
}

static bool due_before(const struct account *x, const struct account *y)
{
        if (x->queue_deadline_usec != y->queue_deadline_usec)
                return x->queue_deadline_usec < y->queue_deadline_usec;
        return x->queue_seq < y->queue_seq;
}

static void heap_set(struct refresh_authority *auth, size_t i, struct account *a)
{
        auth->heap[i] = a;
        a->queue_index = i;
}

static void sift_up(struct refresh_authority *auth, size_t i)
{
        struct account *a = auth->heap[i];

        while (i > 0 && due_before(a, auth->heap[(i - 1) / 2])) {
                heap_set(auth, i, auth->heap[(i - 1) / 2]);
                i = (i - 1) / 2;
        }
        heap_set(auth, i, a);
}

static void sift_down(struct refresh_authority *auth, size_t i)
{
        struct account *a = auth->heap[i];

        for (;;) {
                size_t child = 2 * i + 1;

                if (child >= auth->n)
                        break;
                if (child + 1 < auth->n && due_before(auth->heap[child + 1], auth->heap[child]))
                        child++;
                if (!due_before(auth->heap[child], a))
                        break;
                heap_set(auth, i, auth->heap[child]);
                i = child;
        }
        heap_set(auth, i, a);
}

static struct account *heap_pop(struct refresh_authority *auth)
{
        struct account *first = auth->heap[0];

        auth->n--;
        if (auth->n > 0) {
                heap_set(auth, 0, auth->heap[auth->n]);
                sift_down(auth, 0);
        }
        return first;
}

/* When the refresh of a for scope_key is due: see above. */
static uint64_t refresh_deadline(struct broker *b, const struct account *a, const char *scope_key)
{
        const struct cached_token *t;

        if (a->waiters)
                return a->waiters->since_usec;
        t = token_cache_get(&b->cache, a->name, scope_key);
        if (t)
                return t->expires_usec;
        return now_boottime_usec() + KEEPALIVE_DEADLINE_SEC * USEC_PER_SEC;
}

/* Queues a's refresh (ACCOUNT_REFRESH_QUEUED). */
int refresh_queue_add(struct broker *b, struct refresh_authority *auth, struct account *a,
                      const char *scope_key)
{
        if (auth->n == auth->capacity) {
                size_t capacity = auth->capacity ? auth->capacity * 2 : 16;
                struct account **heap = reallocarray(auth->heap, capacity, sizeof(*heap));

                if (!heap)
                        return -ENOMEM;
                auth->heap = heap;
                auth->capacity = capacity;
        }
        free(a->queued_scope_key);
        a->queued_scope_key = strdup(scope_key);
        if (!a->queued_scope_key)
                return -ENOMEM;
        a->queue_deadline_usec = refresh_deadline(b, a, scope_key);
        a->queue_seq = ++b->accounts->authorities->next_seq;
        auth->heap[auth->n] = a;
        sift_up(auth, auth->n++);
        account_refresh_to(a, ACCOUNT_REFRESH_QUEUED);
        return 0;
}

/* Starts queued refreshes, earliest deadline first, while auth has room for them. A refresh that
 * cannot start gives its place back at once, and the loop goes on to the next. */
void refresh_queue_dispatch(struct broker *b, struct refresh_authority *auth)
{
        uint32_t limit = b->config->refresh_concurrency_per_authority;

        if (!auth || auth->dispatching || b->stopping)
                return; /* the loop below, further up the stack, takes what was queued */
        auth->dispatching = true;
        while (auth->n > 0 && (limit == 0 || auth->in_flight < limit)) {
                struct account *a = heap_pop(auth);
                _cleanup_free_ char *scope_key = TAKE_PTR(a->queued_scope_key);

                account_refresh_to(a, ACCOUNT_REFRESH_IDLE);
                auth->in_flight++;
                refresh_begin(b, a, scope_key, auth);
        }
        auth->dispatching = false;
}

/* A queued account a request now waits on is due now: it moves up the queue. */
void refresh_queue_hurry(struct broker *b, struct account *a)
{
        struct refresh_authority *auth = refresh_authority_of(b, a->token_endpoint);
        uint64_t deadline = refresh_deadline(b, a, a->queued_scope_key);

        if (!auth || a->queue_index >= auth->n || auth->heap[a->queue_index] != a ||
            deadline >= a->queue_deadline_usec)
                return;
        a->queue_deadline_usec = deadline;
        sift_up(auth, a->queue_index);
}

unsigned refresh_in_flight(struct broker *b, const char *token_endpoint)
{
        struct refresh_authority *auth =
            b->accounts ? refresh_authority_of(b, token_endpoint) : NULL;

        return auth ? auth->in_flight : 0;
}

size_t refresh_queued(struct broker *b, const char *token_endpoint)
{
        struct refresh_authority *auth =
            b->accounts ? refresh_authority_of(b, token_endpoint) : NULL;

        return auth ? auth->n : 0;
}
