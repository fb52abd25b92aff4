/* The journald mirror of the audit log; see audit-journal.h. */
#include "build-config.h"

#include "audit-journal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/uio.h>

#if HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

#include "json.h"
#include "log.h"
#include "util.h"

static const struct {
        const char *event, *id;
} message_ids[] = {
    {"issue", "b9e85985d89cb04f2936c0916dbaf7d2"},
    {"deny", "d3b11c41958d61cbebd52631bca40a4e"},
    {"rate_limited", "788ecc2437a27b69dbf74ac05634b0aa"},
    {"refresh", "f630f7fa94b305b2b38030a115f80405"},
    {"refresh_failed", "2da4c4dc2e505ac93b72342af41ea14f"},
    {"reauth_required", "03e49d3952d932218fc8cbf09d73de28"},
    {"rotation_failed", "c179a1a8b79c1540e85d06ec459ac7a6"},
    {"refresh_token_stored", "fd6feee4e6792cabf36d48e3c3dd9e7f"},
    {"account_removed", "dabdea1daada8614619991e96456e9c0"},
    {"genesis", "88f0c06da24ac2e3c82fd25340bdcd0d"},
    {"checkpoint", "717fa9e832e18fee577f8b04317f4def"},
    {"file.start", "c867444b429e4859c5c4955423390ca4"},
    {"audit.alarm", "857b31820c47d48f3aa687ccd5c6febf"},
};
#define OTHER_ID "1a6f9e7e03964a7012765fc6aba5354b"

const char *audit_journal_message_id(const char *event)
{
        for (size_t i = 0; event && i < ELEMENTSOF(message_ids); i++)
                if (strcmp(event, message_ids[i].event) == 0)
                        return message_ids[i].id;
        return OTHER_ID;
}

/* deny and alarm: warning (4); checkpoints and chain records: info (6); the rest notice (5). */
static int priority(const char *event, const char *decision)
{
        if ((event && (strcmp(event, "deny") == 0 || strcmp(event, "audit.alarm") == 0 ||
                       strcmp(event, "rate_limited") == 0)) ||
            (decision && strcmp(decision, "allow") != 0))
                return 4;
        if (event && (strcmp(event, "checkpoint") == 0 || strcmp(event, "genesis") == 0 ||
                      strcmp(event, "file.start") == 0))
                return 6;
        return 5;
}

static int add(char **fields, size_t *n, const char *key, const char *value)
{
        if (!value)
                return 0;
        if (*n >= AUDIT_JOURNAL_MAX_FIELDS)
                return -E2BIG;
        /* Journal fields are one value each: a newline would still be kept by the native
         * protocol, so the note's lines stay as they are. */
        if (asprintf(&fields[*n], "%s=%s", key, value) < 0)
                return -ENOMEM;
        (*n)++;
        return 0;
}

void audit_journal_fields_free(char **fields, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
}

int audit_journal_fields(const char *line, size_t len, uint64_t seq, const char *hash_hex,
                         char *fields[static AUDIT_JOURNAL_MAX_FIELDS], size_t *ret_n)
{
        _cleanup_json_ cJSON *json = NULL;
        const cJSON *peer;
        const char *event, *decision, *outcome, *profile, *account, *who = NULL;
        char message[512], num[21], uid[21] = "";
        size_t n = 0;
        int r;

        r = json_parse(line, len, &json);
        if (r < 0)
                return r;
        event = json_get_string(json, "event");
        decision = json_get_string(json, "decision");
        outcome = decision ? decision : json_get_string(json, "reason");
        profile = json_get_string(json, "profile");
        account = json_get_string(json, "account");
        peer = cJSON_GetObjectItemCaseSensitive(json, "peer");
        if (cJSON_IsObject(peer)) {
                uint64_t u;
                if (json_get_u64(peer, "uid", &u) == 0)
                        (void)format_u64(u, uid);
                who = json_get_string(peer, "exe");
        }
        snprintf(message, sizeof(message), "audit %s%s%s%s%s%s%s%s%s (seq %" PRIu64 ")",
                 event ? event : "record", *uid ? " uid " : "", uid, who ? " exe " : "",
                 who ? who : "", profile ? " profile " : "", profile ? profile : "",
                 account ? " account " : "", account ? account : "", seq);
        (void)format_u64(seq, num);
        r = add(fields, &n, "MESSAGE", message);
        r = r < 0 ? r : add(fields, &n, "MESSAGE_ID", audit_journal_message_id(event));
        r = r < 0 ? r
                  : add(fields, &n, "PRIORITY",
                        priority(event, decision) == 4   ? "4"
                        : priority(event, decision) == 6 ? "6"
                                                         : "5");
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_SEQ", num);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_LINE_HASH", hash_hex);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_EVENT", event);
        if (cJSON_IsObject(peer)) {
                r = r < 0 ? r : add(fields, &n, "CREDBROKER_PEER_UID", *uid ? uid : NULL);
                r = r < 0 ? r
                          : add(fields, &n, "CREDBROKER_PEER_UNIT", json_get_string(peer, "unit"));
                r = r < 0 ? r : add(fields, &n, "CREDBROKER_PEER_EXE", who);
        }
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_PROFILE", profile);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_ACCOUNT", account);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_OUTCOME", outcome);
        r = r < 0 ? r
                  : add(fields, &n, "CREDBROKER_TOKEN_FINGERPRINT",
                        json_get_string(json, "token_fingerprint"));
        r = r < 0 ? r
                  : add(fields, &n, "CREDBROKER_CHECKPOINT_NOTE", json_get_string(json, "note"));
        if (r < 0) {
                audit_journal_fields_free(fields, n);
                return r;
        }
        *ret_n = n;
        return 0;
}

#if HAVE_SYSTEMD
/* sd_journal_sendv() sends on a blocking datagram socket: once journald's receive queue is full
 * (net.unix.max_dgram_qlen datagrams, a journald that is stopped, hung or throttled) it waits
 * for room, for ever. So the records go to the journal from a thread of their own, through a
 * bounded queue; when the queue is full a record is not mirrored (the file has it) and the
 * loop counts it and says so at most once a minute. */
struct pending {
        struct pending *next;
        uint64_t seq;
        char hash_hex[65];
        size_t len;
        char line[]; /* len bytes and a NUL */
};

#define QUEUE_MAX_RECORDS 1024
#define QUEUE_MAX_BYTES   (4U << 20)
#define DROP_REPORT_USEC  (60 * USEC_PER_SEC)
/* How long exit waits for the records still queued to reach a journal that reads. */
#define EXIT_FLUSH_MSEC 500

static struct {
        pthread_mutex_t lock;
        pthread_cond_t wake; /* for the thread: a record, or stop */
        pthread_cond_t done; /* for exit: the thread has finished */
        struct pending *first, **last;
        size_t n, bytes;
        bool started, stop, finished;
        /* The loop's own (mirror() and exit): records not mirrored, those already reported,
         * and when they were last reported (0: never). */
        uint64_t dropped, reported, report_usec;
        pthread_t thread;
} q = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .first = NULL,
    .last = &q.first,
};

static void send_one(const struct pending *p)
{
        char *fields[AUDIT_JOURNAL_MAX_FIELDS];
        struct iovec iov[AUDIT_JOURNAL_MAX_FIELDS];
        size_t n;

        if (audit_journal_fields(p->line, p->len, p->seq, p->hash_hex, fields, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec){.iov_base = fields[i], .iov_len = strlen(fields[i])};
        /* Best effort: an error (journald gone) loses this record from the journal only. */
        (void)sd_journal_sendv(iov, (int)n);
        audit_journal_fields_free(fields, n);
}

/* The mirror thread: sends the queue in order until stop, then what is left. */
static void *mirror_main(void *arg)
{
        (void)arg;
        pthread_mutex_lock(&q.lock);
        for (;;) {
                struct pending *p;

                while (!q.first && !q.stop)
                        pthread_cond_wait(&q.wake, &q.lock);
                p = q.first;
                if (!p)
                        break;
                q.first = p->next;
                if (!q.first)
                        q.last = &q.first;
                q.n--;
                q.bytes -= p->len;
                pthread_mutex_unlock(&q.lock);
                send_one(p);
                free(p);
                pthread_mutex_lock(&q.lock);
        }
        q.finished = true;
        pthread_cond_signal(&q.done);
        pthread_mutex_unlock(&q.lock);
        return NULL;
}

static void report_drops(bool now_anyway)
{
        uint64_t now = now_boottime_usec();

        if (q.dropped == q.reported ||
            (!now_anyway && q.report_usec && now - q.report_usec < DROP_REPORT_USEC))
                return;
        log_warning("journald is not keeping up: %" PRIu64 " audit records not mirrored to "
                    "journald (%" PRIu64 " since start); the audit log file has them all.",
                    q.dropped - q.reported, q.dropped);
        q.reported = q.dropped;
        q.report_usec = now ? now : 1;
}

/* On the loop: a copy of the record for the thread, or, with the queue full, a count. */
static void mirror(void *userdata, const char *line, size_t len, uint64_t seq, const char *hash_hex)
{
        struct pending *p = malloc(sizeof(*p) + len + 1);
        bool queued = false;

        (void)userdata;
        if (p) {
                *p = (struct pending){.seq = seq, .len = len};
                memcpy(p->line, line, len);
                p->line[len] = 0;
                snprintf(p->hash_hex, sizeof(p->hash_hex), "%s", hash_hex);
                pthread_mutex_lock(&q.lock);
                if (q.n < QUEUE_MAX_RECORDS && q.bytes + len <= QUEUE_MAX_BYTES) {
                        *q.last = p;
                        q.last = &p->next;
                        q.n++;
                        q.bytes += len;
                        queued = true;
                        pthread_cond_signal(&q.wake);
                }
                pthread_mutex_unlock(&q.lock);
        }
        if (queued)
                return;
        free(p);
        q.dropped++;
        report_drops(false);
}

/* At exit: the thread sends what is queued, for EXIT_FLUSH_MSEC at most. A thread still stuck
 * in journald then is left there (exit ends it); what it has not sent stays reachable. */
static void mirror_exit(void)
{
        struct timespec deadline;
        bool finished;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += EXIT_FLUSH_MSEC * 1000000L;
        deadline.tv_sec += deadline.tv_nsec / 1000000000L;
        deadline.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&q.lock);
        q.stop = true;
        pthread_cond_signal(&q.wake);
        while (!q.finished)
                if (pthread_cond_timedwait(&q.done, &q.lock, &deadline) == ETIMEDOUT)
                        break;
        finished = q.finished;
        pthread_mutex_unlock(&q.lock);
        if (finished)
                pthread_join(q.thread, NULL);
        report_drops(true);
}

static int mirror_start(void)
{
        pthread_condattr_t attr;
        sigset_t all, saved;
        int r;

        if (q.started)
                return 0;
        /* The exit deadline does not move with the wall clock. */
        r = -pthread_condattr_init(&attr);
        if (r < 0)
                return r;
        r = -pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r == 0)
                r = -pthread_cond_init(&q.done, &attr);
        pthread_condattr_destroy(&attr);
        if (r < 0)
                return r;
        /* Signals are the loop's (signalfd): the thread must never take one. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&q.thread, NULL, mirror_main, NULL);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0)
                return r;
        q.started = true;
        if (atexit(mirror_exit) != 0)
                log_warning("The journald mirror is not flushed at exit.");
        return 0;
}
#endif

void audit_journal_setup(struct audit_options *o)
{
#if HAVE_SYSTEMD
        int r;

        /* Without journald (a container, a test machine) every record would be parsed and
         * sent for nothing: mirror only when its socket is there at start. */
        if (access("/run/systemd/journal/socket", F_OK) < 0) {
                log_info("journald is not running: the audit log is not mirrored to it.");
                return;
        }
        r = mirror_start();
        if (r < 0) {
                log_warning_errno(r, "Failed to start the journald mirror of the audit log");
                return;
        }
        o->mirror = mirror;
#else
        (void)o;
#endif
}
