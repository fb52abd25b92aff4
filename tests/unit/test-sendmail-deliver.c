/* The CLI's delivery flow (cli/mail-deliver.c) and credbroker sendmail's command
 * (cli/cmd-sendmail.c), real code over scripted stand-ins for what they call: the broker's
 * socket (token, token.drop, mail.submit), Graph (graph_mail_send), mail_prepare and the
 * maildrop. Each exit code of issue 11 item 6 and each branch of the flow. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "client.h"
#include "commands.h"
#include "credbroker.h"
#include "json.h"
#include "mail-deliver.h"
#include "maildrop.h"
#include "queue.h"
#include "tap.h"

/* ---- the script ---- */

static struct {
        int connect_error;       /* credbroker_call fails to connect with it (0: it answers) */
        const char *token_error; /* the broker's refusal code for token; NULL: a token */
        enum graph_mail_result graph[4];
        long status[4];
        int n_graph;
        int submit_error;   /* 0, -ECONNREFUSED (connect) or a refusal's errno */
        int submit_busy;    /* refusals "busy" before the submission is taken */
        int maildrop_error; /* 0 or -EACCES */
        int prepare_error;  /* 0, -EBADMSG, -EPERM */
        int token_calls, drop_calls, graph_calls, submit_calls, maildrop_calls, queue_calls;
        char dropped[32], graph_tokens[64], prepared_mailbox[64], graph_url[64], queue_arg[16];
        char raw[256];
        bool delegated;
} S;

static void script(void)
{
        memset(&S, 0, sizeof(S));
}

cJSON *credbroker_token_request_new(const char *profile, const char *const *scopes, size_t n_scopes,
                                    long min_ttl)
{
        cJSON *r = cJSON_CreateObject();

        cJSON_AddStringToObject(r, "op", "token");
        cJSON_AddStringToObject(r, "profile", profile);
        cJSON_AddNumberToObject(r, "min_ttl", (double)min_ttl);
        return r;
}

int credbroker_call(const char *path, const cJSON *request, int timeout_ms, cJSON **ret_reply,
                    struct credbroker_error *err)
{
        char token[16];
        cJSON *r;

        S.token_calls++;
        if (S.connect_error) {
                *err = (struct credbroker_error){.failure = CREDBROKER_FAILURE_CONNECT,
                                                 .error = S.connect_error};
                return S.connect_error;
        }
        r = cJSON_CreateObject();
        if (S.token_error) {
                cJSON_AddFalseToObject(r, "ok");
                cJSON_AddStringToObject(r, "error", S.token_error);
                cJSON_AddStringToObject(r, "message", "scripted refusal");
        } else {
                snprintf(token, sizeof(token), "tok-%d", S.token_calls);
                cJSON_AddTrueToObject(r, "ok");
                cJSON_AddStringToObject(r, "access_token", token);
                cJSON_AddStringToObject(r, "graph", "https://graph.test:8443");
                cJSON_AddStringToObject(r, "mailbox", "alerts@contoso.com");
                cJSON_AddTrueToObject(r, "delegated");
        }
        *ret_reply = r;
        return 0;
}

int credbroker_reply_error(const cJSON *reply, struct credbroker_error *err)
{
        const char *code = json_get_string(reply, "error");

        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                return 0;
        *err = (struct credbroker_error){.failure = CREDBROKER_FAILURE_REFUSED};
        snprintf(err->code, sizeof(err->code), "%s", code);
        snprintf(err->message, sizeof(err->message), "scripted refusal");
        return strcmp(code, "denied") == 0            ? -EACCES
               : strcmp(code, "unknown_profile") == 0 ? -ENOENT
                                                      : -EAGAIN;
}

int credbroker_token_drop(const char *socket, const char *profile, const char *access_token,
                          struct credbroker_error *err)
{
        S.drop_calls++;
        snprintf(S.dropped, sizeof(S.dropped), "%s", access_token);
        return 0;
}

int credbroker_mail_submit(const char *socket, const char *profile, const uint8_t *msg, size_t len,
                           const char *message_id, size_t n_recipients, char **ret_queue_id,
                           struct credbroker_error *err)
{
        S.submit_calls++;
        if (S.submit_busy > 0) {
                S.submit_busy--;
                *err = (struct credbroker_error){.failure = CREDBROKER_FAILURE_REFUSED,
                                                 .error = -EAGAIN};
                snprintf(err->code, sizeof(err->code), "unavailable");
                snprintf(err->message, sizeof(err->message), "Too many submissions at once");
                err->retry_after = 60;
                return -EAGAIN;
        }
        if (S.submit_error == -ECONNREFUSED) {
                *err = (struct credbroker_error){.failure = CREDBROKER_FAILURE_CONNECT,
                                                 .error = S.submit_error};
                return S.submit_error;
        }
        if (S.submit_error) {
                *err = (struct credbroker_error){.failure = CREDBROKER_FAILURE_REFUSED,
                                                 .error = S.submit_error};
                snprintf(err->code, sizeof(err->code), "unavailable");
                snprintf(err->message, sizeof(err->message), "the spool is full");
                return S.submit_error;
        }
        *ret_queue_id = strdup("q-1");
        return 0;
}

int maildrop_write(const char *dir, const char *profile, const uint8_t *msg, size_t len)
{
        S.maildrop_calls++;
        return S.maildrop_error;
}

int graph_mail_send(const struct graph_mail_target *t, const char *access_token,
                    const uint8_t *message, size_t len, graph_mail_progress_fn *progress,
                    void *userdata, struct graph_mail_outcome *ret)
{
        int i = S.graph_calls++;
        size_t used = strlen(S.graph_tokens);

        snprintf(S.graph_tokens + used, sizeof(S.graph_tokens) - used, "%s ", access_token);
        snprintf(S.graph_url, sizeof(S.graph_url), "%s", t->graph_url);
        S.delegated = t->delegated;
        *ret = (struct graph_mail_outcome){.result = i < S.n_graph ? S.graph[i] : GRAPH_MAIL_SENT,
                                           .http_status = i < S.n_graph ? S.status[i] : 202};
        snprintf(ret->reason, sizeof(ret->reason), "scripted Graph answer %d", i);
        return 0;
}

int mail_prepare(const uint8_t *raw, size_t len, const struct mail_prepare_options *o,
                 struct mail_prepared *ret, char **ret_error)
{
        snprintf(S.prepared_mailbox, sizeof(S.prepared_mailbox), "%s",
                 o->mailbox ? o->mailbox : "(null)");
        snprintf(S.raw, sizeof(S.raw), "%.*s", (int)len, (const char *)raw);
        if (S.prepare_error) {
                *ret_error = strdup("scripted refusal of the message");
                return S.prepare_error;
        }
        *ret = (struct mail_prepared){.data = malloc(len + 1),
                                      .len = len,
                                      .from = strdup("alerts@contoso.com"),
                                      .message_id = strdup("<id@test>"),
                                      .n_recipients = 1};
        memcpy(ret->data, raw, len);
        return 0;
}

void mail_prepared_free(struct mail_prepared *p)
{
        free(p->data);
        free(p->from);
        free(p->message_id);
}

int mail_aliases_load(const char *path, struct mail_aliases **ret)
{
        *ret = NULL;
        return 0;
}

void mail_aliases_free(struct mail_aliases *a)
{
}

int queue_list(const char *admin_socket, const char *config)
{
        S.queue_calls++;
        snprintf(S.queue_arg, sizeof(S.queue_arg), "list");
        return 0;
}

int queue_flush(const char *admin_socket, const char *config, const char *id)
{
        S.queue_calls++;
        snprintf(S.queue_arg, sizeof(S.queue_arg), "flush%s", id ? " ID" : "");
        return 0;
}

const char *client_socket_path(const char *option, const char *config_option)
{
        return "/nonexistent/socket";
}

/* ---- the flow ---- */

static int run(struct mail_deliver_result *res)
{
        static char *const rcpt[] = {(char *)"ops@contoso.com"};
        struct mail_deliver_request r = {.socket = "/nonexistent/socket",
                                         .profile = "alerts",
                                         .raw = (const uint8_t *)"Subject: x\r\n\r\nbody\r\n",
                                         .len = 21,
                                         .recipients = rcpt,
                                         .n_recipients = 1,
                                         .fallback_mailbox = "fallback@contoso.com",
                                         .spool_wait_ms = 1500};

        return mail_deliver(&r, res);
}

static void test_sent(void)
{
        struct mail_deliver_result res;

        script();
        is_int(run(&res), 0, "sent: exit 0");
        ok(!res.queued, "sent: not queued");
        is_str(S.graph_url, "https://graph.test:8443", "Graph's URL from the token reply");
        ok(S.delegated, "delegated from the token reply");
        is_str(S.prepared_mailbox, "alerts@contoso.com", "prepared with the reply's mailbox");
        is_int(S.submit_calls, 0, "sent: nothing spooled");
}

static void test_token_rejected(void)
{
        struct mail_deliver_result res;

        script();
        S.graph[0] = GRAPH_MAIL_TOKEN_REJECTED;
        S.n_graph = 1;
        is_int(run(&res), 0, "401 then sent: exit 0");
        is_int(S.drop_calls, 1, "401: the token is dropped at the broker");
        is_str(S.dropped, "tok-1", "401: the rejected token is the one dropped");
        is_str(S.graph_tokens, "tok-1 tok-2 ", "401: a fresh token for the one retry");
        ok(!res.queued, "401 then sent: not queued");

        script();
        S.graph[0] = S.graph[1] = GRAPH_MAIL_TOKEN_REJECTED;
        S.n_graph = 2;
        is_int(run(&res), 0, "401 twice: exit 0");
        is_int(S.graph_calls, 2, "401 twice: one retry only");
        ok(res.queued && S.submit_calls == 1, "401 twice: spooled");
}

static void test_graph_outcomes(void)
{
        struct mail_deliver_result res;

        script();
        S.graph[0] = GRAPH_MAIL_TEMPORARY;
        S.status[0] = 503;
        S.n_graph = 1;
        is_int(run(&res), 0, "Graph 503: exit 0");
        ok(res.queued && S.submit_calls == 1, "Graph 503: spooled");
        is_str(res.queue_id, "q-1", "Graph 503: the spool's id");

        script();
        S.graph[0] = GRAPH_MAIL_DENIED;
        S.status[0] = 403;
        S.n_graph = 1;
        is_int(run(&res), EXIT_NOPERM, "Graph 403: exit 77");
        ok(strstr(res.reason, "scripted Graph answer") != NULL, "403: Graph's reason given");
        is_int(S.submit_calls, 0, "403: not spooled");

        script();
        S.graph[0] = GRAPH_MAIL_PERMANENT;
        S.status[0] = 400;
        S.n_graph = 1;
        is_int(run(&res), EXIT_DATAERR, "Graph 400: exit 65");
        script();
        S.graph[0] = GRAPH_MAIL_PERMANENT;
        S.status[0] = 404;
        S.n_graph = 1;
        is_int(run(&res), EXIT_UNAVAILABLE, "Graph 404 (no mailbox): exit 69");
}

static void test_broker_states(void)
{
        struct mail_deliver_result res;

        script();
        S.connect_error = S.submit_error = -ECONNREFUSED;
        is_int(run(&res), 0, "broker down, maildrop writable: exit 0");
        is_int(S.maildrop_calls, 1, "broker down: the maildrop");
        is_str(S.prepared_mailbox, "fallback@contoso.com", "broker down: mail.conf's mailbox");
        S.token_calls = S.maildrop_calls = 0;
        S.maildrop_error = -EACCES;
        is_int(run(&res), EXIT_TEMPFAIL, "broker down, maildrop not writable: exit 75");

        script();
        S.connect_error = -EACCES;
        is_int(run(&res), EXIT_NOPERM, "the socket refuses this user: exit 77");
        ok(S.submit_calls == 0 && S.maildrop_calls == 0, "socket refused: nothing kept");
        script();
        S.token_error = "denied";
        is_int(run(&res), EXIT_NOPERM, "policy denies: exit 77");
        ok(S.graph_calls == 0 && S.submit_calls == 0, "denied: neither sent nor spooled");
        script();
        S.token_error = "unknown_profile";
        is_int(run(&res), EXIT_CONFIG, "unknown profile: exit 78");
        script();
        S.token_error = "unavailable";
        is_int(run(&res), 0, "token endpoint down: exit 0");
        ok(res.queued && S.submit_calls == 1 && S.graph_calls == 0, "token endpoint down: spooled");
        script();
        S.token_error = "unavailable";
        S.submit_error = -EAGAIN;
        is_int(run(&res), EXIT_TEMPFAIL, "spool full for longer than the wait: exit 75");
        ok(strstr(res.reason, "the spool is full") != NULL, "spool full: says so");
        ok(S.submit_calls > 1, "a full spool is asked again within the wait");
        script();
        S.token_error = "unavailable";
        S.submit_busy = 3;
        is_int(run(&res), 0, "a spool busy three times, then taking it: exit 0");
        is_int(S.submit_calls, 4, "busy: asked again until it takes the message");
}

static void test_prepare_refusals(void)
{
        struct mail_deliver_result res;

        script();
        S.prepare_error = -EBADMSG;
        is_int(run(&res), EXIT_DATAERR, "an unparsable message: exit 65");
        is_str(res.reason, "scripted refusal of the message", "the preparation's reason");
        is_int(S.graph_calls + S.submit_calls, 0, "unparsable: neither sent nor spooled");
        script();
        S.prepare_error = -EPERM;
        is_int(run(&res), EXIT_NOPERM, "from_policy reject: exit 77");
        script();
        S.prepare_error = -ENXIO;
        is_int(run(&res), EXIT_NOUSER, "a local recipient nobody knows: exit 67");
}

/* ---- the command ---- */

static int sendmail_with_input(const char *input, const char *const *args)
{
        char *argv[16];
        int argc = 0, fds[2], saved = dup(STDIN_FILENO), r;

        while (args[argc]) {
                argv[argc] = (char *)args[argc];
                argc++;
        }
        argv[argc] = NULL;
        if (pipe(fds) < 0 || write(fds[1], input, strlen(input)) < 0)
                return -1;
        close(fds[1]);
        dup2(fds[0], STDIN_FILENO);
        close(fds[0]);
        r = cmd_sendmail(argc, argv);
        dup2(saved, STDIN_FILENO);
        close(saved);
        return r;
}

static void test_command(void)
{
        const char *cron[] = {"sendmail", "-FCronDaemon", "-i", "-odi", "-oem",
                              "-oi",      "-t",           "-f", "root", NULL};
        const char *mdadm[] = {"sendmail", "-t", NULL}, *bi[] = {"sendmail", "-bi", NULL};
        const char *bp[] = {"sendmail", "-bp", NULL}, *q[] = {"sendmail", "-q", NULL};
        const char *bad[] = {"sendmail", "-bd", NULL};

        setenv("CREDBROKER_MAIL_CONFIG", "/nonexistent/mail.conf", 1);
        unsetenv("CREDBROKER_PROFILE");
        script();
        is_int(sendmail_with_input("To: a@x.org\n\nhi\n", cron), EXIT_CONFIG,
               "no -p, no CREDBROKER_PROFILE, no mail.conf: exit 78");
        setenv("CREDBROKER_PROFILE", "alerts", 1);
        script();
        is_int(sendmail_with_input("To: a@x.org\n\n.\nhi\n", cron), 0, "cron's mail: exit 0");
        is_str(S.raw, "To: a@x.org\n\n.\nhi\n", "with -i the dot line is kept");
        script();
        is_int(sendmail_with_input("To: a@x.org\n\nhi\n.\nrest\n", mdadm), 0, "mdadm -t: exit 0");
        is_str(S.raw, "To: a@x.org\n\nhi\n", "without -i the dot line ends the message");
        script();
        is_int(sendmail_with_input("", bi), 0, "-bi: exit 0");
        is_int(S.token_calls, 0, "-bi: the broker is not asked");
        script();
        is_int(sendmail_with_input("", bp), 0, "-bp: exit 0");
        is_str(S.queue_arg, "list", "-bp: credbroker queue list");
        script();
        is_int(sendmail_with_input("", q), 0, "-q: exit 0");
        is_str(S.queue_arg, "flush", "-q: credbroker queue flush");
        is_int(sendmail_with_input("", bad), EXIT_USAGE, "-bd: exit 64");
        setenv("CREDBROKER_PROFILE", "Not A Profile", 1);
        is_int(sendmail_with_input("To: a@x.org\n\nhi\n", mdadm), EXIT_USAGE,
               "a malformed CREDBROKER_PROFILE: exit 64");
        unsetenv("CREDBROKER_PROFILE");
}

int main(void)
{
        json_init();
        test_sent();
        test_token_rejected();
        test_graph_outcomes();
        test_broker_states();
        test_prepare_refusals();
        test_command();
        return done_testing();
}
