/* Client side of the socket protocol; see client.h. */
#include "build-config.h"

#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "commands.h"
#include "json.h"

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

static int client_connect(const char *path, int *ret_fd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "credbroker: socket path too long: %s\n", path);
                return EXIT_USAGE;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "credbroker: cannot reach the broker at %s: %s\n", path,
                        strerror(errno));
                return EXIT_UNAVAILABLE;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int wait_for(int fd, short events)
{
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, CLIENT_TIMEOUT_MS);

        if (r == 0)
                return -ETIMEDOUT;
        return r < 0 ? -errno : 0;
}

int client_call(const char *socket_path, const cJSON *request, cJSON **ret_reply)
{
        _cleanup_buf_ struct buf *out = NULL, *in = NULL;
        _cleanup_close_ int fd = -1;
        const uint8_t *payload;
        size_t len;
        int r;

        r = client_connect(socket_path, &fd);
        if (r != 0)
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
                        r = wait_for(fd, POLLOUT);
                if (r < 0)
                        goto io_error;
        }
        for (;;) {
                r = wire_frame_peek(in, &payload, &len);
                if (r > 0)
                        break;
                if (r < 0)
                        goto protocol_error;
                r = wait_for(fd, POLLIN);
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

int client_report_error(const cJSON *reply)
{
        const char *code = json_get_string(reply, "error");
        const char *message = json_get_string(reply, "message");
        enum wire_error e = WIRE_INTERNAL;
        uint64_t retry_after;

        if (code)
                (void)wire_error_from_string(code, &e);
        if (json_get_u64(reply, "retry_after", &retry_after) == 0)
                fprintf(stderr, "credbroker: %s (%s; retry after %llu s)\n",
                        message ? message : "request failed", code ? code : "error",
                        (unsigned long long)retry_after);
        else
                fprintf(stderr, "credbroker: %s (%s)\n", message ? message : "request failed",
                        code ? code : "error");
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

int client_get_token(const char *socket_path, const char *profile, char *const *scopes,
                     size_t n_scopes, long min_ttl, cJSON **ret_reply)
{
        _cleanup_json_ cJSON *request = cJSON_CreateObject();
        cJSON *reply = NULL;
        const cJSON *ok;
        int r;

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
        r = client_call(socket_path, request, &reply);
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
