/* The access-token cache; see token-cache.h. A hash table by account name, each account's few
 * entries (one per scope set) chained behind it, and one list of every entry for status. */
#include "token-cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "grant.h"
#include "hashmap.h"
#include "util.h"

static void entry_free(struct cached_token *t)
{
        if (!t)
                return;
        free(t->account);
        free(t->scope_key);
        for (size_t i = 0; i < t->n_scopes; i++)
                free(t->scopes[i]);
        free(t->scopes);
        secret_free(t->access_token);
        secret_free(t->reply);
        audit_part_clear(&t->audit_part);
        free(t->audit_key);
        free(t);
}

struct cached_token *token_cache_first_of(struct token_cache *c, const char *account)
{
        return hashmap_get(c->by_account, account);
}

struct cached_token *token_cache_get(struct token_cache *c, const char *account,
                                     const char *scope_key)
{
        for (struct cached_token *t = token_cache_first_of(c, account); t; t = t->next_of_account)
                if (strcmp(t->scope_key, scope_key) == 0)
                        return t;
        return NULL;
}

/* Takes t out of both lists and the table (t stays allocated). */
static void entry_unlink(struct token_cache *c, struct cached_token *t)
{
        struct cached_token *first = token_cache_first_of(c, t->account);

        if (t->prev)
                t->prev->next = t->next;
        else
                c->entries = t->next;
        if (t->next)
                t->next->prev = t->prev;
        t->next = t->prev = NULL;

        if (first == t) {
                struct cached_token *rest = t->next_of_account;

                /* The table's key is the first entry's name: the next one's takes over. */
                if (rest)
                        (void)hashmap_replace(c->by_account, t->account, rest->account, rest);
                else
                        (void)hashmap_remove(c->by_account, t->account);
        } else {
                for (struct cached_token *p = first; p; p = p->next_of_account)
                        if (p->next_of_account == t) {
                                p->next_of_account = t->next_of_account;
                                break;
                        }
        }
        t->next_of_account = NULL;
}

/* Puts t where old was, in both lists and the table; old is freed. */
static void entry_swap(struct token_cache *c, struct cached_token *old, struct cached_token *t)
{
        struct cached_token *first = token_cache_first_of(c, old->account);

        t->next = old->next;
        t->prev = old->prev;
        if (t->prev)
                t->prev->next = t;
        else
                c->entries = t;
        if (t->next)
                t->next->prev = t;
        t->next_of_account = old->next_of_account;
        if (first == old)
                (void)hashmap_replace(c->by_account, old->account, t->account, t);
        else
                for (struct cached_token *p = first; p; p = p->next_of_account)
                        if (p->next_of_account == old) {
                                p->next_of_account = t;
                                break;
                        }
        entry_free(old);
}

/* Adds t, whose key is not in the cache, first in both lists. */
static int entry_link(struct token_cache *c, struct cached_token *t)
{
        struct cached_token *first = token_cache_first_of(c, t->account);
        int r;

        if (first) {
                t->next_of_account = first;
                (void)hashmap_replace(c->by_account, first->account, t->account, t);
        } else {
                r = hashmap_put(c->by_account, t->account, t);
                if (r < 0)
                        return r;
        }
        t->prev = NULL;
        t->next = c->entries;
        if (t->next)
                t->next->prev = t;
        c->entries = t;
        return 0;
}

/* Splits a space-separated scope string into the scopes worth showing a client: the OpenID
 * scopes describe the grant, not the token's audience. */
static int split_scopes(const char *text, char ***ret, size_t *ret_n)
{
        _cleanup_free_ char *copy = strdup(text);
        char **scopes = NULL, *save = NULL;
        size_t n = 0;

        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                char **grown;

                if (strcmp(w, "offline_access") == 0 || strcmp(w, "openid") == 0 ||
                    strcmp(w, "profile") == 0 || !scope_is_valid(w))
                        continue;
                grown = reallocarray(scopes, n + 1, sizeof(*scopes));
                if (!grown)
                        goto oom;
                scopes = grown;
                scopes[n] = strdup(w);
                if (!scopes[n])
                        goto oom;
                n++;
        }
        *ret = scopes;
        *ret_n = n;
        return 0;
oom:
        for (size_t i = 0; i < n; i++)
                free(scopes[i]);
        free(scopes);
        return -ENOMEM;
}

int token_cache_put(struct token_cache *c, const char *account, const char *scope_key,
                    struct secret **access_token, const char *granted_scope, uint64_t sent_usec,
                    uint64_t expires_in_sec, struct cached_token **ret)
{
        struct cached_token *t;
        int r;

        if (!c->by_account && (r = hashmap_new(&c->by_account)) < 0)
                return r;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->account = strdup(account);
        t->scope_key = strdup(scope_key);
        if (!t->account || !t->scope_key) {
                entry_free(t);
                return -ENOMEM;
        }
        /* Entra's short names ("Mail.Send") reported as the scopes they stand for. */
        _cleanup_free_ char *granted = NULL;
        r = grant_granted_scope(scope_key, granted_scope, &granted);
        if (r == 0)
                r = split_scopes(granted ? granted : scope_key, &t->scopes, &t->n_scopes);
        if (r == 0 && t->n_scopes == 0)
                r = split_scopes(scope_key, &t->scopes, &t->n_scopes);
        if (r < 0) {
                entry_free(t);
                return r;
        }
        static uint64_t next_id;
        uint64_t lifetime = expires_in_sec * USEC_PER_SEC, spread = c->refresh_spread_pct;

        t->id = ++next_id;
        t->access_token = TAKE_PTR(*access_token);
        t->expires_usec = sent_usec + lifetime;
        t->refresh_usec = sent_usec + lifetime * 3 / 4;
        if (spread > 0 && spread <= 50)
                t->refresh_usec -= random_below(lifetime / 100 * spread + 1);
        t->sent_usec = sent_usec;

        struct cached_token *old = token_cache_get(c, account, scope_key);
        if (old)
                entry_swap(c, old, t);
        else if ((r = entry_link(c, t)) < 0) {
                entry_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

void token_cache_clear(struct token_cache *c)
{
        while (c->entries) {
                struct cached_token *t = c->entries;
                c->entries = t->next;
                entry_free(t);
        }
        hashmap_free(c->by_account);
        c->by_account = NULL;
}

void token_cache_sweep_replies(struct token_cache *c, uint64_t now_usec)
{
        if (now_usec - c->replies_swept_usec < TOKEN_CACHE_SWEEP_SEC * USEC_PER_SEC)
                return;
        c->replies_swept_usec = now_usec;
        for (struct cached_token *t = c->entries; t; t = t->next)
                if (t->reply && cached_token_ttl(t, now_usec) != t->reply_expires_in) {
                        secret_free(t->reply);
                        t->reply = NULL;
                }
}

void token_cache_drop_account(struct token_cache *c, const char *account)
{
        struct cached_token *t;

        while ((t = token_cache_first_of(c, account))) {
                entry_unlink(c, t);
                entry_free(t);
        }
}

/* Compares without an early exit, so the time taken says nothing about where they differ. */
static bool equal_constant_time(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
        volatile uint8_t diff = a_len != b_len;

        for (size_t i = 0; i < a_len && i < b_len; i++)
                diff |= a[i] ^ b[i];
        return diff == 0;
}

int token_cache_drop_token(struct token_cache *c, const char *account, const void *token,
                           size_t len)
{
        for (struct cached_token *t = token_cache_first_of(c, account); t; t = t->next_of_account) {
                if (!equal_constant_time((const uint8_t *)secret_str(t->access_token),
                                         secret_len(t->access_token), token, len))
                        continue;
                entry_unlink(c, t);
                entry_free(t);
                return 1;
        }
        return 0;
}

uint64_t cached_token_ttl(const struct cached_token *t, uint64_t now_usec)
{
        return t->expires_usec > now_usec ? (t->expires_usec - now_usec) / USEC_PER_SEC : 0;
}

uint64_t cached_token_lifetime(const struct cached_token *t)
{
        return t->expires_usec > t->sent_usec ? (t->expires_usec - t->sent_usec) / USEC_PER_SEC : 0;
}

bool cached_token_fits(const struct cached_token *t, uint32_t min_ttl, uint64_t now_usec)
{
        /* A quarter of the lifetime, whatever share refresh_usec's spread took off it. */
        uint64_t life_usec = t->expires_usec - t->sent_usec;
        uint64_t floor = (life_usec - life_usec * 3 / 4) / USEC_PER_SEC;
        uint64_t want = min_ttl, lifetime = cached_token_lifetime(t);

        if (floor > CACHED_TOKEN_TTL_FLOOR_SEC)
                floor = CACHED_TOKEN_TTL_FLOOR_SEC;
        if (want > lifetime)
                want = lifetime;
        return cached_token_ttl(t, now_usec) >= (want > floor ? want : floor);
}
