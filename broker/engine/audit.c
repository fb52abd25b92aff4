/* Audit log writer; see audit.h. */
#include "audit.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <nettle/sha2.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "build-config.h"
#include "json.h"
#include "log.h"
#include "signed-note.h"
#include "util.h"

#define AUDIT_LINE_MAX 65536
/* ,"seq":<20 digits>,"time":"<24>","prev":"<64>"} */
#define AUDIT_TAIL_MAX (7 + 20 + 9 + 24 + 10 + 64 + 2)
#define LOG_ID_KEY     "\"log_id\":\""
#define AUDIT_BEHIND   (1 << 20)

struct audit {
        int fd;
        char *path;
        char *verifier_key; /* a copy of o.verifier_key: a genesis may be written long after open */
        uint64_t seq;       /* of the next record */
        uint8_t head[32];
        char log_id[33];
        char boot_id[33];
        char line_start[64]; /* {"v":1,"boot_id":"…" */
        size_t line_start_len;
        uint64_t size;      /* what the file holds as far as the broker knows */
        uint64_t behind;    /* pages before this offset are on their way to disk (drop_behind()) */
        uint64_t unsealed;  /* records since the last checkpoint was asked for */
        uint64_t requested; /* the count the last checkpoint asked for covers */
        bool need_genesis;  /* the genesis could not be written yet (a full disk) */
        bool torn_tail;     /* the file ends in a torn line: a newline goes first */
        char *note;         /* the latest checkpoint's */
        bool have_checkpoint;
        uint64_t checkpoint_seq, checkpoint_count; /* the latest checkpoint record's */
        struct secret *key;
        struct audit_options o;
        uint64_t hook_every;
        void (*hook)(void *userdata);
        void *hook_userdata;
};

static void sha256(const void *data, size_t len, uint8_t out[static 32])
{
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0)
                memset(out, 0, 32);
}

static void read_boot_id(char out[static 33])
{
        char buf[64];
        size_t n = 0, j = 0;
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

        if (fd >= 0 && read_bounded(fd, buf, sizeof(buf) - 1, &n) < 0)
                n = 0;
        for (size_t i = 0; i < n && j < 32; i++)
                if (isxdigit((unsigned char)buf[i]))
                        out[j++] = (char)tolower((unsigned char)buf[i]);
        while (j < 32)
                out[j++] = '0';
        out[32] = 0;
}

/* The line before end (exclusive: end points at its "\n" or the end of the data). */
static const char *line_before(const char *data, const char *end)
{
        const char *nl = data && end > data ? memrchr(data, '\n', (size_t)(end - data)) : NULL;
        return nl ? nl + 1 : data;
}

/* A v1 record's seq, or -EBADMSG; when the record seals the chain (a checkpoint or a file.start),
 * *ret_sealed is set, and a checkpoint's count goes to *ret_count (else UINT64_MAX). */
static int v1_seq(const char *line, size_t len, uint64_t *ret, bool *ret_sealed,
                  uint64_t *ret_count)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *event;
        uint64_t v;

        if (len == 0 || len >= AUDIT_LINE_MAX || json_parse(line, len, &json) < 0 ||
            !cJSON_IsObject(json) || json_get_u64(json, "v", &v) < 0 || v != 1 ||
            json_get_u64(json, "seq", ret) < 0)
                return -EBADMSG;
        event = json_get_string(json, "event");
        *ret_sealed =
            event && (strcmp(event, "checkpoint") == 0 || strcmp(event, "file.start") == 0);
        if (!event || strcmp(event, "checkpoint") != 0 ||
            json_get_u64(json, "count", ret_count) < 0)
                *ret_count = UINT64_MAX;
        return 0;
}

/* Going backwards from *end, the next line whose text holds one of keys (NULL-terminated), parsed
 * as a record; *end moves before it. NULL when no line before *end does. Only a member of the
 * parsed record counts for the caller: the text match only skips the lines that cannot. */
static cJSON *previous_record_with(const char *data, const char **end, const char *const keys[])
{
        while (*end > data) {
                const char *line = line_before(data, *end);
                size_t len = (size_t)(*end - line);
                cJSON *json = NULL;

                *end = line > data ? line - 1 : data;
                for (size_t i = 0; keys[i]; i++)
                        if (memmem(line, len, keys[i], strlen(keys[i])) &&
                            json_parse(line, len, &json) == 0)
                                return json;
        }
        return NULL;
}

/* The log_id of the latest record carrying one, going backwards from end. */
static bool find_log_id(const char *data, const char *end, char out[static 33])
{
        static const char *const keys[] = {LOG_ID_KEY, NULL};
        cJSON *json;

        while ((json = previous_record_with(data, &end, keys))) {
                const char *id = json_get_string(json, "log_id");
                bool found = id && strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32;
                if (found)
                        memcpy(out, id, 33);
                cJSON_Delete(json);
                if (found)
                        return true;
        }
        return false;
}

static int write_line(struct audit *a, const char *body, size_t body_len,
                      const struct sha256_ctx *start);
static int base_of(const char *line, size_t len, uint64_t *ret);
static int write_object(struct audit *a, cJSON *json);

static int write_genesis(struct audit *a)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        uint8_t id[16];
        int r;

        if (gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof(id)) < 0)
                return -EIO;
        hex_encode(id, sizeof(id), a->log_id);
        a->seq = 0;
        a->requested = 0;
        memset(a->head, 0, sizeof(a->head));
        if (!json || !json_add_string_ref(json, "event", "genesis") ||
            !json_add_string_ref(json, "log_id", a->log_id) ||
            (a->verifier_key && !json_add_string_ref(json, "key", a->verifier_key)))
                return -ENOMEM;
        r = write_object(a, json);
        if (r >= 0)
                a->unsealed++;
        return r;
}

static int write_alarm(struct audit *a, const char *reason, uint64_t expected, uint64_t found)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        int r;

        if (!json || !json_add_string_ref(json, "event", "audit.alarm") ||
            !json_add_string_ref(json, "log_id", a->log_id) ||
            !json_add_string_ref(json, "reason", reason) ||
            (expected &&
             (!json_add_uint(json, "expected", expected) || !json_add_uint(json, "found", found))))
                return -ENOMEM;
        r = write_object(a, json);
        if (r >= 0)
                a->unsealed++;
        return r;
}

/* The note of the latest checkpoint (or of the file.start that repeats it), going backwards from
 * end, so that a rotation right after a restart can still repeat it. */
static char *find_note(const char *data, const char *end)
{
        static const char *const keys[] = {"\"note\":\"", "\"checkpoint\":\"", NULL};
        cJSON *json;

        while ((json = previous_record_with(data, &end, keys))) {
                const char *note = json_get_string(json, "note");
                char *copy = NULL;
                if (!note)
                        note = json_get_string(json, "checkpoint");
                if (note && strlen(note) < NOTE_MAX_LEN)
                        copy = strdup(note);
                cJSON_Delete(json);
                if (copy)
                        return copy;
        }
        return NULL;
}

/* Sets seq, head, log_id and the latest note from the file's end; 1 when a genesis is needed,
 * 0 to continue. *ret_torn: the last line is torn (when the chain goes on, head is then the
 * torn bytes' hash). */
static int read_chain(struct audit *a, int rfd, bool *ret_torn)
{
        struct stat st;
        char *data;
        const char *end, *last;
        uint64_t seq, count;
        bool sealed;
        int r = 0;

        *ret_torn = false;
        if (fstat(rfd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
                return 1;
        data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, rfd, 0);
        if (data == MAP_FAILED || !data)
                return 1;
        end = data + st.st_size;
        if (end[-1] != '\n') {
                /* Torn by a crash or a full disk: hash it as it is. */
                last = line_before(data, end);
                sha256(last, (size_t)(end - last), a->head);
                end = last > data ? last - 1 : data;
                *ret_torn = true;
        } else
                end--;
        last = line_before(data, end);
        if (end <= data || v1_seq(last, (size_t)(end - last), &seq, &sealed, &count) < 0 ||
            !find_log_id(data, end, a->log_id))
                r = 1;
        else {
                a->seq = seq + 1;
                /* Records a crash left unsealed are sealed at start (audit_catch_up()). */
                a->unsealed = sealed ? 0 : 1;
                /* The next checkpoint falls due n records after the count the last one covers
                 * (the checkpoint record itself is one of them). */
                if (base_of(last, (size_t)(end - last), &a->requested) < 0)
                        a->requested = a->seq;
                if (count != UINT64_MAX) {
                        a->have_checkpoint = true;
                        a->checkpoint_seq = seq;
                        a->checkpoint_count = count;
                }
                if (!*ret_torn)
                        sha256(last, (size_t)(end - last), a->head);
                a->note = find_note(data, end);
        }
        munmap(data, (size_t)st.st_size);
        return r;
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

static int open_file(const char *path, int flags, gid_t group)
{
        int fd = open(
            path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | flags, 0640);
        if (fd < 0)
                return -errno;
        if (group != (gid_t)-1 && fchown(fd, (uid_t)-1, group) < 0)
                log_warning_errno(-errno, "Failed to give the audit log %s to group %u", path,
                                  (unsigned)group);
        (void)fchmod(fd, 0640);
        return fd;
}

int audit_open_with(const char *path, const struct secret *key, const struct audit_options *o,
                    struct audit **ret)
{
        struct audit *a;
        struct stat st;
        bool torn = false;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->o = o ? *o : (struct audit_options){.group = (gid_t)-1};
        a->fd = -1;
        a->path = strdup(path);
        if (a->o.verifier_key)
                a->verifier_key = strdup(a->o.verifier_key);
        a->o.verifier_key = NULL; /* the caller's */
        if (!a->path || (o && o->verifier_key && !a->verifier_key)) {
                audit_close(a);
                return -ENOMEM;
        }
        a->fd = open_file(path, 0, a->o.group);
        if (a->fd < 0) {
                r = log_error_errno(a->fd, "Failed to open audit log %s", path);
                a->fd = -1;
                audit_close(a);
                return r;
        }
        r = secret_new_from(secret_data((struct secret *)key), secret_len(key), &a->key);
        if (r < 0) {
                audit_close(a);
                return r;
        }
        read_boot_id(a->boot_id);
        a->line_start_len = (size_t)snprintf(a->line_start, sizeof(a->line_start),
                                             "{\"v\":1,\"boot_id\":\"%s\"", a->boot_id);
        {
                /* O_WRONLY cannot be read: look at the file through a second descriptor. */
                _cleanup_close_ int rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                r = rfd >= 0 ? read_chain(a, rfd, &torn) : 1;
        }
        a->size = fstat(a->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        a->behind = a->size / AUDIT_BEHIND * AUDIT_BEHIND;
        if (torn) {
                log_warning("Audit log %s ends with a partial line (a crash or a full disk?); "
                            "continuing on a new line.",
                            path);
                /* write_line() ends it before the next record, whichever that is. */
                a->torn_tail = true;
                /* With no whole v1 line before it (r == 1) a new chain starts below. */
                if (r == 0)
                        r = write_alarm(a, "torn_line", 0, 0);
        }
        if (r == 1) {
                /* A full disk does not stop the broker: every record then fails (no token is
                 * sent) until the genesis can be written before it. */
                r = write_genesis(a);
                a->need_genesis = r < 0;
                if (r < 0 && r != -ENOMEM)
                        r = 0;
        }
        if (r < 0) {
                audit_close(a);
                return log_error_errno(r, "Failed to start the audit log %s", path);
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
        free(a->path);
        free(a->verifier_key);
        free(a->note);
        free(a);
}

void audit_chain_mark(struct audit *a, uint64_t *ret_count, uint8_t head[static 32])
{
        *ret_count = a->seq;
        memcpy(head, a->head, 32);
        a->requested = a->seq;
        a->unsealed = 0;
}

void audit_checkpoint_skipped(struct audit *a)
{
        a->requested = a->seq;
}

void audit_mark_unsealed(struct audit *a)
{
        if (a->unsealed == 0)
                a->unsealed = 1;
}

uint64_t audit_next_seq(const struct audit *a)
{
        return a->seq;
}

const char *audit_log_id(const struct audit *a)
{
        return a->log_id;
}

const char *audit_last_note(const struct audit *a)
{
        return a->note;
}

uint64_t audit_unsealed(const struct audit *a)
{
        return a->unsealed;
}

bool audit_last_checkpoint(const struct audit *a, uint64_t *ret_seq, uint64_t *ret_count)
{
        if (!a->have_checkpoint)
                return false;
        *ret_seq = a->checkpoint_seq;
        *ret_count = a->checkpoint_count;
        return true;
}

void audit_set_checkpoint_hook(struct audit *a, uint64_t n, void (*fn)(void *userdata),
                               void *userdata)
{
        a->hook_every = n;
        a->hook = fn;
        a->hook_userdata = userdata;
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

static int print_record(const struct audit_record *r, char **ret_body, size_t *ret_len)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char *text;
        bool ok;

        if (!json)
                return -ENOMEM;
        /* Every value outlives the tree, which is printed and freed in this function. */
        ok = !r->event || json_add_string_ref(json, "event", r->event); /* NULL: a token part */
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

/* Every hook_every records (checkpoint records included) since the last checkpoint was asked
 * for, whether or not its signature is back: the notes' counts are then at most hook_every
 * apart (docs/audit.md). */
static void maybe_hook(struct audit *a)
{
        if (!ENABLE_AUDIT_CHAIN)
                return;
        if (a->hook && a->hook_every && a->seq - a->requested >= a->hook_every)
                a->hook(a->hook_userdata);
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

/* The journald mirror: the line without "\n" put together for it only (not on the fast path
 * otherwise). */
static void mirror(struct audit *a, const struct iovec *iov, size_t n_iov, size_t len,
                   const uint8_t digest[static 32])
{
        char hash_hex[65], *line = malloc(len + 1);
        size_t at = 0;

        if (!line)
                return;
        hex_encode(digest, 32, hash_hex);
        for (size_t i = 0; i < n_iov; i++) {
                memcpy(line + at, iov[i].iov_base, iov[i].iov_len);
                at += iov[i].iov_len;
        }
        line[at] = 0;
        a->o.mirror(a->o.mirror_userdata, line, at, a->seq, hash_hex);
        free(line);
}

/* The members of body (a whole object printed by cJSON), without its braces. */
static const char *members(const char *body, size_t body_len, size_t *ret_len)
{
        *ret_len = body_len - 2;
        return body + 1;
}

/* The SHA-256 state after the line's constant start: {"v":1,"boot_id":"…" and the members of
 * body. Only the record's own seq, time and prev follow it, so a record written again and again
 * (a connection's repeated issue) hashes two blocks per line instead of eight. */
static void hash_start(const struct audit *a, const char *body, size_t body_len,
                       struct sha256_ctx *ret)
{
        size_t len;
        const char *m = members(body, body_len, &len);

        sha256_init(ret);
        if (!ENABLE_AUDIT_CHAIN)
                return;
        sha256_update(ret, a->line_start_len, (const uint8_t *)a->line_start);
        if (len > 0) {
                sha256_update(ret, 1, (const uint8_t *)",");
                sha256_update(ret, len, (const uint8_t *)m);
        }
}

/* ,"seq":N,"time":"…","prev":"…"} — what differs from one record to the next; returns its
 * length. */
static size_t format_tail(const struct audit *a, char tail[static AUDIT_TAIL_MAX])
{
        static const char seq_key[] = ",\"seq\":", time_key[] = ",\"time\":\"",
                          prev_key[] = "\",\"prev\":\"";
        size_t n = 0;

        memcpy(tail, seq_key, sizeof(seq_key) - 1);
        n += sizeof(seq_key) - 1;
        n += format_u64(a->seq, tail + n);
        memcpy(tail + n, time_key, sizeof(time_key) - 1);
        n += sizeof(time_key) - 1;
        format_rfc3339_ms(now_realtime_usec(), tail + n);
        n += 24;
        if (ENABLE_AUDIT_CHAIN) {
                memcpy(tail + n, prev_key, sizeof(prev_key) - 1);
                n += sizeof(prev_key) - 1;
                hex_encode(a->head, 32, tail + n);
                n += 64;
        }
        tail[n++] = '"';
        tail[n++] = '}';
        return n;
}

/* Writes iov (the line, its "\n" last) with one writev(), the rest again after a short write; a
 * line that cannot be completed is taken back. */
static int append(struct audit *a, const struct iovec *iov, size_t n_iov, size_t total)
{
        ssize_t n = writev(a->fd, iov, (int)n_iov);
        int err = n < 0 ? -errno : 0;

        /* A short write: the rest, again, either completes the line or tells why not (ENOSPC,
         * EDQUOT, EFBIG): the administrator needs that, not a made-up EIO. */
        while (n >= 0 && n < (ssize_t)total) {
                ssize_t more = write_rest(a->fd, iov, n_iov, (size_t)n);
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
        return 0;
}

/* Writes {"v":1,"boot_id":"…",<members of body>,"seq":N,"time":"…","prev":"…"}\n; body is a
 * whole object printed by cJSON, so every string in it is escaped. start is hash_start() of
 * body, or NULL to compute it here. The line is hashed in its pieces, never copied. */
static int write_line(struct audit *a, const char *body, size_t body_len,
                      const struct sha256_ctx *start)
{
        char tail[AUDIT_TAIL_MAX];
        struct sha256_ctx ctx;
        uint8_t digest[32];
        size_t m_len, tail_len, total;
        const char *m;
        int r;

        if (body_len < 2 || body[0] != '{' || body[body_len - 1] != '}')
                return -EINVAL;
        if (body_len + a->line_start_len + AUDIT_TAIL_MAX >= AUDIT_LINE_MAX)
                return log_error_errno(-E2BIG, "An audit record is too large");
        if (a->torn_tail) {
                /* A record glued to a torn line would break the chain for good. */
                if (write(a->fd, "\n", 1) != 1)
                        return log_error_errno(-errno, "Failed to end a torn audit line");
                a->size++;
                a->torn_tail = false;
        }
        m = members(body, body_len, &m_len);
        tail_len = format_tail(a, tail);
        struct iovec iov[] = {
            {.iov_base = a->line_start, .iov_len = a->line_start_len},
            {.iov_base = (void *)",", .iov_len = m_len > 0},
            {.iov_base = (void *)m, .iov_len = m_len},
            {.iov_base = tail, .iov_len = tail_len},
            {.iov_base = (void *)"\n", .iov_len = 1},
        };
        total = a->line_start_len + (m_len > 0) + m_len + tail_len + 1;
        r = append(a, iov, ELEMENTSOF(iov), total);
        if (r < 0)
                return r;
        if (ENABLE_AUDIT_CHAIN) {
                if (start)
                        ctx = *start;
                else
                        hash_start(a, body, body_len, &ctx);
                sha256_update(&ctx, tail_len, (const uint8_t *)tail);
                sha256_digest(&ctx, sizeof(digest), digest);
                memcpy(a->head, digest, 32);
        } else
                memset(digest, 0, sizeof(digest));
        a->size += total;
        drop_behind(a);
        if (a->o.mirror)
                mirror(a, iov, ELEMENTSOF(iov) - 1, total - 1, digest);
        a->seq++;
        return 0;
}

int audit_write_prepared(struct audit *a, const struct audit_prepared *p)
{
        int r;

        if (a->need_genesis) {
                r = write_genesis(a);
                if (r < 0)
                        return r;
                a->need_genesis = false;
        }
        r = write_line(a, p->body, p->len, p->log == a ? &p->start : NULL);
        if (r < 0)
                return r;
        a->unsealed++;
        maybe_hook(a);
        return 0;
}

static int write_object(struct audit *a, cJSON *json)
{
        char *text = cJSON_PrintUnformatted(json);
        int r;

        if (!text)
                return -ENOMEM;
        r = write_line(a, text, strlen(text), NULL);
        json_free_string(text);
        return r;
}

int audit_write_checkpoint(struct audit *a, uint64_t count, const uint8_t head[static 32],
                           const char *note)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char head_hex[65];
        char *copy;
        int r;

        hex_encode(head, 32, head_hex);
        if (!json || !json_add_string_ref(json, "event", "checkpoint") ||
            !json_add_string_ref(json, "log_id", a->log_id) ||
            !json_add_uint(json, "count", count) || !json_add_string_ref(json, "head", head_hex) ||
            !json_add_string_ref(json, "note", note))
                return -ENOMEM;
        copy = strdup(note);
        if (!copy)
                return -ENOMEM;
        r = write_object(a, json);
        if (r < 0) {
                free(copy);
                return r;
        }
        free(a->note);
        a->note = copy;
        a->have_checkpoint = true;
        a->checkpoint_seq = a->seq - 1;
        a->checkpoint_count = count;
        /* Records written while the signature was made count in unsealed already: they are
         * covered by the next checkpoint. */
        maybe_hook(a);
        return 0;
}

int audit_reopen(struct audit *a, bool *ret_reopened)
{
        _cleanup_json_ cJSON *json = NULL;
        struct stat open_st, path_st;
        int fd, r;

        *ret_reopened = false;
        if (fstat(a->fd, &open_st) < 0)
                return -errno;
        if (stat(a->path, &path_st) == 0 && path_st.st_dev == open_st.st_dev &&
            path_st.st_ino == open_st.st_ino)
                return 0;
        fd = open_file(a->path, O_EXCL, a->o.group);
        if (fd < 0)
                return log_error_errno(fd, "Failed to open the new audit log %s", a->path);
        safe_close(a->fd);
        a->fd = fd;
        a->size = 0;
        a->behind = 0;
        *ret_reopened = true;
        json = cJSON_CreateObject();
        if (!json || !json_add_string_ref(json, "event", "file.start") ||
            !json_add_string_ref(json, "log_id", a->log_id) ||
            (a->note && !json_add_string_ref(json, "checkpoint", a->note)))
                return -ENOMEM;
        r = write_object(a, json);
        if (r < 0)
                return r;
        log_info("Audit log reopened at %s after rotation.", a->path);
        maybe_hook(a);
        return 0;
}

int audit_check_truncation(struct audit *a)
{
        struct stat st;
        uint64_t expected = a->size;
        int r;

        if (fstat(a->fd, &st) < 0 || !S_ISREG(st.st_mode))
                return 0;
        if ((uint64_t)st.st_size >= expected) {
                a->size = (uint64_t)st.st_size;
                return 0;
        }
        log_error("CRITICAL: audit log %s is shorter than the broker wrote (%" PRIu64
                  " bytes, expected %" PRIu64 "): truncated behind its back.",
                  a->path, (uint64_t)st.st_size, expected);
        a->size = (uint64_t)st.st_size;
        a->behind = a->size / AUDIT_BEHIND * AUDIT_BEHIND;
        r = write_alarm(a, "truncated", expected, (uint64_t)st.st_size);
        maybe_hook(a);
        return r < 0 ? r : 1;
}

int audit_prepare(const struct audit *a, const struct audit_record *r, struct audit_prepared *ret)
{
        int e = print_record(r, &ret->body, &ret->len);

        if (e < 0)
                return e;
        hash_start(a, ret->body, ret->len, &ret->start);
        ret->log = a;
        return 0;
}

/* The members of r's body, without its braces. */
static int print_members(const struct audit_record *r, struct audit_part *ret)
{
        char *body;
        size_t len;
        int e = print_record(r, &body, &len);

        if (e < 0)
                return e;
        memmove(body, body + 1, len - 2);
        body[len - 2] = 0;
        *ret = (struct audit_part){.text = body, .len = len - 2};
        return 0;
}

int audit_issue_peer_part(const struct audit_record *r, struct audit_part *ret)
{
        return print_members(&(struct audit_record){.event = r->event, .peer = r->peer}, ret);
}

/* print_record() prints these members in this order, after "event" and "peer" and before
 * "expires_at"; an issue record has no other. */
int audit_issue_token_part(const struct audit_record *r, struct audit_part *ret)
{
        return print_members(&(struct audit_record){.profile = r->profile,
                                                    .account = r->account,
                                                    .scopes = r->scopes,
                                                    .n_scopes = r->n_scopes,
                                                    .decision = r->decision,
                                                    .rule = r->rule,
                                                    .fingerprint = r->fingerprint},
                             ret);
}

int audit_prepare_issue(const struct audit *a, const struct audit_part *peer,
                        const struct audit_part *token, uint64_t expires_at,
                        struct audit_prepared *ret)
{
        static const char expires_key[] = ",\"expires_at\":";
        char digits[21];
        size_t n = format_u64(expires_at, digits);
        size_t len = 1 + peer->len + 1 + token->len + sizeof(expires_key) - 1 + n + 1;
        char *body = malloc(len + 1);

        if (!body)
                return -ENOMEM;
        (void)snprintf(body, len + 1, "{%s,%s%s%s}", peer->text, token->text, expires_key, digits);
        *ret = (struct audit_prepared){.body = body, .len = len, .log = a};
        hash_start(a, ret->body, ret->len, &ret->start);
        return 0;
}

void audit_prepared_clear(struct audit_prepared *p)
{
        json_free_string(p->body);
        *p = (struct audit_prepared){0};
}

int audit_write(struct audit *a, const struct audit_record *r)
{
        struct audit_prepared p = {0};
        int e;

        e = audit_prepare(a, r, &p);
        if (e < 0)
                return log_error_errno(e, "Failed to build an audit record");
        e = audit_write_prepared(a, &p);
        audit_prepared_clear(&p);
        return e;
}

/* The decimal number at the start of s (at most 19 digits, so no overflow). */
static bool parse_u64_prefix(const char *s, uint64_t *ret)
{
        uint64_t v = 0;
        size_t i = 0;

        for (; i < 19 && s[i] >= '0' && s[i] <= '9'; i++)
                v = v * 10 + (uint64_t)(s[i] - '0');
        *ret = v;
        return i > 0;
}

/* The count a chain's record sets as the base of the checkpoints after it: a checkpoint's count,
 * the count of the note a file.start repeats, 0 for a genesis; -ENOENT for any other record. */
static int base_of(const char *line, size_t len, uint64_t *ret)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *event, *note, *nl;

        if (!line || len < 20)
                return -ENOENT;
        if (!memmem(line, len, "\"event\":\"checkpoint\"", 20) &&
            !memmem(line, len, "\"event\":\"file.start\"", 20) &&
            !memmem(line, len, "\"event\":\"genesis\"", 17))
                return -ENOENT;
        if (json_parse(line, len, &json) < 0 || !(event = json_get_string(json, "event")))
                return -ENOENT;
        if (strcmp(event, "genesis") == 0) {
                *ret = 0;
                return 0;
        }
        if (strcmp(event, "checkpoint") == 0)
                return json_get_u64(json, "count", ret) < 0 ? -ENOENT : 0;
        note = json_get_string(json, "checkpoint");
        nl = note ? strchr(note, '\n') : NULL;
        return nl && parse_u64_prefix(nl + 1, ret) ? 0 : -ENOENT;
}

/* A v1 line's seq from its fixed-length end (,"seq":N,"time":"…","prev":"…"}), without parsing
 * the rest. */
static bool seq_of(const char *line, size_t len, uint64_t *ret)
{
        static const char seq_key[] = ",\"seq\":", after_seq[] = ",\"time\":\"";
        const size_t after_len = 9 + 24 + 10 + 64 + 2; /* from ,"time":" to the end */
        const char *p;
        size_t digits = 0;

        if (len < after_len + sizeof(seq_key) || line[0] != '{' ||
            memcmp(line + len - after_len, after_seq, sizeof(after_seq) - 1) != 0)
                return false;
        p = line + len - after_len;
        while (p - digits > line && digits < 20 && p[-(ptrdiff_t)digits - 1] >= '0' &&
               p[-(ptrdiff_t)digits - 1] <= '9')
                digits++;
        p -= digits;
        return digits > 0 && p - line >= (ptrdiff_t)sizeof(seq_key) - 1 &&
               memcmp(p - (sizeof(seq_key) - 1), seq_key, sizeof(seq_key) - 1) == 0 &&
               parse_u64_prefix(p, ret);
}

static bool is_role(const char *line, size_t len)
{
        return memmem(line, len, "\"event\":\"checkpoint\"", 20) ||
               memmem(line, len, "\"event\":\"file.start\"", 20);
}

/* Forward from the first record with seq >= base: every n-th count and its head, and whether a
 * record that is not a checkpoint or file.start has seq >= base (it needs a seal). */
static int collect(const char *from, const char *end, uint64_t base, uint64_t n,
                   struct audit_catch_up *ret)
{
        uint64_t next = base + n;

        while (from < end) {
                const char *nl = memchr(from, '\n', (size_t)(end - from));
                size_t len = nl ? (size_t)(nl - from) : (size_t)(end - from);
                uint64_t seq;

                if (seq_of(from, len, &seq) && seq >= base) {
                        if (!is_role(from, len))
                                ret->unsealed = true;
                        if (seq + 1 >= next) {
                                struct audit_head *more =
                                    reallocarray(ret->heads, ret->n + 1, sizeof(*ret->heads));
                                if (!more)
                                        return -ENOMEM;
                                ret->heads = more;
                                ret->heads[ret->n].count = seq + 1;
                                sha256(from, len, ret->heads[ret->n].head);
                                ret->n++;
                                next = seq + 1 + n;
                        }
                }
                from += len + 1;
        }
        return 0;
}

/* Going back from end (the "\n" of the last whole line): the latest checkpoint, file.start or
 * genesis and the count it sets, then back to the first record with seq >= that count. */
static const char *find_base(const char *data, const char *end, uint64_t max_back,
                             uint64_t *ret_base)
{
        const char *line = end, *found = NULL;
        uint64_t lines = 0, seq;

        while (line > data && lines++ <= max_back) {
                const char *start = line_before(data, line);
                size_t len = (size_t)(line - start);
                if (!found && base_of(start, len, ret_base) == 0) {
                        found = start;
                        if (*ret_base == 0)
                                return found; /* a genesis: nothing of this chain before it */
                }
                if (found && (!seq_of(start, len, &seq) || seq < *ret_base))
                        return found;
                if (found)
                        found = start;
                line = start > data ? start - 1 : data;
        }
        return found && line <= data ? found : NULL;
}

int audit_catch_up(struct audit *a, uint64_t n, uint64_t max_back, struct audit_catch_up *ret)
{
        _cleanup_close_ int fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        const char *data, *end, *from;
        uint64_t base = 0;
        struct stat st;
        int r = 0;

        *ret = (struct audit_catch_up){.unsealed = a->unsealed > 0};
        if (n == 0 || fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
                return 0;
        data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (data == MAP_FAILED || !data)
                return 0;
        end = data + st.st_size;
        if (end[-1] == '\n')
                end--;
        else {
                /* A torn last line is no record. */
                from = line_before(data, end);
                end = from > data ? from - 1 : data;
        }
        from = find_base(data, end, max_back, &base);
        if (from) {
                ret->unsealed = false;
                r = collect(from, end, base, n, ret);
        }
        munmap((void *)data, (size_t)st.st_size);
        return r;
}
