/* Wire protocol of the client and admin sockets (design.md §3): frames of a 4-byte big-endian
 * length (1..65536) and that many bytes of a UTF-8 JSON object carrying "v":1. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "util.h"

#define WIRE_VERSION     1
#define WIRE_FRAME_MAX   65536u
#define WIRE_HEADER_SIZE 4u
#define WIRE_MAX_SCOPES  16u
#define WIRE_MIN_TTL_MAX 86400u
#define WIRE_MAX_MEMBERS 32u

/* Stable error codes; their strings are the protocol. */
enum wire_error {
        WIRE_BAD_REQUEST,
        WIRE_UNSUPPORTED_VERSION,
        WIRE_UNKNOWN_OP,
        WIRE_UNKNOWN_PROFILE,
        WIRE_DENIED,
        WIRE_RATE_LIMITED,
        WIRE_REAUTH_REQUIRED,
        WIRE_UNAVAILABLE,
        WIRE_INTERNAL,
        _WIRE_ERROR_MAX,
};

const char *wire_error_to_string(enum wire_error e);
int wire_error_from_string(const char *s, enum wire_error *ret);

/* The admin socket's error codes (docs/admin-protocol.md): design.md §3's that it uses, and its
 * own. Stable too; their strings are the protocol. */
enum admin_error {
        ADMIN_BAD_REQUEST,
        ADMIN_UNSUPPORTED_VERSION,
        ADMIN_UNKNOWN_OP,
        ADMIN_DENIED,
        ADMIN_REAUTH_REQUIRED,
        ADMIN_UNAVAILABLE,
        ADMIN_INTERNAL,
        ADMIN_NOT_FOUND,
        ADMIN_EXISTS,
        ADMIN_NEEDS_CONFIG,
        ADMIN_SIGN_IN_FAILED,
        _ADMIN_ERROR_MAX,
};

const char *admin_error_to_string(enum admin_error e);
int admin_error_from_string(const char *s, enum admin_error *ret);

/* Framing. wire_frame_peek() looks at the front of `in`: 1 and the payload when a whole frame
 * is there (consume it with wire_frame_consume() once done with the payload), 0 when more bytes
 * are needed, -EBADMSG for a zero length, -EMSGSIZE for a length above WIRE_FRAME_MAX. */
int wire_frame_peek(const struct buf *in, const uint8_t **ret_payload, size_t *ret_len);
int wire_frame_consume(struct buf *in, size_t payload_len);
int wire_frame_put(struct buf *out, const void *payload, size_t len);

enum wire_op {
        WIRE_OP_PING,
        WIRE_OP_TOKEN,
        WIRE_OP_PROFILES,
        /* Mail (docs/mail-spool.md): wire_request_parse() checks the op and the profile only;
         * the client layer reads the rest of these frames (an access token, a chunk of base64)
         * from the tree wire_request_parse_json() hands over, so none of it is kept in a
         * wire_request. */
        WIRE_OP_TOKEN_DROP,
        WIRE_OP_MAIL_SUBMIT,
        WIRE_OP_MAIL_CHUNK,
        WIRE_OP_MAIL_COMMIT,
};

/* mail.chunk: at most this much base64 in "data" (48 KiB), so a chunk fits a frame. */
#define WIRE_MAIL_CHUNK_MAX 49152u

/* Standard base64 with padding (RFC 4648 §4), as mail.chunk carries it. Encoding writes
 * 4 * ceil(len / 3) characters and a NUL into out (size at least that + 1). Decoding takes
 * whole quanta only: -EINVAL for any other character, length or padding; out holds at least
 * len / 4 * 3 bytes. */
size_t wire_base64_encode(const uint8_t *in, size_t len, char *out);
int wire_base64_decode(const char *in, size_t len, uint8_t *out, size_t *ret_len);

/* A client request, validated: the profile is a valid name, each scope a valid scope. */
struct wire_request {
        enum wire_op op;
        char profile[NAME_MAX_LEN + 1];
        char *scopes[WIRE_MAX_SCOPES]; /* owned; none means "the profile's scopes" */
        size_t n_scopes;
        uint32_t min_ttl;
};

/* Parses and validates one frame payload. On failure returns a negative errno and sets
 * *ret_error and *ret_message (a static sentence safe to send to the peer). */
int wire_request_parse(const uint8_t *payload, size_t len, struct wire_request *ret,
                       enum wire_error *ret_error, const char **ret_message);
/* The same, and on success hands over the parsed JSON object in *ret_json (the caller's to
 * cJSON_Delete()), so that the mail ops' other members are read without parsing the frame
 * again. *ret_json is NULL on failure. ret_json may be NULL: wire_request_parse(). */
struct cJSON;
int wire_request_parse_json(const uint8_t *payload, size_t len, struct wire_request *ret,
                            struct cJSON **ret_json, enum wire_error *ret_error,
                            const char **ret_message);
void wire_request_clear(struct wire_request *r);

/* Replies, each appended to out as one frame. */
struct wire_token_reply {
        const char *access_token;
        uint64_t expires_at; /* unix seconds */
        uint64_t expires_in; /* seconds */
        char *const *scopes;
        size_t n_scopes;
        const char *account;
        const char *mailbox; /* may be NULL */
        const char *graph;   /* the account's Graph base URL (its cloud's); may be NULL */
        bool delegated;      /* the account's flow signs in a user (Graph's /me applies) */
        const char *ca_file; /* the broker's [identity] ca_bundle; NULL: none configured */
};

int wire_reply_error(struct buf *out, enum wire_error e, const char *message, uint32_t retry_after);
int wire_reply_ping(struct buf *out, const char *version);
int wire_reply_token(struct buf *out, const struct wire_token_reply *t);
int wire_reply_profiles(struct buf *out, char *const *names, size_t n);

/* Prints a cJSON object unformatted and appends it as one frame (used by clients too). */
struct cJSON;
int wire_put_json(struct buf *out, const struct cJSON *message);

/* The reply envelope of both sockets: {"v":1,"ok":ok}, to add the reply's fields to, and
 * {"v":1,"ok":false,"error":code,"message":message}. NULL when out of memory. */
struct cJSON *wire_reply_new(bool ok);
struct cJSON *wire_error_reply_new(const char *code, const char *message);
