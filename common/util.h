/* Small helpers shared by every binary: clocks, number parsing, name and text validation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The structure that holds member ptr, for objects that embed a struct watch or a struct stream. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define USEC_PER_SEC  1000000ULL
#define USEC_PER_MSEC 1000ULL

/* CLOCK_BOOTTIME keeps counting across suspend and never jumps with the wall clock: every token
 * expiry is tracked on it. */
uint64_t now_boottime_usec(void);
uint64_t now_realtime_usec(void);

/* Strict decimal parsing: no sign, no spaces, no trailing characters, no overflow. */
int parse_u64(const char *s, uint64_t *ret);
int parse_u32(const char *s, uint32_t *ret);

/* Account and profile names: [a-z0-9._-], 1..64 characters, not starting with '.'. */
#define NAME_MAX_LEN 64
bool name_is_valid(const char *s);

/* An OAuth scope: 1..256 printable ASCII characters without spaces, quotes or backslashes. */
#define SCOPE_MAX_LEN 256
bool scope_is_valid(const char *s);

/* The key of a scope set (token cache, audit): sorted, duplicates removed, joined with spaces.
 * -EINVAL for an empty set. */
int scope_key_build(char *const *scopes, size_t n, char **ret);

bool utf8_is_valid(const uint8_t *s, size_t len);

/* The n bytes at p as a NUL-terminated malloc()ed string (strndup() for bytes that need not be
 * terminated: it reads exactly n). NULL when out of memory. */
char *bytes_to_string(const void *p, size_t n);

/* A uniformly random integer in [0, bound) from GnuTLS's random generator (bound > 0). */
uint64_t random_below(uint64_t bound);

/* Formats a wall-clock time (µs) as RFC 3339 UTC with milliseconds: 2026-11-28T09:00:00.123Z.
 * out must hold at least 25 bytes. */
void format_rfc3339_ms(uint64_t realtime_usec, char out[static 25]);

/* Decimal digits of v and a NUL; returns the number of digits. */
size_t format_u64(uint64_t v, char out[static 21]);
/* Lowercase hex of len bytes into out, which holds 2 * len + 1 (NUL-terminated). */
void hex_encode(const void *data, size_t len, char *out);
/* The value of one hex digit of either case, -1 for any other character. */
int hex_value(int c);
/* The len bytes of exactly 2 * len hex digits (either case) in text; -EINVAL for anything else. */
int hex_decode(const char *text, size_t text_len, uint8_t *out, size_t len);

bool strv_contains(char *const *strv, size_t n, const char *s);

/* Reads fd to its end into buf, retrying EINTR. -EFBIG when it holds more than size bytes (one
 * more byte is asked for to tell a full buffer from a file that fills it exactly): a caller must
 * never act on a prefix. ret_len is untouched on failure. */
int read_bounded(int fd, void *buf, size_t size, size_t *ret_len);

/* Writes all len bytes to fd (a file: blocking), retrying EINTR and short writes. 0, or the
 * -errno of the write that failed (-EIO for one that wrote nothing). */
int write_all(int fd, const void *data, size_t len);

/* OAuth tokens (access and refresh) are opaque, but always printable ASCII without spaces.
 * Quotes and backslashes are refused too, so a hostile value cannot break a JSON document, an
 * HTTP header or a log line. Every token entering the broker, the store or the CLI is checked
 * with this one rule. */
#define TOKEN_MAX_LEN 16384
bool token_is_valid(const char *s, size_t len);
