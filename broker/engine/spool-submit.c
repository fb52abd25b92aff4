/* mail.submit on the spool's side: a message arrives in chunks into tmp/ID (written on the loop:
 * page cache only), and its commit runs fsync(file) -> rename into queue/ -> fsync(queue/) on
 * the disk thread before anyone is told it is queued. Limits: the message's size, the whole
 * spool's, the uid's share of it, and how many submissions a uid has open. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "fault.h"
#include "log.h"
#include "spool-internal.h"
#include "spool-sync.h"
#include "util.h"

#define MB (1024ull * 1024ull)

struct spool_submission {
        struct spool *spool; /* NULL once aborted during a commit */
        struct spool_header header;
        char id[SPOOL_ID_LEN + 1];
        int fd;
        uint64_t received;
        uint64_t body_offset;
        bool committing;
        int tmp_dir, queue_dir; /* for the disk thread */
        spool_commit_fn *done;
        void *userdata;
        struct spool_submission *next;
};

const char *spool_submission_id(const struct spool_submission *sub)
{
        return sub->id;
}

const char *spool_submission_profile(const struct spool_submission *sub)
{
        return sub->header.profile;
}

const char *spool_submission_message_id(const struct spool_submission *sub)
{
        return sub->header.message_id;
}

uint64_t spool_submission_size(const struct spool_submission *sub)
{
        return sub->header.size;
}

uint64_t spool_submission_recipients(const struct spool_submission *sub)
{
        return sub->header.n_recipients;
}

static uint64_t uid_usage(const struct spool *s, uid_t uid, unsigned *ret_open)
{
        uint64_t bytes = 0;

        *ret_open = 0;
        for (const struct spool_entry *e = s->entries; e; e = e->next)
                if (e->uid == uid)
                        bytes += e->size;
        for (const struct spool_entry *e = s->failed; e; e = e->next)
                if (e->uid == uid)
                        bytes += e->size;
        for (const struct spool_submission *u = s->submissions; u; u = u->next)
                if (u->header.uid == uid) {
                        bytes += u->header.size;
                        (*ret_open)++;
                }
        return bytes;
}

static int check_limits(const struct spool *s, const struct spool_submit_request *req,
                        const char **ret_refusal)
{
        const struct config_mail *m = &s->b->config->mail;
        unsigned open;
        uint64_t mine = uid_usage(s, req->uid, &open);

        if (req->size == 0 || req->size > m->max_message_mb * MB) {
                *ret_refusal = "The message is larger than the spool takes.";
                return -EFBIG;
        }
        if (s->bytes + req->size > m->max_spool_mb * MB || s->count >= m->max_messages) {
                *ret_refusal = "The spool is full; try again later.";
                return -ENOSPC;
        }
        if (mine + req->size > m->max_uid_mb * MB) {
                *ret_refusal = "The spool is full for this user; try again later.";
                return -ENOSPC;
        }
        if (open >= m->max_submits_per_uid) {
                *ret_refusal = "Too many submissions of this user at once; try again later.";
                return -ENOSPC;
        }
        return 0;
}

static void submission_free(struct spool_submission *sub)
{
        if (sub->fd >= 0)
                close(sub->fd);
        spool_header_clear(&sub->header);
        free(sub);
}

static void unlist(struct spool *s, struct spool_submission *sub)
{
        for (struct spool_submission **l = &s->submissions; *l; l = &(*l)->next)
                if (*l == sub) {
                        *l = sub->next;
                        s->bytes -= sub->header.size <= s->bytes ? sub->header.size : s->bytes;
                        return;
                }
}

static int create_tmp(struct spool *s, struct spool_submission *sub)
{
        _cleanup_free_ char *line = NULL;
        size_t len;
        int r;

        spool_id_new(sub->id);
        r = spool_header_format(&sub->header, &line, &len);
        if (r < 0)
                return r;
        sub->fd = openat(s->dirs[SPOOL_DIR_TMP], sub->id,
                         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (sub->fd < 0)
                return -errno;
        sub->body_offset = len;
        return write_all(sub->fd, line, len);
}

int spool_submit_begin(struct spool *s, const struct spool_submit_request *req,
                       struct spool_submission **ret, const char **ret_refusal)
{
        struct spool_submission *sub;
        int r;

        *ret_refusal = "The message cannot be queued.";
        r = check_limits(s, req, ret_refusal);
        if (r < 0)
                return r;
        sub = calloc(1, sizeof(*sub));
        if (!sub)
                return -ENOMEM;
        sub->spool = s;
        sub->fd = -1;
        snprintf(sub->header.profile, sizeof(sub->header.profile), "%s", req->profile);
        sub->header.uid = req->uid;
        sub->header.size = req->size;
        sub->header.n_recipients = req->n_recipients;
        sub->header.queued_at = now_realtime_usec() / USEC_PER_SEC;
        if (req->message_id && !(sub->header.message_id = strdup(req->message_id))) {
                submission_free(sub);
                return -ENOMEM;
        }
        r = create_tmp(s, sub);
        if (r < 0) {
                log_error_errno(r, "Spool: cannot create a file in tmp/");
                if (sub->fd >= 0)
                        (void)unlinkat(s->dirs[SPOOL_DIR_TMP], sub->id, 0);
                submission_free(sub);
                return r;
        }
        sub->next = s->submissions;
        s->submissions = sub;
        s->bytes += req->size;
        *ret = sub;
        return 0;
}

int spool_submit_append(struct spool_submission *sub, const uint8_t *data, size_t len)
{
        int r;

        if (sub->committing || len > sub->header.size - sub->received)
                return -EFBIG;
        r = write_all(sub->fd, data, len);
        if (r < 0)
                return log_error_errno(r, "Spool: cannot write %s", sub->id);
        sub->received += len;
        return 0;
}

/* The disk thread: the data, then the name, then the directory entry. */
static int commit_run(void *arg)
{
        struct spool_submission *sub = arg;

        if (fsync(sub->fd) < 0)
                return -errno;
        fault_point("spool-commit-before-rename");
        if (renameat(sub->tmp_dir, sub->id, sub->queue_dir, sub->id) < 0)
                return -errno;
        if (fsync(sub->queue_dir) < 0)
                return -errno;
        fault_point("spool-commit-after-fsync");
        return 0;
}

static void commit_done(void *arg, int result)
{
        struct spool_submission *sub = arg;
        struct spool *s = sub->spool;
        struct spool_entry *e = NULL;

        if (s) {
                unlist(s, sub);
                if (result == 0)
                        e = spool_entry_new_from(&sub->header, sub->id, sub->body_offset);
                if (e)
                        spool_append(s, e);
                else if (result == 0)
                        result = -ENOMEM; /* the file is queued: it is found at the next start */
                else
                        (void)unlinkat(s->dirs[SPOOL_DIR_TMP], sub->id, 0);
                if (sub->done)
                        sub->done(sub, result, sub->userdata);
                if (e && !s->b->stopping)
                        spool_deliver_due(s);
        }
        submission_free(sub);
}

int spool_submit_commit(struct spool_submission *sub, spool_commit_fn *done, void *userdata)
{
        struct spool *s = sub->spool;
        int r;

        if (sub->received != sub->header.size)
                return -EBADMSG;
        sub->committing = true;
        sub->done = done;
        sub->userdata = userdata;
        sub->tmp_dir = s->dirs[SPOOL_DIR_TMP];
        sub->queue_dir = s->dirs[SPOOL_DIR_QUEUE];
        r = spool_sync_submit(s->sync, commit_run, commit_done, sub);
        if (r < 0)
                sub->committing = false;
        return r;
}

void spool_submission_abort(struct spool_submission *sub)
{
        struct spool *s = sub->spool;

        if (sub->committing) {
                /* The disk thread has it: commit_done() frees it and tells no one. */
                sub->done = NULL;
                return;
        }
        unlist(s, sub);
        (void)unlinkat(s->dirs[SPOOL_DIR_TMP], sub->id, 0);
        submission_free(sub);
}
