/* Client side of the socket protocol; see client.h. */
#include "build-config.h"

#include "client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "commands.h"
#include "display.h"
#include "json.h"
#include "retry.h"

/* A refresh can take as long as the broker's upstream timeout; allow for it and a margin. */
#define CLIENT_TIMEOUT_MS 60000

const char *client_socket_path(const char *option, const char *config_option)
{
        const char *env, *configured;

        if (option)
                return option;
        env = secure_getenv("CREDBROKER_SOCKET");
        if (env && *env)
                return env;
        configured = cli_configured_socket(config_option, false);
        return configured ? configured : DEFAULT_SOCKET;
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t remaining_ms(uint64_t deadline)
{
        uint64_t now = now_ms();

        return deadline > now ? deadline - now : 0;
}

/* Connects, waiting in the kernel while the listen backlog is full but never past the deadline
 * (SO_SNDTIMEO bounds a blocking AF_UNIX connect; it fails with EAGAIN then). Returns 0, or
 * -errno without printing: the caller decides whether to retry. */
static int client_connect(const char *path, uint64_t deadline, int *ret_fd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        uint64_t left = remaining_ms(deadline);
        struct timeval tv = {.tv_sec = (time_t)(left / 1000),
                             .tv_usec = (suseconds_t)(left % 1000) * 1000};

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (left == 0)
                return -EAGAIN;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int wait_for(int fd, short events, uint64_t deadline)
{
        struct pollfd p = {.fd = fd, .events = events};
        uint64_t left = remaining_ms(deadline);
        int r;

        if (left == 0)
                return -ETIMEDOUT;
        r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (r == 0)
                return -ETIMEDOUT;
        return r < 0 ? -errno : 0;
}

/* One connection, one request, one reply. Returns 0 with the reply, a negative errno from
 * connect() (nothing printed), or an exit code after printing one line. */
static int call_once(const char *socket_path, const cJSON *request, uint64_t deadline,
                     cJSON **ret_reply)
{
        _cleanup_buf_ struct buf *out = NULL, *in = NULL;
        _cleanup_close_ int fd = -1;
        const uint8_t *payload;
        size_t len;
        int r;

        r = client_connect(socket_path, deadline, &fd);
        if (r < 0)
                return r;
        if (buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &out) < 0 ||
            buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &in) < 0 ||
            wire_put_json(out, request) < 0) {
                fprintf(stderr, "credbroker: out of memory\n");
                return EXIT_SOFTWARE;
        }
        while (buf_len(out) > 0) {
                r = buf_write_fd(out, fd);
                if (r == -EAGAIN || r == -EINTR)
                        r = wait_for(fd, POLLOUT, deadline);
                /* A broker refusing the connection (rate_limited) may close it before reading
                 * the request: its reply is already queued for us, read it. */
                if (r == -EPIPE || r == -ECONNRESET)
                        break;
                if (r < 0)
                        goto io_error;
        }
        for (;;) {
                r = wire_frame_peek(in, &payload, &len);
                if (r > 0)
                        break;
                if (r < 0)
                        goto protocol_error;
                r = wait_for(fd, POLLIN, deadline);
                if (r == 0)
                        r = buf_read_fd(in, fd);
                if (r == 0) {
                        fprintf(stderr, "credbroker: the broker closed the connection\n");
                        return EXIT_TEMPFAIL;
                }
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        goto io_error;
        }
        if (json_parse(payload, len, ret_reply) < 0 || !cJSON_IsObject(*ret_reply))
                goto protocol_error;
        return 0;

io_error:
        fprintf(stderr, "credbroker: talking to the broker failed: %s\n", strerror(-r));
        return EXIT_TEMPFAIL;
protocol_error:
        fprintf(stderr, "credbroker: the broker sent a malformed reply\n");
        return EXIT_SOFTWARE;
}

/* The reply is a refusal for load (a connection cap or the per-uid request budget) worth
 * retrying; *ret_retry_after_ms is what the broker asked for (0 when it named nothing). */
static bool is_rate_limited(const cJSON *reply, uint64_t *ret_retry_after_ms)
{
        const char *code = json_get_string(reply, "error");
        uint64_t seconds = 0;

        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")) || !code ||
            strcmp(code, "rate_limited") != 0)
                return false;
        if (json_get_u64(reply, "retry_after", &seconds) < 0 || seconds > UINT32_MAX)
                seconds = 0;
        *ret_retry_after_ms = seconds * 1000;
        return true;
}

static uint32_t jitter_random(void)
{
        uint32_t r;

        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
                return r;
        return (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ms();
}

/* A stale socket file answers ECONNREFUSED; so may a broker that is restarting. Retry that
 * briefly only: "not running" must stay a prompt exit 69. */
#define CONNECT_REFUSED_RETRIES 3

int client_call(const char *socket_path, const cJSON *request, cJSON **ret_reply)
{
        uint64_t deadline = now_ms() + CLIENT_TIMEOUT_MS;
        unsigned refused = 0;

        for (unsigned attempt = 0;; attempt++) {
                cJSON *reply = NULL;
                uint64_t retry_after_ms = 0, delay;
                int r = call_once(socket_path, request, deadline, &reply);

                if (r > 0)
                        return r;
                if (r == 0 && !is_rate_limited(reply, &retry_after_ms)) {
                        *ret_reply = reply;
                        return 0;
                }
                if (r == 0) {
                        /* Retried within the timeout; the last refusal is the answer. */
                        if (retry_delay_ms(attempt, retry_after_ms, remaining_ms(deadline),
                                           jitter_random(), &delay) < 0) {
                                *ret_reply = reply;
                                return 0;
                        }
                        cJSON_Delete(reply);
                } else if ((r == -EAGAIN ||
                            (r == -ECONNREFUSED && ++refused <= CONNECT_REFUSED_RETRIES)) &&
                           retry_delay_ms(attempt, 0, remaining_ms(deadline), jitter_random(),
                                          &delay) == 0) {
                        /* The backlog was full (EAGAIN) or nobody answered: try again. */
                } else if (r == -ENAMETOOLONG) {
                        fprintf(stderr, "credbroker: socket path too long: %s\n", socket_path);
                        return EXIT_USAGE;
                } else {
                        fprintf(stderr, "credbroker: cannot reach the broker at %s: %s\n",
                                socket_path, r == -EAGAIN ? "timed out" : strerror(-r));
                        if (r == -ENOENT)
                                client_explain_missing_directory(socket_path);
                        return r == -EAGAIN ? EXIT_TEMPFAIL : EXIT_UNAVAILABLE;
                }
                (void)nanosleep(&(struct timespec){.tv_sec = (time_t)(delay / 1000),
                                                   .tv_nsec = (long)(delay % 1000) * 1000000},
                                NULL);
        }
}

void client_explain_missing_directory(const char *socket_path)
{
        char dir[PATH_MAX];
        const char *slash = strrchr(socket_path, '/');
        struct stat st;

        if (!slash || slash == socket_path || (size_t)(slash - socket_path) >= sizeof(dir))
                return;
        memcpy(dir, socket_path, (size_t)(slash - socket_path));
        dir[slash - socket_path] = 0;
        if (stat(dir, &st) == 0 || errno != ENOENT)
                return;
        fprintf(stderr,
                "credbroker: the directory %s does not exist, so no broker listens there "
                "(credbrokerd creates " RUNTIME_DIR " when it starts). To reach another broker, "
                "such as a demo's, give --socket/--admin-socket, CREDBROKER_SOCKET/"
                "CREDBROKER_ADMIN_SOCKET, or its configuration with --config or "
                "CREDBROKER_CONFIG.\n",
                dir);
}

int client_report_error(const cJSON *reply)
{
        const char *code = json_get_string(reply, "error");
        const char *message = json_get_string(reply, "message");
        enum wire_error e = WIRE_INTERNAL;
        uint64_t retry_after;

        if (code)
                (void)wire_error_from_string(code, &e);
        /* The message may carry upstream text (a token endpoint's error_description): no
         * control characters reach the terminal. */
        fputs("credbroker: ", stderr);
        display_text_max(stderr, message ? message : "request failed", 600);
        fputs(" (", stderr);
        display_text_max(stderr, code ? code : "error", 64);
        if (json_get_u64(reply, "retry_after", &retry_after) == 0)
                fprintf(stderr, "; retry after %llu s", (unsigned long long)retry_after);
        fputs(")\n", stderr);
        switch (e) {
        case WIRE_DENIED:
                return EXIT_NOPERM;
        case WIRE_RATE_LIMITED:
        case WIRE_UNAVAILABLE:
                return EXIT_TEMPFAIL;
        case WIRE_UNKNOWN_PROFILE:
        case WIRE_REAUTH_REQUIRED:
                return EXIT_CONFIG;
        default:
                return EXIT_SOFTWARE;
        }
}

int client_request_token(const char *socket_path, const char *profile, char *const *scopes,
                         size_t n_scopes, long min_ttl, cJSON **ret_reply)
{
        _cleanup_json_ cJSON *request = cJSON_CreateObject();

        if (!request || !cJSON_AddNumberToObject(request, "v", WIRE_VERSION) ||
            !cJSON_AddStringToObject(request, "op", "token") ||
            !cJSON_AddStringToObject(request, "profile", profile) ||
            (min_ttl >= 0 && !cJSON_AddNumberToObject(request, "min_ttl", (double)min_ttl)))
                return EXIT_SOFTWARE;
        if (n_scopes > 0) {
                cJSON *array = cJSON_AddArrayToObject(request, "scopes");
                for (size_t i = 0; array && i < n_scopes; i++)
                        if (!cJSON_AddItemToArray(array, cJSON_CreateString(scopes[i])))
                                return EXIT_SOFTWARE;
        }
        return client_call(socket_path, request, ret_reply);
}

int client_get_token(const char *socket_path, const char *profile, char *const *scopes,
                     size_t n_scopes, long min_ttl, cJSON **ret_reply)
{
        cJSON *reply = NULL;
        const cJSON *ok;
        int r;

        r = client_request_token(socket_path, profile, scopes, n_scopes, min_ttl, &reply);
        if (r != 0)
                return r;
        ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
        if (!cJSON_IsTrue(ok)) {
                r = client_report_error(reply);
                cJSON_Delete(reply);
                return r;
        }
        if (!json_get_string(reply, "access_token")) {
                fprintf(stderr, "credbroker: the broker's reply has no access token\n");
                cJSON_Delete(reply);
                return EXIT_SOFTWARE;
        }
        *ret_reply = reply;
        return 0;
}
