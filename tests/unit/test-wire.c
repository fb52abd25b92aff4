/* Unit tests for common/wire (design.md §3): every frame-length edge, frames split across
 * reads and packed into one read, request validation (the table of refused requests is
 * tests/data/frames/bad-requests.txt) and the replies parsed back as a client would. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "tap.h"
#include "wire.h"

#define BUF_MAX (WIRE_HEADER_SIZE + WIRE_FRAME_MAX)

static struct buf *new_buf(size_t max)
{
        struct buf *b;

        if (buf_new(max, &b) < 0)
                abort();
        return b;
}

static void put_header(struct buf *b, uint32_t len)
{
        if (buf_put_u32be(b, len) < 0)
                abort();
}

/* Parses len bytes from an exact-size heap copy, so a sanitizer sees reads past the end. */
static int parse(const void *payload, size_t len, struct wire_request *req, enum wire_error *err,
                 const char **msg)
{
        uint8_t *copy = malloc(len ? len : 1);
        int r;

        if (!copy)
                abort();
        memcpy(copy, payload, len);
        r = wire_request_parse(copy, len, req, err, msg);
        free(copy);
        return r;
}

static int parse_str(const char *json, struct wire_request *req, enum wire_error *err)
{
        const char *msg = NULL;
        int r = parse(json, strlen(json), req, err, &msg);

        if (r < 0 && (!msg || !*msg))
                return -999; /* a refusal must always come with a message */
        return r;
}

/* Describes a payload on one TAP line. */
static const char *shorten(const char *s, size_t len)
{
        static char out[100];
        size_t n = 0;

        for (size_t i = 0; i < len && n < 80; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x20 || c >= 0x7f)
                        n += (size_t)snprintf(out + n, sizeof(out) - n, "\\x%02x", c);
                else
                        out[n++] = (char)c;
        }
        if (len > 0 && n >= 80)
                n += (size_t)snprintf(out + n, sizeof(out) - n, "...");
        out[n] = 0;
        return out;
}

static void test_frame_lengths(void)
{
        _cleanup_buf_ struct buf *b = new_buf(BUF_MAX + 16);
        static uint8_t body[WIRE_FRAME_MAX + 1];
        const uint8_t *payload = (const uint8_t *)0x1;
        size_t len = 12345;

        memset(body, 'j', sizeof(body));

        is_int(wire_frame_peek(b, &payload, &len), 0, "empty buffer: need more");
        for (int n = 1; n <= 3; n++) {
                buf_reset(b);
                buf_put(b, "\0\0\0\1", (size_t)n);
                char what[64];
                snprintf(what, sizeof(what), "%d header byte(s): need more", n);
                is_int(wire_frame_peek(b, &payload, &len), 0, what);
        }
        /* Even a header whose first byte already says "too big" waits for all four. */
        buf_reset(b);
        buf_put(b, "\xff\xff\xff", 3);
        is_int(wire_frame_peek(b, &payload, &len), 0, "3 bytes of a huge length: need more");
        ok(payload == (const uint8_t *)0x1 && len == 12345, "need-more leaves outputs untouched");

        buf_reset(b);
        put_header(b, 0);
        is_int(wire_frame_peek(b, &payload, &len), -EBADMSG, "length 0: -EBADMSG");
        buf_put(b, "{}", 2);
        is_int(wire_frame_peek(b, &payload, &len), -EBADMSG, "length 0 with bytes after it");

        buf_reset(b);
        put_header(b, 1);
        is_int(wire_frame_peek(b, &payload, &len), 0, "length 1, no body yet: need more");
        buf_put(b, "x", 1);
        is_int(wire_frame_peek(b, &payload, &len), 1, "1-byte payload");
        ok(len == 1 && payload == buf_data(b) + 4 && payload[0] == 'x', "1-byte payload seen");
        is_int(wire_frame_consume(b, len), 0, "consume the 1-byte frame");
        is_int(buf_len(b), 0, "nothing left");

        buf_reset(b);
        put_header(b, WIRE_FRAME_MAX);
        is_int(wire_frame_peek(b, &payload, &len), 0, "length 65536, no body: need more");
        buf_put(b, body, WIRE_FRAME_MAX - 1);
        is_int(wire_frame_peek(b, &payload, &len), 0, "length 65536, body one short: need more");
        buf_put(b, body, 1);
        is_int(wire_frame_peek(b, &payload, &len), 1, "length 65536 exactly is accepted");
        is_int(len, WIRE_FRAME_MAX, "65536-byte payload length");
        ok(payload == buf_data(b) + 4 && payload[0] == 'j' && payload[WIRE_FRAME_MAX - 1] == 'j',
           "65536-byte payload pointer");
        is_int(wire_frame_consume(b, len), 0, "consume 65536-byte frame");
        is_int(buf_len(b), 0, "consumed entirely");

        static const uint32_t too_big[] = {WIRE_FRAME_MAX + 1, 0x00020000, 0x7fffffff, 0x80000000,
                                           0xffffffff};
        for (size_t i = 0; i < ELEMENTSOF(too_big); i++) {
                char what[80];
                buf_reset(b);
                put_header(b, too_big[i]);
                payload = (const uint8_t *)0x1;
                snprintf(what, sizeof(what), "length %u: -EMSGSIZE before any body arrives",
                         too_big[i]);
                is_int(wire_frame_peek(b, &payload, &len), -EMSGSIZE, what);
                ok(payload == (const uint8_t *)0x1, "error leaves outputs untouched");
        }
        buf_reset(b);
        put_header(b, WIRE_FRAME_MAX + 1);
        buf_put(b, body, WIRE_FRAME_MAX + 1 > buf_max(b) - 4 ? buf_max(b) - 4 : WIRE_FRAME_MAX + 1);
        is_int(wire_frame_peek(b, &payload, &len), -EMSGSIZE, "65537 with the body present");

        /* Truncated body. */
        buf_reset(b);
        put_header(b, 10);
        buf_put(b, "012345678", 9);
        is_int(wire_frame_peek(b, &payload, &len), 0, "body one byte short: need more");
        buf_put(b, "9", 1);
        is_int(wire_frame_peek(b, &payload, &len), 1, "body complete");
        ok(len == 10 && memcmp(payload, "0123456789", 10) == 0, "payload bytes");
        is_int(wire_frame_peek(b, &payload, &len), 1, "peek again: same frame (not consumed)");
        is_int(buf_len(b), 14, "peek consumed nothing");
        is_int(wire_frame_consume(b, 11), -EBADMSG, "consuming more than the frame fails");
        is_int(buf_len(b), 14, "failed consume changed nothing");
}

static void test_frame_sequences(void)
{
        _cleanup_buf_ struct buf *b = new_buf(BUF_MAX);
        const uint8_t *payload;
        size_t len;

        /* Two frames in one buffer come out in order. */
        put_header(b, 3);
        buf_put(b, "one", 3);
        put_header(b, 5);
        buf_put(b, "three", 5);
        put_header(b, 4); /* and the start of a third */
        buf_put(b, "fo", 2);
        is_int(wire_frame_peek(b, &payload, &len), 1, "first of two frames");
        ok(len == 3 && memcmp(payload, "one", 3) == 0, "first payload");
        is_int(wire_frame_consume(b, len), 0, "consume first");
        is_int(wire_frame_peek(b, &payload, &len), 1, "second of two frames");
        ok(len == 5 && memcmp(payload, "three", 5) == 0, "second payload");
        is_int(wire_frame_consume(b, len), 0, "consume second");
        is_int(wire_frame_peek(b, &payload, &len), 0, "partial third: need more");
        buf_put(b, "ur", 2);
        is_int(wire_frame_peek(b, &payload, &len), 1, "third completes");
        ok(len == 4 && memcmp(payload, "four", 4) == 0, "third payload");
        wire_frame_consume(b, len);
        is_int(buf_len(b), 0, "all consumed");

        /* A good frame followed by a bad length: the good one still comes out first. */
        put_header(b, 2);
        buf_put(b, "ok", 2);
        put_header(b, 0);
        is_int(wire_frame_peek(b, &payload, &len), 1, "good frame before a bad one");
        wire_frame_consume(b, len);
        is_int(wire_frame_peek(b, &payload, &len), -EBADMSG, "then the bad one");
        buf_reset(b);

        /* One frame fed byte by byte completes only at the last byte. */
        static const char msg[] = "{\"v\":1,\"op\":\"ping\"}";
        uint8_t frame[4 + sizeof(msg) - 1];
        size_t n = sizeof(msg) - 1;
        frame[0] = 0;
        frame[1] = 0;
        frame[2] = (uint8_t)(n >> 8);
        frame[3] = (uint8_t)n;
        memcpy(frame + 4, msg, n);
        int early = 0;
        for (size_t i = 0; i < sizeof(frame); i++) {
                buf_put(b, frame + i, 1);
                int r = wire_frame_peek(b, &payload, &len);
                if (i + 1 < sizeof(frame) ? r != 0 : r != 1)
                        early = 1;
        }
        ok(!early, "byte by byte: need more until the very last byte");
        ok(len == n && memcmp(payload, msg, n) == 0, "byte by byte: payload intact");
        wire_frame_consume(b, len);
}

/* The same over a socket: the writer trickles two frames one byte per write, the reader reads
 * whatever is there each time, exactly as the broker's event loop does. */
static void test_frame_socket(void)
{
        _cleanup_buf_ struct buf *in = new_buf(BUF_MAX), *out = new_buf(BUF_MAX);
        const uint8_t *payload;
        size_t len;
        int sv[2], complete = 0, early = 0;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        wire_frame_put(out, "{\"v\":1,\"op\":\"ping\"}", 19);
        wire_frame_put(out, "{\"v\":1,\"op\":\"profiles\"}", 23);
        size_t total = buf_len(out);
        const uint8_t *all = buf_data(out);
        uint8_t copy[64];
        memcpy(copy, all, total);

        for (size_t i = 0; i < total; i++) {
                if (write(sv[1], copy + i, 1) != 1)
                        abort();
                if (buf_read_fd(in, sv[0]) != 1)
                        early = 1;
                while (wire_frame_peek(in, &payload, &len) == 1) {
                        complete++;
                        if ((complete == 1 && (i != 22 || len != 19)) ||
                            (complete == 2 && (i != total - 1 || len != 23)))
                                early = 1;
                        wire_frame_consume(in, len);
                }
        }
        ok(!early && complete == 2,
           "trickled over a socket: each frame completes at its last byte");
        is_int(buf_read_fd(in, sv[0]), -EAGAIN, "nothing more on the socket");

        /* Both frames in one write arrive in one read and come out in order. */
        if (write(sv[1], copy, total) != (ssize_t)total)
                abort();
        is_int(buf_read_fd(in, sv[0]), total, "two frames in one read");
        is_int(wire_frame_peek(in, &payload, &len), 1, "first frame from one read");
        ok(len == 19 && memcmp(payload, "{\"v\":1,\"op\":\"ping\"}", 19) == 0, "first is ping");
        wire_frame_consume(in, len);
        is_int(wire_frame_peek(in, &payload, &len), 1, "second frame from one read");
        ok(len == 23 && memcmp(payload, "{\"v\":1,\"op\":\"profiles\"}", 23) == 0,
           "second is profiles");
        wire_frame_consume(in, len);
        close(sv[0]);
        close(sv[1]);
}

static void test_frame_put(void)
{
        _cleanup_buf_ struct buf *b = new_buf(BUF_MAX);
        static uint8_t body[WIRE_FRAME_MAX + 1];
        const uint8_t *payload;
        size_t len;

        memset(body, 'p', sizeof(body));
        is_int(wire_frame_put(b, body, 0), -EMSGSIZE, "wire_frame_put refuses 0 bytes");
        is_int(buf_len(b), 0, "nothing written for 0");
        is_int(wire_frame_put(b, body, WIRE_FRAME_MAX + 1), -EMSGSIZE,
               "wire_frame_put refuses 65537 bytes");
        is_int(buf_len(b), 0, "nothing written for 65537");
        is_int(wire_frame_put(b, body, SIZE_MAX), -EMSGSIZE, "wire_frame_put refuses SIZE_MAX");

        is_int(wire_frame_put(b, "x", 1), 0, "wire_frame_put 1 byte");
        ok(buf_len(b) == 5 && memcmp(buf_data(b), "\0\0\0\1x", 5) == 0, "big-endian header");
        buf_reset(b);
        is_int(wire_frame_put(b, body, WIRE_FRAME_MAX), 0, "wire_frame_put 65536 bytes");
        ok(buf_len(b) == BUF_MAX && memcmp(buf_data(b), "\0\1\0\0", 4) == 0,
           "65536-byte frame header");
        is_int(wire_frame_peek(b, &payload, &len), 1, "what was put is peeked back");
        ok(len == WIRE_FRAME_MAX && memcmp(payload, body, len) == 0, "put/peek round trip");

        /* A frame that does not fit the output buffer is not half-written. */
        _cleanup_buf_ struct buf *small = new_buf(20);
        wire_frame_put(small, "0123456789", 6); /* 10 bytes used */
        is_int(wire_frame_put(small, "abcdefg", 7), -EMSGSIZE, "frame past the buffer maximum");
        is_int(buf_len(small), 10, "no header written without room for the body");
        is_int(wire_frame_put(small, "abcdef", 6), 0, "a frame that fits exactly");
        is_int(buf_len(small), 20, "buffer exactly full");
}

static void test_good_requests(void)
{
        struct wire_request req;
        enum wire_error err;
        const char *msg = NULL;

        memset(&req, 0x5a, sizeof(req));
        is_int(parse_str("{\"v\":1,\"op\":\"ping\"}", &req, &err), 0, "ping");
        is_int(req.op, WIRE_OP_PING, "ping op");
        is_int(req.n_scopes, 0, "ping has no scopes");
        wire_request_clear(&req);

        is_int(parse_str("{\"v\":1,\"op\":\"profiles\"}", &req, &err), 0, "profiles");
        is_int(req.op, WIRE_OP_PROFILES, "profiles op");
        wire_request_clear(&req);

        is_int(parse_str(" \t\r\n{ \"op\" : \"ping\" , \"v\" : 1 }\r\n\t ", &req, &err), 0,
               "whitespace around and inside, members in any order");
        is_int(req.op, WIRE_OP_PING, "ping with whitespace");
        wire_request_clear(&req);

        memset(&req, 0x5a, sizeof(req));
        is_int(parse_str("{\"v\":1,\"op\":\"token\",\"profile\":\"alerts\",\"scopes\":"
                         "[\"https://graph.microsoft.com/Mail.Send\"],\"min_ttl\":300}",
                         &req, &err),
               0, "token (design.md example)");
        is_int(req.op, WIRE_OP_TOKEN, "token op");
        is_str(req.profile, "alerts", "token profile");
        is_int(req.n_scopes, 1, "one scope");
        is_str(req.scopes[0], "https://graph.microsoft.com/Mail.Send", "the scope");
        is_int(req.min_ttl, 300, "min_ttl");
        wire_request_clear(&req);
        ok(req.n_scopes == 0 && req.scopes[0] == NULL && req.profile[0] == 0,
           "wire_request_clear empties the request");

        memset(&req, 0x5a, sizeof(req));
        is_int(parse_str("{\"op\":\"token\",\"profile\":\"alerts\",\"v\":1}", &req, &err), 0,
               "token with only a profile");
        is_str(req.profile, "alerts", "profile");
        is_int(req.n_scopes, 0, "no scopes means the profile's");
        is_int(req.min_ttl, 0, "no min_ttl means 0");
        wire_request_clear(&req);

        is_int(parse_str("{\"v\":1,\"op\":\"token\",\"profile\":\"a\",\"scopes\":[]}", &req, &err),
               0, "empty scopes array");
        is_int(req.n_scopes, 0, "empty scopes array: none");
        wire_request_clear(&req);

        is_int(parse_str("{\"v\":1,\"op\":\"token\",\"profile\":\"a\",\"min_ttl\":0}", &req, &err),
               0, "min_ttl 0");
        wire_request_clear(&req);
        is_int(
            parse_str("{\"v\":1,\"op\":\"token\",\"profile\":\"a\",\"min_ttl\":86400}", &req, &err),
            0, "min_ttl 86400 (the maximum)");
        is_int(req.min_ttl, 86400, "min_ttl 86400 value");
        wire_request_clear(&req);

        /* Limits, at the limit. */
        char text[4096];
        int n = snprintf(text, sizeof(text),
                         "{\"v\":1,\"op\":\"token\",\"profile\":\"%s\",\"scopes\":[",
                         "abcdefghijklmnopqrstuvwxyz0123456789._-abcdefghijklmnopqrstuvwxy");
        for (int i = 0; i < 16; i++)
                n +=
                    snprintf(text + n, sizeof(text) - (size_t)n, "%s\"scope-%d\"", i ? "," : "", i);
        snprintf(text + n, sizeof(text) - (size_t)n, "]}");
        is_int(parse_str(text, &req, &err), 0, "64-character profile and 16 scopes");
        is_int(strlen(req.profile), 64, "64-character profile kept whole");
        is_int(req.n_scopes, 16, "16 scopes");
        ok(req.n_scopes == 16 && strcmp(req.scopes[0], "scope-0") == 0 &&
               strcmp(req.scopes[15], "scope-15") == 0,
           "scopes kept in order");
        wire_request_clear(&req);

        char scope[300];
        memset(scope, 's', 256);
        scope[256] = 0;
        snprintf(text, sizeof(text),
                 "{\"v\":1,\"op\":\"token\",\"profile\":\"a\",\"scopes\":[\"%s\"]}", scope);
        is_int(parse_str(text, &req, &err), 0, "256-character scope");
        wire_request_clear(&req);

        /* 32 members is the limit; unread members are allowed. */
        n = snprintf(text, sizeof(text), "{\"v\":1,\"op\":\"ping\"");
        for (int i = 0; i < 30; i++)
                n += snprintf(text + n, sizeof(text) - (size_t)n, ",\"m%d\":%d", i, i);
        snprintf(text + n, sizeof(text) - (size_t)n, "}");
        is_int(parse_str(text, &req, &err), 0, "32 members");
        wire_request_clear(&req);

        /* JSON escapes are decoded before validation. */
        is_int(parse_str("{\"v\":1,\"op\":\"t\\u006fken\",\"profile\":\"al\\u0065rts\","
                         "\"scopes\":[\"https:\\/\\/graph.microsoft.com\\/.default\"]}",
                         &req, &err),
               0, "escaped characters");
        is_str(req.profile, "alerts", "escaped profile decoded");
        is_str(req.scopes[0], "https://graph.microsoft.com/.default", "escaped scope decoded");
        wire_request_clear(&req);

        /* An escaped backslash followed by "u0000" is text, not an escaped NUL. */
        is_int(parse_str("{\"v\":1,\"op\":\"ping\",\"note\":\"\\\\u0000\"}", &req, &err), 0,
               "escaped backslash then \"u0000\" is plain text");
        wire_request_clear(&req);

        /* Non-ASCII in members nobody reads is fine UTF-8. */
        is_int(parse_str("{\"v\":1,\"op\":\"ping\",\"note\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}",
                         &req, &err),
               0, "valid UTF-8 in an unread member");
        wire_request_clear(&req);

        /* The payload need not be terminated: only len bytes count. */
        static const char with_tail[] = "{\"v\":1,\"op\":\"ping\"}GARBAGE";
        is_int(parse(with_tail, 19, &req, &err, &msg), 0, "only len bytes are parsed");
        wire_request_clear(&req);
}

/* Reads tests/data/frames/bad-requests.txt and checks each line's error code. */
static void test_bad_requests_file(void)
{
        const char *root = secure_getenv("CREDBROKER_SOURCE_ROOT");
        char path[4096], line[8192];
        FILE *f;
        int cases = 0;

        snprintf(path, sizeof(path), "%s/tests/data/frames/bad-requests.txt", root ? root : ".");
        f = fopen(path, "re");
        if (!ok(f != NULL, "bad-requests.txt found (set CREDBROKER_SOURCE_ROOT)")) {
                printf("#   tried %s\n", path);
                return;
        }
        while (fgets(line, sizeof(line), f)) {
                size_t n = strlen(line);
                struct wire_request req;
                enum wire_error err = _WIRE_ERROR_MAX, want;
                const char *msg = NULL;
                char what[200];
                char *sp;

                if (n > 0 && line[n - 1] == '\n')
                        line[--n] = 0;
                if (n == 0 || line[0] == '#')
                        continue;
                sp = strchr(line, ' ');
                if (!sp || wire_error_from_string((*sp = 0, line), &want) < 0) {
                        ok(0, "bad-requests.txt: line starts with an error code and a space");
                        printf("#   line: %s\n", line);
                        continue;
                }
                const char *payload = sp + 1;
                size_t len = strlen(payload);
                memset(&req, 0x5a, sizeof(req));
                int r = parse(payload, len, &req, &err, &msg);
                snprintf(what, sizeof(what), "%.24s: %s", line, shorten(payload, len));
                if (!ok(r < 0 && err == want && msg && *msg, what))
                        printf("#   got r=%d error=%s message=%s\n", r,
                               r < 0 ? wire_error_to_string(err) : "(none)", msg ? msg : "(null)");
                if (r >= 0)
                        wire_request_clear(&req);
                cases++;
        }
        fclose(f);
        ok(cases >= 90, "bad-requests.txt has its cases");
}

static void test_bad_bytes(void)
{
        static const struct {
                const char *bytes;
                size_t len;
                const char *what;
        } cases[] = {
#define C(s, w) {s, sizeof(s) - 1, w}
            C("", "empty payload"),
            C(" ", "only whitespace"),
            C("\r\n\t ", "only whitespace (all kinds)"),
            C("{\"v\":1,\"op\":\"ping\"}\0", "a NUL after the object"),
            C("{\"v\":1,\"op\":\"ping\0\"}", "a NUL inside a string"),
            C("{\"v\":1,\0\"op\":\"ping\"}", "a NUL between members"),
            C("\0{\"v\":1,\"op\":\"ping\"}", "a leading NUL"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\xff\"}", "0xFF in a string"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\xc0\xaf\"}", "overlong '/'"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\xed\xa0\x80\"}", "a raw surrogate"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\xf4\x90\x80\x80\"}", "above U+10FFFF"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\xe2\x82\"}", "a truncated sequence"),
            C("{\"v\":1,\"op\":\"ping\"}\xc3", "a truncated sequence at the very end"),
            C("{\"v\":1,\"op\":\"ping\",\"\x80\":1}", "a bare continuation byte in a key"),
            C("{\"v\":1,\"op\":\"token\",\"profile\":\"al\xe9rts\"}", "Latin-1 profile"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\\ud800\"}", "an escaped lone surrogate"),
            C("{\"v\":1,\"op\":\"ping\",\"x\":\"\\udc00\\ud800\"}", "reversed surrogates"),
#undef C
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct wire_request req;
                enum wire_error err = _WIRE_ERROR_MAX;
                const char *msg = NULL;
                char what[160];

                memset(&req, 0x5a, sizeof(req));
                int r = parse(cases[i].bytes, cases[i].len, &req, &err, &msg);
                snprintf(what, sizeof(what), "refused as bad_request: %s", cases[i].what);
                if (!ok(r < 0 && err == WIRE_BAD_REQUEST && msg && *msg, what))
                        printf("#   got r=%d error=%d\n", r, (int)err);
                if (r >= 0)
                        wire_request_clear(&req);
        }

        /* Out-parameters are untouched on failure. */
        struct wire_request req, before;
        enum wire_error err;
        const char *msg;
        memset(&req, 0x5a, sizeof(req));
        memcpy(&before, &req, sizeof(req));
        parse_str("{\"v\":1,\"op\":\"token\",\"profile\":\"a\",\"scopes\":[\"ok\",\"not ok\"]}",
                  &req, &err);
        ok(memcmp(&req, &before, sizeof(req)) == 0, "a refused request leaves *ret untouched");

        /* A scope list refused half-way frees what it copied (the leak checker sees it). */
        int r = parse_str("{\"v\":1,\"op\":\"token\",\"profile\":\"a\",\"scopes\":[\"a\",\"b\","
                          "\"c\",7]}",
                          &req, &err);
        is_int(r, -EBADMSG, "refusal returns -EBADMSG");

        /* Deep nesting: refused (cJSON stops at its nesting limit) or, were the limit higher,
         * parsed as the ping it is; never a crash. */
        static const char head[] = "{\"v\":1,\"op\":\"ping\",\"x\":";
        size_t depth = 5000, n = sizeof(head) - 1;
        char *deep = malloc(sizeof(head) + 2 * depth + 1);
        if (!deep)
                abort();
        memcpy(deep, head, n);
        memset(deep + n, '[', depth);
        memset(deep + n + depth, ']', depth);
        n += 2 * depth;
        deep[n++] = '}';
        r = parse(deep, n, &req, &err, &msg);
        ok((r < 0 && err == WIRE_BAD_REQUEST) || (r == 0 && req.op == WIRE_OP_PING),
           "5000-deep nesting is refused or ignored");
        if (r == 0)
                wire_request_clear(&req);
        n = sizeof(head) - 1 + depth;
        r = parse(deep, n, &req, &err, &msg);
        ok(r < 0 && err == WIRE_BAD_REQUEST, "5000 unclosed '[' are refused");
        free(deep);
}

/* Parses the single frame at the front of out as a client would. */
static cJSON *take_reply(struct buf *out)
{
        const uint8_t *payload;
        size_t len;
        cJSON *json = NULL;

        if (wire_frame_peek(out, &payload, &len) != 1)
                return NULL;
        if (!utf8_is_valid(payload, len) || json_parse(payload, len, &json) < 0)
                json = NULL;
        wire_frame_consume(out, len);
        return json;
}

static int member_count(const cJSON *json)
{
        int n = 0;
        const cJSON *item;

        cJSON_ArrayForEach(item, json) n++;
        return n;
}

static int number_is(const cJSON *json, const char *key, double want)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);

        return cJSON_IsNumber(item) && item->valuedouble == want;
}

static void test_error_replies(void)
{
        _cleanup_buf_ struct buf *out = new_buf(BUF_MAX);
        static const char *const names[] = {
            "bad_request",  "unsupported_version", "unknown_op",  "unknown_profile", "denied",
            "rate_limited", "reauth_required",     "unavailable", "internal",
        };

        is_int(ELEMENTSOF(names), _WIRE_ERROR_MAX, "nine error codes");
        for (unsigned i = 0; i < _WIRE_ERROR_MAX; i++) {
                enum wire_error e = _WIRE_ERROR_MAX;
                is_str(wire_error_to_string((enum wire_error)i), names[i], "error code string");
                ok(wire_error_from_string(names[i], &e) == 0 && e == (enum wire_error)i,
                   "error code round trip");
        }
        is_str(wire_error_to_string(_WIRE_ERROR_MAX), "internal", "out of range is internal");
        is_str(wire_error_to_string((enum wire_error) - 1), "internal", "negative is internal");
        enum wire_error e = WIRE_DENIED;
        is_int(wire_error_from_string("nope", &e), -EINVAL, "unknown error string");
        is_int(wire_error_from_string("Denied", &e), -EINVAL, "error strings are exact");
        is_int(wire_error_from_string("", &e), -EINVAL, "empty error string");
        is_int(e, WIRE_DENIED, "failed lookup leaves ret untouched");

        for (unsigned i = 0; i < _WIRE_ERROR_MAX; i++) {
                _cleanup_json_ cJSON *json = NULL;
                char what[96];

                is_int(wire_reply_error(out, (enum wire_error)i, "Something went wrong.", 0), 0,
                       "wire_reply_error");
                json = take_reply(out);
                snprintf(what, sizeof(what), "error reply %s parses back", names[i]);
                ok(json && cJSON_IsObject(json), what);
                if (!json)
                        continue;
                ok(number_is(json, "v", 1), "v is 1");
                ok(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(json, "ok")), "ok is false");
                is_str(json_get_string(json, "error"), names[i], "error is the code string");
                is_str(json_get_string(json, "message"), "Something went wrong.", "message");
                ok(!cJSON_GetObjectItemCaseSensitive(json, "retry_after"), "no retry_after when 0");
                is_int(member_count(json), 4, "exactly v, ok, error, message");
                ok(!json_has_duplicate_keys(json), "no duplicate members");
        }
        is_int(buf_len(out), 0, "each reply was exactly one frame");

        _cleanup_json_ cJSON *json = NULL;
        is_int(wire_reply_error(out, WIRE_UNAVAILABLE, "The identity provider is down.", 30), 0,
               "error with retry_after");
        json = take_reply(out);
        ok(json && number_is(json, "retry_after", 30), "retry_after present when > 0");
        is_int(json ? member_count(json) : 0, 5, "v, ok, error, message, retry_after");
        cJSON_Delete(json);

        json = NULL;
        wire_reply_error(out, WIRE_RATE_LIMITED, "Slow down.", UINT32_MAX);
        json = take_reply(out);
        ok(json && number_is(json, "retry_after", 4294967295.0), "retry_after UINT32_MAX exact");
        cJSON_Delete(json);

        /* Messages are escaped, not spliced. */
        json = NULL;
        wire_reply_error(out, WIRE_DENIED, "A \"quoted\" \\ message\nwith caf\xc3\xa9.", 0);
        json = take_reply(out);
        is_str(json ? json_get_string(json, "message") : NULL,
               "A \"quoted\" \\ message\nwith caf\xc3\xa9.", "message with quotes round-trips");
        ok(json && member_count(json) == 4, "quotes did not inject members");
        cJSON_Delete(json);
        json = NULL;

        /* Replies append in order. */
        wire_reply_error(out, WIRE_DENIED, "first", 0);
        wire_reply_ping(out, "0.1.0");
        cJSON *first = take_reply(out), *second = take_reply(out);
        ok(first && second && strcmp(json_get_string(first, "message"), "first") == 0 &&
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(second, "ok")),
           "two replies come out in order");
        cJSON_Delete(first);
        cJSON_Delete(second);

        /* No room: the reply fails and nothing is half-written. */
        _cleanup_buf_ struct buf *tiny = new_buf(32);
        wire_frame_put(tiny, "x", 1);
        ok(wire_reply_error(tiny, WIRE_INTERNAL, "Internal error.", 0) < 0,
           "a reply that does not fit fails");
        is_int(buf_len(tiny), 5, "and writes nothing");
}

static void test_ping_profiles_replies(void)
{
        _cleanup_buf_ struct buf *out = new_buf(BUF_MAX);
        cJSON *json;
        const uint8_t *payload;
        size_t len;

        is_int(wire_reply_ping(out, "0.1.0"), 0, "wire_reply_ping");
        is_int(wire_frame_peek(out, &payload, &len), 1, "ping reply is one frame");
        ok(len == 35 && memcmp(payload, "{\"v\":1,\"ok\":true,\"version\":\"0.1.0\"}", len) == 0,
           "ping reply is compact JSON: {\"v\":1,\"ok\":true,\"version\":\"0.1.0\"}");
        json = take_reply(out);
        ok(json && number_is(json, "v", 1) &&
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "ok")),
           "ping reply v and ok");
        is_str(json ? json_get_string(json, "version") : NULL, "0.1.0", "ping reply version");
        is_int(json ? member_count(json) : 0, 3, "ping reply members");
        cJSON_Delete(json);

        char *names[] = {"alerts", "reports"};
        is_int(wire_reply_profiles(out, names, 2), 0, "wire_reply_profiles");
        json = take_reply(out);
        const cJSON *list = json ? cJSON_GetObjectItemCaseSensitive(json, "profiles") : NULL;
        ok(cJSON_IsArray(list) && cJSON_GetArraySize(list) == 2 &&
               strcmp(cJSON_GetArrayItem(list, 0)->valuestring, "alerts") == 0 &&
               strcmp(cJSON_GetArrayItem(list, 1)->valuestring, "reports") == 0,
           "profiles reply lists the names in order");
        ok(json && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "ok")) &&
               number_is(json, "v", 1) && member_count(json) == 3,
           "profiles reply v, ok, profiles");
        cJSON_Delete(json);

        is_int(wire_reply_profiles(out, NULL, 0), 0, "no profiles");
        json = take_reply(out);
        list = json ? cJSON_GetObjectItemCaseSensitive(json, "profiles") : NULL;
        ok(cJSON_IsArray(list) && cJSON_GetArraySize(list) == 0,
           "no profiles is an empty array, not a missing member");
        cJSON_Delete(json);
}

/* The mail ops: recognised, the profile checked, nothing else kept (the client layer parses the
 * rest); and base64 as mail.chunk carries it. */
static void test_mail_ops(void)
{
        struct wire_request req;
        enum wire_error err;
        const char *msg;

        is_int(parse_str(
                   "{\"v\":1,\"op\":\"token.drop\",\"profile\":\"alerts\",\"access_token\":\"x\"}",
                   &req, &err),
               0, "token.drop parses");
        is_int(req.op, WIRE_OP_TOKEN_DROP, "token.drop op");
        is_str(req.profile, "alerts", "token.drop profile");
        ok(parse_str("{\"v\":1,\"op\":\"token.drop\"}", &req, &err) < 0 && err == WIRE_BAD_REQUEST,
           "token.drop needs a profile");
        is_int(parse_str("{\"v\":1,\"op\":\"mail.submit\",\"profile\":\"alerts\",\"size\":3}", &req,
                         &err),
               0, "mail.submit parses");
        is_int(req.op, WIRE_OP_MAIL_SUBMIT, "mail.submit op");
        ok(parse_str("{\"v\":1,\"op\":\"mail.submit\",\"profile\":\"A/B\"}", &req, &err) < 0,
           "mail.submit: the profile is checked");
        is_int(parse_str("{\"v\":1,\"op\":\"mail.chunk\",\"data\":\"AAAA\"}", &req, &err), 0,
               "mail.chunk parses");
        is_int(req.op, WIRE_OP_MAIL_CHUNK, "mail.chunk op");
        is_int(parse_str("{\"v\":1,\"op\":\"mail.commit\"}", &req, &err), 0, "mail.commit parses");
        is_int(req.op, WIRE_OP_MAIL_COMMIT, "mail.commit op");
        (void)msg;

        static const struct {
                const char *plain, *b64;
        } vectors[] = {{"", ""},
                       {"f", "Zg=="},
                       {"fo", "Zm8="},
                       {"foo", "Zm9v"},
                       {"foob", "Zm9vYg=="},
                       {"fooba", "Zm9vYmE="},
                       {"foobar", "Zm9vYmFy"}};
        for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
                char enc[16];
                uint8_t dec[16];
                size_t n = 99;

                wire_base64_encode((const uint8_t *)vectors[i].plain, strlen(vectors[i].plain),
                                   enc);
                is_str(enc, vectors[i].b64, "base64 encodes RFC 4648's vector");
                ok(wire_base64_decode(vectors[i].b64, strlen(vectors[i].b64), dec, &n) == 0 &&
                       n == strlen(vectors[i].plain) && memcmp(dec, vectors[i].plain, n) == 0,
                   "base64 decodes RFC 4648's vector");
        }
        static const char *const bad[] = {"Zg=", "Zg==Zg==", "Z===", "Zm9v!A==", "Zm 9", "=AAA"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                uint8_t dec[16];
                size_t n;
                ok(wire_base64_decode(bad[i], strlen(bad[i]), dec, &n) == -EINVAL,
                   "bad base64 is refused");
        }
        uint8_t all[256], round[256];
        char enc[400];
        size_t n = 0;
        for (int i = 0; i < 256; i++)
                all[i] = (uint8_t)i;
        size_t len = wire_base64_encode(all, sizeof(all), enc);
        ok(wire_base64_decode(enc, len, round, &n) == 0 && n == 256 && memcmp(all, round, 256) == 0,
           "every byte value round-trips");
}

/* wire_request_parse_json() hands the frame's JSON object over on success (a 48 KiB mail.chunk
 * is parsed once, its "data" read from the tree), and nothing on a refusal. */
static void test_parse_json_hand_over(void)
{
        static const char prefix[] = "{\"v\":1,\"op\":\"mail.chunk\",\"data\":\"";
        size_t n = sizeof(prefix) - 1 + WIRE_MAIL_CHUNK_MAX + 2;
        _cleanup_free_ char *frame = malloc(n + 1);
        struct wire_request req;
        enum wire_error err;
        const char *msg;
        cJSON *json = (cJSON *)&json; /* must be overwritten */
        const char *data;

        if (!frame)
                abort();
        memcpy(frame, prefix, sizeof(prefix) - 1);
        memset(frame + sizeof(prefix) - 1, 'A', WIRE_MAIL_CHUNK_MAX);
        memcpy(frame + n - 2, "\"}", 3);
        is_int(wire_request_parse_json((const uint8_t *)frame, n, &req, &json, &err, &msg), 0,
               "a 48 KiB mail.chunk parses");
        is_int(req.op, WIRE_OP_MAIL_CHUNK, "its op");
        data = json_get_string(json, "data");
        ok(data && strlen(data) == WIRE_MAIL_CHUNK_MAX && data[0] == 'A',
           "the tree handed over carries the chunk's data");
        cJSON_Delete(json);
        wire_request_clear(&req);

        static const char drop[] =
            "{\"v\":1,\"op\":\"token.drop\",\"profile\":\"alerts\",\"access_token\":\"x.y\"}";
        is_int(
            wire_request_parse_json((const uint8_t *)drop, strlen(drop), &req, &json, &err, &msg),
            0, "token.drop parses");
        is_str(json_get_string(json, "access_token"), "x.y", "token.drop's token is in the tree");
        cJSON_Delete(json);
        wire_request_clear(&req);

        json = (cJSON *)&json;
        static const char bad[] = "{\"v\":1,\"op\":\"mail.submit\",\"profile\":\"A/B\"}";
        ok(wire_request_parse_json((const uint8_t *)bad, strlen(bad), &req, &json, &err, &msg) <
                   0 &&
               err == WIRE_BAD_REQUEST && !json,
           "a refused request hands over no tree");
        json = (cJSON *)&json;
        ok(wire_request_parse_json((const uint8_t *)"{", 1, &req, &json, &err, &msg) < 0 && !json,
           "invalid JSON hands over no tree");
        is_int(wire_request_parse_json((const uint8_t *)drop, strlen(drop), &req, NULL, &err, &msg),
               0, "ret_json may be NULL");
        wire_request_clear(&req);
}

static void test_token_reply(void)
{
        _cleanup_buf_ struct buf *out = new_buf(BUF_MAX);
        char *scopes[] = {"https://graph.microsoft.com/Mail.Send", "offline_access"};
        struct wire_token_reply t = {
            .access_token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature",
            .expires_at = 1795856400,
            .expires_in = 3599,
            .scopes = scopes,
            .n_scopes = 2,
            .account = "alerts",
            .mailbox = "alerts@contoso.com",
            .delegated = true,
            .ca_file = "/etc/credbroker/ca.pem",
        };
        const uint8_t *payload;
        size_t len;
        cJSON *json;

        is_int(wire_reply_token(out, &t), 0, "wire_reply_token");
        is_int(wire_frame_peek(out, &payload, &len), 1, "token reply is one frame");
        ok(memmem(payload, len, "\"expires_at\":1795856400", 23) &&
               memmem(payload, len, "\"expires_in\":3599", 17),
           "times are written as plain integers");
        json = take_reply(out);
        ok(json != NULL, "token reply parses back");
        if (json) {
                ok(number_is(json, "v", 1), "v");
                ok(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "ok")), "ok is true");
                is_str(json_get_string(json, "token_type"), "Bearer", "token_type");
                is_str(json_get_string(json, "access_token"), t.access_token, "access_token");
                ok(number_is(json, "expires_at", 1795856400), "expires_at");
                ok(number_is(json, "expires_in", 3599), "expires_in");
                const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "scopes");
                ok(cJSON_IsArray(list) && cJSON_GetArraySize(list) == 2 &&
                       strcmp(cJSON_GetArrayItem(list, 0)->valuestring, scopes[0]) == 0 &&
                       strcmp(cJSON_GetArrayItem(list, 1)->valuestring, scopes[1]) == 0,
                   "scopes");
                is_str(json_get_string(json, "account"), "alerts", "account");
                is_str(json_get_string(json, "mailbox"), "alerts@contoso.com", "mailbox");
                ok(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "delegated")),
                   "delegated (mail: /me applies)");
                is_str(json_get_string(json, "ca_file"), "/etc/credbroker/ca.pem", "ca_file");
                is_int(member_count(json), 11,
                       "the nine members of design.md, delegated and ca_file");
                cJSON_Delete(json);
        }

        t.mailbox = NULL;
        t.ca_file = NULL;
        t.delegated = false;
        t.n_scopes = 0;
        t.expires_at = 253402300799ULL; /* 9999-12-31T23:59:59Z */
        is_int(wire_reply_token(out, &t), 0, "token reply without mailbox");
        is_int(wire_frame_peek(out, &payload, &len), 1, "second token reply is one frame");
        ok(memmem(payload, len, "\"expires_at\":253402300799", 25) != NULL,
           "a 12-digit time is still a plain integer");
        json = take_reply(out);
        ok(json && !cJSON_GetObjectItemCaseSensitive(json, "mailbox"), "mailbox absent when NULL");
        ok(json && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(json, "scopes")) &&
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(json, "scopes")) == 0,
           "no scopes is an empty array");
        ok(json && number_is(json, "expires_at", 253402300799.0), "year-9999 expires_at exact");
        ok(json && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(json, "delegated")) &&
               !cJSON_GetObjectItemCaseSensitive(json, "ca_file"),
           "delegated false, no ca_file when the broker has no CA bundle");
        is_int(json ? member_count(json) : 0, 9, "nine members without mailbox and ca_file");
        cJSON_Delete(json);

        /* A token too big for a frame is refused, and nothing is written. */
        char *huge = malloc(WIRE_FRAME_MAX + 1);
        memset(huge, 'A', WIRE_FRAME_MAX);
        huge[WIRE_FRAME_MAX] = 0;
        t.access_token = huge;
        is_int(wire_reply_token(out, &t), -EMSGSIZE, "reply larger than a frame: -EMSGSIZE");
        is_int(buf_len(out), 0, "nothing written");
        free(huge);
}

static void test_put_json(void)
{
        _cleanup_buf_ struct buf *out = new_buf(BUF_MAX);
        _cleanup_json_ cJSON *msg = cJSON_CreateObject();
        cJSON *back;

        cJSON_AddNumberToObject(msg, "v", 1);
        cJSON_AddStringToObject(msg, "op", "ping");
        is_int(wire_put_json(out, msg), 0, "wire_put_json");
        back = take_reply(out);
        ok(back && cJSON_Compare(back, msg, true), "wire_put_json round trip");
        cJSON_Delete(back);

        /* What a client sends is what the broker parses. */
        struct wire_request req;
        enum wire_error err;
        const char *m;
        const uint8_t *payload;
        size_t len;
        wire_put_json(out, msg);
        wire_frame_peek(out, &payload, &len);
        is_int(wire_request_parse(payload, len, &req, &err, &m), 0, "client frame parses");
        is_int(req.op, WIRE_OP_PING, "client frame is a ping");
        wire_request_clear(&req);
}

int main(void)
{
        json_init();
        test_frame_lengths();
        test_frame_sequences();
        test_frame_socket();
        test_frame_put();
        test_good_requests();
        test_bad_requests_file();
        test_bad_bytes();
        test_error_replies();
        test_ping_profiles_replies();
        test_token_reply();
        test_mail_ops();
        test_parse_json_hand_over();
        test_put_json();
        return done_testing();
}
