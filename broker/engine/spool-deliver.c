/* Delivery attempts: for a due message, the mailbox's gate (Graph's concurrency and rate), a
 * token of the profile's account from the engine (the cache, or a waiter on a refresh), then
 * the file moved to inflight/ (fsynced) before credbroker-deliver runs with the message as fd 3
 * and the token line on stdin; its one-line result (docs/mail-spool.md) decides: sent ->
 * deleted, temporary -> back to queue/ after backoff, token_rejected -> the token dropped and
 * one immediate retry, permanent or denied -> failed/. A child that ends without a result may
 * have sent the message: it is held, never sent again on its own (P13). */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "accounts.h"
#include "broker.h"
#include "config.h"
#include "event.h"
#include "fault.h"
#include "json.h"
#include "log.h"
#include "policy.h"
#include "refresh.h"
#include "spool-internal.h"
#include "token-cache.h"
#include "waiter.h"

#define TOKEN_MIN_TTL_SEC 300 /* a large upload takes a while */
#define RESULT_MAX        4096
#define NO_TOKEN_WAIT_SEC 60

struct spool_delivery {
        struct spool *spool;
        struct spool_entry *entry;
        struct spool_mailbox *mailbox;
        struct watch pidfd;
        pid_t pid;
        int out_fd; /* the child's stdout */
        uint64_t started_usec;
        struct secret *line;  /* the token line for stdin */
        struct secret *token; /* to drop it when Graph rejects it */
};

static void delivery_free(struct spool_delivery *d)
{
        if (!d)
                return;
        if (d->out_fd >= 0)
                close(d->out_fd);
        secret_free(d->line);
        secret_free(d->token);
        free(d);
}

static void delivery_free_void(void *d)
{
        delivery_free(d);
}

/* {"access_token":T,"graph":…,"mailbox":…,"delegated":…,"ca_file":…}\n in secret memory. */
static int token_line(const struct broker *b, const struct account *a, const struct secret *token,
                      struct secret **ret)
{
        _cleanup_json_ cJSON *rest = cJSON_CreateObject();
        const char *graph = account_meta_graph_url(&a->meta, b->config->graph_url);
        char *text;
        int r;

        if (!token_is_valid(secret_str(token), secret_len(token)))
                return -EBADMSG;
        if (!rest || (graph && !cJSON_AddStringToObject(rest, "graph", graph)) ||
            (a->meta.mailbox && !cJSON_AddStringToObject(rest, "mailbox", a->meta.mailbox)) ||
            !cJSON_AddBoolToObject(rest, "delegated",
                                   !account_flow_is_app_only(a->meta.flow_kind)) ||
            (b->config->ca_bundle &&
             !cJSON_AddStringToObject(rest, "ca_file", b->config->ca_bundle)))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(rest);
        if (!text)
                return -ENOMEM;
        r = secret_new(secret_len(token) + strlen(text) + 32, ret);
        /* token_is_valid(): no quote or backslash, so it needs no escaping. */
        if (r == 0)
                r = secret_append(*ret, "{\"access_token\":\"", 17);
        if (r == 0)
                r = secret_append(*ret, secret_str(token), secret_len(token));
        if (r == 0)
                r = secret_append(*ret, strlen(text) > 2 ? "\"," : "\"", strlen(text) > 2 ? 2 : 1);
        if (r == 0)
                r = secret_append(*ret, text + 1, strlen(text) - 1);
        if (r == 0)
                r = secret_append(*ret, "\n", 1);
        json_free_string(text);
        return r;
}

/* ---- the outcome ---- */

static void release(struct spool_delivery *d)
{
        spool_gate_release(&d->mailbox->gate);
        d->entry->delivery = NULL;
}

static void after_sent(struct spool *s, struct spool_entry *e, int result)
{
        if (result < 0) {
                /* Graph took it but the file stayed: hold it rather than send it again. */
                e->state = SPOOL_HELD;
                snprintf(e->reason, sizeof(e->reason), "sent, but its file could not be removed");
                return;
        }
        spool_unlink_entry(s, e);
        spool_entry_free(e);
}

static void after_requeue(struct spool *s, struct spool_entry *e, int result)
{
        if (result < 0) {
                e->state = SPOOL_HELD;
                return;
        }
        if (e->next_usec == 0 && e->state == SPOOL_QUEUED) {
                /* token_rejected: once more at once with a fresh token */
                spool_deliver_due(s);
                return;
        }
        spool_defer(s, e, (uint32_t)e->next_usec, e->reason);
}

struct result {
        char kind[32];
        uint32_t retry_after;
        char reason[SPOOL_REASON_MAX];
};

static int parse_result(const char *buf, size_t len, struct result *ret)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *kind, *reason;
        uint64_t retry_after = 0;
        const char *nl = memchr(buf, '\n', len);

        if (json_parse(buf, nl ? (size_t)(nl - buf) : len, &json) < 0 || !cJSON_IsObject(json))
                return -EBADMSG;
        kind = json_get_string(json, "result");
        reason = json_get_string(json, "reason");
        if (!kind)
                return -EBADMSG;
        snprintf(ret->kind, sizeof(ret->kind), "%s", kind);
        snprintf(ret->reason, sizeof(ret->reason), "%s", reason ? reason : kind);
        /* It may quote Graph: one line, no control characters, for the logs and failed/. */
        for (char *p = ret->reason; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        (void)json_get_u64(json, "retry_after", &retry_after);
        ret->retry_after = retry_after > 86400 ? 86400 : (uint32_t)retry_after;
        return 0;
}

static void act_on_result(struct spool *s, struct spool_delivery *d, const struct result *res)
{
        struct spool_entry *e = d->entry;

        if (strcmp(res->kind, "sent") == 0) {
                fault_point("spool-after-sent");
                log_info("Spool: %s sent (%s).", e->id, e->message_id ? e->message_id : "-");
                spool_audit(s, e, "mail.sent", NULL);
                if (spool_move(s, e, SPOOL_DIR_INFLIGHT, _SPOOL_DIR_MAX, after_sent) < 0)
                        after_sent(s, e, -ENOMEM);
                return;
        }
        if (strcmp(res->kind, "permanent") == 0 || strcmp(res->kind, "denied") == 0) {
                spool_fail(s, e, SPOOL_DIR_INFLIGHT, res->reason);
                return;
        }
        snprintf(e->reason, sizeof(e->reason), "%s", res->reason);
        e->state = SPOOL_QUEUED;
        if (strcmp(res->kind, "token_rejected") == 0) {
                (void)token_cache_drop_token(&s->b->cache, d->mailbox->account,
                                             secret_str(d->token), secret_len(d->token));
                if (!e->token_retried) {
                        e->token_retried = true;
                        e->next_usec = 0;
                        log_info("Spool: %s: Graph rejected the token; retrying at once.", e->id);
                        if (spool_move(s, e, SPOOL_DIR_INFLIGHT, SPOOL_DIR_QUEUE, after_requeue) <
                            0)
                                e->state = SPOOL_HELD;
                        return;
                }
        }
        /* next_usec carries retry_after to after_requeue(), which sets the real time. */
        e->next_usec = res->retry_after ? res->retry_after : 1;
        e->token_retried = false;
        if (spool_move(s, e, SPOOL_DIR_INFLIGHT, SPOOL_DIR_QUEUE, after_requeue) < 0)
                e->state = SPOOL_HELD;
}

static void hold(struct spool *s, struct spool_entry *e, const char *why)
{
        e->state = SPOOL_HELD;
        snprintf(e->reason, sizeof(e->reason),
                 "%s: the message may have been sent; flush it to send it again, or delete it",
                 why);
        log_warning("Spool: %s held: %s", e->id, e->reason);
        spool_audit(s, e, "mail.held", e->reason);
}

static void on_child_exit(struct watch *w, uint32_t events)
{
        struct spool_delivery *d = container_of(w, struct spool_delivery, pidfd);
        struct spool *s = d->spool;
        char buf[RESULT_MAX];
        ssize_t n;
        siginfo_t si = {0};
        struct result res;
        int fd;

        (void)events;
        if (waitid(P_PID, (id_t)d->pid, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                return;
        n = read(d->out_fd, buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = 0;
        fd = d->pidfd.fd;
        /* Freed after this batch of events: nothing of it is touched again meanwhile. */
        event_release(s->b->epfd, &d->pidfd, d, delivery_free_void);
        close(fd);
        release(d);
        if (n > 0 && parse_result(buf, (size_t)n, &res) == 0)
                act_on_result(s, d, &res);
        else
                hold(s, d->entry,
                     si.si_code == CLD_EXITED ? "the delivery helper gave no result"
                                              : "the delivery helper was killed");
        /* Its gate has room again. */
        spool_deliver_due(s);
}

/* ---- starting one ---- */

/* In the forked child of a threaded process: async-signal-safe calls only until execve(). The
 * broker's blocked signals and ignored SIGPIPE are not the helper's. */
static void child_exec(const char *helper, int in, int out, int msg)
{
        char *const argv[] = {(char *)"credbroker-deliver", NULL};
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigset_t none;

        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        (void)sigaction(SIGPIPE, &dfl, NULL);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(msg, 3) < 0)
                _exit(127);
        execve(helper, argv, environ);
        _exit(127);
}

/* Forks the helper with its three descriptors; the parent keeps the pidfd and stdout. */
static int spawn(struct spool *s, struct spool_delivery *d, int msg_fd)
{
        int in[2] = {-1, -1}, out[2] = {-1, -1}, r = 0;
        const char *helper = s->b->config->mail.deliver_helper;
        pid_t pid;

        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto out;
        }
        if (pid == 0)
                child_exec(helper, in[0], out[1], msg_fd);
        d->pid = pid;
        d->pidfd.fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (write(in[1], secret_data(d->line), secret_len(d->line)) < 0)
                log_warning("Spool: cannot write the token to the delivery helper.");
        d->out_fd = out[0];
        out[0] = -1;
        if (d->pidfd.fd < 0 || event_add(s->b->epfd, &d->pidfd, EPOLLIN) < 0) {
                r = -EIO;
                kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
        }
out:
        for (int i = 0; i < 2; i++) {
                if (in[i] >= 0)
                        close(in[i]);
                if (out[i] >= 0)
                        close(out[i]);
        }
        return r;
}

static void after_inflight(struct spool *s, struct spool_entry *e, int result)
{
        struct spool_delivery *d = e->delivery;
        int fd = -1;

        fault_point("spool-after-inflight");
        if (!d)
                return; /* stopped before the move was done: held at the next start */
        if (result < 0 || s->b->stopping) {
                release(d);
                delivery_free(d);
                e->state = result < 0 ? SPOOL_QUEUED : SPOOL_HELD;
                return;
        }
        fd = openat(s->dirs[SPOOL_DIR_INFLIGHT], e->id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || lseek(fd, (off_t)e->body_offset, SEEK_SET) < 0 || spawn(s, d, fd) < 0) {
                log_error("Spool: cannot run %s for %s.", s->b->config->mail.deliver_helper, e->id);
                release(d);
                delivery_free(d);
                /* Nothing was sent: back into the queue, after the backoff. */
                e->state = SPOOL_QUEUED;
                e->next_usec = 1;
                snprintf(e->reason, sizeof(e->reason), "the delivery helper could not be run");
                if (spool_move(s, e, SPOOL_DIR_INFLIGHT, SPOOL_DIR_QUEUE, after_requeue) < 0)
                        e->state = SPOOL_HELD;
        }
        if (fd >= 0)
                close(fd);
}

static int start(struct spool *s, struct spool_entry *e, struct spool_mailbox *m,
                 const struct account *a, const struct cached_token *t)
{
        struct spool_delivery *d = calloc(1, sizeof(*d));
        int r;

        if (!d)
                return -ENOMEM;
        *d = (struct spool_delivery){.spool = s,
                                     .entry = e,
                                     .mailbox = m,
                                     .out_fd = -1,
                                     .pidfd = {.fd = -1, .fn = on_child_exit},
                                     .started_usec = now_boottime_usec()};
        r = token_line(s->b, a, t->access_token, &d->line);
        if (r == 0)
                r = secret_new_from(secret_str(t->access_token), secret_len(t->access_token),
                                    &d->token);
        if (r == 0)
                r = spool_move(s, e, SPOOL_DIR_QUEUE, SPOOL_DIR_INFLIGHT, after_inflight);
        if (r < 0) {
                delivery_free(d);
                return r;
        }
        e->state = SPOOL_RUNNING;
        e->delivery = d;
        return 0;
}

/* ---- tokens ---- */

static void on_token(struct broker *b, struct waiter *w, enum refresh_outcome outcome)
{
        struct spool *s = b->spool;
        struct spool_mailbox *m = s ? spool_mailbox_get(s, w->account->name) : NULL;
        struct cached_token *t = token_cache_get(&b->cache, w->account->name, w->scope_key);
        uint64_t now = now_boottime_usec();

        if (m) {
                m->token_wait = false;
                if (!t || cached_token_ttl(t, now) == 0) {
                        log_warning("Spool: no token for account %s (outcome %d); mail waits.",
                                    m->account, (int)outcome);
                        m->no_token_until = now + NO_TOKEN_WAIT_SEC * USEC_PER_SEC;
                }
        }
        waiter_free(w);
        if (s && !b->stopping)
                spool_deliver_due(s);
}

/* The profile's account and a token that serves a delivery, or NULL with a refresh started (or
 * with *ret_reason set when the message cannot be tried now). */
static const struct cached_token *token_for(struct spool *s, const struct spool_entry *e,
                                            struct spool_mailbox **ret_m, struct account **ret_a,
                                            const char **ret_reason)
{
        struct broker *b = s->b;
        const struct policy_profile *p = policy_set_find(b->policy, e->profile);
        uint64_t now = now_boottime_usec();
        const char *scope_key;
        struct waiter *w;

        *ret_reason = NULL;
        if (!p) {
                *ret_reason = "the profile no longer exists";
                return NULL;
        }
        *ret_m = spool_mailbox_get(s, policy_profile_account(p));
        if (!*ret_m || accounts_get(b, policy_profile_account(p), ret_a) < 0) {
                *ret_reason = "the account cannot be loaded";
                return NULL;
        }
        scope_key = policy_profile_scope_key(p);
        struct cached_token *t =
            accounts_cached_token(&b->cache, *ret_a, scope_key, TOKEN_MIN_TTL_SEC,
                                  b->config->min_refresh_interval_sec, now);
        if (t || (*ret_m)->token_wait || now < (*ret_m)->no_token_until)
                return t;
        w = calloc(1, sizeof(*w));
        if (!w || !(w->scope_key = strdup(scope_key))) {
                free(w);
                return NULL;
        }
        w->account = *ret_a;
        w->min_ttl = TOKEN_MIN_TTL_SEC;
        w->answer = on_token;
        (*ret_m)->token_wait = true;
        account_add_waiter(*ret_a, w);
        refresh_start(b, *ret_a, w->scope_key);
        return NULL;
}

static void try_entry(struct spool *s, struct spool_entry *e, uint64_t now)
{
        const struct config_mail *cfg = &s->b->config->mail;
        struct spool_mailbox *m = NULL;
        struct account *a = NULL;
        const struct cached_token *t;
        const char *reason;

        if (spool_expired(e->queued_at, now_realtime_usec() / USEC_PER_SEC, cfg->lifetime_sec)) {
                char why[SPOOL_REASON_MAX];
                snprintf(why, sizeof(why), "not delivered within its lifetime; last: %.200s",
                         e->reason[0] ? e->reason : "no attempt");
                spool_fail(s, e, SPOOL_DIR_QUEUE, why);
                return;
        }
        t = token_for(s, e, &m, &a, &reason);
        if (reason) {
                spool_defer(s, e, 0, reason);
                return;
        }
        if (!t || !spool_gate_admit(&m->gate, cfg->concurrency, cfg->rate_per_minute, now))
                return;
        if (start(s, e, m, a, t) < 0)
                spool_gate_release(&m->gate);
}

void spool_deliver_due(struct spool *s)
{
        uint64_t now = now_boottime_usec();
        struct spool_entry *next;

        if (s->b->stopping)
                return;
        for (struct spool_entry *e = s->entries; e; e = next) {
                next = e->next; /* try_entry() may move it to failed */
                if (e->state == SPOOL_QUEUED && !e->moving && !e->deleted && e->next_usec <= now)
                        try_entry(s, e, now);
        }
}

void spool_deliver_timeouts(struct spool *s)
{
        uint64_t limit = s->b->config->mail.deliver_timeout_sec * USEC_PER_SEC;
        uint64_t now = now_boottime_usec();

        for (struct spool_entry *e = s->entries; e; e = e->next) {
                struct spool_delivery *d = e->delivery;
                if (d && d->pid > 0 && now - d->started_usec > limit) {
                        log_warning("Spool: the delivery of %s takes too long; killing it.", e->id);
                        (void)kill(d->pid, SIGKILL);
                }
        }
}

/* How long shutdown waits for running deliveries to report (systemd's stop timeout is longer). */
#define STOP_WAIT_MSEC 10000

/* Waits up to the deadline for d's child; its result is then handled as on the loop. */
static bool wait_for(struct spool_delivery *d, uint64_t deadline_usec)
{
        uint64_t now = now_boottime_usec();
        struct pollfd p = {.fd = d->pidfd.fd, .events = POLLIN};

        if (now >= deadline_usec || d->pidfd.fd < 0)
                return false;
        if (poll(&p, 1, (int)((deadline_usec - now) / 1000)) <= 0 || !(p.revents & POLLIN))
                return false;
        on_child_exit(&d->pidfd, EPOLLIN);
        return true;
}

void spool_deliver_kill_all(struct spool *s)
{
        uint64_t deadline = now_boottime_usec() + STOP_WAIT_MSEC * 1000ull;

        for (struct spool_entry *e = s->entries; e; e = e->next) {
                struct spool_delivery *d = e->delivery;
                if (!d)
                        continue;
                /* A delivery that ends in time is settled like any other (its file moves run
                 * before the disk thread stops); one that does not is left to finish: whether it
                 * sends is unknown, its file stays in inflight/ and the next start holds it. */
                if (d->pid > 0 && wait_for(d, deadline) && !e->delivery)
                        continue;
                if (d->pid > 0) {
                        event_remove(s->b->epfd, &d->pidfd);
                        close(d->pidfd.fd);
                }
                e->delivery = NULL;
                delivery_free(d);
        }
}
