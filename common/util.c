/* Small shared helpers; see util.h. */
#include "util.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

static uint64_t clock_usec(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_boottime_usec(void)
{
        return clock_usec(CLOCK_BOOTTIME);
}

uint64_t now_realtime_usec(void)
{
        return clock_usec(CLOCK_REALTIME);
}

int parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                unsigned digit = (unsigned)(*p - '0');
                if (v > (UINT64_MAX - digit) / 10)
                        return -ERANGE;
                v = v * 10 + digit;
        }
        *ret = v;
        return 0;
}

int parse_u32(const char *s, uint32_t *ret)
{
        uint64_t v;
        int r;

        r = parse_u64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

bool name_is_valid(const char *s)
{
        size_t n = 0;

        if (!s || s[0] == '.' || s[0] == 0)
                return false;
        for (; s[n]; n++) {
                char c = s[n];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                      c == '-'))
                        return false;
                if (n >= NAME_MAX_LEN)
                        return false;
        }
        return true;
}

bool scope_is_valid(const char *s)
{
        size_t n = 0;

        if (!s || !*s)
                return false;
        for (; s[n]; n++) {
                unsigned char c = (unsigned char)s[n];
                if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
                        return false;
                if (n >= SCOPE_MAX_LEN)
                        return false;
        }
        return true;
}

bool utf8_is_valid(const uint8_t *s, size_t len)
{
        size_t i = 0;

        while (i < len) {
                uint8_t c = s[i];
                size_t need;
                uint32_t cp;

                if (c < 0x80) {
                        if (c == 0)
                                return false;
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        need = 1;
                        cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        need = 2;
                        cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        need = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (len - i - 1 < need)
                        return false;
                for (size_t k = 1; k <= need; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
                if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
                    (need == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += need + 1;
        }
        return true;
}

uint64_t random_below(uint64_t bound)
{
        uint64_t v, limit;

        if (bound <= 1)
                return 0;
        /* Rejection sampling avoids modulo bias. */
        limit = UINT64_MAX - UINT64_MAX % bound;
        do {
                if (gnutls_rnd(GNUTLS_RND_NONCE, &v, sizeof(v)) < 0)
                        abort(); /* no randomness: nothing sane to continue with */
        } while (v >= limit);
        return v % bound;
}

/* Writes the last `width` decimal digits of v, zero-padded. */
static void put_digits(char *out, unsigned v, unsigned width)
{
        for (unsigned i = width; i > 0; i--) {
                out[i - 1] = (char)('0' + v % 10);
                v /= 10;
        }
}

void format_rfc3339_ms(uint64_t realtime_usec, char out[static 25])
{
        /* RFC 3339 years have four digits: later times are clamped to the last instant it can
         * write, so the result always fits the 25 bytes and ends in 'Z'. */
        const uint64_t max_usec = 253402300799999999ULL; /* 9999-12-31T23:59:59.999999Z */
        struct tm tm = {0};
        time_t sec;
        unsigned ms;

        if (realtime_usec > max_usec)
                realtime_usec = max_usec;
        sec = (time_t)(realtime_usec / USEC_PER_SEC);
        ms = (unsigned)(realtime_usec % USEC_PER_SEC / 1000);
        (void)gmtime_r(&sec, &tm);
        /* Written digit by digit: every audit line carries one, and snprintf() with seven
         * conversions was a visible share of issuing a cached token. */
        put_digits(out, (unsigned)(tm.tm_year + 1900), 4);
        out[4] = '-';
        put_digits(out + 5, (unsigned)(tm.tm_mon + 1), 2);
        out[7] = '-';
        put_digits(out + 8, (unsigned)tm.tm_mday, 2);
        out[10] = 'T';
        put_digits(out + 11, (unsigned)tm.tm_hour, 2);
        out[13] = ':';
        put_digits(out + 14, (unsigned)tm.tm_min, 2);
        out[16] = ':';
        put_digits(out + 17, (unsigned)tm.tm_sec, 2);
        out[19] = '.';
        put_digits(out + 20, ms, 3);
        out[23] = 'Z';
        out[24] = 0;
}

void hex_encode(const void *data, size_t len, char *out)
{
        static const char digits[] = "0123456789abcdef";
        const uint8_t *p = data;

        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 15];
        }
        out[2 * len] = 0;
}

int hex_value(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int hex_decode(const char *text, size_t text_len, uint8_t *out, size_t len)
{
        if (!text || text_len != 2 * len)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

size_t format_u64(uint64_t v, char out[static 21])
{
        char digits[20];
        size_t n = 0;

        do {
                digits[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        for (size_t i = 0; i < n; i++)
                out[i] = digits[n - 1 - i];
        out[n] = 0;
        return n;
}

bool strv_contains(char *const *strv, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(strv[i], s) == 0)
                        return true;
        return false;
}

int write_all(int fd, const void *data, size_t len)
{
        const uint8_t *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EIO;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int read_bounded(int fd, void *buf, size_t size, size_t *ret_len)
{
        size_t len = 0;

        for (;;) {
                char extra;
                ssize_t n;

                if (len < size)
                        n = read(fd, (char *)buf + len, size - len);
                else
                        n = read(fd, &extra, 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                if (len == size)
                        return -EFBIG;
                len += (size_t)n;
        }
        *ret_len = len;
        return 0;
}

bool token_is_valid(const char *s, size_t len)
{
        if (len == 0 || len > TOKEN_MAX_LEN)
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
                        return false;
        }
        return true;
}

static int compare_strings(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int scope_key_build(char *const *scopes, size_t n, char **ret)
{
        _cleanup_free_ const char **sorted = NULL;
        size_t len = 1;
        char *key, *p;

        if (n == 0)
                return -EINVAL;
        sorted = calloc(n, sizeof(*sorted));
        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                sorted[i] = scopes[i];
                len += strlen(scopes[i]) + 1;
        }
        qsort(sorted, n, sizeof(*sorted), compare_strings);
        key = p = malloc(len);
        if (!key)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(sorted[i]);
                if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
                        continue;
                if (p != key)
                        *p++ = ' ';
                memcpy(p, sorted[i], l);
                p += l;
        }
        *p = 0;
        *ret = key;
        return 0;
}

char *bytes_to_string(const void *p, size_t n)
{
        char *s = malloc(n + 1);

        if (!s)
                return NULL;
        memcpy(s, p, n);
        s[n] = 0;
        return s;
}
