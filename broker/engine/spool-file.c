/* A spool file: one JSON header line, then the message as submitted. Moves between the spool's
 * directories run on the disk thread (spool-sync.h): rename, then fsync of both directories,
 * so that once done runs the move survives a crash. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "json.h"
#include "log.h"
#include "spool-internal.h"
#include "spool-sync.h"

int spool_header_format(const struct spool_header *h, char **ret, size_t *ret_len)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char *text;
        size_t len;

        if (!json || !json_add_uint(json, "v", 1) ||
            !cJSON_AddStringToObject(json, "profile", h->profile) ||
            !json_add_uint(json, "uid", h->uid) ||
            (h->message_id && !cJSON_AddStringToObject(json, "message_id", h->message_id)) ||
            !json_add_uint(json, "size", h->size) ||
            !json_add_uint(json, "n_recipients", h->n_recipients) ||
            !json_add_uint(json, "queued_at", h->queued_at))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(json);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        if (len + 1 >= SPOOL_HEADER_MAX) {
                json_free_string(text);
                return -E2BIG;
        }
        *ret = malloc(len + 2);
        if (*ret) {
                memcpy(*ret, text, len);
                memcpy(*ret + len, "\n", 2);
                *ret_len = len + 1;
        }
        json_free_string(text);
        return *ret ? 0 : -ENOMEM;
}

void spool_header_clear(struct spool_header *h)
{
        free(h->message_id);
        *h = (struct spool_header){0};
}

static int header_from_json(const cJSON *json, struct spool_header *h)
{
        const char *profile = json_get_string(json, "profile");
        const char *message_id = json_get_string(json, "message_id");
        uint64_t uid;

        if (!profile || !name_is_valid(profile) || json_get_u64(json, "uid", &uid) < 0 ||
            uid > UINT32_MAX || json_get_u64(json, "size", &h->size) < 0 ||
            json_get_u64(json, "n_recipients", &h->n_recipients) < 0 ||
            json_get_u64(json, "queued_at", &h->queued_at) < 0)
                return -EBADMSG;
        snprintf(h->profile, sizeof(h->profile), "%s", profile);
        h->uid = (uid_t)uid;
        if (message_id) {
                h->message_id = strdup(message_id);
                if (!h->message_id)
                        return -ENOMEM;
        }
        return 0;
}

int spool_header_read(int fd, struct spool_header *ret, uint64_t *ret_offset)
{
        char buf[SPOOL_HEADER_MAX];
        _cleanup_json_ cJSON *json = NULL;
        ssize_t n = pread(fd, buf, sizeof(buf), 0);
        char *nl;
        int r;

        if (n < 0)
                return -errno;
        nl = memchr(buf, '\n', (size_t)n);
        if (!nl)
                return -EBADMSG;
        if (json_parse(buf, (size_t)(nl - buf), &json) < 0 || !cJSON_IsObject(json))
                return -EBADMSG;
        *ret = (struct spool_header){0};
        r = header_from_json(json, ret);
        if (r < 0) {
                spool_header_clear(ret);
                return r;
        }
        *ret_offset = (uint64_t)(nl - buf) + 1;
        return 0;
}

void spool_id_new(char out[static SPOOL_ID_LEN + 1])
{
        uint64_t rnd = random_below(UINT64_MAX);

        snprintf(out, SPOOL_ID_LEN + 1, "%08llx%016llx",
                 (unsigned long long)(now_realtime_usec() / USEC_PER_SEC) & 0xffffffffULL,
                 (unsigned long long)rnd);
}

bool spool_id_is_valid(const char *id)
{
        size_t n = strspn(id, "0123456789abcdef");

        return n == SPOOL_ID_LEN && id[n] == 0;
}

/* ---- moves on the disk thread ---- */

struct move_job {
        struct spool *spool;
        struct spool_entry *entry;
        int from_fd, to_fd; /* to_fd -1: unlink */
        char id[SPOOL_ID_LEN + 1];
        char reason[SPOOL_REASON_MAX + 1];
        spool_move_fn *done;
};

static int write_reason(int dirfd, const char *id, const char *reason)
{
        char name[SPOOL_ID_LEN + 8];
        int fd, r = 0;
        size_t len = strlen(reason);

        snprintf(name, sizeof(name), "%s.reason", id);
        fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (write(fd, reason, len) != (ssize_t)len || fsync(fd) < 0)
                r = -EIO;
        close(fd);
        return r;
}

static int move_run(void *arg)
{
        struct move_job *j = arg;
        char name[SPOOL_ID_LEN + 8];

        if (j->to_fd < 0) {
                if (unlinkat(j->from_fd, j->id, 0) < 0 && errno != ENOENT)
                        return -errno;
                snprintf(name, sizeof(name), "%s.reason", j->id);
                (void)unlinkat(j->from_fd, name, 0);
                return fsync(j->from_fd) < 0 ? -errno : 0;
        }
        if (j->reason[0] && write_reason(j->to_fd, j->id, j->reason) < 0)
                log_warning("Spool: cannot write the reason of %s.", j->id);
        if (renameat(j->from_fd, j->id, j->to_fd, j->id) < 0)
                return -errno;
        if (fsync(j->to_fd) < 0 || fsync(j->from_fd) < 0)
                return -errno;
        return 0;
}

static void move_done(void *arg, int result)
{
        struct move_job *j = arg;

        j->entry->moving = false;
        if (result < 0)
                log_error_errno(result, "Spool: cannot move %s", j->id);
        j->done(j->spool, j->entry, result);
        free(j);
}

int spool_move(struct spool *s, struct spool_entry *e, enum spool_dir from, enum spool_dir to,
               spool_move_fn *done)
{
        struct move_job *j = calloc(1, sizeof(*j));
        int r;

        if (!j)
                return -ENOMEM;
        *j = (struct move_job){.spool = s,
                               .entry = e,
                               .from_fd = s->dirs[from],
                               .to_fd = to == _SPOOL_DIR_MAX ? -1 : s->dirs[to],
                               .done = done};
        memcpy(j->id, e->id, sizeof(j->id));
        if (to == SPOOL_DIR_FAILED)
                snprintf(j->reason, sizeof(j->reason), "%s\n", e->reason);
        e->moving = true;
        r = spool_sync_submit(s->sync, move_run, move_done, j);
        if (r < 0) {
                e->moving = false;
                free(j);
        }
        return r;
}
