/* Audit log writer; see audit.h. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "util.h"

#define AUDIT_TAIL_MAX 65536
#define AUDIT_BEHIND   (1 << 20)

struct audit {
        int fd;
        uint64_t seq;
        uint64_t size;   /* bytes in the file, as far as the broker knows */
        uint64_t behind; /* pages before this offset are on their way to disk (drop_behind()) */
        struct secret *key;
};

/* The "seq" of the last line that parses, so numbering survives restarts; a line torn by a
 * crash or a full disk is skipped. */
static uint64_t last_seq(int fd)
{
        _cleanup_free_ char *tail = NULL;
        struct stat st;
        off_t start;
        ssize_t n;

        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
                return 0;
        start = st.st_size > AUDIT_TAIL_MAX ? st.st_size - AUDIT_TAIL_MAX : 0;
        tail = malloc(AUDIT_TAIL_MAX + 1);
        if (!tail)
                return 0;
        n = pread(fd, tail, AUDIT_TAIL_MAX, start);
        if (n <= 0)
                return 0;
        tail[n] = 0;
        for (;;) {
                char *line;
                cJSON *json;
                uint64_t seq;

                while (n > 0 && tail[n - 1] == '\n')
                        tail[--n] = 0;
                if (n == 0)
                        return 0;
                line = strrchr(tail, '\n');
                line = line ? line + 1 : tail;
                if (json_parse(line, strlen(line), &json) == 0) {
                        int r = json_get_u64(json, "seq", &seq);
                        cJSON_Delete(json);
                        if (r == 0)
                                return seq;
                }
                if (line == tail)
                        return 0;
                n = line - tail;
                tail[n] = 0;
        }
}

/* A log that does not end in a newline was torn by a crash or a full disk: end that line, so
 * the next record starts on its own line and the torn one stays visible as evidence. */
static void end_torn_line(int fd, int rfd, const char *path)
{
        struct stat st;
        char last;

        if (fstat(rfd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0 ||
            pread(rfd, &last, 1, st.st_size - 1) != 1 || last == '\n')
                return;
        log_warning("Audit log %s ends with a partial line (a crash or a full disk?); "
                    "continuing on a new line.",
                    path);
        (void)!write(fd, "\n", 1);
}

/* The broker never reads its log back. Every 1 MiB the last whole MiB is started to disk and the
 * one before it dropped from the page cache, so a busy log does not push the rest of the
 * machine's files out of memory, and each append lands in a page the kernel recycles rather
 * than a fresh one: on the development VM an append then costs 0.6 us steadily instead of 0.9 to
 * 2 us once the log has grown by a few GB. */
static void drop_behind(struct audit *a)
{
        uint64_t end = a->size / AUDIT_BEHIND * AUDIT_BEHIND;

        if (end < a->behind + AUDIT_BEHIND)
                return;
        (void)sync_file_range(a->fd, (off_t)(end - AUDIT_BEHIND), AUDIT_BEHIND,
                              SYNC_FILE_RANGE_WRITE);
        if (end >= 2 * AUDIT_BEHIND)
                (void)posix_fadvise(a->fd, (off_t)(end - 2 * AUDIT_BEHIND), AUDIT_BEHIND,
                                    POSIX_FADV_DONTNEED);
        a->behind = end;
}

int audit_open(const char *path, const struct secret *key, struct audit **ret)
{
        struct audit *a;
        struct stat st;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (a->fd < 0) {
                r = log_error_errno(-errno, "Failed to open audit log %s", path);
                free(a);
                return r;
        }
        r = secret_new_from(secret_data((struct secret *)key), secret_len(key), &a->key);
        if (r < 0) {
                audit_close(a);
                return r;
        }
        {
                /* O_WRONLY cannot be read: look at the tail through a second descriptor. */
                _cleanup_close_ int rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (rfd >= 0) {
                        a->seq = last_seq(rfd);
                        end_torn_line(a->fd, rfd, path);
                }
        }
        a->size = fstat(a->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        a->behind = a->size / AUDIT_BEHIND * AUDIT_BEHIND;
        *ret = a;
        return 0;
}

void audit_close(struct audit *a)
{
        if (!a)
                return;
        safe_close(a->fd);
        secret_free(a->key);
        free(a);
}

void audit_fingerprint(const struct audit *a, const struct secret *token, char out[static 17])
{
        static const char hex[] = "0123456789abcdef";
        uint8_t digest[32];

        if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret_str(a->key), secret_len(a->key),
                             secret_str(token), secret_len(token), digest) < 0) {
                memcpy(out, "unavailable00000", 17);
                return;
        }
        for (size_t i = 0; i < 8; i++) {
                out[2 * i] = hex[digest[i] >> 4];
                out[2 * i + 1] = hex[digest[i] & 15];
        }
        out[16] = 0;
        explicit_bzero(digest, sizeof(digest));
}

static bool add_string(cJSON *json, const char *key, const char *value)
{
        return !value || json_add_string_ref(json, key, value);
}

/* A peer fact that may be unknown: null then, so that "unknown" never looks like a path or a
 * unit name. */
static bool add_string_or_null(cJSON *json, const char *key, const char *value)
{
        return value ? json_add_string_ref(json, key, value) : !!cJSON_AddNullToObject(json, key);
}

static cJSON *scope_array(const char *scope_key)
{
        cJSON *array = cJSON_CreateArray();
        const char *p = scope_key;

        while (array && p && *p) {
                size_t n = strcspn(p, " ");
                char *one = strndup(p, n);
                cJSON *item = one ? cJSON_CreateString(one) : NULL;
                free(one);
                if (!item || !cJSON_AddItemToArray(array, item)) {
                        cJSON_Delete(item);
                        cJSON_Delete(array);
                        return NULL;
                }
                p += n;
                while (*p == ' ')
                        p++;
        }
        return array;
}

static bool add_aggregate(cJSON *json, const struct audit_record *r)
{
        char first[25], last[25];

        format_rfc3339_ms(r->first_usec, first);
        format_rfc3339_ms(r->last_usec, last);
        return json_add_uint(json, "count", r->count) &&
               cJSON_AddStringToObject(json, "first", first) &&
               cJSON_AddStringToObject(json, "last", last);
}

int audit_prepare(const struct audit_record *r, char **ret_body, size_t *ret_len)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char *text;
        bool ok;

        if (!json)
                return -ENOMEM;
        /* Every value outlives the tree, which is printed and freed in this function. */
        ok = json_add_string_ref(json, "event", r->event);
        if (ok && r->peer) {
                cJSON *peer = cJSON_AddObjectToObject(json, "peer");
                ok = peer && json_add_uint(peer, "uid", r->peer->uid) &&
                     json_add_uint(peer, "gid", r->peer->gid) &&
                     json_add_uint(peer, "pid", r->peer->pid) &&
                     add_string_or_null(peer, "exe", r->peer->exe) &&
                     add_string_or_null(peer, "unit", r->peer->unit);
        }
        ok = ok && add_string(json, "profile", r->profile) &&
             add_string(json, "account", r->account);
        if (ok && (r->scopes || r->scope_key)) {
                cJSON *scopes = r->scopes ? json_string_array_ref(r->scopes, r->n_scopes)
                                          : scope_array(r->scope_key);
                ok = scopes && cJSON_AddItemToObjectCS(json, "scopes", scopes);
        }
        ok =
            ok && add_string(json, "decision", r->decision) && add_string(json, "rule", r->rule) &&
            add_string(json, "reason", r->reason) &&
            (!r->rate_key || !*r->rate_key || json_add_string_ref(json, "rate_key", r->rate_key)) &&
            (!r->retry_after || json_add_uint(json, "retry_after", r->retry_after)) &&
            add_string(json, "token_fingerprint", r->fingerprint) &&
            (!r->expires_at || json_add_uint(json, "expires_at", r->expires_at)) &&
            (!r->generation || json_add_uint(json, "generation", r->generation)) &&
            add_string(json, "error", r->error) && add_string(json, "queue_id", r->queue_id) &&
            add_string(json, "message_id", r->message_id) &&
            (!r->size || json_add_uint(json, "size", r->size)) &&
            (!r->queue_id || json_add_uint(json, "n_recipients", r->n_recipients)) &&
            (!r->count || add_aggregate(json, r));
        if (!ok)
                return -ENOMEM;
        text = cJSON_PrintUnformatted(json);
        if (!text)
                return -ENOMEM;
        *ret_len = strlen(text);
        *ret_body = text;
        return 0;
}

/* Writes what remains of iov after its first done bytes; returns what write() returned. */
static ssize_t write_rest(int fd, const struct iovec *iov, size_t n_iov, size_t done)
{
        struct iovec rest[3];
        size_t n = 0;

        for (size_t i = 0; i < n_iov && n < ELEMENTSOF(rest); i++) {
                if (done >= iov[i].iov_len) {
                        done -= iov[i].iov_len;
                        continue;
                }
                rest[n].iov_base = (char *)iov[i].iov_base + done;
                rest[n].iov_len = iov[i].iov_len - done;
                done = 0;
                n++;
        }
        return writev(fd, rest, (int)n);
}

int audit_write_prepared(struct audit *a, const char *body, size_t body_len)
{
        static const char time_key[] = "{\"time\":\"", seq_key[] = "\",\"seq\":";
        char head[sizeof(time_key) + 24 + sizeof(seq_key) + 21 + 1];
        char time[25], seq[21];
        size_t head_len = 0, seq_len, total;
        ssize_t n;

        /* The line is the prepared object with "time" and "seq" put in front of its members:
         * {"time":"...","seq":N,<members of body>}. body is a whole object printed by cJSON, so
         * every string in it is escaped; time and seq are digits and punctuation. One writev()
         * keeps the line a single append. */
        if (body_len < 2 || body[0] != '{' || body[body_len - 1] != '}')
                return -EINVAL;
        format_rfc3339_ms(now_realtime_usec(), time);
        seq_len = format_u64(a->seq + 1, seq);
        memcpy(head + head_len, time_key, sizeof(time_key) - 1);
        head_len += sizeof(time_key) - 1;
        memcpy(head + head_len, time, 24);
        head_len += 24;
        memcpy(head + head_len, seq_key, sizeof(seq_key) - 1);
        head_len += sizeof(seq_key) - 1;
        memcpy(head + head_len, seq, seq_len);
        head_len += seq_len;
        if (body_len > 2)
                head[head_len++] = ',';

        struct iovec iov[] = {
            {.iov_base = head, .iov_len = head_len},
            {.iov_base = (void *)(body + 1), .iov_len = body_len - 1},
            {.iov_base = (void *)"\n", .iov_len = 1},
        };
        total = head_len + body_len - 1 + 1;
        n = writev(a->fd, iov, ELEMENTSOF(iov));
        int err = n < 0 ? -errno : 0;
        /* A short write: the rest, again, either completes the line or tells why not (ENOSPC,
         * EDQUOT, EFBIG): the administrator needs that, not a made-up EIO. */
        while (n >= 0 && n < (ssize_t)total) {
                ssize_t more = write_rest(a->fd, iov, ELEMENTSOF(iov), (size_t)n);
                if (more <= 0) {
                        err = more < 0 ? -errno : -EIO;
                        break;
                }
                n += more;
        }
        if (n != (ssize_t)total) {
                /* A torn line would corrupt the next record: take it back (the log has one
                 * writer, so the torn bytes are the file's last ones). */
                struct stat st;
                if (n > 0 && fstat(a->fd, &st) == 0 && S_ISREG(st.st_mode))
                        (void)!ftruncate(a->fd, st.st_size - n);
                return log_error_errno(err, "Failed to write the audit log");
        }
        a->size += total;
        drop_behind(a);
        a->seq++;
        return 0;
}

int audit_write(struct audit *a, const struct audit_record *r)
{
        char *body = NULL;
        size_t len;
        int e;

        e = audit_prepare(r, &body, &len);
        if (e < 0)
                return log_error_errno(e, "Failed to build an audit record");
        e = audit_write_prepared(a, body, len);
        json_free_string(body);
        return e;
}
