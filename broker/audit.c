/* Audit log writer; see audit.h. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "util.h"

#define AUDIT_TAIL_MAX 65536

struct audit {
        int fd;
        uint64_t seq;
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

int audit_open(const char *path, const struct secret *key, struct audit **ret)
{
        struct audit *a;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (a->fd < 0) {
                r = log_error_errno(errno, "Failed to open audit log %s", path);
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
                if (rfd >= 0)
                        a->seq = last_seq(rfd);
        }
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
        return !value || cJSON_AddStringToObject(json, key, value);
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

int audit_write(struct audit *a, const struct audit_record *r)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char time[25];
        char *text;
        size_t len;
        ssize_t n;
        bool ok;

        if (!json)
                return -ENOMEM;
        format_rfc3339_ms(now_realtime_usec(), time);
        ok = cJSON_AddStringToObject(json, "time", time) &&
             json_add_uint(json, "seq", (a->seq + 1)) &&
             cJSON_AddStringToObject(json, "event", r->event);
        if (ok && r->peer) {
                cJSON *peer = cJSON_AddObjectToObject(json, "peer");
                ok = peer && json_add_uint(peer, "uid", r->peer->uid) &&
                     json_add_uint(peer, "gid", r->peer->gid) &&
                     json_add_uint(peer, "pid", r->peer->pid) &&
                     cJSON_AddStringToObject(peer, "exe", r->peer->exe);
        }
        ok = ok && add_string(json, "profile", r->profile) &&
             add_string(json, "account", r->account);
        if (ok && r->scope_key) {
                cJSON *scopes = scope_array(r->scope_key);
                ok = scopes && cJSON_AddItemToObject(json, "scopes", scopes);
        }
        ok = ok && add_string(json, "decision", r->decision) && add_string(json, "rule", r->rule) &&
             add_string(json, "reason", r->reason) &&
             add_string(json, "token_fingerprint", r->fingerprint) &&
             (!r->expires_at || json_add_uint(json, "expires_at", r->expires_at)) &&
             (!r->generation || json_add_uint(json, "generation", r->generation)) &&
             add_string(json, "error", r->error);
        if (!ok)
                return -ENOMEM;

        text = cJSON_PrintUnformatted(json);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        text[len] = '\n'; /* replaces the NUL; the line is written by length */
        n = write(a->fd, text, len + 1);
        int err = n < 0 ? errno : EIO;
        json_free_string(text);
        if (n != (ssize_t)(len + 1)) {
                /* A torn line would corrupt the next record: take it back (the log has one
                 * writer, so the torn bytes are the file's last ones). */
                struct stat st;
                if (n > 0 && fstat(a->fd, &st) == 0 && S_ISREG(st.st_mode))
                        (void)!ftruncate(a->fd, st.st_size - n);
                return log_error_errno(err, "Failed to write the audit log");
        }
        a->seq++;
        return 0;
}
