/* Unit tests for common/wiping-alloc: the allocators libcurl and GnuTLS are given behave like
 * malloc() and friends (alignment, zeroing, copies on realloc, overflow). That they wipe is
 * checked where it matters, on the running broker (tests/integration/memscan.test.js). */
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "wiping-alloc.h"

static void test_header_blocks(void)
{
        char *p, *q, *s;
        uint8_t *z;
        bool zero = true;

        p = wiping_malloc(10);
        ok(p && (uintptr_t)p % alignof(max_align_t) == 0, "malloc: aligned as malloc()'s blocks");
        memcpy(p, "0123456789", 10);
        q = wiping_realloc(p, 100000);
        ok(q && memcmp(q, "0123456789", 10) == 0, "realloc larger keeps the contents");
        q[99999] = 'x';
        p = wiping_realloc(q, 4);
        ok(p && memcmp(p, "0123", 4) == 0, "realloc smaller keeps the first bytes");
        wiping_free(p);
        p = wiping_realloc(NULL, 8);
        ok(p != NULL, "realloc(NULL) allocates");
        wiping_free(p);
        wiping_free(NULL);
        ok(1, "free(NULL) is a no-op");

        z = wiping_calloc(1000, 3);
        for (size_t i = 0; z && i < 3000; i++)
                zero = zero && z[i] == 0;
        ok(z && zero, "calloc zeroes");
        wiping_free(z);
        ok(wiping_calloc(SIZE_MAX / 2, 3) == NULL, "calloc: an overflowing size fails");
        ok(wiping_malloc(SIZE_MAX - 4) == NULL, "malloc: a size the header would overflow fails");

        s = wiping_strdup("refresh-token");
        is_str(s, "refresh-token", "strdup copies");
        wiping_free(s);
}

static void test_libc_blocks(void)
{
        char *p = malloc(20), *q;

        if (!p)
                abort();
        memcpy(p, "abcdefghijklmnopqrs", 20);
        q = wiping_libc_realloc(p, 5000);
        ok(q && memcmp(q, "abcdefghijklmnopqrs", 20) == 0, "libc realloc keeps the contents");
        p = wiping_libc_realloc(q, 3);
        ok(p && memcmp(p, "abc", 3) == 0, "libc realloc smaller keeps the first bytes");
        wiping_libc_free(p);
        wiping_libc_free(NULL);
        p = wiping_libc_realloc(NULL, 7);
        ok(p != NULL, "libc realloc(NULL) allocates");
        free(p); /* a C library block: plain free() works too */
}

int main(void)
{
        test_header_blocks();
        test_libc_blocks();
        return done_testing();
}
