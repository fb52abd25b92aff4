/* Client side of the broker's socket protocol (design.md §3), used by every CLI command. */
#pragma once

#include <cjson/cJSON.h>

#include "wire.h"

/* sysexits.h codes the CLI promises (docs/credbroker.1.md). */
#define EXIT_USAGE       64
#define EXIT_DATAERR     65
#define EXIT_NOINPUT     66
#define EXIT_UNAVAILABLE 69 /* the broker is not running */
#define EXIT_SOFTWARE    70
#define EXIT_TEMPFAIL    75
#define EXIT_NOPERM      77
#define EXIT_CONFIG      78

/* --socket, else $CREDBROKER_SOCKET, else the socket of the configuration named by --config or
 * $CREDBROKER_CONFIG (or of the default configuration when it exists), else the default path:
 * the same order admin_socket_path() follows for the admin socket. */
const char *client_socket_path(const char *option, const char *config_option);

/* Connects, sends one request and reads its reply. On failure prints one line and returns the
 * exit code to use (never 0). */
int client_call(const char *socket_path, const cJSON *request, cJSON **ret_reply);

/* Prints "credbroker: <message> (<code>; retry after N s)" for a refusal, the message (fallback
 * when there is none) and the code cut at max_message and max_code bytes, control characters
 * replaced. */
void client_print_refusal(const cJSON *reply, const char *fallback, size_t max_message,
                          size_t max_code);

/* For a reply with "ok":false: prints "credbroker: <message> (<code>)" and returns the exit code
 * the code maps to. */
int client_report_error(const cJSON *reply);

/* Asks for a token; returns 0 with the broker's reply whatever it says (ok or an error), or the
 * exit code of a failure to get one (printed). */
int client_request_token(const char *socket_path, const char *profile, char *const *scopes,
                         size_t n_scopes, long min_ttl, cJSON **ret_reply);

/* Asks for a token; on success *ret_reply holds the whole reply ("access_token", "mailbox"...). */
int client_get_token(const char *socket_path, const char *profile, char *const *scopes,
                     size_t n_scopes, long min_ttl, cJSON **ret_reply);

/* After a connect() that found no socket: says so when the socket's whole directory is missing,
 * and how to point the CLI at the broker meant. */
void client_explain_missing_directory(const char *socket_path);
