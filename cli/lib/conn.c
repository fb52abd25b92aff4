/* libcredbroker: one connection (connect, send a frame, receive frames) and the error record;
 * see credbroker.h. Nothing here prints. */
#include "lib-internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin-frame.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "secret.h"
#include "util.h"
#include "wire.h"

struct credbroker_conn {
        int fd;
        struct buf *in;
};

uint64_t cb_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t cb_deadline(int timeout_ms)
{
        return timeout_ms < 0 ? CB_NO_DEADLINE : cb_now_ms() + (uint64_t)timeout_ms;
}

uint64_t cb_remaining_ms(uint64_t deadline)
{
        uint64_t now = cb_now_ms();

        if (deadline == CB_NO_DEADLINE)
                return CB_NO_DEADLINE;
        return deadline > now ? deadline - now : 0;
}

int cb_fail(struct credbroker_error *err, enum credbroker_failure failure, int error)
{
        static const char *const stages[] = {
            [CREDBROKER_FAILURE_NONE] = "no failure",
            [CREDBROKER_FAILURE_REQUEST] = "building the request failed",
            [CREDBROKER_FAILURE_CONNECT] = "cannot reach the broker",
            [CREDBROKER_FAILURE_SEND] = "sending the request to the broker failed",
            [CREDBROKER_FAILURE_RECEIVE] = "talking to the broker failed",
            [CREDBROKER_FAILURE_TIMEOUT] = "the broker did not answer in time",
            [CREDBROKER_FAILURE_CLOSED] = "the broker closed the connection",
            [CREDBROKER_FAILURE_MALFORMED] = "the broker sent a malformed reply",
            [CREDBROKER_FAILURE_REFUSED] = "the broker refused the request",
        };

        if (err) {
                *err = (struct credbroker_error){.failure = failure, .error = error};
                if (failure == CREDBROKER_FAILURE_CONNECT || failure == CREDBROKER_FAILURE_SEND ||
                    failure == CREDBROKER_FAILURE_RECEIVE || failure == CREDBROKER_FAILURE_REQUEST)
                        snprintf(err->message, sizeof(err->message), "%s: %s", stages[failure],
                                 strerror(-error));
                else
                        snprintf(err->message, sizeof(err->message), "%s", stages[failure]);
        }
        return error;
}

/* Waits until fd is ready for events, at most until deadline: 0, -ETIMEDOUT or -errno. */
static int wait_for(int fd, short events, uint64_t deadline)
{
        struct pollfd p = {.fd = fd, .events = events};
        uint64_t left = cb_remaining_ms(deadline);
        int r;

        if (left == 0)
                return -ETIMEDOUT;
        r = poll(&p, 1, left > INT32_MAX ? -1 : (int)left);
        if (r == 0)
                return -ETIMEDOUT;
        return r < 0 ? -errno : 0;
}

int cb_connect(const char *path, uint64_t deadline, struct credbroker_conn **ret,
               struct credbroker_error *err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        _cleanup_buf_ struct buf *in = NULL;
        struct credbroker_conn *c;

        if (strlen(path) >= sizeof(sa.sun_path))
                return cb_fail(err, CREDBROKER_FAILURE_CONNECT, -ENAMETOOLONG);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return cb_fail(err, CREDBROKER_FAILURE_CONNECT, -errno);
        /* SO_SNDTIMEO bounds a blocking AF_UNIX connect() while the listen backlog is full; it
         * fails with EAGAIN then. */
        if (deadline != CB_NO_DEADLINE) {
                uint64_t left = cb_remaining_ms(deadline);
                struct timeval tv = {.tv_sec = (time_t)(left / 1000),
                                     .tv_usec = (suseconds_t)(left % 1000) * 1000};

                if (left == 0)
                        return cb_fail(err, CREDBROKER_FAILURE_CONNECT, -EAGAIN);
                (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return cb_fail(err, CREDBROKER_FAILURE_CONNECT, -errno);
        c = calloc(1, sizeof(*c));
        if (!c || buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &in) < 0) {
                free(c);
                return cb_fail(err, CREDBROKER_FAILURE_CONNECT, -ENOMEM);
        }
        c->fd = TAKE_FD(fd);
        c->in = TAKE_PTR(in);
        *ret = c;
        return 0;
}

int credbroker_connect(const char *path, int timeout_ms, struct credbroker_conn **ret,
                       struct credbroker_error *err)
{
        return cb_connect(path, cb_deadline(timeout_ms), ret, err);
}

void credbroker_close(struct credbroker_conn *c)
{
        if (!c)
                return;
        safe_close(c->fd);
        buf_free(c->in);
        free(c);
}

/* Writes all of data, waiting for the socket to take it until deadline. */
static int send_all(int fd, const uint8_t *data, size_t len, uint64_t deadline)
{
        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                int r;

                if (n > 0) {
                        data += n;
                        len -= (size_t)n;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return -errno;
                r = wait_for(fd, POLLOUT, deadline);
                if (r < 0 && r != -EINTR)
                        return r;
        }
        return 0;
}

int cb_send(struct credbroker_conn *c, const cJSON *request, uint64_t deadline,
            struct credbroker_error *err)
{
        _cleanup_buf_ struct buf *out = NULL;
        int r;

        r = buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &out);
        if (r == 0)
                r = wire_put_json(out, request);
        if (r < 0)
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, r);
        r = send_all(c->fd, buf_data(out), buf_len(out), deadline);
        return r < 0 ? cb_fail(err, CREDBROKER_FAILURE_SEND, r) : 0;
}

int credbroker_send(struct credbroker_conn *c, const cJSON *request, int timeout_ms,
                    struct credbroker_error *err)
{
        return cb_send(c, request, cb_deadline(timeout_ms), err);
}

int credbroker_send_secret(struct credbroker_conn *c, const cJSON *request, const char *key,
                           const char *secret, size_t len, int timeout_ms,
                           struct credbroker_error *err)
{
        _cleanup_secret_ struct secret *frame = NULL;
        int r;

        r = admin_frame_with_bytes(request, key, secret, len, &frame);
        if (r < 0)
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, r);
        r = send_all(c->fd, secret_data(frame), secret_len(frame), cb_deadline(timeout_ms));
        /* frame is wiped and unmapped here, whatever happened. */
        return r < 0 ? cb_fail(err, CREDBROKER_FAILURE_SEND, r) : 0;
}

/* The admin socket's envelope (docs/admin-protocol.md): anything else is a broken or foreign
 * server. */
static bool reply_is_valid(const cJSON *reply)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(reply, "v");
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");

        return !json_has_duplicate_keys(reply) && cJSON_IsNumber(v) &&
               v->valuedouble == WIRE_VERSION && cJSON_IsBool(ok) &&
               (cJSON_IsTrue(ok) || json_get_string(reply, "error"));
}

/* Reads until a whole frame is buffered: its payload, or a negative errno. */
static int read_frame(struct credbroker_conn *c, uint64_t deadline, const uint8_t **ret_payload,
                      size_t *ret_len, struct credbroker_error *err)
{
        for (;;) {
                int r = wire_frame_peek(c->in, ret_payload, ret_len);

                if (r > 0)
                        return 0;
                if (r < 0)
                        return cb_fail(err, CREDBROKER_FAILURE_MALFORMED, -EBADMSG);
                r = wait_for(c->fd, POLLIN, deadline);
                if (r == -ETIMEDOUT)
                        return cb_fail(err, CREDBROKER_FAILURE_TIMEOUT, r);
                if (r == 0)
                        r = buf_read_fd(c->in, c->fd);
                if (r == 0)
                        return cb_fail(err, CREDBROKER_FAILURE_CLOSED, -ECONNRESET);
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        return cb_fail(err, CREDBROKER_FAILURE_RECEIVE, r);
        }
}

int cb_receive(struct credbroker_conn *c, uint64_t deadline, unsigned flags, cJSON **ret,
               struct credbroker_error *err)
{
        const uint8_t *payload;
        cJSON *reply = NULL;
        size_t len;
        int r;

        r = read_frame(c, deadline, &payload, &len, err);
        if (r < 0)
                return r;
        if (((flags & CREDBROKER_RECEIVE_STRICT) && !utf8_is_valid(payload, len)) ||
            json_parse(payload, len, &reply) < 0 || !cJSON_IsObject(reply) ||
            ((flags & CREDBROKER_RECEIVE_STRICT) && !reply_is_valid(reply))) {
                cJSON_Delete(reply);
                return cb_fail(err, CREDBROKER_FAILURE_MALFORMED, -EBADMSG);
        }
        (void)wire_frame_consume(c->in, len);
        *ret = reply;
        return 0;
}

int credbroker_receive(struct credbroker_conn *c, int timeout_ms, unsigned flags, cJSON **ret,
                       struct credbroker_error *err)
{
        return cb_receive(c, cb_deadline(timeout_ms), flags, ret, err);
}
