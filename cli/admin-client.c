/* Client side of the admin socket; see admin-client.h and docs/admin-protocol.md. */
#include "build-config.h"

#include "admin-client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin-frame.h"
#include "buf.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "display.h"
#include "json.h"
#include "util.h"
#include "wire.h"

#define EXIT_CANTCREAT 73

struct admin_conn {
        int fd;
        struct buf *in;
};

const char *admin_socket_path(const char *option, const char *config_option)
{
        const char *env, *configured;

        if (option)
                return option;
        env = secure_getenv("CREDBROKER_ADMIN_SOCKET");
        if (env && *env)
                return env;
        configured = cli_configured_socket(config_option, true);
        return configured ? configured : DEFAULT_ADMIN_SOCKET;
}

void admin_close(struct admin_conn *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        buf_free(c->in);
        free(c);
}

int admin_connect(const char *path, struct admin_conn **ret)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_admin_ struct admin_conn *c = NULL;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        if (buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &c->in) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

int admin_connect_or_report(const char *path, struct admin_conn **ret)
{
        int r = admin_connect(path, ret);

        if (r == 0)
                return 0;
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

static uint64_t now_msec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes all of data, waiting at most ADMIN_REPLY_TIMEOUT_MS for the socket to take it. */
static int write_all(int fd, const uint8_t *data, size_t len)
{
        uint64_t deadline = now_msec() + ADMIN_REPLY_TIMEOUT_MS;

        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n > 0) {
                        data += n;
                        len -= (size_t)n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (now_msec() >= deadline)
                        return -ETIMEDOUT;
                if (poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 1000) < 0 &&
                    errno != EINTR)
                        return -errno;
        }
        return 0;
}

int admin_send(struct admin_conn *c, const cJSON *request, const char *secret_key,
               const struct secret *secret)
{
        int r;

        if (secret_key) {
                _cleanup_secret_ struct secret *frame = NULL;

                r = admin_frame_with_secret(request, secret_key, secret, &frame);
                if (r == -EINVAL) {
                        fprintf(stderr,
                                "credbroker: the %s is not valid UTF-8 text or holds a "
                                "NUL character\n",
                                secret_key);
                        return EXIT_DATAERR;
                }
                if (r == 0)
                        r = write_all(c->fd, secret_data(frame), secret_len(frame));
                /* frame is wiped and unmapped here, whatever happened. */
        } else {
                _cleanup_buf_ struct buf *out = NULL;

                r = buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &out);
                if (r == 0)
                        r = wire_put_json(out, request);
                if (r == 0)
                        r = write_all(c->fd, buf_data(out), buf_len(out));
        }
        if (r == -EMSGSIZE) {
                fprintf(stderr, "credbroker: the request is larger than a frame may be\n");
                return EXIT_USAGE;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: sending the request to the broker failed: %s\n",
                        strerror(-r));
                return EXIT_TEMPFAIL;
        }
        return 0;
}

/* A reply we act on must be what docs/admin-protocol.md promises; anything else is a broken or
 * foreign server, and nothing of it is printed. */
static bool reply_is_valid(const cJSON *reply)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(reply, "v");
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");

        return cJSON_IsObject(reply) && !json_has_duplicate_keys(reply) && cJSON_IsNumber(v) &&
               v->valuedouble == WIRE_VERSION && cJSON_IsBool(ok) &&
               (cJSON_IsTrue(ok) || json_get_string(reply, "error"));
}

int admin_read_reply(struct admin_conn *c, int timeout_ms, cJSON **ret)
{
        uint64_t deadline =
            now_msec() + (uint64_t)(timeout_ms < 0 ? ADMIN_REPLY_TIMEOUT_MS : timeout_ms);
        const uint8_t *payload;
        cJSON *reply = NULL;
        size_t len;
        int r;

        for (;;) {
                uint64_t now;

                r = wire_frame_peek(c->in, &payload, &len);
                if (r > 0)
                        break;
                if (r < 0)
                        goto malformed;
                now = now_msec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&(struct pollfd){.fd = c->fd, .events = POLLIN}, 1, (int)(deadline - now));
                if (r < 0 && errno != EINTR) {
                        r = -errno;
                        goto io_error;
                }
                if (r <= 0)
                        continue;
                r = buf_read_fd(c->in, c->fd);
                if (r == 0) {
                        fprintf(stderr, "credbroker: the broker closed the connection before it "
                                        "answered (did it stop or restart?)\n");
                        return EXIT_TEMPFAIL;
                }
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        goto io_error;
        }
        if (!utf8_is_valid(payload, len) || json_parse(payload, len, &reply) < 0 ||
            !reply_is_valid(reply)) {
                cJSON_Delete(reply);
                goto malformed;
        }
        (void)wire_frame_consume(c->in, len);
        *ret = reply;
        return 0;

io_error:
        fprintf(stderr, "credbroker: talking to the broker failed: %s\n", strerror(-r));
        return EXIT_TEMPFAIL;
malformed:
        fprintf(stderr, "credbroker: the broker sent a malformed reply\n");
        return EXIT_SOFTWARE;
}

int admin_report_error(const cJSON *reply)
{
        const char *code = json_get_string(reply, "error");
        const char *message = json_get_string(reply, "message");
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
        uint64_t retry_after;

        fputs("credbroker: ", stderr);
        display_text(stderr, message ? message : "the broker refused the request");
        fputs(" (", stderr);
        display_text(stderr, code ? code : "error");
        if (json_get_u64(reply, "retry_after", &retry_after) == 0)
                fprintf(stderr, "; retry after %llu s", (unsigned long long)retry_after);
        fputs(")\n", stderr);
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
        cJSON *request = cJSON_CreateObject();

        if (request && (!json_add_uint(request, "v", WIRE_VERSION) ||
                        !cJSON_AddStringToObject(request, "op", op))) {
                cJSON_Delete(request);
                return NULL;
        }
        return request;
}

int admin_exchange(struct admin_conn *c, const cJSON *request, cJSON **ret_reply)
{
        int r = admin_send(c, request, NULL, NULL);

        if (r == 0)
                r = admin_read_reply(c, -1, ret_reply);
        if (r == -ETIMEDOUT) {
                fprintf(stderr, "credbroker: the broker did not answer within %d s\n",
                        ADMIN_REPLY_TIMEOUT_MS / 1000);
                return EXIT_TEMPFAIL;
        }
        return r;
}

int admin_request(const char *path, const cJSON *request, cJSON **ret_reply)
{
        _cleanup_admin_ struct admin_conn *c = NULL;
        int r;

        r = admin_connect_or_report(path, &c);
        if (r == 0)
                r = admin_exchange(c, request, ret_reply);
        return r;
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
