/* libcredbroker: a small C client of credbrokerd's two sockets (design.md §3,
 * docs/admin-protocol.md, docs/libcredbroker.md). It finds the socket, frames requests (a 4-byte
 * big-endian length and a UTF-8 JSON object of at most CREDBROKER_FRAME_MAX bytes), asks for
 * tokens and makes admin calls. It never prints and never exits: every function returns 0 (or a
 * count) or a negative errno, and fills a struct credbroker_error the caller may print.
 *
 * Messages are cJSON objects (libcjson). The library calls no cJSON_InitHooks(); a program that
 * keeps tokens in cJSON trees should install wiping hooks of its own. Access tokens handed out by
 * credbroker_get_token() live in locked memory that is wiped when freed. Not thread-safe per
 * connection; separate connections may be used from separate threads. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CREDBROKER_PROTOCOL_VERSION 1
#define CREDBROKER_FRAME_MAX        65536u /* the longest frame payload either side accepts */
#define CREDBROKER_SECRET_MAX       1024u  /* the longest secret an admin request may carry */

/* Which stage of a call failed; with the returned errno, enough to say what went wrong. */
enum credbroker_failure {
        CREDBROKER_FAILURE_NONE,
        CREDBROKER_FAILURE_REQUEST,   /* the request could not be built: -ENOMEM, -EMSGSIZE (larger
                                       * than a frame), -EINVAL (a secret not UTF-8, a NUL) */
        CREDBROKER_FAILURE_CONNECT,   /* connect(): -ENOENT or -ECONNREFUSED (nothing listens),
                                       * -EACCES, -ENAMETOOLONG, -EAGAIN (timed out) ... */
        CREDBROKER_FAILURE_SEND,      /* writing the request: -EPIPE, -ETIMEDOUT ... */
        CREDBROKER_FAILURE_RECEIVE,   /* reading the reply: the errno of recv() or poll() */
        CREDBROKER_FAILURE_TIMEOUT,   /* no whole reply in time: -ETIMEDOUT (the connection is
                                       * still usable: call credbroker_receive() again) */
        CREDBROKER_FAILURE_CLOSED,    /* the broker closed the connection before a whole reply:
                                       * -ECONNRESET */
        CREDBROKER_FAILURE_MALFORMED, /* a zero or oversized frame, not a JSON object, or (strict
                                       * replies) not the protocol's envelope: -EBADMSG */
        CREDBROKER_FAILURE_REFUSED,   /* the broker answered "ok":false; code and message are its
                                       * words, the errno is derived from the code */
};

struct credbroker_error {
        enum credbroker_failure failure;
        int error;            /* the negative errno the call returned */
        char code[48];        /* REFUSED: the broker's error code ("denied"); else empty */
        char message[512];    /* one sentence, no newline; REFUSED: the broker's message, which may
                               * quote an upstream server: filter control characters before
                               * printing it to a terminal */
        uint64_t retry_after; /* REFUSED: the broker's retry_after in seconds, else 0 */
};

/* ---- finding the socket ---- */

enum credbroker_socket {
        CREDBROKER_SOCKET_CLIENT, /* $CREDBROKER_SOCKET, the configuration's socket */
        CREDBROKER_SOCKET_ADMIN,  /* $CREDBROKER_ADMIN_SOCKET, the configuration's admin_socket */
};

/* What the caller's configuration names for that socket, or NULL (none, or no configuration). */
typedef const char *credbroker_configured_socket_fn(enum credbroker_socket which, void *userdata);

/* The socket to use: option when not NULL, else the environment variable when set and not
 * empty (read with secure_getenv()), else what configured returns (called only then; may be
 * NULL), else the built-in default (/run/credbroker/socket or /run/credbroker/admin.socket). */
const char *credbroker_socket_path(enum credbroker_socket which, const char *option,
                                   credbroker_configured_socket_fn *configured, void *userdata);

/* ---- one connection ---- */

struct credbroker_conn;

/* Connects to the Unix socket at path. timeout_ms >= 0 bounds a connect() that waits for a full
 * listen backlog (-EAGAIN when it runs out); < 0 waits as long as the kernel does. */
int credbroker_connect(const char *path, int timeout_ms, struct credbroker_conn **ret,
                       struct credbroker_error *err);
/* Closes the connection and wipes what it buffered. NULL is fine. */
void credbroker_close(struct credbroker_conn *c);

/* Sends request (a JSON object) as one frame, waiting at most timeout_ms (< 0: no limit) for the
 * socket to take it. */
int credbroker_send(struct credbroker_conn *c, const cJSON *request, int timeout_ms,
                    struct credbroker_error *err);

/* The same, with the member key set to the string secret (len bytes of UTF-8 without a NUL, at
 * most CREDBROKER_SECRET_MAX): the frame is built in locked memory, escaping the secret straight
 * into it, and wiped once sent, so no copy of the secret sits in ordinary heap memory. request
 * must not have that member already. */
int credbroker_send_secret(struct credbroker_conn *c, const cJSON *request, const char *key,
                           const char *secret, size_t len, int timeout_ms,
                           struct credbroker_error *err);

/* Flags of credbroker_receive(). */
#define CREDBROKER_RECEIVE_STRICT                                                                  \
        1u /* the admin socket's envelope: UTF-8, no duplicate member,                             \
            * "v":1, a boolean "ok", an "error" string when not ok */

/* Waits at most timeout_ms (< 0: no limit) for the next whole reply frame and parses it: 0 with
 * *ret a JSON object the caller frees with cJSON_Delete(). Replies of either kind ("ok" true or
 * false) are returned as they are. -ETIMEDOUT (FAILURE_TIMEOUT) leaves the connection usable. */
int credbroker_receive(struct credbroker_conn *c, int timeout_ms, unsigned flags, cJSON **ret,
                       struct credbroker_error *err);

/* ---- requests ---- */

/* {"v":1,"op":op}; NULL when out of memory. */
cJSON *credbroker_request_new(const char *op);

/* A token request: {"v":1,"op":"token","profile":...,"scopes":[...],"min_ttl":...}, the scopes
 * and min_ttl only when given (n_scopes > 0, min_ttl >= 0). NULL when out of memory. */
cJSON *credbroker_token_request_new(const char *profile, const char *const *scopes, size_t n_scopes,
                                    long min_ttl);

/* One request and its reply on the client socket, on a fresh connection. Within timeout_ms it
 * tries again, with backoff and jitter, while the listen backlog is full or the socket refuses
 * (at most three times: a stale socket file must fail fast), and when the broker answers
 * "rate_limited" (honouring its retry_after; the last refusal is returned when waiting would
 * pass the deadline). 0 with the reply whatever it says, or a negative errno. */
int credbroker_call(const char *path, const cJSON *request, int timeout_ms, cJSON **ret_reply,
                    struct credbroker_error *err);

/* One request and one strictly checked reply on the admin socket: connects, sends, reads.
 * 0 with the reply whatever it says, or a negative errno. */
int credbroker_admin_call(const char *path, const cJSON *request, int timeout_ms, cJSON **ret_reply,
                          struct credbroker_error *err);

/* For a reply with "ok":false: fills err (FAILURE_REFUSED, the code, the message, retry_after)
 * and returns the negative errno the code maps to: denied and sign_in_failed -EACCES,
 * unknown_profile and not_found -ENOENT, exists -EEXIST, reauth_required -EKEYEXPIRED,
 * needs_config -ENOKEY, rate_limited -EBUSY, unavailable -EAGAIN, bad_request -EINVAL,
 * unknown_op and unsupported_version -EOPNOTSUPP, anything else -EIO. 0 for "ok":true. */
int credbroker_reply_error(const cJSON *reply, struct credbroker_error *err);

/* ---- tokens ---- */

struct credbroker_token;

/* Asks for a token (credbroker_call() with a token request); a refusal is an error (see
 * credbroker_reply_error()). The access token is copied into locked memory and wiped from the
 * parsed reply. */
int credbroker_get_token(const char *path, const char *profile, const char *const *scopes,
                         size_t n_scopes, long min_ttl, int timeout_ms,
                         struct credbroker_token **ret, struct credbroker_error *err);
const char *credbroker_token_access_token(const struct credbroker_token *t);
uint64_t credbroker_token_expires_at(const struct credbroker_token *t); /* unix seconds */
const char *credbroker_token_account(const struct credbroker_token *t);
const char *credbroker_token_mailbox(const struct credbroker_token *t); /* NULL when none */
/* The account's Graph base URL (the reply's "graph"); NULL when the broker named none. */
const char *credbroker_token_graph(const struct credbroker_token *t);
/* The account signs in a user (a delegated flow): Graph's /me is that user. */
bool credbroker_token_delegated(const struct credbroker_token *t);
/* The CA bundle the broker itself trusts for HTTPS ([identity] ca_bundle); NULL: the system's.
 * The CLI needs nothing from the broker's root-only configuration to reach Graph. */
const char *credbroker_token_ca_file(const struct credbroker_token *t);
/* Wipes and frees. NULL is fine. */
void credbroker_token_free(struct credbroker_token *t);

/* ---- mail (docs/mail-spool.md) ---- */

/* Graph answered 401 InvalidAuthenticationToken for access_token: asks the broker to drop it from
 * its cache (token.drop), so the next credbroker_get_token() brings a fresh one. 0 whether or
 * not it was dropped (the broker drops one per account a minute at most); a refusal as for
 * tokens (the same policy decision). */
int credbroker_token_drop(const char *socket, const char *profile, const char *access_token,
                          struct credbroker_error *err);

/* Hands a complete message (RFC 5322) to the broker's spool (mail.submit, chunked on one
 * connection) under the policy decision of a token request for profile; 0 once the broker has
 * it on disk, with *ret_queue_id (free()) when not NULL. -ECONNREFUSED / -ENOENT: the broker is
 * not running (a caller may use the maildrop); -EAGAIN with code "unavailable": the spool is
 * full or cannot take it now (sendmail exits 75); -EACCES: denied. */
int credbroker_mail_submit(const char *socket, const char *profile, const uint8_t *msg, size_t len,
                           const char *message_id, size_t n_recipients, char **ret_queue_id,
                           struct credbroker_error *err);

#ifdef __cplusplus
}
#endif
