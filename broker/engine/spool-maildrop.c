/* The maildrop ([mail] maildrop_dir): where the CLI leaves a message when the broker is not
 * running (cli/maildrop.c). Each file, named <uid>.<random>, holds a JSON line {"v":1,
 * "profile":P} and the message. The broker takes it at start and every [mail] scan_interval
 * seconds: the policy decides for the file's owner uid (no pid, executable or unit is known:
 * rules that need one deny), then the message is queued like a mail.submit (same limits,
 * audited mail.queued) and the drop file removed only once the spool file is durable. */
#include "build-config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit-aggregate.h"
#include "audit.h"
#include "broker.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "peer.h"
#include "policy.h"
#include "spool-internal.h"

#define DROP_NAME_MAX 96

struct drop {
        struct spool *spool;
        char name[DROP_NAME_MAX];
        char profile[NAME_MAX_LEN + 1];
        uid_t uid;
        uint64_t size;
};

static bool allowed(struct spool *s, const struct drop *d)
{
        const struct policy_profile *p = policy_set_find(s->b->policy, d->profile);
        struct policy_peer peer = {.uid = d->uid, .gid = (gid_t)-1, .pid = 0};
        struct policy_decision decision;
        struct peer audit_peer = {.uid = d->uid, .gid = (gid_t)-1};

        if (p)
                policy_evaluate(p, &peer, &(struct policy_request){0},
                                &(struct policy_time){.wall = time(NULL),
                                                      .monotonic_usec = now_boottime_usec()},
                                s->b->limiter, &decision);
        if (p && decision.verdict == POLICY_ALLOW)
                return true;
        struct audit_record record = {
            .event = "deny",
            .peer = &audit_peer,
            .profile = d->profile,
            .decision = "deny",
            .rule = p ? decision.rule : NULL,
            .reason = p ? "maildrop: the file's owner may not use the profile" : "unknown profile",
        };
        /* Repeats (the file stays and is seen at every scan) are counted, not written again. */
        (void)audit_write_denial(s->b->denials, &record);
        log_warning("Maildrop: %s denied (uid %u, profile %s); left in place.", d->name,
                    (unsigned)d->uid, d->profile);
        return false;
}

static void dropped(struct spool_submission *sub, int result, void *userdata)
{
        struct drop *d = userdata;
        struct spool *s = d->spool;

        if (s)
                s->maildrop_busy--;
        if (result == 0 && s) {
                struct peer peer = {.uid = d->uid, .gid = (gid_t)-1};
                struct audit_record record = {.event = "mail.queued",
                                              .peer = &peer,
                                              .profile = d->profile,
                                              .queue_id = spool_submission_id(sub),
                                              .size = d->size,
                                              .decision = "allow",
                                              .reason = "maildrop"};
                (void)audit_write(s->b->audit, &record);
                int dirfd =
                    open(s->b->config->mail.maildrop_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dirfd >= 0) {
                        (void)unlinkat(dirfd, d->name, 0);
                        close(dirfd);
                }
                log_info("Maildrop: %s queued as %s.", d->name, spool_submission_id(sub));
        }
        free(d);
}

/* Copies the drop file's message into a new submission and commits it. */
static int take(struct spool *s, struct drop *d, int fd, uint64_t offset)
{
        struct spool_submission *sub;
        const char *refusal;
        uint8_t buf[65536];
        ssize_t n;
        int r;

        r = spool_submit_begin(
            s,
            &(struct spool_submit_request){.uid = d->uid, .profile = d->profile, .size = d->size},
            &sub, &refusal);
        if (r < 0) {
                log_warning("Maildrop: %s waits: %s", d->name, refusal);
                return r;
        }
        while ((n = pread(fd, buf, sizeof(buf), (off_t)offset)) > 0) {
                r = spool_submit_append(sub, buf, (size_t)n);
                if (r < 0)
                        break;
                offset += (uint64_t)n;
        }
        if (r == 0)
                r = spool_submit_commit(sub, dropped, d);
        if (r < 0)
                spool_submission_abort(sub);
        return r;
}

static int read_drop_header(int fd, struct drop *d, uint64_t *ret_offset)
{
        char buf[512];
        _cleanup_json_ cJSON *json = NULL;
        ssize_t n = pread(fd, buf, sizeof(buf), 0);
        char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
        const char *profile;

        if (!nl || json_parse(buf, (size_t)(nl - buf), &json) < 0)
                return -EBADMSG;
        profile = json_get_string(json, "profile");
        if (!profile || !name_is_valid(profile))
                return -EBADMSG;
        snprintf(d->profile, sizeof(d->profile), "%s", profile);
        *ret_offset = (uint64_t)(nl - buf) + 1;
        return 0;
}

static void consider(struct spool *s, int dirfd, const char *name)
{
        struct drop *d = calloc(1, sizeof(*d));
        uint64_t offset = 0;
        struct stat st;
        int fd;

        if (!d || strlen(name) >= sizeof(d->name)) {
                free(d);
                return;
        }
        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            read_drop_header(fd, d, &offset) < 0 || (uint64_t)st.st_size <= offset) {
                log_warning("Maildrop: %s is not a drop file; left in place.", name);
                goto out;
        }
        snprintf(d->name, sizeof(d->name), "%s", name);
        d->spool = s;
        d->uid = st.st_uid;
        d->size = (uint64_t)st.st_size - offset;
        if (allowed(s, d) && take(s, d, fd, offset) == 0) {
                s->maildrop_busy++;
                d = NULL; /* dropped() has it */
        }
out:
        if (fd >= 0)
                close(fd);
        free(d);
}

void spool_maildrop_scan(struct spool *s)
{
        int dirfd = s->maildrop_busy > 0
                        ? -1
                        : open(s->b->config->mail.maildrop_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *dir;
        struct dirent *de;

        if (s->maildrop_busy > 0)
                return; /* the last scan's files are not committed yet */
        if (dirfd < 0)
                return; /* no maildrop configured on this host */
        dir = fdopendir(dirfd);
        if (!dir) {
                close(dirfd);
                return;
        }
        while ((de = readdir(dir))) {
                /* Names of finished files only: <uid>.<random>; ".tmp…" are being written. */
                if (de->d_name[0] == '.' || !strchr(de->d_name, '.'))
                        continue;
                consider(s, dirfd, de->d_name);
        }
        closedir(dir);
}
