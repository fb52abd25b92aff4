/* Client side of the admin socket, in the CLI's words over libcredbroker; see admin-client.h and
 * docs/admin-protocol.md. */
#include "build-config.h"

#include "admin-client.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "commands.h"
#include "credbroker.h"
#include "json.h"
#include "util.h"
#include "wire.h"

#define EXIT_CANTCREAT 73

struct admin_conn {
        struct credbroker_conn *conn;
};

const char *admin_socket_path(const char *option, const char *config_option)
{
        return credbroker_socket_path(CREDBROKER_SOCKET_ADMIN, option, cli_socket_from_config,
                                      (void *)config_option);
}

void admin_close(struct admin_conn *c)
{
        if (!c)
                return;
        credbroker_close(c->conn);
        free(c);
}

int admin_connect(const char *path, struct admin_conn **ret)
{
        _cleanup_admin_ struct admin_conn *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        r = credbroker_connect(path, -1, &c->conn, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

static int report_connect_failure(const char *path, int r)
{
        if (r == -ENOENT || r == -ECONNREFUSED) {
                fprintf(stderr,
                        "credbroker: the broker is not running (nothing listens on %s); start "
                        "credbrokerd first\n",
                        path);
                if (r == -ENOENT)
                        client_explain_missing_directory(path);
                return EXIT_UNAVAILABLE;
        }
        if (r == -EACCES || r == -EPERM) {
                fprintf(stderr,
                        "credbroker: no permission to use the admin socket %s: run this as root "
                        "or as the broker's user\n",
                        path);
                return EXIT_NOPERM;
        }
        fprintf(stderr, "credbroker: cannot reach the broker's admin socket %s: %s\n", path,
                strerror(-r));
        return r == -ENAMETOOLONG ? EXIT_USAGE : EXIT_UNAVAILABLE;
}

int admin_connect_or_report(const char *path, struct admin_conn **ret)
{
        int r = admin_connect(path, ret);

        return r == 0 ? 0 : report_connect_failure(path, r);
}

/* Says why a request could not be sent or its reply read, in the CLI's words: the exit code to
 * use, or -ETIMEDOUT (nothing printed) when no whole reply came in time. */
static int report_failure(const char *path, const char *secret_key,
                          const struct credbroker_error *e)
{
        int r = e->error;

        switch (e->failure) {
        case CREDBROKER_FAILURE_CONNECT:
                return report_connect_failure(path, r);
        case CREDBROKER_FAILURE_TIMEOUT:
                return -ETIMEDOUT;
        case CREDBROKER_FAILURE_CLOSED:
                fprintf(stderr, "credbroker: the broker closed the connection before it "
                                "answered (did it stop or restart?)\n");
                return EXIT_TEMPFAIL;
        case CREDBROKER_FAILURE_MALFORMED:
                fprintf(stderr, "credbroker: the broker sent a malformed reply\n");
                return EXIT_SOFTWARE;
        case CREDBROKER_FAILURE_RECEIVE:
                fprintf(stderr, "credbroker: talking to the broker failed: %s\n", strerror(-r));
                return EXIT_TEMPFAIL;
        default:
                break;
        }
        if (secret_key && r == -EINVAL && e->failure == CREDBROKER_FAILURE_REQUEST) {
                fprintf(stderr,
                        "credbroker: the %s is not valid UTF-8 text or holds a NUL character\n",
                        secret_key);
                return EXIT_DATAERR;
        }
        if (r == -EMSGSIZE) {
                fprintf(stderr, "credbroker: the request is larger than a frame may be\n");
                return EXIT_USAGE;
        }
        fprintf(stderr, "credbroker: sending the request to the broker failed: %s\n", strerror(-r));
        return EXIT_TEMPFAIL;
}

int admin_send(struct admin_conn *c, const cJSON *request, const char *secret_key,
               const struct secret *secret)
{
        struct credbroker_error e;
        int r;

        if (secret_key)
                r = credbroker_send_secret(c->conn, request, secret_key, secret_str(secret),
                                           secret_len(secret), ADMIN_REPLY_TIMEOUT_MS, &e);
        else
                r = credbroker_send(c->conn, request, ADMIN_REPLY_TIMEOUT_MS, &e);
        return r < 0 ? report_failure(NULL, secret_key, &e) : 0;
}

int admin_read_reply(struct admin_conn *c, int timeout_ms, cJSON **ret)
{
        struct credbroker_error e;
        int r;

        r = credbroker_receive(c->conn, timeout_ms < 0 ? ADMIN_REPLY_TIMEOUT_MS : timeout_ms,
                               CREDBROKER_RECEIVE_STRICT, ret, &e);
        return r < 0 ? report_failure(NULL, NULL, &e) : 0;
}

/* The exit code of an admin error code (docs/credbroker.1.md). The admin socket's own codes, and
 * those its connection layer shares with the client socket (rate_limited) or that a broker may
 * send (unknown_profile); anything else is EXIT_SOFTWARE. */
static int admin_error_exit(const char *code)
{
        static const int admin_exits[_ADMIN_ERROR_MAX] = {
            [ADMIN_SIGN_IN_FAILED] = EXIT_NOPERM, [ADMIN_DENIED] = EXIT_NOPERM,
            [ADMIN_NEEDS_CONFIG] = EXIT_CONFIG,   [ADMIN_REAUTH_REQUIRED] = EXIT_CONFIG,
            [ADMIN_EXISTS] = EXIT_CANTCREAT,      [ADMIN_NOT_FOUND] = EXIT_NOINPUT,
            [ADMIN_BAD_REQUEST] = EXIT_DATAERR,   [ADMIN_UNAVAILABLE] = EXIT_TEMPFAIL,
            [ADMIN_UNKNOWN_OP] = EXIT_SOFTWARE,   [ADMIN_UNSUPPORTED_VERSION] = EXIT_SOFTWARE,
            [ADMIN_INTERNAL] = EXIT_SOFTWARE,
        };
        enum admin_error a;
        enum wire_error w;

        if (admin_error_from_string(code, &a) == 0)
                return admin_exits[a];
        if (code && wire_error_from_string(code, &w) == 0)
                return w == WIRE_UNKNOWN_PROFILE ? EXIT_CONFIG
                       : w == WIRE_RATE_LIMITED  ? EXIT_TEMPFAIL
                                                 : EXIT_SOFTWARE;
        return EXIT_SOFTWARE;
}

int admin_report_error(const cJSON *reply)
{
        const char *code = json_get_string(reply, "error");
        enum admin_error e;

        client_print_refusal(reply, "the broker refused the request", SIZE_MAX, SIZE_MAX);
        if (admin_error_from_string(code, &e) == 0 && e == ADMIN_UNKNOWN_OP)
                fputs("credbroker: the running broker is older than this command; upgrade "
                      "and restart credbrokerd\n",
                      stderr);
        return admin_error_exit(code);
}

/* After an exchange that returned r and, when 0, a reply of either kind: the "ok" reply in *ret,
 * or the exit code of a refusal after reporting it. */
static int take_ok_reply(int r, cJSON *reply, cJSON **ret)
{
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                r = admin_report_error(reply);
                cJSON_Delete(reply);
                return r;
        }
        *ret = reply;
        return 0;
}

cJSON *admin_request_new(const char *op)
{
        return credbroker_request_new(op);
}

static int report_timeout(void)
{
        fprintf(stderr, "credbroker: the broker did not answer within %d s\n",
                ADMIN_REPLY_TIMEOUT_MS / 1000);
        return EXIT_TEMPFAIL;
}

int admin_exchange(struct admin_conn *c, const cJSON *request, cJSON **ret_reply)
{
        int r = admin_send(c, request, NULL, NULL);

        if (r == 0)
                r = admin_read_reply(c, -1, ret_reply);
        return r == -ETIMEDOUT ? report_timeout() : r;
}

int admin_request(const char *path, const cJSON *request, cJSON **ret_reply)
{
        struct credbroker_error e;
        int r;

        r = credbroker_admin_call(path, request, ADMIN_REPLY_TIMEOUT_MS, ret_reply, &e);
        if (r == 0)
                return 0;
        r = report_failure(path, NULL, &e);
        return r == -ETIMEDOUT ? report_timeout() : r;
}

int admin_connect_or_fallback(const char *path, bool verbose, struct admin_conn **ret)
{
        int r = admin_connect(path, ret);

        if (r == 0) {
                if (verbose)
                        fprintf(stderr, "credbroker: asking the running broker (%s)\n", path);
                return 0;
        }
        if (r == -ENOENT || r == -ECONNREFUSED) {
                if (verbose)
                        fprintf(stderr,
                                "credbroker: no broker listens on %s; opening the token "
                                "directly\n",
                                path);
                return 1;
        }
        return admin_connect_or_report(path, ret);
}

int admin_call(const char *path, const cJSON *request, cJSON **ret_reply)
{
        cJSON *reply = NULL;
        int r = admin_request(path, request, &reply);

        return take_ok_reply(r, reply, ret_reply);
}

int admin_exchange_ok(struct admin_conn *c, const cJSON *request, cJSON **ret_reply)
{
        cJSON *reply = NULL;
        int r = admin_exchange(c, request, &reply);

        return take_ok_reply(r, reply, ret_reply);
}
