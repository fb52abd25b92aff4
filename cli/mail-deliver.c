/* The CLI's delivery flow; see mail-deliver.h. Everything the CLI needs to reach Graph comes from
 * the broker's token reply (graph, mailbox, delegated, ca_file): no root-only file is read, so an
 * unprivileged job can mail with nothing but the client socket. */
#include "mail-deliver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "client.h"
#include "credbroker.h"
#include "json.h"
#include "log.h"
#include "maildrop.h"
#include "util.h"

/* A refresh can take as long as the broker's upstream timeout; allow for it and a margin. */
#define TOKEN_TIMEOUT_MS   60000
#define GRAPH_DEFAULT_BASE "https://graph.microsoft.com"

/* How a token request ended. */
enum token_state {
        TOKEN_OK,
        TOKEN_TEMPORARY, /* broker not running, busy, token endpoint down, reauth needed: spool */
        TOKEN_FINAL,     /* refused for good (denied, unknown profile): exit with the code */
};

static int say(struct mail_deliver_result *ret, int exit_code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(ret->reason, sizeof(ret->reason), fmt, ap);
        va_end(ap);
        /* The broker's and Graph's words may carry control characters: never to a terminal. */
        for (char *p = ret->reason; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        ret->exit_code = exit_code;
        return exit_code;
}

/* Asks for a token: TOKEN_OK with *ret_reply, else the state with ret's reason (and exit code
 * for TOKEN_FINAL). */
static enum token_state request_token(const struct mail_deliver_request *r, cJSON **ret_reply,
                                      struct mail_deliver_result *ret)
{
        _cleanup_json_ cJSON *request =
            credbroker_token_request_new(r->profile, NULL, 0, MAIL_DELIVER_MIN_TTL);
        _cleanup_json_ cJSON *reply = NULL;
        struct credbroker_error e = {0};
        int k;

        if (!request)
                return say(ret, EXIT_SOFTWARE, "out of memory"), TOKEN_FINAL;
        k = credbroker_call(r->socket, request, TOKEN_TIMEOUT_MS, &reply, &e);
        if (k < 0 && e.failure == CREDBROKER_FAILURE_CONNECT && k == -EACCES)
                return say(ret, EXIT_NOPERM, "this user may not connect to the broker's socket %s",
                           r->socket),
                       TOKEN_FINAL;
        if (k < 0) {
                say(ret, EXIT_TEMPFAIL, "the broker at %s cannot be reached: %s", r->socket,
                    strerror(-k));
                return e.failure == CREDBROKER_FAILURE_REQUEST ? TOKEN_FINAL : TOKEN_TEMPORARY;
        }
        k = credbroker_reply_error(reply, &e);
        if (k == 0 && !json_get_string(reply, "access_token"))
                return say(ret, EXIT_SOFTWARE, "the broker's reply has no access token"),
                       TOKEN_FINAL;
        if (k == 0) {
                *ret_reply = TAKE_PTR(reply);
                return TOKEN_OK;
        }
        switch (k) {
        case -EACCES:
                return say(ret, EXIT_NOPERM, "%s (%s)", e.message, e.code), TOKEN_FINAL;
        case -ENOENT:
        case -ENOKEY:
                return say(ret, EXIT_CONFIG, "%s (%s)", e.message, e.code), TOKEN_FINAL;
        default:
                /* unavailable, rate_limited, reauth_required, internal: the spool keeps it. */
                say(ret, EXIT_TEMPFAIL, "%s (%s)", e.message, e.code);
                return TOKEN_TEMPORARY;
        }
}

/* Graph's base URL from the token reply: https:// and bounded, as the broker checks it. */
static const char *graph_base(const cJSON *reply)
{
        const char *graph = json_get_string(reply, "graph");

        if (graph && strncmp(graph, "https://", 8) == 0 && strlen(graph) < 512 &&
            !strpbrk(graph, " \t\r\n"))
                return graph;
        return GRAPH_DEFAULT_BASE;
}

int mail_deliver_graph_exit(const struct graph_mail_outcome *o)
{
        switch (o->result) {
        case GRAPH_MAIL_SENT:
                return 0;
        case GRAPH_MAIL_DENIED:
                return EXIT_NOPERM;
        case GRAPH_MAIL_PERMANENT:
                /* 400, 413, 415, 422 are about the message; 404 (no such mailbox) and the like
                 * about the account: the caller's "service unavailable". */
                return o->http_status == 0 || o->http_status == 400 || o->http_status == 413 ||
                               o->http_status == 415 || o->http_status == 422
                           ? EXIT_DATAERR
                           : EXIT_UNAVAILABLE;
        default:
                return -1;
        }
}

/* One sendMail with the token of reply. */
static int send_once(const struct mail_deliver_request *r, const cJSON *reply,
                     const struct mail_prepared *m, struct graph_mail_outcome *o)
{
        const cJSON *delegated = cJSON_GetObjectItemCaseSensitive(reply, "delegated");
        struct graph_mail_target t = {
            .graph_url = graph_base(reply),
            .ca_file = json_get_string(reply, "ca_file"),
            .mailbox = r->mailbox ? r->mailbox : json_get_string(reply, "mailbox"),
            .delegated = cJSON_IsTrue(delegated),
            .from = m->from,
            .save_to_sent_items = r->save_to_sent_items,
        };

        *o = (struct graph_mail_outcome){.result = GRAPH_MAIL_TEMPORARY};
        return graph_mail_send(&t, json_get_string(reply, "access_token"), m->data, m->len,
                               r->progress, r->userdata, o);
}

/* Sends with the token of *reply; a token Graph rejects is dropped at the broker and replaced
 * once. 0 and the exit code in ret when Graph gave a final answer; 1 when the message must go to
 * the spool (ret->reason says why). */
static int send_with_retry(const struct mail_deliver_request *r, cJSON **reply,
                           const struct mail_prepared *m, struct mail_deliver_result *ret)
{
        struct graph_mail_outcome o;
        int k, code;

        for (unsigned attempt = 0;; attempt++) {
                struct credbroker_error e = {0};

                k = send_once(r, *reply, m, &o);
                if (k < 0) {
                        say(ret, EXIT_TEMPFAIL, "sending failed locally: %s", strerror(-k));
                        return 1;
                }
                code = mail_deliver_graph_exit(&o);
                if (code >= 0) {
                        say(ret, code, "%s", code == 0 ? "" : o.reason);
                        return 0;
                }
                say(ret, EXIT_TEMPFAIL, "%s", o.reason[0] ? o.reason : "Graph is unavailable");
                if (o.result != GRAPH_MAIL_TOKEN_REJECTED || attempt > 0)
                        return 1;
                /* 401: the cached token is stale; the broker drops it (only ours) and the next
                 * request refreshes. */
                k = credbroker_token_drop(r->socket, r->profile,
                                          json_get_string(*reply, "access_token"), &e);
                if (k < 0)
                        log_debug_errno(k, "Dropping the rejected token failed");
                cJSON_Delete(*reply);
                *reply = NULL;
                if (request_token(r, reply, ret) != TOKEN_OK)
                        return 1;
        }
}

/* credbroker_mail_submit(), again while the spool answers that it is busy (a burst of cron jobs
 * at the same minute meets the per-user limit of submissions at once) or full, for at most the
 * request's spool_wait_ms: a refusal then would lose the mail, as cron does not retry. */
static int submit(const struct mail_deliver_request *r, const struct mail_prepared *m,
                  char **ret_queue_id, struct credbroker_error *e)
{
        unsigned wait_ms = r->spool_wait_ms ? r->spool_wait_ms : MAIL_DELIVER_SPOOL_WAIT_MS;
        uint64_t deadline = now_boottime_usec() + (uint64_t)wait_ms * 1000;
        uint64_t pause_ms = 100;

        for (;;) {
                uint64_t now, sleep_ms;
                int k;

                *e = (struct credbroker_error){0};
                k = credbroker_mail_submit(r->socket, r->profile, m->data, m->len, m->message_id,
                                           m->n_recipients, ret_queue_id, e);
                if (k == 0 || e->failure != CREDBROKER_FAILURE_REFUSED ||
                    (k != -EAGAIN && k != -EBUSY))
                        return k;
                /* 100 ms doubling to 2 s, or the broker's Retry-After when shorter: its figure is
                 * for programs that give up (60 s for a full spool), while a burst of cron jobs
                 * clears in moments. Jittered so that a burst does not come back in step. */
                sleep_ms = e->retry_after && e->retry_after * 1000 < pause_ms
                               ? e->retry_after * 1000
                               : pause_ms;
                sleep_ms += random_below(sleep_ms / 2 + 1);
                pause_ms = pause_ms * 2 > 2000 ? 2000 : pause_ms * 2;
                now = now_boottime_usec();
                if (now + sleep_ms * 1000 > deadline)
                        return k;
                log_debug("sendmail: the spool is busy (%s); trying again in %llu ms", e->message,
                          (unsigned long long)sleep_ms);
                (void)nanosleep(&(struct timespec){.tv_sec = (time_t)(sleep_ms / 1000),
                                                   .tv_nsec = (long)(sleep_ms % 1000) * 1000000},
                                NULL);
        }
}

/* Hands the prepared message to the broker's spool, or with the broker down to the maildrop. */
static int spool(const struct mail_deliver_request *r, const struct mail_prepared *m,
                 struct mail_deliver_result *ret)
{
        _cleanup_free_ char *queue_id = NULL;
        struct credbroker_error e = {0};
        char why[sizeof(ret->reason)];
        int k;

        snprintf(why, sizeof(why), "%s", ret->reason);
        k = submit(r, m, &queue_id, &e);
        if (k == 0) {
                ret->queued = true;
                snprintf(ret->queue_id, sizeof(ret->queue_id), "%s", queue_id ? queue_id : "");
                return say(ret, 0, "queued in the broker's spool: %s", why);
        }
        if (e.failure == CREDBROKER_FAILURE_REFUSED)
                return say(ret,
                           k == -EACCES   ? EXIT_NOPERM
                           : k == -ENOENT ? EXIT_CONFIG
                                          : EXIT_TEMPFAIL,
                           "the broker's spool refused the message: %s (%s)", e.message, e.code);
        if (e.failure != CREDBROKER_FAILURE_CONNECT || (k != -ENOENT && k != -ECONNREFUSED))
                return say(ret, EXIT_TEMPFAIL, "the broker's spool cannot take the message: %s",
                           strerror(-k));
        /* Not running: the maildrop, which the broker empties when it starts, if we may. */
        k = maildrop_write(r->maildrop_dir ? r->maildrop_dir : MAIL_MAILDROP_DIR, r->profile,
                           m->data, m->len);
        if (k < 0)
                return say(ret, EXIT_TEMPFAIL,
                           "the broker is not running and the maildrop %s cannot take the "
                           "message (%s)",
                           r->maildrop_dir ? r->maildrop_dir : MAIL_MAILDROP_DIR, strerror(-k));
        ret->queued = true;
        return say(ret, 0, "the broker is not running: left in the maildrop");
}

static int prepare(const struct mail_deliver_request *r, const char *mailbox,
                   struct mail_prepared *m, struct mail_deliver_result *ret)
{
        _cleanup_free_ char *error = NULL;
        struct mail_prepare_options o = {
            .mailbox = mailbox,
            .envelope_from = r->envelope_from,
            .full_name = r->full_name,
            .default_domain = r->default_domain,
            .aliases = r->aliases,
            .from_policy = r->from_policy,
            .recipients_from_headers = r->recipients_from_headers,
            .from_optional = !mailbox,
            .recipients = r->recipients,
            .n_recipients = r->n_recipients,
        };
        int k = mail_prepare(r->raw, r->len, &o, m, &error);

        if (k == 0)
                return 0;
        /* -ENXIO: a local recipient with neither an alias nor a default domain. */
        return say(ret,
                   k == -EPERM                       ? EXIT_NOPERM
                   : k == -EBADMSG || k == -EMSGSIZE ? EXIT_DATAERR
                   : k == -ENXIO                     ? EXIT_NOUSER
                                                     : EXIT_SOFTWARE,
                   "%s", error ? error : strerror(-k));
}

int mail_deliver(const struct mail_deliver_request *r, struct mail_deliver_result *ret)
{
        _cleanup_json_ cJSON *reply = NULL;
        struct mail_prepared m = {0};
        enum token_state state;
        const char *mailbox;
        int k;

        *ret = (struct mail_deliver_result){0};
        state = request_token(r, &reply, ret);
        if (state == TOKEN_FINAL)
                return ret->exit_code;
        mailbox = r->mailbox ? r->mailbox : reply ? json_get_string(reply, "mailbox") : NULL;
        if (prepare(r, mailbox ? mailbox : r->fallback_mailbox, &m, ret) != 0)
                return ret->exit_code;
        k = state == TOKEN_OK ? send_with_retry(r, &reply, &m, ret) : 1;
        if (k == 1)
                spool(r, &m, ret);
        mail_prepared_free(&m);
        return ret->exit_code;
}
