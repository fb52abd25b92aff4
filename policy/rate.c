/* The rate module's token buckets. A bucket holds up to N tokens and refills N per period; its
 * level is kept in token-microseconds (one token = period_usec units, refilled at N units per
 * microsecond) so that integer arithmetic is exact. The number of buckets is fixed when the
 * limiter is made: a flood of uids reuses the least recently used bucket instead of growing
 * memory, and deciding never allocates. */
#include "policy-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMITER_HASH_SLOTS (POLICY_LIMITER_MAX_BUCKETS * 2)
#define NO_BUCKET          UINT32_MAX

struct bucket {
        char key[POLICY_RATE_KEY_MAX];
        uint64_t level; /* token-microseconds, see above */
        uint64_t updated_usec;
        uint32_t hash_next;
        uint32_t newer, older; /* the LRU list */
};

struct policy_limiter {
        struct bucket *buckets; /* POLICY_LIMITER_MAX_BUCKETS of them */
        uint32_t n_used;
        uint32_t slots[LIMITER_HASH_SLOTS];
        uint32_t newest, oldest;
        uint64_t peeks;
};

struct policy_limiter *policy_limiter_new(void)
{
        struct policy_limiter *l = calloc(1, sizeof(*l));

        if (!l)
                return NULL;
        l->buckets = calloc(POLICY_LIMITER_MAX_BUCKETS, sizeof(*l->buckets));
        if (!l->buckets) {
                free(l);
                return NULL;
        }
        for (size_t i = 0; i < LIMITER_HASH_SLOTS; i++)
                l->slots[i] = NO_BUCKET;
        l->newest = l->oldest = NO_BUCKET;
        return l;
}

void policy_limiter_free(struct policy_limiter *l)
{
        if (!l)
                return;
        free(l->buckets);
        free(l);
}

size_t policy_limiter_bucket_count(const struct policy_limiter *l)
{
        return l->n_used;
}

uint64_t policy_limiter_peeks(const struct policy_limiter *l)
{
        return l->peeks;
}

static uint32_t hash_key(const char *key)
{
        /* FNV-1a: keys are chosen by the policy and the kernel's uid, not by the peer. */
        uint32_t h = 2166136261u;

        for (; *key; key++)
                h = (h ^ (uint8_t)*key) * 16777619u;
        return h % LIMITER_HASH_SLOTS;
}

static uint32_t find(const struct policy_limiter *l, const char *key)
{
        for (uint32_t i = l->slots[hash_key(key)]; i != NO_BUCKET; i = l->buckets[i].hash_next)
                if (strcmp(l->buckets[i].key, key) == 0)
                        return i;
        return NO_BUCKET;
}

static void lru_unlink(struct policy_limiter *l, uint32_t i)
{
        struct bucket *b = &l->buckets[i];

        if (b->newer != NO_BUCKET)
                l->buckets[b->newer].older = b->older;
        else
                l->newest = b->older;
        if (b->older != NO_BUCKET)
                l->buckets[b->older].newer = b->newer;
        else
                l->oldest = b->newer;
}

static void lru_push_newest(struct policy_limiter *l, uint32_t i)
{
        struct bucket *b = &l->buckets[i];

        b->older = l->newest;
        b->newer = NO_BUCKET;
        if (l->newest != NO_BUCKET)
                l->buckets[l->newest].newer = i;
        l->newest = i;
        if (l->oldest == NO_BUCKET)
                l->oldest = i;
}

static void hash_unlink(struct policy_limiter *l, uint32_t i)
{
        uint32_t *at = &l->slots[hash_key(l->buckets[i].key)];

        while (*at != i)
                at = &l->buckets[*at].hash_next;
        *at = l->buckets[i].hash_next;
}

static uint64_t capacity(const struct rule *rule)
{
        return (uint64_t)rule->u.rate.tokens * rule->u.rate.period_usec;
}

static uint64_t level_at(const struct bucket *b, const struct rule *rule, uint64_t now_usec)
{
        uint64_t elapsed = now_usec > b->updated_usec ? now_usec - b->updated_usec : 0;

        /* A whole period refills any bucket; checking first keeps the product in range. */
        if (elapsed >= rule->u.rate.period_usec)
                return capacity(rule);
        uint64_t level = b->level + elapsed * rule->u.rate.tokens;
        return level < capacity(rule) ? level : capacity(rule);
}

static void append(char *out, size_t *at, const char *s)
{
        size_t n = strlen(s);

        if (n > POLICY_RATE_KEY_MAX - 1 - *at)
                n = POLICY_RATE_KEY_MAX - 1 - *at;
        memcpy(out + *at, s, n);
        *at += n;
        out[*at] = 0;
}

void policy_rate_key(const struct policy_profile *p, const struct rule *rule,
                     const struct policy_peer *peer, char out[static POLICY_RATE_KEY_MAX])
{
        char number[21];
        size_t at = 0;

        /* The rate is part of the key: two rules of one profile keep apart, and a reload that
         * changes a rate starts that rule afresh while unchanged rules keep their state. Built
         * by hand, not with snprintf: this runs for every request, and printf is most of the
         * cost of a decision. */
        out[0] = 0;
        append(out, &at, p->name);
        append(out, &at, " ");
        format_u64(rule->u.rate.tokens, number);
        append(out, &at, number);
        append(out, &at, "/");
        append(out, &at, rule->u.rate.unit_name);
        if (rule->u.rate.key == RATE_PER_UID) {
                append(out, &at, " uid=");
                format_u64(peer->uid, number);
                append(out, &at, number);
        }
}

bool policy_rate_peek(struct policy_limiter *l, const struct rule *rule, const char *key,
                      uint64_t now_usec, uint32_t *ret_retry_after)
{
        uint32_t i = find(l, key);
        uint64_t level, missing, wait_usec;

        l->peeks++;
        if (i == NO_BUCKET)
                return true; /* a new bucket starts full */
        level = level_at(&l->buckets[i], rule, now_usec);
        if (level >= rule->u.rate.period_usec)
                return true;
        missing = rule->u.rate.period_usec - level;
        wait_usec = (missing + rule->u.rate.tokens - 1) / rule->u.rate.tokens;
        *ret_retry_after = (uint32_t)((wait_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
        if (*ret_retry_after == 0)
                *ret_retry_after = 1;
        return false;
}

void policy_rate_take(struct policy_limiter *l, const struct rule *rule, const char *key,
                      uint64_t now_usec)
{
        uint32_t i = find(l, key);
        struct bucket *b;

        if (i == NO_BUCKET) {
                if (l->n_used < POLICY_LIMITER_MAX_BUCKETS)
                        i = l->n_used++;
                else {
                        /* Full: reuse the least recently used bucket. It has most likely
                         * refilled by now, so forgetting it forgives little. */
                        i = l->oldest;
                        lru_unlink(l, i);
                        hash_unlink(l, i);
                }
                b = &l->buckets[i];
                snprintf(b->key, sizeof(b->key), "%s", key);
                b->level = capacity(rule);
                b->updated_usec = now_usec;
                uint32_t slot = hash_key(b->key);
                b->hash_next = l->slots[slot];
                l->slots[slot] = i;
        } else {
                lru_unlink(l, i);
        }
        b = &l->buckets[i];
        b->level = level_at(b, rule, now_usec);
        b->updated_usec = now_usec > b->updated_usec ? now_usec : b->updated_usec;
        b->level = b->level >= rule->u.rate.period_usec ? b->level - rule->u.rate.period_usec : 0;
        lru_push_newest(l, i);
}
