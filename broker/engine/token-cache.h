/* The access-token cache: one entry per (account, sorted scope set), tokens in locked secret
 * memory, times on CLOCK_BOOTTIME counted from when the request was sent (design.md §5). An
 * account's entries are found through a hash table by account name, so a lookup costs the same
 * with one account as with ten thousand. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "secret.h"

struct hashmap;

struct cached_token {
        uint64_t id; /* unique for the broker's lifetime, unlike the entry's address */
        char *account;
        char *scope_key; /* sorted, deduplicated, space separated */
        char **scopes;   /* as granted, for replies */
        size_t n_scopes;
        struct secret *access_token;
        uint64_t expires_usec; /* boottime */
        /* boottime: refresh ahead from here on, 75% of the lifetime less a random share of up to
         * refresh_spread_pct % of it (token_cache_put()), so tokens fetched together are not
         * refreshed together */
        uint64_t refresh_usec;
        uint64_t sent_usec;   /* boottime the request that brought it was sent */
        char fingerprint[17]; /* audit fingerprint, computed once per token */
        /* The framed reply last sent for this token. Its only changing fields are expires_at
         * and expires_in, which move once a second, so at load the same bytes serve many
         * peers instead of rebuilding the JSON each time (request.c). */
        struct secret *reply;
        uint64_t reply_expires_at;
        uint64_t reply_expires_in;
        /* Its issue record's token part (audit_issue_token_part()) for the profile and rule
         * audit_key names ("<profile> <rule>"), reused by every connection issued it under
         * them (request.c). */
        struct audit_part audit_part;
        char *audit_key;
        struct cached_token *next, *prev;     /* every entry, newest first */
        struct cached_token *next_of_account; /* the same account's other entries */
};

/* Zero-initialised it is an empty cache that refreshes at exactly 75% of a token's lifetime. */
struct token_cache {
        struct cached_token *entries; /* every entry (iterate with ->next) */
        struct hashmap *by_account;   /* account name → its first entry (->next_of_account) */
        uint64_t replies_swept_usec;  /* boottime of the last token_cache_sweep_replies() */
        /* [broker] refresh_ahead_spread: the refresh-ahead point is drawn at random from the
         * last this many percent of a token's lifetime before its 75% point (0..50). */
        uint32_t refresh_spread_pct;
};

struct cached_token *token_cache_get(struct token_cache *c, const char *account,
                                     const char *scope_key);
/* The account's first entry (the others follow through ->next_of_account), or NULL. */
struct cached_token *token_cache_first_of(struct token_cache *c, const char *account);
/* Takes ownership of *access_token (set to NULL). granted_scope is the server's "scope" (may be
 * NULL: then the key's scopes are used). Replaces an older entry with the same key. */
int token_cache_put(struct token_cache *c, const char *account, const char *scope_key,
                    struct secret **access_token, const char *granted_scope, uint64_t sent_usec,
                    uint64_t expires_in_sec, struct cached_token **ret);
void token_cache_clear(struct token_cache *c);
/* Frees the framed replies that can no longer be sent (request.c rebuilds a reply whose
 * expires_in is not the token's seconds left now, and those only go down): a reply is reused
 * within its second and was otherwise kept until the token's next refresh, 1 KB or more of
 * locked memory per account asked once. Runs through the cache at most once per
 * TOKEN_CACHE_SWEEP_SEC (the broker's one-second tick calls it). */
#define TOKEN_CACHE_SWEEP_SEC 10
void token_cache_sweep_replies(struct token_cache *c, uint64_t now_usec);
/* Drops every token of the account (it was removed or signed in again). */
void token_cache_drop_account(struct token_cache *c, const char *account);
/* Drops the account's cached token equal to token (compared in constant time): 1 when one was
 * dropped, 0 when none of the account's is that token (mail: Graph refused it, token.drop). */
int token_cache_drop_token(struct token_cache *c, const char *account, const void *token,
                           size_t len);

/* Seconds left at now (0 when expired). */
uint64_t cached_token_ttl(const struct cached_token *t, uint64_t now_usec);
/* The lifetime the identity provider granted it, in seconds. */
uint64_t cached_token_lifetime(const struct cached_token *t);

/* A token is handed out only with at least this much life left, whatever min_ttl says, or a
 * quarter of its lifetime for tokens shorter than four times that (the refresh-ahead point). */
#define CACHED_TOKEN_TTL_FLOOR_SEC 60

/* Whether t has enough life left for a request: min_ttl, capped to the lifetime the provider
 * grants (a longer one could never be met), and never less than the floor. */
bool cached_token_fits(const struct cached_token *t, uint32_t min_ttl, uint64_t now_usec);
