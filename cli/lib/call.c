/* libcredbroker: finding the socket, building requests, one call on either socket (with the
 * client socket's retries under load), refusals and tokens; see credbroker.h. */
#include "build-config.h"

#include "lib-internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "json.h"
#include "retry.h"
#include "secret.h"
#include "wire.h"

/* A stale socket file answers ECONNREFUSED; so may a broker that is restarting. Retry that
 * briefly only: "not running" must stay prompt. */
#define CONNECT_REFUSED_RETRIES 3

DEFINE_TRIVIAL_CLEANUP_FUNC(struct credbroker_conn *, credbroker_close)

const char *credbroker_socket_path(enum credbroker_socket which, const char *option,
                                   credbroker_configured_socket_fn *configured, void *userdata)
{
        bool admin = which == CREDBROKER_SOCKET_ADMIN;
        const char *env, *named;

        if (option)
                return option;
        env = secure_getenv(admin ? "CREDBROKER_ADMIN_SOCKET" : "CREDBROKER_SOCKET");
        if (env && *env)
                return env;
        named = configured ? configured(which, userdata) : NULL;
        if (named)
                return named;
        return admin ? DEFAULT_ADMIN_SOCKET : DEFAULT_SOCKET;
}

cJSON *credbroker_request_new(const char *op)
{
        cJSON *request = cJSON_CreateObject();

        if (request && (!json_add_uint(request, "v", WIRE_VERSION) ||
                        !cJSON_AddStringToObject(request, "op", op))) {
                cJSON_Delete(request);
                return NULL;
        }
        return request;
}

cJSON *credbroker_token_request_new(const char *profile, const char *const *scopes, size_t n_scopes,
                                    long min_ttl)
{
        _cleanup_json_ cJSON *request = cJSON_CreateObject();
        cJSON *array;

        if (!request || !cJSON_AddNumberToObject(request, "v", WIRE_VERSION) ||
            !cJSON_AddStringToObject(request, "op", "token") ||
            !cJSON_AddStringToObject(request, "profile", profile) ||
            (min_ttl >= 0 && !cJSON_AddNumberToObject(request, "min_ttl", (double)min_ttl)))
                return NULL;
        if (n_scopes > 0) {
                array = cJSON_AddArrayToObject(request, "scopes");
                if (!array)
                        return NULL;
                for (size_t i = 0; i < n_scopes; i++)
                        if (!cJSON_AddItemToArray(array, cJSON_CreateString(scopes[i])))
                                return NULL;
        }
        return TAKE_PTR(request);
}

/* One connection, one request, one reply. */
static int call_once(const char *path, const cJSON *request, uint64_t deadline, cJSON **ret,
                     struct credbroker_error *err)
{
        _cleanup_(credbroker_closep) struct credbroker_conn *c = NULL;
        int r;

        r = cb_connect(path, deadline, &c, err);
        if (r < 0)
                return r;
        r = cb_send(c, request, deadline, err);
        /* A broker refusing the connection (rate_limited) may close it before reading the
         * request: its reply is already queued for us, read it. */
        if (r < 0 &&
            !(err->failure == CREDBROKER_FAILURE_SEND && (r == -EPIPE || r == -ECONNRESET)))
                return r;
        return cb_receive(c, deadline, 0, ret, err);
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
        return (uint32_t)getpid() * 2654435761u ^ (uint32_t)cb_now_ms();
}

/* Whether a failed attempt (r < 0) or a rate_limited reply (r == 0) is worth another try, and
 * after how long. */
static bool should_retry(int r, const struct credbroker_error *err, unsigned attempt,
                         uint64_t retry_after_ms, uint64_t deadline, unsigned *refused,
                         uint64_t *ret_delay)
{
        if (r < 0 &&
            (err->failure != CREDBROKER_FAILURE_CONNECT ||
             !(r == -EAGAIN || (r == -ECONNREFUSED && ++*refused <= CONNECT_REFUSED_RETRIES))))
                return false;
        return retry_delay_ms(attempt, retry_after_ms, cb_remaining_ms(deadline), jitter_random(),
                              ret_delay) == 0;
}

int credbroker_call(const char *path, const cJSON *request, int timeout_ms, cJSON **ret_reply,
                    struct credbroker_error *err)
{
        uint64_t deadline = cb_deadline(timeout_ms);
        struct credbroker_error local;
        unsigned refused = 0;

        if (!err)
                err = &local;
        for (unsigned attempt = 0;; attempt++) {
                cJSON *reply = NULL;
                uint64_t retry_after_ms = 0, delay;
                int r = call_once(path, request, deadline, &reply, err);

                if (r == 0 && !is_rate_limited(reply, &retry_after_ms)) {
                        *ret_reply = reply;
                        return 0;
                }
                if (!should_retry(r, err, attempt, retry_after_ms, deadline, &refused, &delay)) {
                        /* Retried within the timeout: the last refusal is the answer. */
                        if (r == 0)
                                *ret_reply = reply;
                        return r;
                }
                cJSON_Delete(reply);
                (void)nanosleep(&(struct timespec){.tv_sec = (time_t)(delay / 1000),
                                                   .tv_nsec = (long)(delay % 1000) * 1000000},
                                NULL);
        }
}

int credbroker_admin_call(const char *path, const cJSON *request, int timeout_ms, cJSON **ret_reply,
                          struct credbroker_error *err)
{
        _cleanup_(credbroker_closep) struct credbroker_conn *c = NULL;
        struct credbroker_error local;
        uint64_t deadline;
        int r;

        if (!err)
                err = &local;
        /* The admin socket's connect() waits as the kernel does; the timeout starts after it. */
        r = cb_connect(path, CB_NO_DEADLINE, &c, err);
        if (r < 0)
                return r;
        deadline = cb_deadline(timeout_ms);
        r = cb_send(c, request, deadline, err);
        if (r < 0)
                return r;
        return cb_receive(c, deadline, CREDBROKER_RECEIVE_STRICT, ret_reply, err);
}

int credbroker_reply_error(const cJSON *reply, struct credbroker_error *err)
{
        static const struct {
                const char *code;
                int error;
        } codes[] = {
            {"denied", -EACCES},          {"sign_in_failed", -EACCES},
            {"unknown_profile", -ENOENT}, {"not_found", -ENOENT},
            {"exists", -EEXIST},          {"reauth_required", -EKEYEXPIRED},
            {"needs_config", -ENOKEY},    {"rate_limited", -EBUSY},
            {"unavailable", -EAGAIN},     {"bad_request", -EINVAL},
            {"unknown_op", -EOPNOTSUPP},  {"unsupported_version", -EOPNOTSUPP},
        };
        const char *code = json_get_string(reply, "error");
        const char *message = json_get_string(reply, "message");
        uint64_t retry_after = 0;
        int error = -EIO;

        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                return 0;
        for (size_t i = 0; code && i < ELEMENTSOF(codes); i++)
                if (strcmp(code, codes[i].code) == 0)
                        error = codes[i].error;
        if (err) {
                *err = (struct credbroker_error){.failure = CREDBROKER_FAILURE_REFUSED,
                                                 .error = error};
                snprintf(err->code, sizeof(err->code), "%s", code ? code : "error");
                snprintf(err->message, sizeof(err->message), "%s",
                         message ? message : "the broker refused the request");
                if (json_get_u64(reply, "retry_after", &retry_after) == 0)
                        err->retry_after = retry_after;
        }
        return error;
}

struct credbroker_token {
        struct secret *access_token;
        uint64_t expires_at;
        char *account, *mailbox;
        char *graph, *ca_file; /* NULL when the reply had none */
        bool delegated;
};

void credbroker_token_free(struct credbroker_token *t)
{
        if (!t)
                return;
        secret_free(t->access_token);
        free(t->account);
        free(t->mailbox);
        free(t->graph);
        free(t->ca_file);
        free(t);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(struct credbroker_token *, credbroker_token_free)

/* A copy of the reply's string member key, NULL when it has none. */
static int token_copy_optional(const cJSON *reply, const char *key, char **ret)
{
        const char *v = json_get_string(reply, key);

        *ret = NULL;
        if (!v)
                return 0;
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

/* Moves the reply's access token into secret memory and wipes it from the reply. */
static int token_from_reply(cJSON *reply, struct credbroker_token **ret)
{
        _cleanup_(credbroker_token_freep) struct credbroker_token *t = NULL;
        cJSON *access = cJSON_GetObjectItemCaseSensitive(reply, "access_token");
        const char *account = json_get_string(reply, "account");
        const char *mailbox = json_get_string(reply, "mailbox");
        size_t len;
        int r;

        if (!cJSON_IsString(access) || !access->valuestring || !*access->valuestring)
                return -EBADMSG;
        len = strlen(access->valuestring);
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        r = secret_new_from(access->valuestring, len, &t->access_token);
        explicit_bzero(access->valuestring, len);
        if (r < 0)
                return r;
        (void)json_get_u64(reply, "expires_at", &t->expires_at);
        t->account = strdup(account ? account : "");
        t->mailbox = mailbox ? strdup(mailbox) : NULL;
        if (!t->account || (mailbox && !t->mailbox))
                return -ENOMEM;
        r = token_copy_optional(reply, "graph", &t->graph);
        if (r == 0)
                r = token_copy_optional(reply, "ca_file", &t->ca_file);
        if (r < 0)
                return r;
        t->delegated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "delegated"));
        *ret = TAKE_PTR(t);
        return 0;
}

int credbroker_get_token(const char *path, const char *profile, const char *const *scopes,
                         size_t n_scopes, long min_ttl, int timeout_ms,
                         struct credbroker_token **ret, struct credbroker_error *err)
{
        _cleanup_json_ cJSON *request = NULL, *reply = NULL;
        int r;

        request = credbroker_token_request_new(profile, scopes, n_scopes, min_ttl);
        if (!request)
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -ENOMEM);
        r = credbroker_call(path, request, timeout_ms, &reply, err);
        if (r < 0)
                return r;
        r = credbroker_reply_error(reply, err);
        if (r < 0)
                return r;
        r = token_from_reply(reply, ret);
        if (r == -EBADMSG)
                return cb_fail(err, CREDBROKER_FAILURE_MALFORMED, r);
        return r < 0 ? cb_fail(err, CREDBROKER_FAILURE_REQUEST, r) : 0;
}

const char *credbroker_token_access_token(const struct credbroker_token *t)
{
        return secret_str(t->access_token);
}

uint64_t credbroker_token_expires_at(const struct credbroker_token *t)
{
        return t->expires_at;
}

const char *credbroker_token_account(const struct credbroker_token *t)
{
        return t->account;
}

const char *credbroker_token_mailbox(const struct credbroker_token *t)
{
        return t->mailbox;
}

const char *credbroker_token_graph(const struct credbroker_token *t)
{
        return t->graph;
}

bool credbroker_token_delegated(const struct credbroker_token *t)
{
        return t->delegated;
}

const char *credbroker_token_ca_file(const struct credbroker_token *t)
{
        return t->ca_file;
}
