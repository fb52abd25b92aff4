/* Unit tests for common/util: strict number parsing, name/scope/UTF-8 validation at every
 * boundary, RFC 3339 formatting, the range of random_below() and read_bounded()'s limit. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "json.h"
#include "tap.h"
#include "util.h"

/* Test descriptions go on one TAP line: show control and non-ASCII bytes as \xNN. */
static const char *escape(const char *s)
{
        static char out[256];
        size_t n = 0;

        for (; *s && n + 5 < sizeof(out); s++) {
                unsigned char c = (unsigned char)*s;
                if (c < 0x20 || c >= 0x7f)
                        n += (size_t)snprintf(out + n, sizeof(out) - n, "\\x%02x", c);
                else
                        out[n++] = (char)c;
        }
        out[n] = 0;
        return out;
}

static void test_parse_u64(void)
{
        static const struct {
                const char *s;
                int r;
                uint64_t v;
        } cases[] = {
            {"0", 0, 0},
            {"1", 0, 1},
            {"42", 0, 42},
            {"4294967296", 0, 4294967296ULL},
            {"18446744073709551614", 0, 18446744073709551614ULL},
            {"18446744073709551615", 0, UINT64_MAX},
            {"18446744073709551616", -ERANGE, 0},
            {"18446744073709551619", -ERANGE, 0},
            {"18446744073709551620", -ERANGE, 0},
            {"99999999999999999999", -ERANGE, 0},
            {"184467440737095516150", -ERANGE, 0},
            {"100000000000000000000000000000", -ERANGE, 0},
            {"", -EINVAL, 0},
            {"-1", -EINVAL, 0},
            {"-0", -EINVAL, 0},
            {"+1", -EINVAL, 0},
            {" 1", -EINVAL, 0},
            {"1 ", -EINVAL, 0},
            {"1\n", -EINVAL, 0},
            {"\t1", -EINVAL, 0},
            {"1a", -EINVAL, 0},
            {"a1", -EINVAL, 0},
            {"0x10", -EINVAL, 0},
            {"1.0", -EINVAL, 0},
            {"1e3", -EINVAL, 0},
            {"1,000", -EINVAL, 0},
            {"\xd9\xa1", -EINVAL, 0}, /* ARABIC-INDIC DIGIT ONE */
        };
        char what[160];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t v = 0xabababababababab;
                int r = parse_u64(cases[i].s, &v);

                snprintf(what, sizeof(what), "parse_u64(\"%s\") returns %d", escape(cases[i].s),
                         cases[i].r);
                is_int(r, cases[i].r, what);
                if (cases[i].r == 0) {
                        snprintf(what, sizeof(what), "parse_u64(\"%s\") value", escape(cases[i].s));
                        ok(v == cases[i].v, what);
                } else {
                        snprintf(what, sizeof(what), "parse_u64(\"%s\") leaves ret untouched",
                                 escape(cases[i].s));
                        ok(v == 0xabababababababab, what);
                }
        }

        uint64_t v = 7;
        is_int(parse_u64(NULL, &v), -EINVAL, "parse_u64(NULL)");
        is_int(v, 7, "parse_u64(NULL) leaves ret untouched");
}

static void test_parse_u32(void)
{
        uint32_t v = 5;

        is_int(parse_u32("4294967295", &v), 0, "parse_u32 max");
        ok(v == UINT32_MAX, "parse_u32 max value");
        v = 5;
        is_int(parse_u32("4294967296", &v), -ERANGE, "parse_u32 max+1 is -ERANGE");
        is_int(v, 5, "parse_u32 leaves ret untouched on overflow");
        is_int(parse_u32("18446744073709551616", &v), -ERANGE, "parse_u32 u64 overflow");
        is_int(parse_u32("-1", &v), -EINVAL, "parse_u32 negative");
        is_int(parse_u32("", &v), -EINVAL, "parse_u32 empty");
        is_int(parse_u32("0", &v), 0, "parse_u32 0");
        is_int(v, 0, "parse_u32 0 value");
}

static void test_name(void)
{
        char name[NAME_MAX_LEN + 2];

        ok(name_is_valid("alerts"), "alerts is a name");
        ok(name_is_valid("a"), "one character is a name");
        ok(name_is_valid("0"), "a digit is a name");
        ok(name_is_valid("ops-mail_2.prod"), "all allowed punctuation");
        ok(name_is_valid("a..b"), "dots inside are allowed");
        ok(name_is_valid("-x"), "leading '-' is allowed");
        ok(name_is_valid("_x"), "leading '_' is allowed");

        memset(name, 'a', NAME_MAX_LEN);
        name[NAME_MAX_LEN] = 0;
        ok(name_is_valid(name), "64 characters is a name");
        name[NAME_MAX_LEN] = 'a';
        name[NAME_MAX_LEN + 1] = 0;
        ok(!name_is_valid(name), "65 characters is not");

        ok(!name_is_valid(NULL), "NULL is not a name");
        ok(!name_is_valid(""), "empty is not a name");
        ok(!name_is_valid("."), "'.' is not a name");
        ok(!name_is_valid(".."), "'..' is not a name");
        ok(!name_is_valid(".hidden"), "leading dot is not a name");
        ok(!name_is_valid("Alerts"), "uppercase is not a name");
        ok(!name_is_valid("alertS"), "uppercase at the end is not a name");
        ok(!name_is_valid("a/b"), "'/' is not allowed");
        ok(!name_is_valid("../etc"), "path traversal is not a name");
        ok(!name_is_valid("a b"), "space is not allowed");
        ok(!name_is_valid("a\n"), "newline is not allowed");
        ok(!name_is_valid("a:b"), "':' is not allowed");
        ok(!name_is_valid("a@b"), "'@' is not allowed");
        ok(!name_is_valid("caf\xc3\xa9"), "non-ASCII is not allowed");
        ok(!name_is_valid("a\\b"), "backslash is not allowed");
}

static void test_scope(void)
{
        char scope[SCOPE_MAX_LEN + 2];

        ok(scope_is_valid("https://graph.microsoft.com/Mail.Send"), "Graph scope");
        ok(scope_is_valid("offline_access"), "offline_access");
        ok(scope_is_valid("!"), "lowest printable (0x21)");
        ok(scope_is_valid("~"), "highest printable (0x7e)");

        memset(scope, 's', SCOPE_MAX_LEN);
        scope[SCOPE_MAX_LEN] = 0;
        ok(scope_is_valid(scope), "256 characters is a scope");
        scope[SCOPE_MAX_LEN] = 's';
        scope[SCOPE_MAX_LEN + 1] = 0;
        ok(!scope_is_valid(scope), "257 characters is not");

        ok(!scope_is_valid(NULL), "NULL is not a scope");
        ok(!scope_is_valid(""), "empty is not a scope");
        ok(!scope_is_valid("a b"), "space is not allowed");
        ok(!scope_is_valid(" a"), "leading space is not allowed");
        ok(!scope_is_valid("a\t"), "tab is not allowed");
        ok(!scope_is_valid("a\"b"), "quote is not allowed");
        ok(!scope_is_valid("a\\b"), "backslash is not allowed");
        ok(!scope_is_valid("a\x7f"), "DEL is not allowed");
        ok(!scope_is_valid("a\x01"), "control characters are not allowed");
        ok(!scope_is_valid("\xc3\xa9"), "non-ASCII is not allowed");
}

static void test_utf8(void)
{
        static const struct {
                const char *bytes;
                size_t len;
                int valid;
                const char *what;
        } cases[] = {
#define C(s, v, w) {s, sizeof(s) - 1, v, w}
            C("", 1, "empty"),
            C("hello", 1, "ASCII"),
            C("\x7f", 1, "DEL is ASCII"),
            C("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 1, "mixed 2-, 3-, 4-byte"),
            C("a\0b", 0, "NUL byte"),
            C("\0", 0, "lone NUL"),
            /* two bytes */
            C("\xc2\x80", 1, "U+0080 (lowest 2-byte)"),
            C("\xdf\xbf", 1, "U+07FF (highest 2-byte)"),
            C("\xc0\x80", 0, "overlong NUL (C0 80)"),
            C("\xc0\xaf", 0, "overlong '/' (C0 AF)"),
            C("\xc1\xbf", 0, "overlong U+007F (C1 BF)"),
            /* three bytes */
            C("\xe0\xa0\x80", 1, "U+0800 (lowest 3-byte)"),
            C("\xe0\x9f\xbf", 0, "overlong U+07FF (E0 9F BF)"),
            C("\xe0\x80\xaf", 0, "overlong '/' (E0 80 AF)"),
            C("\xed\x9f\xbf", 1, "U+D7FF (below surrogates)"),
            C("\xed\xa0\x80", 0, "U+D800 (high surrogate)"),
            C("\xed\xaf\xbf", 0, "U+DBFF"),
            C("\xed\xb0\x80", 0, "U+DC00 (low surrogate)"),
            C("\xed\xbf\xbf", 0, "U+DFFF"),
            C("\xed\xa0\xbd\xed\xb8\x80", 0, "CESU-8 surrogate pair"),
            C("\xee\x80\x80", 1, "U+E000 (above surrogates)"),
            C("\xef\xbf\xbf", 1, "U+FFFF"),
            C("\xef\xbb\xbf", 1, "BOM is a valid character"),
            /* four bytes */
            C("\xf0\x90\x80\x80", 1, "U+10000 (lowest 4-byte)"),
            C("\xf4\x8f\xbf\xbf", 1, "U+10FFFF (highest)"),
            C("\xf0\x8f\xbf\xbf", 0, "overlong U+FFFF (F0 8F BF BF)"),
            C("\xf0\x80\x80\xaf", 0, "overlong '/' (F0 80 80 AF)"),
            C("\xf4\x90\x80\x80", 0, "U+110000"),
            C("\xf5\x80\x80\x80", 0, "F5 lead byte"),
            C("\xf7\xbf\xbf\xbf", 0, "F7 lead byte (U+1FFFFF)"),
            /* no such lead bytes */
            C("\xf8\x88\x80\x80\x80", 0, "5-byte form"),
            C("\xfc\x84\x80\x80\x80\x80", 0, "6-byte form"),
            C("\xfe", 0, "FE"),
            C("\xff", 0, "FF"),
            /* continuation bytes where a lead is expected */
            C("\x80", 0, "lone continuation 80"),
            C("\xbf", 0, "lone continuation BF"),
            C("a\x80", 0, "continuation after ASCII"),
            C("\xc3\xa9\xa9", 0, "extra continuation"),
            /* truncated sequences */
            C("\xc3", 0, "truncated 2-byte at end"),
            C("\xe2\x82", 0, "truncated 3-byte at end"),
            C("\xe2", 0, "3-byte lead only"),
            C("\xf0\x9f\x98", 0, "truncated 4-byte at end"),
            C("\xf0\x9f", 0, "4-byte, 2 of 4"),
            C("\xf0", 0, "4-byte lead only"),
            C("\xc3"
              "a",
              0, "2-byte cut by ASCII"),
            C("\xe2\x82"
              "a",
              0, "3-byte cut by ASCII"),
            C("\xf0\x9f\x98"
              "a",
              0, "4-byte cut by ASCII"),
            C("\xe2\xc3\xa9", 0, "3-byte cut by a new lead"),
#undef C
        };
        char what[160];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                /* An exact-size heap copy, so a sanitizer sees any read past the end. */
                uint8_t *copy = malloc(cases[i].len ? cases[i].len : 1);

                if (!copy)
                        abort();
                memcpy(copy, cases[i].bytes, cases[i].len);
                snprintf(what, sizeof(what), "utf8: %s is %s", cases[i].what,
                         cases[i].valid ? "valid" : "invalid");
                ok(utf8_is_valid(copy, cases[i].len) == !!cases[i].valid, what);
                free(copy);
        }

        /* The length is what counts, not a terminator. */
        ok(!utf8_is_valid((const uint8_t *)"\xe2\x82\xac", 2), "valid bytes cut by len");
        ok(utf8_is_valid((const uint8_t *)"ab\xff", 2), "bytes past len are not looked at");
        ok(utf8_is_valid(NULL, 0), "zero length is valid");

        /* Every code point from U+0001 to U+10FFFF, encoded by the book, is accepted; every
         * surrogate rejected. */
        int good = 1;
        for (uint32_t cp = 1; cp <= 0x10ffff; cp++) {
                uint8_t b[4];
                size_t n;

                if (cp < 0x80) {
                        b[0] = (uint8_t)cp;
                        n = 1;
                } else if (cp < 0x800) {
                        b[0] = (uint8_t)(0xc0 | cp >> 6);
                        b[1] = (uint8_t)(0x80 | (cp & 0x3f));
                        n = 2;
                } else if (cp < 0x10000) {
                        b[0] = (uint8_t)(0xe0 | cp >> 12);
                        b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
                        b[2] = (uint8_t)(0x80 | (cp & 0x3f));
                        n = 3;
                } else {
                        b[0] = (uint8_t)(0xf0 | cp >> 18);
                        b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
                        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
                        b[3] = (uint8_t)(0x80 | (cp & 0x3f));
                        n = 4;
                }
                int surrogate = cp >= 0xd800 && cp <= 0xdfff;
                if (utf8_is_valid(b, n) == surrogate) {
                        good = 0;
                        printf("# code point U+%04X misjudged\n", (unsigned)cp);
                        break;
                }
        }
        ok(good, "utf8: all scalar values valid, all surrogates invalid");
}

static void test_rfc3339(void)
{
        static const struct {
                uint64_t usec;
                const char *want;
        } cases[] = {
            {0, "1970-01-01T00:00:00.000Z"},
            {1, "1970-01-01T00:00:00.000Z"},
            {999, "1970-01-01T00:00:00.000Z"},
            {1000, "1970-01-01T00:00:00.001Z"},
            {999999, "1970-01-01T00:00:00.999Z"}, /* truncated, never rounded up */
            {1000000, "1970-01-01T00:00:01.000Z"},
            {1795856400ULL * 1000000 + 123000, "2026-11-28T09:00:00.123Z"},
            {1795856400ULL * 1000000 + 123999, "2026-11-28T09:00:00.123Z"},
            {951868799ULL * 1000000 + 999999, "2000-02-29T23:59:59.999Z"},
            {946684799ULL * 1000000 + 999999, "1999-12-31T23:59:59.999Z"},
            {2147483648ULL * 1000000, "2038-01-19T03:14:08.000Z"},
            {253402300799ULL * 1000000 + 999999, "9999-12-31T23:59:59.999Z"},
        };
        char out[32], what[96];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                memset(out, 'X', sizeof(out));
                format_rfc3339_ms(cases[i].usec, out);
                snprintf(what, sizeof(what), "format_rfc3339_ms -> %s", cases[i].want);
                is_str(out, cases[i].want, what);
        }

        /* Far future: never more than 24 characters and the terminator, still ends in 'Z'. */
        static const uint64_t huge[] = {253402300800ULL * 1000000, 1ULL << 62, UINT64_MAX};
        for (size_t i = 0; i < ELEMENTSOF(huge); i++) {
                memset(out, 'X', sizeof(out));
                format_rfc3339_ms(huge[i], out);
                ok(memchr(out, 0, 25) != NULL && strlen(out) == 24 && out[23] == 'Z',
                   "a time past year 9999 still formats as 24 characters ending in Z");
                ok(memcmp(out + 25, "XXXXXXX", 7) == 0, "nothing written past 25 bytes");
        }
}

static void test_random(void)
{
        unsigned seen[10] = {0};
        unsigned thirds[3] = {0};
        int in_range = 1;

        is_int(random_below(0), 0, "random_below(0) is 0");
        is_int(random_below(1), 0, "random_below(1) is 0");
        for (int i = 0; i < 10000; i++) {
                uint64_t v = random_below(10);
                if (v >= 10)
                        in_range = 0;
                else
                        seen[v]++;
        }
        ok(in_range, "random_below(10) stays below 10");
        int all = 1;
        for (int i = 0; i < 10; i++)
                if (seen[i] == 0)
                        all = 0;
        ok(all, "random_below(10) produces every value");

        in_range = 1;
        for (int i = 0; i < 2000; i++) {
                if (random_below(2) > 1 || random_below(UINT64_MAX) == UINT64_MAX ||
                    random_below((1ULL << 63) + 1) > (1ULL << 63))
                        in_range = 0;
        }
        ok(in_range, "random_below stays in range for 2, 2^63+1 and UINT64_MAX");

        /* Coarse uniformity: each third within 10% of 10000 (12 standard deviations). */
        for (int i = 0; i < 30000; i++)
                thirds[random_below(3)]++;
        ok(thirds[0] > 9000 && thirds[0] < 11000 && thirds[1] > 9000 && thirds[1] < 11000 &&
               thirds[2] > 9000 && thirds[2] < 11000,
           "random_below(3) is roughly uniform");

        /* Large bounds reach the upper half too (no truncation to 32 bits). */
        int high = 0;
        for (int i = 0; i < 64 && !high; i++)
                if (random_below(1ULL << 40) >= (1ULL << 39))
                        high = 1;
        ok(high, "random_below(2^40) reaches the upper half");
}

static void test_clocks(void)
{
        uint64_t a = now_boottime_usec(), b = now_boottime_usec();
        uint64_t rt = now_realtime_usec();
        uint64_t wall = (uint64_t)time(NULL) * USEC_PER_SEC;

        ok(a > 0 && b >= a, "CLOCK_BOOTTIME does not go backwards");
        ok(rt + 5 * USEC_PER_SEC > wall && rt < wall + 5 * USEC_PER_SEC,
           "now_realtime_usec agrees with time()");
}

static void test_strings(void)
{
        char *strv[] = {"a", "bc", ""};

        ok(strv_contains(strv, 3, "bc"), "strv_contains finds an element");
        ok(strv_contains(strv, 3, ""), "strv_contains finds the empty string");
        ok(!strv_contains(strv, 3, "b"), "strv_contains needs an exact match");
        ok(!strv_contains(strv, 1, "bc"), "strv_contains looks only at n elements");
        ok(!strv_contains(NULL, 0, "a"), "strv_contains on nothing");

        ok(token_is_valid("0.AAAA-rt_x.y~z+/=", 18), "a refresh token is valid");
        ok(!token_is_valid("", 0), "an empty token is not");
        ok(!token_is_valid("a b", 3), "a space is not allowed");
        ok(!token_is_valid("a\"b", 3), "a quote is not allowed");
        ok(!token_is_valid("a\\b", 3), "a backslash is not allowed");
        ok(!token_is_valid("a\nb", 3), "a newline is not allowed");
        ok(!token_is_valid("a\x80"
                           "b",
                           3),
           "a non-ASCII byte is not allowed");
}

/* A pipe holding len bytes of 'x' whose write end is closed: read_bounded() sees exactly that. */
static int pipe_with(size_t len)
{
        char data[256];
        int fds[2];

        if (len > sizeof(data) || pipe(fds) < 0)
                abort();
        memset(data, 'x', len);
        if (write(fds[1], data, len) != (ssize_t)len)
                abort();
        close(fds[1]);
        return fds[0];
}

static void test_read_bounded(void)
{
        char buf[16];
        size_t len;
        int fd;

        fd = pipe_with(0);
        len = 99;
        is_int(read_bounded(fd, buf, sizeof(buf), &len), 0, "read_bounded: an empty file");
        is_int(len, 0, "read_bounded: of length 0");
        close(fd);

        fd = pipe_with(5);
        is_int(read_bounded(fd, buf, sizeof(buf), &len), 0, "read_bounded: a short file");
        is_int(len, 5, "read_bounded: all of it");
        ok(memcmp(buf, "xxxxx", 5) == 0, "read_bounded: the bytes of the file");
        close(fd);

        fd = pipe_with(sizeof(buf));
        is_int(read_bounded(fd, buf, sizeof(buf), &len), 0,
               "read_bounded: a file that fills the buffer exactly");
        is_int(len, sizeof(buf), "read_bounded: of the buffer's size");
        close(fd);

        fd = pipe_with(sizeof(buf) + 1);
        len = 99;
        is_int(read_bounded(fd, buf, sizeof(buf), &len), -EFBIG,
               "read_bounded: one byte more than the buffer is -EFBIG");
        is_int(len, 99, "read_bounded: ret_len untouched on failure");
        close(fd);

        fd = pipe_with(200);
        is_int(read_bounded(fd, buf, sizeof(buf), &len), -EFBIG,
               "read_bounded: far more than the buffer is -EFBIG");
        close(fd);

        fd = pipe_with(1);
        is_int(read_bounded(fd, buf, 0, &len), -EFBIG, "read_bounded: any byte exceeds size 0");
        close(fd);

        is_int(read_bounded(-1, buf, sizeof(buf), &len), -EBADF, "read_bounded: a bad fd");
}

/* json_add_scope_list(): one element per scope, empty and over-long pieces left out. */
static void test_scope_list(void)
{
        char long_scope[SCOPE_MAX_LEN + 3];
        char text[SCOPE_MAX_LEN + 64];

        memset(long_scope, 'x', sizeof(long_scope) - 1);
        long_scope[sizeof(long_scope) - 1] = 0;
        snprintf(text, sizeof(text), "openid  %s Mail.Send ", long_scope);

        _cleanup_json_ cJSON *o = cJSON_CreateObject();
        ok(o && json_add_scope_list(o, "scopes", text), "scopes added");
        char *printed = cJSON_PrintUnformatted(o);
        is_str(printed, "{\"scopes\":[\"openid\",\"Mail.Send\"]}",
               "the empty and the over-long piece are left out");
        json_free_string(printed);

        _cleanup_json_ cJSON *none = cJSON_CreateObject();
        ok(none && json_add_scope_list(none, "scopes", NULL), "NULL scopes");
        char *empty = cJSON_PrintUnformatted(none);
        is_str(empty, "{\"scopes\":[]}", "NULL gives an empty array");
        json_free_string(empty);
}

static void test_hex_encode(void)
{
        static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
        char out[2 * sizeof(bytes) + 1];

        memset(out, 'x', sizeof(out));
        hex_encode(bytes, sizeof(bytes), out);
        is_str(out, "00017f80abff", "hex_encode: lowercase, two digits a byte, NUL-terminated");
        hex_encode(bytes, 0, out);
        is_str(out, "", "hex_encode of nothing");
}

int main(void)
{
        test_hex_encode();
        test_parse_u64();
        test_parse_u32();
        test_name();
        test_scope();
        test_utf8();
        test_rfc3339();
        test_random();
        test_clocks();
        test_strings();
        test_read_bounded();
        test_scope_list();
        return done_testing();
}
