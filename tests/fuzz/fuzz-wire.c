/* Fuzz target for the wire protocol (style.md rule 10): the input is read as a client's byte
 * stream (framing, then each frame as a request, then the reply the broker would build) and as
 * one bare request payload. Built with -DFUZZING_ENGINE it is a libFuzzer target; otherwise
 * main() replays files and directories given on the command line (or stdin), so the corpus
 * runs in `meson test --suite fuzz`. Any broken invariant abort()s. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "util.h"
#include "wire.h"

#define IN_MAX  (WIRE_HEADER_SIZE + WIRE_FRAME_MAX)
#define OUT_MAX (2 * IN_MAX)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-wire: invariant broken: %s\n", what);
                abort();
        }
}

/* Every reply must be exactly one frame of valid UTF-8 JSON, an object with "v":1 and "ok". */
static void check_reply(struct buf *out)
{
        const uint8_t *payload;
        size_t len;
        cJSON *json = NULL;

        check(wire_frame_peek(out, &payload, &len) == 1, "a reply is one whole frame");
        check(utf8_is_valid(payload, len), "a reply is valid UTF-8");
        check(json_parse(payload, len, &json) == 0, "a reply is valid JSON");
        check(cJSON_IsObject(json), "a reply is an object");
        check(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(json, "v")), "a reply has v");
        check(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(json, "ok")), "a reply has ok");
        check(!json_has_duplicate_keys(json), "a reply has no duplicate members");
        cJSON_Delete(json);
        check(wire_frame_consume(out, len) == 0, "a reply can be consumed");
        check(buf_len(out) == 0, "a reply is exactly one frame");
}

/* What the broker does with one frame: parse, validate, and answer. */
static void handle_request(const uint8_t *payload, size_t len, struct buf *out)
{
        struct wire_request req;
        enum wire_error error;
        const char *message = NULL;
        int r;

        r = wire_request_parse(payload, len, &req, &error, &message);
        if (r < 0) {
                check(message && *message, "a refusal has a message");
                check((unsigned)error < _WIRE_ERROR_MAX, "a refusal has a known code");
                check(wire_reply_error(out, error, message, 0) == 0, "an error reply fits");
                check_reply(out);
                return;
        }

        check(len > 0 && utf8_is_valid(payload, len), "only valid UTF-8 is accepted");
        switch (req.op) {
        case WIRE_OP_PING:
                check(wire_reply_ping(out, "0.1.0") == 0, "a ping reply fits");
                break;
        case WIRE_OP_PROFILES: {
                char *names[] = {"alerts", "reports"};
                check(wire_reply_profiles(out, names, 2) == 0, "a profiles reply fits");
                break;
        }
        case WIRE_OP_TOKEN: {
                check(name_is_valid(req.profile), "an accepted profile is a valid name");
                check(req.n_scopes <= WIRE_MAX_SCOPES, "at most 16 scopes");
                for (size_t i = 0; i < req.n_scopes; i++)
                        check(scope_is_valid(req.scopes[i]), "an accepted scope is valid");
                check(req.min_ttl <= WIRE_MIN_TTL_MAX, "min_ttl is in range");
                struct wire_token_reply t = {
                    .access_token = "eyJ0eXAiOiJKV1QifQ.e30.c2ln",
                    .expires_at = 1795856400,
                    .expires_in = 3599,
                    .scopes = req.scopes,
                    .n_scopes = req.n_scopes,
                    .account = req.profile,
                    .mailbox = "alerts@contoso.com",
                };
                check(wire_reply_token(out, &t) == 0, "a token reply fits");
                break;
        }
        default:
                check(false, "an accepted request has a known op");
        }
        check_reply(out);
        wire_request_clear(&req);
}

/* Feeds the stream in chunks of the given sizes (cycling), handles each whole frame, and stops
 * at the first framing error, as the broker does before closing. Returns a digest of what came
 * out, so different chunkings can be compared. */
static uint64_t run_stream(const uint8_t *data, size_t size, const size_t *chunks, size_t n_chunks,
                           struct buf *in, struct buf *out)
{
        uint64_t digest = 14695981039346656037ULL;
        size_t pos = 0, c = 0;

        buf_reset(in);
        buf_reset(out);
        while (pos < size) {
                size_t n = chunks[c++ % n_chunks];
                size_t room = buf_max(in) - buf_len(in);

                if (n > size - pos)
                        n = size - pos;
                if (n > room)
                        n = room;
                check(n > 0, "the input buffer drains");
                check(buf_put(in, data + pos, n) == 0, "a chunk within max fits");
                pos += n;

                for (;;) {
                        const uint8_t *payload;
                        size_t len;
                        int r = wire_frame_peek(in, &payload, &len);

                        if (r == 0)
                                break;
                        if (r < 0) {
                                check(r == -EBADMSG || r == -EMSGSIZE, "framing error codes");
                                /* Reply bad_request, then close. */
                                check(wire_reply_error(out, WIRE_BAD_REQUEST, "Bad frame length.",
                                                       0) == 0,
                                      "a framing error reply fits");
                                check_reply(out);
                                return digest ^ (uint64_t)-r;
                        }
                        check(len >= 1 && len <= WIRE_FRAME_MAX, "frame length in range");
                        check(buf_len(in) >= WIRE_HEADER_SIZE + len, "a frame is all there");
                        for (size_t i = 0; i < len; i++)
                                digest = (digest ^ payload[i]) * 1099511628211ULL;
                        digest = (digest ^ len) * 1099511628211ULL;
                        handle_request(payload, len, out);
                        check(wire_frame_consume(in, len) == 0, "a frame can be consumed");
                }
        }
        return digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool initialized;
        static const size_t all_at_once[] = {SIZE_MAX};
        static const size_t trickle[] = {1, 3, 2, 7, 1, 1, 5};
        struct buf *in = NULL, *out = NULL;

        if (!initialized) {
                json_init();
                initialized = true;
        }
        if (buf_new(IN_MAX, &in) < 0 || buf_new(OUT_MAX, &out) < 0)
                abort();

        /* As a stream: how it is split across reads must not change what comes out. */
        uint64_t a = run_stream(data, size, all_at_once, 1, in, out);
        uint64_t b = run_stream(data, size, trickle, sizeof(trickle) / sizeof(trickle[0]), in, out);
        check(a == b, "framing does not depend on how the stream is split");

        /* As one bare request payload. */
        buf_reset(out);
        handle_request(data, size, out);

        buf_free(in);
        buf_free(out);
        return 0;
}
