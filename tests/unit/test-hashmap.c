/* common/hashmap.c: SipHash-2-4 against the reference vectors, put/get/replace/remove, growth
 * past many doublings, iteration, and that a lookup costs about the same in a table of one entry
 * as in one of 20,000 (timed and printed as a TAP comment, not asserted). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hashmap.h"
#include "tap.h"

/* SipHash-2-4 with key 00..0f over the messages 00, 00 01, ..., of length 0..15 (the reference
 * implementation's vectors.h, as little-endian words). */
static const uint64_t vectors[16] = {
    0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
    0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
    0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
    0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
};

static void test_siphash(void)
{
        uint8_t key[16], msg[16];
        int good = 0;

        for (unsigned i = 0; i < 16; i++)
                key[i] = msg[i] = (uint8_t)i;
        for (unsigned len = 0; len < 16; len++)
                good += hashmap_siphash24(key, msg, len) == vectors[len];
        is_int(good, 16, "SipHash-2-4 matches the reference vectors for lengths 0..15");
}

static void test_basics(void)
{
        struct hashmap *m = NULL;
        char a[] = "alpha", a2[] = "alpha", b[] = "beta";
        int x = 1, y = 2;

        is_int(hashmap_new(&m), 0, "new");
        ok(hashmap_get(m, "alpha") == NULL, "empty: nothing found");
        ok(hashmap_get(NULL, "alpha") == NULL, "a NULL table is empty");
        is_int(hashmap_put(m, a, &x), 0, "put alpha");
        is_int(hashmap_put(m, a2, &y), -EEXIST, "a second alpha is refused");
        is_int(hashmap_put(m, b, &y), 0, "put beta");
        ok(hashmap_get(m, "alpha") == &x && hashmap_get(m, "beta") == &y, "both found");
        is_int(hashmap_size(m), 2, "two entries");
        is_int(hashmap_replace(m, "alpha", a2, &y), 0, "replace alpha's key and value");
        a[0] = 'X'; /* the old key's storage may change now */
        ok(hashmap_get(m, "alpha") == &y, "found under the new key's storage");
        is_int(hashmap_replace(m, "gamma", a2, &y), -ENOENT, "replace of a missing key");
        ok(hashmap_remove(m, "alpha") == &y, "remove returns the value");
        ok(hashmap_get(m, "alpha") == NULL, "and it is gone");
        ok(hashmap_remove(m, "alpha") == NULL, "removing again finds nothing");
        is_int(hashmap_size(m), 1, "one left");
        hashmap_free(m);
        hashmap_free(NULL);
}

#define MANY 20000

static char names[MANY][24];

/* ns per lookup of the first n names, each looked up round-robin, 1e6 lookups. */
static double time_lookups(struct hashmap *m, size_t n, unsigned *found)
{
        struct timespec t0, t1;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < 1000000; i++)
                *found += hashmap_get(m, names[(i * 7919) % n]) != NULL;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        return ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e6;
}

static void test_many(void)
{
        struct hashmap *one = NULL, *m = NULL;
        struct hashmap_iter it = {0};
        unsigned found = 0, seen = 0, bad = 0, found_one = 0;
        static unsigned char hits[MANY];
        void *v;

        if (hashmap_new(&m) < 0 || hashmap_new(&one) < 0)
                abort();
        for (size_t i = 0; i < MANY; i++) {
                snprintf(names[i], sizeof(names[i]), "tenant-%zu.example", i);
                if (hashmap_put(m, names[i], names[i]) < 0)
                        bad++;
        }
        is_int(bad, 0, "20,000 entries put");
        is_int(hashmap_size(m), MANY, "20,000 in the table");
        ok(hashmap_buckets(m) >= MANY, "the table grew: no more entries than buckets");
        for (size_t i = 0; i < MANY; i++)
                if (hashmap_get(m, names[i]) != names[i])
                        bad++;
        is_int(bad, 0, "each found after the table grew");
        while (hashmap_next(m, &it, &v)) {
                size_t i = (size_t)((char(*)[24])v - names);
                seen++;
                if (i >= MANY || hits[i]++)
                        bad++;
        }
        ok(seen == MANY && bad == 0, "iteration visits each entry once");
        ok(!hashmap_next(m, &it, &v), "and stays done");
        for (size_t i = 0; i < MANY; i += 2)
                if (hashmap_remove(m, names[i]) != names[i])
                        bad++;
        for (size_t i = 0; i < MANY; i++)
                if ((hashmap_get(m, names[i]) != NULL) != (i % 2 == 1))
                        bad++;
        ok(bad == 0 && hashmap_size(m) == MANY / 2, "every other one removed, the rest found");

        (void)hashmap_put(one, names[0], names[0]);
        double t_one = time_lookups(one, 1, &found_one);
        double t_many = time_lookups(m, MANY / 2, &found) /* odd ones: half hits */;
        printf("# 1e6 lookups: %.1f ns each with 1 entry, %.1f ns each with %d entries\n", t_one,
               t_many, MANY / 2);
        ok(found_one == 1000000, "every lookup in the one-entry table found it");
        hashmap_free(m);
        hashmap_free(one);
}

int main(void)
{
        test_siphash();
        test_basics();
        test_many();
        return done_testing();
}
