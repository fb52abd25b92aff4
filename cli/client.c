/* Client side of the socket protocol, in the CLI's words over libcredbroker; see client.h. */
#include "build-config.h"

#include "client.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "commands.h"
#include "credbroker.h"
#include "display.h"
#include "json.h"

/* A refresh can take as long as the broker's upstream timeout; allow for it and a margin. */
#define CLIENT_TIMEOUT_MS 60000

const char *client_socket_path(const char *option, const char *config_option)
{
        return credbroker_socket_path(CREDBROKER_SOCKET_CLIENT, option, cli_socket_from_config,
                                      (void *)config_option);
}

/* Says why a call on the client socket failed, in the CLI's words: the exit code to use. */
static int report_call_failure(const char *socket_path, const struct credbroker_error *e)
{
        int r = e->error;

        switch (e->failure) {
        case CREDBROKER_FAILURE_CONNECT:
                if (r == -ENAMETOOLONG) {
                        fprintf(stderr, "credbroker: socket path too long: %s\n", socket_path);
                        return EXIT_USAGE;
                }
                fprintf(stderr, "credbroker: cannot reach the broker at %s: %s\n", socket_path,
                        r == -EAGAIN ? "timed out" : strerror(-r));
                if (r == -ENOENT)
                        client_explain_missing_directory(socket_path);
                return r == -EAGAIN ? EXIT_TEMPFAIL : EXIT_UNAVAILABLE;
        case CREDBROKER_FAILURE_REQUEST:
                fprintf(stderr, "credbroker: out of memory\n");
                return EXIT_SOFTWARE;
        case CREDBROKER_FAILURE_CLOSED:
                fprintf(stderr, "credbroker: the broker closed the connection\n");
                return EXIT_TEMPFAIL;
        case CREDBROKER_FAILURE_MALFORMED:
                fprintf(stderr, "credbroker: the broker sent a malformed reply\n");
                return EXIT_SOFTWARE;
        default:
                fprintf(stderr, "credbroker: talking to the broker failed: %s\n", strerror(-r));
                return EXIT_TEMPFAIL;
        }
}

int client_call(const char *socket_path, const cJSON *request, cJSON **ret_reply)
{
        struct credbroker_error e;
        int r = credbroker_call(socket_path, request, CLIENT_TIMEOUT_MS, ret_reply, &e);

        return r < 0 ? report_call_failure(socket_path, &e) : 0;
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

void client_print_refusal(const cJSON *reply, const char *fallback, size_t max_message,
                          size_t max_code)
{
        const char *code = json_get_string(reply, "error");
        const char *message = json_get_string(reply, "message");
        uint64_t retry_after;

        /* The message may carry upstream text (a token endpoint's error_description): no
         * control characters reach the terminal. */
        fputs("credbroker: ", stderr);
        display_text_max(stderr, message ? message : fallback, max_message);
        fputs(" (", stderr);
        display_text_max(stderr, code ? code : "error", max_code);
        if (json_get_u64(reply, "retry_after", &retry_after) == 0)
                fprintf(stderr, "; retry after %llu s", (unsigned long long)retry_after);
        fputs(")\n", stderr);
}

int client_report_error(const cJSON *reply)
{
        const char *code = json_get_string(reply, "error");
        enum wire_error e = WIRE_INTERNAL;

        if (code)
                (void)wire_error_from_string(code, &e);
        client_print_refusal(reply, "request failed", 600, 64);
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
        _cleanup_json_ cJSON *request =
            credbroker_token_request_new(profile, (const char *const *)scopes, n_scopes, min_ttl);

        if (!request)
                return EXIT_SOFTWARE;
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
