/* libcredbroker through its public header and shared library only, against a tiny scripted
 * Unix-socket server in a thread: framing, replies of both kinds, retries, malformed and oversized
 * frames, timeouts, secrets, socket discovery. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "credbroker.h"
#include "tap.h"

#define MAX_STEPS 4

/* What the server does on its n-th connection. */
struct step {
        bool read_request; /* read one whole frame first */
        const char *reply; /* a JSON text sent as one frame (NULL: none) */
        const char *raw;   /* or these bytes as they are (raw_len of them) */
        size_t raw_len;
        bool hold; /* then keep the connection open until the client closes it */
};

struct server {
        char dir[64], path[108];
        int fd;
        struct step steps[MAX_STEPS];
        size_t n_steps;
        pthread_t thread;
        /* What the server saw: */
        size_t connections;
        char request[70000];
        size_t request_len;
        uint32_t header_len;
};

static int read_exactly(int fd, void *p, size_t len)
{
        for (size_t done = 0; done < len;) {
                ssize_t n = read(fd, (char *)p + done, len - done);
                if (n <= 0)
                        return -1;
                done += (size_t)n;
        }
        return 0;
}

static void write_frame(int fd, const char *json)
{
        size_t len = strlen(json);
        uint8_t header[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                             (uint8_t)len};

        (void)!write(fd, header, 4);
        (void)!write(fd, json, len);
}

static void serve_one(struct server *s, int fd, const struct step *st)
{
        uint8_t header[4];
        char c;

        if (st->read_request && read_exactly(fd, header, 4) == 0) {
                s->header_len = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 |
                                (uint32_t)header[2] << 8 | header[3];
                s->request_len = s->header_len < sizeof(s->request) ? s->header_len : 0;
                if (read_exactly(fd, s->request, s->request_len) < 0)
                        s->request_len = 0;
                s->request[s->request_len] = 0;
        }
        if (st->reply)
                write_frame(fd, st->reply);
        if (st->raw)
                (void)!write(fd, st->raw, st->raw_len);
        while (st->hold && read(fd, &c, 1) > 0)
                ;
}

static void *serve(void *userdata)
{
        struct server *s = userdata;

        for (size_t i = 0; i < s->n_steps; i++) {
                /* A client that never comes (a broken retry) must not hang the test. */
                struct pollfd p = {.fd = s->fd, .events = POLLIN};
                int fd = poll(&p, 1, 5000) == 1 ? accept(s->fd, NULL, NULL) : -1;

                if (fd < 0)
                        break;
                s->connections++;
                serve_one(s, fd, &s->steps[i]);
                close(fd);
        }
        return NULL;
}

static void server_start(struct server *s, const struct step *steps, size_t n)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        memset(s, 0, sizeof(*s));
        snprintf(s->dir, sizeof(s->dir), "/tmp/test-libcredbroker-XXXXXX");
        if (!mkdtemp(s->dir))
                abort();
        snprintf(s->path, sizeof(s->path), "%s/socket", s->dir);
        memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(s->fd, 8) < 0)
                abort();
        memcpy(s->steps, steps, n * sizeof(*steps));
        s->n_steps = n;
        if (pthread_create(&s->thread, NULL, serve, s) != 0)
                abort();
}

static void server_stop(struct server *s)
{
        pthread_join(s->thread, NULL);
        close(s->fd);
        unlink(s->path);
        rmdir(s->dir);
}

/* The request the server read, parsed; NULL when it read none. */
static cJSON *seen_request(const struct server *s)
{
        return s->request_len ? cJSON_ParseWithLength(s->request, s->request_len) : NULL;
}

static const char *str_of(const cJSON *o, const char *key)
{
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_call_ping(void)
{
        static const struct step steps[] = {
            {.read_request = true, .reply = "{\"v\":1,\"ok\":true,\"version\":\"9.9\"}"}};
        struct server s;
        struct credbroker_error e;
        cJSON *request = credbroker_request_new("ping"), *reply = NULL, *seen;
        int r;

        server_start(&s, steps, 1);
        r = credbroker_call(s.path, request, 5000, &reply, &e);
        server_stop(&s);
        is_int(r, 0, "call: a ping is answered");
        is_str(str_of(reply, "version"), "9.9", "call: the reply is the server's");
        seen = seen_request(&s);
        is_int(s.header_len, s.request_len, "call: the frame's length header counts its payload");
        is_str(str_of(seen, "op"), "ping", "call: the request is one JSON frame with its op");
        ok(cJSON_GetObjectItemCaseSensitive(seen, "v") &&
               cJSON_GetObjectItemCaseSensitive(seen, "v")->valueint == 1,
           "call: the request carries \"v\":1");
        cJSON_Delete(seen);
        cJSON_Delete(reply);
        cJSON_Delete(request);
}

static void test_get_token(void)
{
        static const struct step steps[] = {
            {.read_request = true,
             .reply = "{\"v\":1,\"ok\":true,\"access_token\":\"eyJ.tok-123\",\"expires_at\":"
                      "1700000000,\"account\":\"alerts\",\"mailbox\":\"a@example.com\"}"}};
        const char *scopes[] = {"https://graph.microsoft.com/Mail.Send"};
        struct credbroker_token *t = NULL;
        struct credbroker_error e;
        struct server s;
        cJSON *seen, *array;
        int r;

        server_start(&s, steps, 1);
        r = credbroker_get_token(s.path, "alerts", scopes, 1, 600, 5000, &t, &e);
        server_stop(&s);
        is_int(r, 0, "get_token: a token is handed out");
        is_str(t ? credbroker_token_access_token(t) : NULL, "eyJ.tok-123",
               "get_token: the access token");
        is_int(t ? credbroker_token_expires_at(t) : 0, 1700000000, "get_token: its expiry");
        is_str(t ? credbroker_token_account(t) : NULL, "alerts", "get_token: the account");
        is_str(t ? credbroker_token_mailbox(t) : NULL, "a@example.com", "get_token: the mailbox");
        credbroker_token_free(t);
        seen = seen_request(&s);
        array = cJSON_GetObjectItemCaseSensitive(seen, "scopes");
        is_str(str_of(seen, "op"), "token", "get_token: a token request");
        is_str(str_of(seen, "profile"), "alerts", "get_token: for the profile");
        ok(cJSON_GetArraySize(array) == 1 &&
               strcmp(cJSON_GetArrayItem(array, 0)->valuestring, scopes[0]) == 0,
           "get_token: with the scopes");
        is_int(cJSON_GetObjectItemCaseSensitive(seen, "min_ttl")
                   ? cJSON_GetObjectItemCaseSensitive(seen, "min_ttl")->valueint
                   : -1,
               600, "get_token: and min_ttl");
        cJSON_Delete(seen);
}

static void test_refusal(void)
{
        static const struct step steps[] = {
            {.read_request = true,
             .reply =
                 "{\"v\":1,\"ok\":false,\"error\":\"denied\",\"message\":\"policy says no\"}"}};
        struct credbroker_token *t = NULL;
        struct credbroker_error e;
        struct server s;
        int r;

        server_start(&s, steps, 1);
        r = credbroker_get_token(s.path, "alerts", NULL, 0, -1, 5000, &t, &e);
        server_stop(&s);
        is_int(r, -EACCES, "refusal: denied is -EACCES");
        is_int(e.failure, CREDBROKER_FAILURE_REFUSED, "refusal: reported as a refusal");
        is_str(e.code, "denied", "refusal: with the broker's code");
        is_str(e.message, "policy says no", "refusal: and its message");
        ok(!t, "refusal: no token");
        ok(s.request_len > 0 && !strstr(s.request, "scopes") && !strstr(s.request, "min_ttl"),
           "refusal: no scopes or min_ttl asked for when none given");
}

static void test_rate_limited_retry(void)
{
        static const struct step steps[] = {
            {.read_request = true,
             .reply = "{\"v\":1,\"ok\":false,\"error\":\"rate_limited\",\"message\":\"busy\"}"},
            {.read_request = true, .reply = "{\"v\":1,\"ok\":true,\"version\":\"2\"}"},
        };
        cJSON *request = credbroker_request_new("ping"), *reply = NULL;
        struct credbroker_error e;
        struct server s;
        int r;

        server_start(&s, steps, 2);
        r = credbroker_call(s.path, request, 10000, &reply, &e);
        server_stop(&s);
        is_int(r, 0, "rate_limited: tried again");
        is_int(s.connections, 2, "rate_limited: on a second connection");
        is_str(str_of(reply, "version"), "2", "rate_limited: the second answer is returned");
        cJSON_Delete(reply);
        cJSON_Delete(request);
}

/* One call against a server that answers with raw bytes; returns the call's result. */
static int call_raw(const struct step *step, int timeout_ms, struct credbroker_error *e)
{
        cJSON *request = credbroker_request_new("ping"), *reply = NULL;
        struct server s;
        int r;

        server_start(&s, step, 1);
        r = credbroker_call(s.path, request, timeout_ms, &reply, e);
        server_stop(&s);
        cJSON_Delete(reply);
        cJSON_Delete(request);
        return r;
}

static void test_bad_frames(void)
{
        struct credbroker_error e;
        int r;

        r = call_raw(&(struct step){.read_request = true, .raw = "\0\1\0\1{}", .raw_len = 6}, 5000,
                     &e);
        is_int(r, -EBADMSG, "oversize: a frame announced above 64 KiB is refused");
        is_int(e.failure, CREDBROKER_FAILURE_MALFORMED, "oversize: as malformed");
        r = call_raw(&(struct step){.read_request = true, .raw = "\0\0\0\0", .raw_len = 4}, 5000,
                     &e);
        is_int(r, -EBADMSG, "empty frame: refused");
        r = call_raw(&(struct step){.read_request = true, .reply = "[1,2]"}, 5000, &e);
        is_int(e.failure, CREDBROKER_FAILURE_MALFORMED, "not an object: malformed");
        r = call_raw(&(struct step){.read_request = true, .reply = "{\"v\":1} junk"}, 5000, &e);
        is_int(r, -EBADMSG, "trailing bytes after the JSON: malformed");
        r = call_raw(&(struct step){.read_request = true, .raw = "\0\0\0\10{\"v\"", .raw_len = 8},
                     5000, &e);
        is_int(e.failure, CREDBROKER_FAILURE_CLOSED, "half a frame, then closed: closed");
        is_int(r, -ECONNRESET, "closed: -ECONNRESET");
        r = call_raw(&(struct step){.read_request = true, .hold = true}, 300, &e);
        is_int(r, -ETIMEDOUT, "silence: times out");
        is_int(e.failure, CREDBROKER_FAILURE_TIMEOUT, "silence: as a timeout");
}

static void test_admin_strict(void)
{
        static const struct step lax[] = {{.read_request = true, .reply = "{\"ok\":true}"}};
        static const struct step dup[] = {
            {.read_request = true, .reply = "{\"v\":1,\"ok\":true,\"ok\":false}"}};
        static const struct step good[] = {
            {.read_request = true, .reply = "{\"v\":1,\"ok\":false,\"error\":\"not_found\"}"}};
        cJSON *request = credbroker_request_new("status"), *reply = NULL;
        struct credbroker_error e;
        struct server s;
        int r;

        server_start(&s, lax, 1);
        r = credbroker_admin_call(s.path, request, 5000, &reply, &e);
        server_stop(&s);
        is_int(r, -EBADMSG, "admin: a reply without \"v\" is malformed");
        server_start(&s, dup, 1);
        r = credbroker_admin_call(s.path, request, 5000, &reply, &e);
        server_stop(&s);
        is_int(e.failure, CREDBROKER_FAILURE_MALFORMED, "admin: a duplicate member is malformed");
        server_start(&s, good, 1);
        r = credbroker_admin_call(s.path, request, 5000, &reply, &e);
        server_stop(&s);
        is_int(r, 0, "admin: a refusal is a reply");
        is_int(credbroker_reply_error(reply, &e), -ENOENT, "admin: not_found is -ENOENT");
        is_str(e.message, "the broker refused the request", "admin: a refusal without message");
        cJSON_Delete(reply);
        cJSON_Delete(request);
}

static void test_secret_and_two_replies(void)
{
        static const struct step steps[] = {
            {.read_request = true,
             .raw = "\0\0\0\27{\"v\":1,\"ok\":true,\"n\":1}\0\0\0\27{\"v\":1,\"ok\":true,\"n\":2}",
             .raw_len = 54}};
        cJSON *request = credbroker_request_new("account.add"), *reply = NULL, *seen;
        struct credbroker_conn *c = NULL;
        struct credbroker_error e;
        struct server s;
        int r;

        server_start(&s, steps, 1);
        r = credbroker_connect(s.path, -1, &c, &e);
        is_int(r, 0, "conn: connected");
        r = credbroker_send_secret(c, request, "password", "p\"w\\\n", 5, 5000, &e);
        is_int(r, 0, "conn: a request with a secret is sent");
        r = credbroker_receive(c, 5000, CREDBROKER_RECEIVE_STRICT, &reply, &e);
        ok(r == 0 && cJSON_GetObjectItemCaseSensitive(reply, "n")->valueint == 1,
           "conn: the first of two frames sent at once");
        cJSON_Delete(reply);
        reply = NULL;
        r = credbroker_receive(c, 5000, CREDBROKER_RECEIVE_STRICT, &reply, &e);
        ok(r == 0 && cJSON_GetObjectItemCaseSensitive(reply, "n")->valueint == 2,
           "conn: then the second");
        cJSON_Delete(reply);
        credbroker_close(c);
        server_stop(&s);
        seen = seen_request(&s);
        is_str(str_of(seen, "password"), "p\"w\\\n", "conn: the secret arrives escaped and whole");
        is_str(str_of(seen, "op"), "account.add", "conn: beside the public members");
        cJSON_Delete(seen);
        cJSON_Delete(request);
}

static void test_request_errors(void)
{
        static const struct step steps[] = {{.hold = true}};
        cJSON *request = credbroker_request_new("x");
        char *big = calloc(1, 70000);
        struct credbroker_conn *c = NULL;
        struct credbroker_error e;
        struct server s;
        int r;

        server_start(&s, steps, 1);
        r = credbroker_connect(s.path, 1000, &c, &e);
        is_int(r, 0, "request: connected");
        r = credbroker_send_secret(c, request, "password", "\xff\xfe", 2, 1000, &e);
        is_int(r, -EINVAL, "request: a secret that is not UTF-8 is refused");
        is_int(e.failure, CREDBROKER_FAILURE_REQUEST, "request: before anything is sent");
        memset(big, 'a', 69999);
        cJSON_AddStringToObject(request, "big", big);
        r = credbroker_send(c, request, 1000, &e);
        is_int(r, -EMSGSIZE, "request: larger than a frame is refused");
        credbroker_close(c);
        server_stop(&s);
        free(big);
        cJSON_Delete(request);
}

static void test_connect_errors(void)
{
        char long_path[200];
        struct credbroker_error e;
        cJSON *reply = NULL, *request = credbroker_request_new("ping");
        int r;

        r = credbroker_call("/nonexistent-dir-xyz/socket", request, 2000, &reply, &e);
        is_int(r, -ENOENT, "connect: no socket is -ENOENT");
        is_int(e.failure, CREDBROKER_FAILURE_CONNECT, "connect: at connect");
        ok(strstr(e.message, "No such file") != NULL, "connect: the message says why");
        memset(long_path, 'x', sizeof(long_path) - 1);
        long_path[0] = '/';
        long_path[sizeof(long_path) - 1] = 0;
        r = credbroker_admin_call(long_path, request, 2000, &reply, &e);
        is_int(r, -ENAMETOOLONG, "connect: a path too long for sun_path");
        cJSON_Delete(request);
}

static const char *configured(enum credbroker_socket which, void *userdata)
{
        ++*(int *)userdata;
        return which == CREDBROKER_SOCKET_ADMIN ? "/conf/admin" : NULL;
}

static void test_socket_path(void)
{
        int calls = 0;

        unsetenv("CREDBROKER_SOCKET");
        unsetenv("CREDBROKER_ADMIN_SOCKET");
        is_str(credbroker_socket_path(CREDBROKER_SOCKET_CLIENT, "/opt", configured, &calls), "/opt",
               "path: the option first");
        is_int(calls, 0, "path: the configuration is not read then");
        setenv("CREDBROKER_SOCKET", "/env", 1);
        is_str(credbroker_socket_path(CREDBROKER_SOCKET_CLIENT, NULL, configured, &calls), "/env",
               "path: then the environment");
        setenv("CREDBROKER_SOCKET", "", 1);
        is_str(credbroker_socket_path(CREDBROKER_SOCKET_CLIENT, NULL, configured, &calls),
               "/run/credbroker/socket", "path: an empty variable counts as unset; the default");
        is_int(calls, 1, "path: the configuration was asked");
        is_str(credbroker_socket_path(CREDBROKER_SOCKET_ADMIN, NULL, configured, &calls),
               "/conf/admin", "path: the configuration's admin socket");
        setenv("CREDBROKER_ADMIN_SOCKET", "/env-admin", 1);
        is_str(credbroker_socket_path(CREDBROKER_SOCKET_ADMIN, NULL, NULL, NULL), "/env-admin",
               "path: the admin socket's own variable");
        unsetenv("CREDBROKER_ADMIN_SOCKET");
        is_str(credbroker_socket_path(CREDBROKER_SOCKET_ADMIN, NULL, NULL, NULL),
               "/run/credbroker/admin.socket", "path: the admin default");
        unsetenv("CREDBROKER_SOCKET");
}

int main(void)
{
        test_call_ping();
        test_get_token();
        test_refusal();
        test_rate_limited_retry();
        test_bad_frames();
        test_admin_strict();
        test_secret_and_two_replies();
        test_request_errors();
        test_connect_errors();
        test_socket_path();
        return done_testing();
}
