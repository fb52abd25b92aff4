/* A chained hash table from NUL-terminated strings to pointers, for the broker's registries
 * (runtime accounts, the access-token cache) that must stay O(1) with thousands of accounts.
 *
 * The table does not copy keys: a key must stay valid and unchanged while its entry is in, which
 * is what a key that is a field of its own value gives (an account's name). It grows by doubling
 * when it holds more entries than buckets, and never shrinks (a broker's account count does not
 * swing). Keys are hashed with SipHash-2-4 under a key drawn once per process: names reach the
 * table from local clients (a token request for a profile's account, a provisioning), and a
 * keyed hash leaves no one able to pick names that share a bucket. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hashmap;

int hashmap_new(struct hashmap **ret);
/* Frees the table and its entries, not what the values point to. NULL is a no-op. */
void hashmap_free(struct hashmap *m);

/* The value stored under key, or NULL. m may be NULL (an empty table). */
void *hashmap_get(const struct hashmap *m, const char *key);
/* Adds key → value (value not NULL): -EEXIST when key is in already, -ENOMEM. */
int hashmap_put(struct hashmap *m, const char *key, void *value);
/* Changes the key and value of an entry that is in under key (e.g. when the object that owned
 * the key's storage goes): -ENOENT when there is none. new_key must be equal to key. */
int hashmap_replace(struct hashmap *m, const char *key, const char *new_key, void *value);
/* Takes key's entry out and returns its value, or NULL when there was none. */
void *hashmap_remove(struct hashmap *m, const char *key);
size_t hashmap_size(const struct hashmap *m);
/* How many buckets it has now (tests: that it grew). */
size_t hashmap_buckets(const struct hashmap *m);

/* Every entry once, in no particular order; the table must not change while it runs:
 *   struct hashmap_iter it = {0}; void *v;
 *   while (hashmap_next(m, &it, &v)) ... */
struct hashmap_iter {
        size_t bucket;
        const void *entry;
};
bool hashmap_next(const struct hashmap *m, struct hashmap_iter *it, void **ret_value);

/* SipHash-2-4 of data under key (exposed for its test vectors). */
uint64_t hashmap_siphash24(const uint8_t key[16], const void *data, size_t len);
