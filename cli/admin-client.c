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

int admin_report_error(const cJSON *reply)
{
        const char *code = json_get_string(reply, "error");
        static const struct {
                const char *code;
                int exit_code;
        } codes[] = {
            {"sign_in_failed", EXIT_NOPERM},  {"denied", EXIT_NOPERM},
            {"needs_config", EXIT_CONFIG},    {"reauth_required", EXIT_CONFIG},
            {"exists", EXIT_CANTCREAT},       {"not_found", EXIT_NOINPUT},
            {"unknown_profile", EXIT_CONFIG}, {"bad_request", EXIT_DATAERR},
            {"unavailable", EXIT_TEMPFAIL},   {"rate_limited", EXIT_TEMPFAIL},
            {"unknown_op", EXIT_SOFTWARE},    {"unsupported_version", EXIT_SOFTWARE},
        };

        client_print_refusal(reply, "the broker refused the request", SIZE_MAX, SIZE_MAX);
        if (code && strcmp(code, "unknown_op") == 0)
                fputs("credbroker: the running broker is older than this command; upgrade "
                      "and restart credbrokerd\n",
                      stderr);
        for (size_t i = 0; code && i < ELEMENTSOF(codes); i++)
                if (strcmp(code, codes[i].code) == 0)
                        return codes[i].exit_code;
        return EXIT_SOFTWARE;
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
        int r;

        r = admin_request(path, request, &reply);
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                r = admin_report_error(reply);
                cJSON_Delete(reply);
                return r;
        }
        *ret_reply = reply;
        return 0;
}
