/* A tiny TAP harness for unit tests: ok(), is_int(), is_str(), then done_testing(). */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count;
static int tap_failed;

static inline int tap_ok(int cond, const char *file, int line, const char *what)
{
        tap_count++;
        if (!cond)
                tap_failed++;
        printf("%sok %d - %s\n", cond ? "" : "not ", tap_count, what);
        if (!cond)
                printf("#   failed at %s:%d\n", file, line);
        fflush(stdout);
        return cond;
}

#define ok(cond, what) tap_ok(!!(cond), __FILE__, __LINE__, (what))

#define is_int(got, want, what)                                                                    \
        do {                                                                                       \
                long long _g = (long long)(got), _w = (long long)(want);                           \
                if (!ok(_g == _w, (what)))                                                         \
                        printf("#   got %lld, want %lld\n", _g, _w);                               \
        } while (0)

#define is_str(got, want, what)                                                                    \
        do {                                                                                       \
                const char *_g = (got), *_w = (want);                                              \
                if (!ok(_g && _w && strcmp(_g, _w) == 0, (what)))                                  \
                        printf("#   got \"%s\", want \"%s\"\n", _g ? _g : "(null)",                \
                               _w ? _w : "(null)");                                                \
        } while (0)

static inline int done_testing(void)
{
        printf("1..%d\n", tap_count);
        return tap_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
