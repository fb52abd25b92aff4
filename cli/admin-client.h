/* Client side of the broker's admin socket (docs/admin-protocol.md): connect, send a request
 * (secrets built and sent from wiped memory), read one or more validated replies. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "cleanup.h"
#include "secret.h"

/* Every reply but the end of an interactive sign-in comes within this. */
#define ADMIN_REPLY_TIMEOUT_MS 120000

struct admin_conn;

/* --admin-socket, else $CREDBROKER_ADMIN_SOCKET, else the configuration's admin_socket, else the
 * default. config_option as for cli_config_path(); a missing default configuration is fine. */
const char *admin_socket_path(const char *option, const char *config_option);

/* 0 when connected; -ENOENT or -ECONNREFUSED when nothing listens there (callers may fall back to
 * opening the token); another negative errno otherwise. Prints nothing. */
int admin_connect(const char *path, struct admin_conn **ret);
void admin_close(struct admin_conn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct admin_conn *, admin_close)
#define _cleanup_admin_ _cleanup_(admin_closep)

/* Connects and prints why not (the broker not running, no permission): 0 or a sysexits code. */
int admin_connect_or_report(const char *path, struct admin_conn **ret);

/* Sends request as one frame. When secret_key is set, the member secret_key with the value of
 * secret is added to the object in secret memory only, and that memory is wiped once sent.
 * Returns 0 or a sysexits code after printing why. */
int admin_send(struct admin_conn *c, const cJSON *request, const char *secret_key,
               const struct secret *secret);

/* Reads the next reply: a JSON object with "v":1 and a boolean "ok". Waits at most timeout_ms
 * (< 0: ADMIN_REPLY_TIMEOUT_MS). 0 with *ret set; -ETIMEDOUT when nothing whole came in time
 * (call again to keep waiting); else a sysexits code after printing why (the broker closed the
 * connection, a malformed reply). */
int admin_read_reply(struct admin_conn *c, int timeout_ms, cJSON **ret);

/* For commands that can also open the token directly (account list, show, remove): 0 when
 * connected, 1 when nothing listens (fall back to the token), else a sysexits code after
 * printing why. verbose says on stderr which path is taken. */
int admin_connect_or_fallback(const char *path, bool verbose, struct admin_conn **ret);

/* Sends request on c and reads one reply of either kind. 0 or a sysexits code. */
int admin_exchange(struct admin_conn *c, const cJSON *request, cJSON **ret_reply);

/* admin_exchange() for an "ok" reply: a reply with "ok":false is reported and its exit code
 * returned. */
int admin_exchange_ok(struct admin_conn *c, const cJSON *request, cJSON **ret_reply);

/* One request, one reply of either kind: connects, sends, reads. 0 or a sysexits code after
 * printing why. */
int admin_request(const char *path, const cJSON *request, cJSON **ret_reply);

/* One request, one reply: connects, sends, reads. A reply with "ok":false is reported and its
 * exit code returned. */
int admin_call(const char *path, const cJSON *request, cJSON **ret_reply);

/* For an "ok":false reply: prints "credbroker: <message> (<code>)" and returns the exit code the
 * admin protocol's error code maps to (docs/credbroker.1.md). */
int admin_report_error(const cJSON *reply);

/* A new request object {"v":1,"op":op}; NULL when out of memory. */
cJSON *admin_request_new(const char *op);
