/* The spool's directories and its queue in memory; see spool.h and docs/mail-spool.md.
 *
 * [mail] spool_dir holds tmp/ (submissions being received), queue/ (waiting), inflight/ (a
 * delivery child has it) and failed/ (given up, with ID.reason), each 0700 and the broker's.
 * The queue in memory is rebuilt from queue/ and inflight/ at start: a file in inflight/ was
 * being delivered when the broker stopped without knowing the outcome, so it is held (never
 * sent again on its own) until an administrator flushes or deletes it. */
#include "build-config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "spool-internal.h"
#include "spool-sync.h"

static const char *const dir_names[_SPOOL_DIR_MAX] = {
    [SPOOL_DIR_TMP] = "tmp",
    [SPOOL_DIR_QUEUE] = "queue",
    [SPOOL_DIR_INFLIGHT] = "inflight",
    [SPOOL_DIR_FAILED] = "failed",
};

const char *spool_state_to_string(enum spool_state st)
{
        static const char *const names[] = {
            [SPOOL_QUEUED] = "queued",
            [SPOOL_RUNNING] = "running",
            [SPOOL_HELD] = "held",
            [SPOOL_FAILED] = "failed",
        };
        return (unsigned)st < ELEMENTSOF(names) ? names[st] : "unknown";
}

/* Opens (creating 0700 when missing) a directory the broker alone may use: it must be ours and
 * not open to others, or the spool is refused. */
static int open_private_dir(int at, const char *name, const char *what)
{
        struct stat st;
        int fd;

        if (mkdirat(at, name, 0700) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "Failed to create the spool directory %s", what);
        fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to open the spool directory %s", what);
        if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 0077) != 0) {
                close(fd);
                log_error("The spool directory %s must be owned by the broker and 0700.", what);
                return -EPERM;
        }
        return fd;
}

struct spool_entry *spool_entry_new_from(const struct spool_header *h, const char *id,
                                         uint64_t body_offset)
{
        struct spool_entry *e = calloc(1, sizeof(*e));

        if (!e)
                return NULL;
        snprintf(e->id, sizeof(e->id), "%s", id);
        memcpy(e->profile, h->profile, sizeof(e->profile));
        e->message_id = h->message_id ? strdup(h->message_id) : NULL;
        e->uid = h->uid;
        e->size = h->size;
        e->n_recipients = h->n_recipients;
        e->queued_at = h->queued_at;
        e->body_offset = body_offset;
        return e;
}

void spool_entry_free(struct spool_entry *e)
{
        if (!e)
                return;
        free(e->message_id);
        free(e);
}

void spool_append(struct spool *s, struct spool_entry *e)
{
        struct spool_entry **link = &s->entries;

        while (*link)
                link = &(*link)->next;
        e->next = NULL;
        *link = e;
        s->bytes += e->size;
        s->count++;
}

void spool_unlink_entry(struct spool *s, struct spool_entry *e)
{
        for (struct spool_entry **link = &s->entries; *link; link = &(*link)->next)
                if (*link == e) {
                        *link = e->next;
                        s->bytes -= e->size <= s->bytes ? e->size : s->bytes;
                        s->count -= s->count > 0;
                        return;
                }
}

struct spool_mailbox *spool_mailbox_get(struct spool *s, const char *account)
{
        struct spool_mailbox *m;

        for (m = s->mailboxes; m; m = m->next)
                if (strcmp(m->account, account) == 0)
                        return m;
        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        snprintf(m->account, sizeof(m->account), "%s", account);
        m->next = s->mailboxes;
        s->mailboxes = m;
        return m;
}

/* Reads one file of queue/, inflight/ or failed/ into an entry; a file that is not a spool file
 * is left alone with a warning. */
static struct spool_entry *load_entry(struct spool *s, enum spool_dir d, const char *name)
{
        struct spool_header h;
        struct spool_entry *e;
        uint64_t offset;
        int fd, r;

        if (!spool_id_is_valid(name))
                return NULL;
        fd = openat(s->dirs[d], name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return NULL;
        r = spool_header_read(fd, &h, &offset);
        close(fd);
        if (r < 0) {
                log_warning("Spool: %s/%s is not a spool file; left alone.", dir_names[d], name);
                return NULL;
        }
        e = spool_entry_new_from(&h, name, offset);
        spool_header_clear(&h);
        return e;
}

static void read_reason(struct spool *s, struct spool_entry *e)
{
        char name[SPOOL_ID_LEN + 8];
        int fd;
        ssize_t n;

        snprintf(name, sizeof(name), "%s.reason", e->id);
        fd = openat(s->dirs[SPOOL_DIR_FAILED], name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return;
        n = read(fd, e->reason, sizeof(e->reason) - 1);
        close(fd);
        e->reason[n > 0 ? n : 0] = 0;
        e->reason[strcspn(e->reason, "\n")] = 0;
}

static int compare_names(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

/* Loads a directory in id order (ids begin with the time: oldest first). */
static void load_dir(struct spool *s, enum spool_dir d)
{
        struct dirent **names = NULL;
        int dup_fd = dup(s->dirs[d]), n;
        char path[32];

        if (dup_fd < 0)
                return;
        snprintf(path, sizeof(path), "/proc/self/fd/%d", dup_fd);
        n = scandir(path, &names, NULL, compare_names);
        for (int i = 0; i < n; i++) {
                struct spool_entry *e = load_entry(s, d, names[i]->d_name);

                free(names[i]);
                if (!e)
                        continue;
                if (d == SPOOL_DIR_FAILED) {
                        e->state = SPOOL_FAILED;
                        read_reason(s, e);
                        e->next = s->failed;
                        s->failed = e;
                        s->bytes += e->size; /* failed/ counts until it is cleaned */
                        s->count++;
                        continue;
                }
                if (d == SPOOL_DIR_INFLIGHT) {
                        e->state = SPOOL_HELD;
                        snprintf(e->reason, sizeof(e->reason),
                                 "the broker stopped during a delivery attempt: the message may "
                                 "have been sent; flush it to send it again, or delete it");
                        log_warning("Spool: %s was being delivered when the broker stopped; "
                                    "held (it may have been sent).",
                                    e->id);
                        spool_audit(s, e, "mail.held", e->reason);
                }
                spool_append(s, e);
        }
        free(names);
        close(dup_fd);
}

/* Leftovers of submissions a crash interrupted: never committed, never answered. */
static void clean_tmp(struct spool *s)
{
        DIR *d = fdopendir(dup(s->dirs[SPOOL_DIR_TMP]));
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        (void)unlinkat(s->dirs[SPOOL_DIR_TMP], de->d_name, 0);
        closedir(d);
}

static int open_dirs(struct spool *s, const char *root)
{
        int rootfd;

        /* The root itself may be traversable by others: the maildrop may live in it. */
        if (mkdir(root, 0711) < 0 && errno != EEXIST)
                return log_error_errno(-errno, "Failed to create the spool %s", root);
        rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return log_error_errno(-errno, "Failed to open the spool %s", root);
        for (int d = 0; d < _SPOOL_DIR_MAX; d++) {
                s->dirs[d] = open_private_dir(rootfd, dir_names[d], dir_names[d]);
                if (s->dirs[d] < 0) {
                        int r = s->dirs[d];
                        close(rootfd);
                        return r;
                }
        }
        close(rootfd);
        return 0;
}

static size_t count(const struct spool_entry *e)
{
        size_t n = 0;

        for (; e; e = e->next)
                n++;
        return n;
}

int spool_open(struct broker *b)
{
        struct spool *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->b = b;
        for (int d = 0; d < _SPOOL_DIR_MAX; d++)
                s->dirs[d] = -1;
        b->spool = s;
        r = open_dirs(s, b->config->mail.spool_dir);
        if (r < 0)
                return r;
        clean_tmp(s);
        load_dir(s, SPOOL_DIR_INFLIGHT);
        load_dir(s, SPOOL_DIR_QUEUE);
        load_dir(s, SPOOL_DIR_FAILED);
        r = spool_sync_start(b->epfd, &s->sync);
        if (r < 0)
                return log_error_errno(r, "Failed to start the spool's disk thread");
        log_info("Spool %s: %zu messages queued.", b->config->mail.spool_dir, count(s->entries));
        return 0;
}

static void free_list(struct spool_entry *e)
{
        while (e) {
                struct spool_entry *next = e->next;
                spool_entry_free(e);
                e = next;
        }
}

void spool_close(struct broker *b)
{
        struct spool *s = b->spool;

        if (!s)
                return;
        spool_deliver_kill_all(s);
        /* Moves still queued run to their end; their callbacks see b->stopping. */
        spool_sync_stop(s->sync);
        while (s->submissions)
                spool_submission_abort(s->submissions);
        free_list(s->entries);
        free_list(s->failed);
        while (s->mailboxes) {
                struct spool_mailbox *m = s->mailboxes;
                s->mailboxes = m->next;
                free(m);
        }
        for (int d = 0; d < _SPOOL_DIR_MAX; d++)
                if (s->dirs[d] >= 0)
                        close(s->dirs[d]);
        free(s);
        b->spool = NULL;
}

void spool_tick(struct broker *b)
{
        struct spool *s = b->spool;
        uint64_t now = now_boottime_usec();

        if (!s || b->stopping)
                return;
        spool_deliver_timeouts(s);
        if (s->last_scan_usec == 0 ||
            now - s->last_scan_usec >= b->config->mail.scan_interval_sec * USEC_PER_SEC) {
                s->last_scan_usec = now;
                spool_maildrop_scan(s);
        }
        spool_deliver_due(s);
}

void spool_audit(struct spool *s, const struct spool_entry *e, const char *event,
                 const char *reason)
{
        struct audit_record record = {
            .event = event,
            .profile = e->profile,
            .reason = reason && *reason ? reason : NULL,
            .queue_id = e->id,
            .message_id = e->message_id,
            .size = e->size,
            .n_recipients = e->n_recipients,
        };

        if (audit_write(s->b->audit, &record) < 0)
                log_error("Spool: cannot audit %s of %s.", event, e->id);
}

static void fail_moved(struct spool *s, struct spool_entry *e, int result)
{
        if (result < 0) {
                /* Still in its old place: tried again from there after the backoff. */
                e->state = SPOOL_QUEUED;
                e->next_usec =
                    now_boottime_usec() + s->b->config->mail.retry_max_sec * USEC_PER_SEC;
                return;
        }
        spool_unlink_entry(s, e);
        e->state = SPOOL_FAILED;
        e->next = s->failed;
        s->failed = e;
        /* failed/ takes room until an administrator deletes it: still counted. */
        s->bytes += e->size;
        s->count++;
}

void spool_fail(struct spool *s, struct spool_entry *e, enum spool_dir from, const char *reason)
{
        if (reason != e->reason)
                snprintf(e->reason, sizeof(e->reason), "%s", reason);
        log_warning("Spool: %s (%s) failed for good: %s", e->id,
                    e->message_id ? e->message_id : "no Message-ID", reason);
        spool_audit(s, e, "mail.failed", reason);
        if (spool_move(s, e, from, SPOOL_DIR_FAILED, fail_moved) < 0)
                fail_moved(s, e, -ENOMEM);
}

void spool_defer(struct spool *s, struct spool_entry *e, uint32_t retry_after, const char *reason)
{
        const struct config_mail *m = &s->b->config->mail;
        uint64_t wait;

        if (reason != e->reason)
                snprintf(e->reason, sizeof(e->reason), "%s", reason);
        e->attempts++;
        if (spool_expired(e->queued_at, now_realtime_usec() / USEC_PER_SEC, m->lifetime_sec)) {
                char why[SPOOL_REASON_MAX];
                snprintf(why, sizeof(why), "not delivered within its lifetime; last: %.200s",
                         reason);
                spool_fail(s, e, SPOOL_DIR_QUEUE, why);
                return;
        }
        wait = spool_backoff_sec(e->attempts, retry_after, m->retry_min_sec, m->retry_max_sec);
        e->state = SPOOL_QUEUED;
        e->next_usec = now_boottime_usec() + wait * USEC_PER_SEC;
        log_info("Spool: %s deferred for %llus (attempt %u): %s", e->id, (unsigned long long)wait,
                 e->attempts, reason);
        spool_audit(s, e, "mail.deferred", reason);
}
