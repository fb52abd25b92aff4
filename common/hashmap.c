/* The string-keyed chained hash table; see hashmap.h. */
#include "hashmap.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define HASHMAP_FIRST_BUCKETS 16

struct entry {
        const char *key;
        uint64_t hash;
        void *value;
        struct entry *next;
};

struct hashmap {
        struct entry **buckets;
        size_t n_buckets; /* a power of two */
        size_t n_entries;
};

/* ---- SipHash-2-4 (Aumasson and Bernstein), little-endian words ---- */

static uint64_t rotl(uint64_t x, unsigned b)
{
        return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

#define SIPROUND(v0, v1, v2, v3)                                                                   \
        do {                                                                                       \
                v0 += v1;                                                                          \
                v1 = rotl(v1, 13);                                                                 \
                v1 ^= v0;                                                                          \
                v0 = rotl(v0, 32);                                                                 \
                v2 += v3;                                                                          \
                v3 = rotl(v3, 16);                                                                 \
                v3 ^= v2;                                                                          \
                v0 += v3;                                                                          \
                v3 = rotl(v3, 21);                                                                 \
                v3 ^= v0;                                                                          \
                v2 += v1;                                                                          \
                v1 = rotl(v1, 17);                                                                 \
                v1 ^= v2;                                                                          \
                v2 = rotl(v2, 32);                                                                 \
        } while (0)

uint64_t hashmap_siphash24(const uint8_t key[16], const void *data, size_t len)
{
        const uint8_t *in = data;
        uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
        uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
        uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
        uint64_t last = (uint64_t)len << 56;
        size_t whole = len - len % 8;

        for (size_t i = 0; i < whole; i += 8) {
                uint64_t m = load_le64(in + i);

                v3 ^= m;
                SIPROUND(v0, v1, v2, v3);
                SIPROUND(v0, v1, v2, v3);
                v0 ^= m;
        }
        for (size_t i = whole; i < len; i++)
                last |= (uint64_t)in[i] << (8 * (i - whole));
        v3 ^= last;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= last;
        v2 ^= 0xff;
        for (unsigned i = 0; i < 4; i++)
                SIPROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the process's key ---- */

static uint8_t process_key[16];
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void process_key_init(void)
{
        if (gnutls_rnd(GNUTLS_RND_NONCE, process_key, sizeof(process_key)) < 0)
                abort(); /* no randomness: nothing sane to continue with */
}

static uint64_t hash_of(const char *key)
{
        (void)pthread_once(&process_key_once, process_key_init);
        return hashmap_siphash24(process_key, key, strlen(key));
}

/* ---- the table ---- */

int hashmap_new(struct hashmap **ret)
{
        struct hashmap *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->buckets = calloc(HASHMAP_FIRST_BUCKETS, sizeof(*m->buckets));
        if (!m->buckets) {
                free(m);
                return -ENOMEM;
        }
        m->n_buckets = HASHMAP_FIRST_BUCKETS;
        *ret = m;
        return 0;
}

void hashmap_free(struct hashmap *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->n_buckets; i++)
                while (m->buckets[i]) {
                        struct entry *e = m->buckets[i];
                        m->buckets[i] = e->next;
                        free(e);
                }
        free(m->buckets);
        free(m);
}

static struct entry **link_of(const struct hashmap *m, const char *key, uint64_t hash)
{
        struct entry **link = &m->buckets[hash & (m->n_buckets - 1)];

        for (; *link; link = &(*link)->next)
                if ((*link)->hash == hash && strcmp((*link)->key, key) == 0)
                        break;
        return link;
}

void *hashmap_get(const struct hashmap *m, const char *key)
{
        struct entry *e;

        if (!m || m->n_entries == 0)
                return NULL;
        e = *link_of(m, key, hash_of(key));
        return e ? e->value : NULL;
}

/* Doubles the buckets; on failure the table stays as it was (only longer chains). */
static void grow(struct hashmap *m)
{
        size_t n = m->n_buckets * 2;
        struct entry **buckets;

        if (n < m->n_buckets || !(buckets = calloc(n, sizeof(*buckets))))
                return;
        for (size_t i = 0; i < m->n_buckets; i++)
                while (m->buckets[i]) {
                        struct entry *e = m->buckets[i];

                        m->buckets[i] = e->next;
                        e->next = buckets[e->hash & (n - 1)];
                        buckets[e->hash & (n - 1)] = e;
                }
        free(m->buckets);
        m->buckets = buckets;
        m->n_buckets = n;
}

int hashmap_put(struct hashmap *m, const char *key, void *value)
{
        uint64_t hash = hash_of(key);
        struct entry **link = link_of(m, key, hash), *e;

        if (*link)
                return -EEXIST;
        e = malloc(sizeof(*e));
        if (!e)
                return -ENOMEM;
        *e = (struct entry){.key = key, .hash = hash, .value = value};
        *link = e;
        m->n_entries++;
        if (m->n_entries > m->n_buckets)
                grow(m);
        return 0;
}

int hashmap_replace(struct hashmap *m, const char *key, const char *new_key, void *value)
{
        struct entry *e = m ? *link_of(m, key, hash_of(key)) : NULL;

        if (!e)
                return -ENOENT;
        e->key = new_key;
        e->value = value;
        return 0;
}

void *hashmap_remove(struct hashmap *m, const char *key)
{
        struct entry **link, *e;
        void *value;

        if (!m || m->n_entries == 0)
                return NULL;
        link = link_of(m, key, hash_of(key));
        e = *link;
        if (!e)
                return NULL;
        *link = e->next;
        value = e->value;
        free(e);
        m->n_entries--;
        return value;
}

size_t hashmap_size(const struct hashmap *m)
{
        return m ? m->n_entries : 0;
}

size_t hashmap_buckets(const struct hashmap *m)
{
        return m ? m->n_buckets : 0;
}

bool hashmap_next(const struct hashmap *m, struct hashmap_iter *it, void **ret_value)
{
        const struct entry *e = it->entry;

        if (!m)
                return false;
        if (e)
                e = e->next;
        else if (it->bucket == 0)
                e = m->buckets[0];
        else
                return false; /* done before */
        while (!e && it->bucket + 1 < m->n_buckets)
                e = m->buckets[++it->bucket];
        it->entry = e;
        if (!e) {
                it->bucket = m->n_buckets; /* stays done */
                return false;
        }
        *ret_value = e->value;
        return true;
}
