/* The wrapped backend's directory and files: one JSON file per account, its header in the clear
 * and bound to the sealed blob, written tmp → fsync → rename → fsync(dir) (store-wrapped.h). */
#include "store-wrapped.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "json.h"
#include "log.h"
#include "util.h"
#include "wire.h"

/* base64 of the largest blob and the header around it. */
#define FILE_MAX ((WRAPPED_PLAIN_MAX + WRAPPED_TAG_LEN + 2) / 3 * 4 + 4096)

static int chown_like_parent(int fd, const char *dir)
{
        _cleanup_free_ char *parent = strdup(dir);
        struct stat st;
        char *slash;

        if (!parent)
                return -ENOMEM;
        slash = strrchr(parent, '/');
        if (!slash)
                return -EINVAL;
        *(slash == parent ? slash + 1 : slash) = 0;
        if (stat(parent, &st) < 0)
                return -errno;
        return fchown(fd, st.st_uid, st.st_gid) < 0 ? -errno : 0;
}

int p11_wrapped_new(const char *dir, struct p11_wrapped **ret)
{
        _cleanup_free_ struct p11_wrapped *w = NULL;
        struct stat st;
        bool created;
        int fd;

        if (!dir || dir[0] != '/')
                return log_error_errno(-EINVAL, "[pkcs11] wrapped_dir must be an absolute path.");
        created = mkdir(dir, 0700) >= 0;
        if (!created && errno != EEXIST)
                return log_error_errno(-errno, "Failed to create %s", dir);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to open %s", dir);
        /* Made by root (the CLI before the broker ever ran): the broker's, like the state
         * directory it lies in. */
        if (created && geteuid() == 0)
                (void)chown_like_parent(fd, dir);
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        /* Only the broker may put files there: anyone else could at least delete accounts. */
        if ((st.st_uid != geteuid() && geteuid() != 0) || (st.st_mode & 077) != 0) {
                close(fd);
                return log_error_errno(-EPERM,
                                       "%s must be a directory of uid %u with mode 0700 "
                                       "(chown and chmod it).",
                                       dir, (unsigned)geteuid());
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
                close(fd);
                return -ENOMEM;
        }
        w->dir_fd = fd;
        w->dir_uid = st.st_uid;
        w->dir_gid = st.st_gid;
        w->dir = strdup(dir);
        if (!w->dir) {
                close(fd);
                return -ENOMEM;
        }
        if (gnutls_rnd(GNUTLS_RND_NONCE, w->run_id, sizeof(w->run_id)) < 0) {
                p11_wrapped_free(TAKE_PTR(w));
                return -EIO;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

void p11_wrapped_free(struct p11_wrapped *w)
{
        if (!w)
                return;
        if (w->dir_fd >= 0)
                close(w->dir_fd);
        free(w->dir);
        free(w->keks);
        for (unsigned k = 0; k < WRAPPED_SHARDS; k++)
                free(w->kept_shards[k].text);
        free(w);
}

static void file_name(const char *account, bool tmp, char out[static NAME_MAX_LEN + 16])
{
        if (tmp)
                snprintf(out, NAME_MAX_LEN + 16, ".%s.tmp", account);
        else
                snprintf(out, NAME_MAX_LEN + 16, "%s" WRAPPED_FILE_SUFFIX, account);
}

static int unhex(const char *text, uint8_t *out, size_t n)
{
        return text ? hex_decode(text, strlen(text), out, n) : -EBADMSG;
}

void p11_wrapped_header_context(const struct p11_wrapped_header *h,
                                char out[static WRAPPED_CONTEXT_MAX])
{
        char id[2 * WRAPPED_STATE_ID_LEN + 1], prev_id[2 * WRAPPED_STATE_ID_LEN + 1];

        /* Not the key's id: it is chosen by the seal, and another key fails to open anyway. */
        hex_encode(h->id, sizeof(h->id), id);
        hex_encode(h->prev_id, sizeof(h->prev_id), prev_id);
        snprintf(out, WRAPPED_CONTEXT_MAX,
                 "id=%s prev=%" PRIu64 "-%s kinds=%u rt=%" PRIu64 " at=%" PRIu64, id,
                 h->prev_generation, prev_id, h->kinds, h->refresh_token_generation, h->stored_at);
}

/* ---- JSON ---- */

static bool add_u64(cJSON *object, const char *key, uint64_t v)
{
        char text[21];

        format_u64(v, text);
        return cJSON_AddStringToObject(object, key, text) != NULL;
}

static bool add_hex(cJSON *object, const char *key, const uint8_t *p, size_t n)
{
        char text[2 * WRAPPED_KEK_ID_LEN + 1];

        hex_encode(p, n, text);
        return cJSON_AddStringToObject(object, key, text) != NULL;
}

char *p11_wrapped_header_print(const char *account, const struct p11_wrapped_header *h)
{
        _cleanup_json_ cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *iv = NULL, *sealed = NULL;

        iv = malloc((WRAPPED_IV_LEN + 2) / 3 * 4 + 1);
        sealed = malloc((h->blob.sealed_len + 2) / 3 * 4 + 1);
        if (!o || !iv || !sealed)
                return NULL;
        wire_base64_encode(h->blob.iv, WRAPPED_IV_LEN, iv);
        wire_base64_encode(h->blob.sealed, h->blob.sealed_len, sealed);
        if (!cJSON_AddStringToObject(o, "format", WRAPPED_FORMAT) ||
            !cJSON_AddStringToObject(o, "account", account) ||
            !add_u64(o, "generation", h->generation) || !add_hex(o, "id", h->id, sizeof(h->id)) ||
            !add_u64(o, "prev_generation", h->prev_generation) ||
            !add_hex(o, "prev_id", h->prev_id, sizeof(h->prev_id)) ||
            !add_u64(o, "kinds", h->kinds) ||
            !add_u64(o, "refresh_token_generation", h->refresh_token_generation) ||
            !add_u64(o, "stored_at", h->stored_at) ||
            !add_hex(o, "kek", h->blob.kek_id, sizeof(h->blob.kek_id)) ||
            !json_add_string_ref(o, "iv", iv) || !json_add_string_ref(o, "sealed", sealed))
                return NULL;
        return cJSON_PrintUnformatted(o);
}

static int get_u64(const cJSON *o, const char *key, uint64_t *ret)
{
        const char *text = json_get_string(o, key);

        return text && parse_u64(text, ret) >= 0 ? 0 : -EBADMSG;
}

static int get_base64(const cJSON *o, const char *key, size_t min, size_t max, uint8_t **ret,
                      size_t *ret_len)
{
        const char *text = json_get_string(o, key);
        _cleanup_free_ uint8_t *data = NULL;
        size_t len;

        if (!text || strlen(text) % 4 != 0 || strlen(text) / 4 * 3 > max + 2)
                return -EBADMSG;
        data = malloc(strlen(text) / 4 * 3 + 1);
        if (!data)
                return -ENOMEM;
        if (wire_base64_decode(text, strlen(text), data, &len) < 0 || len < min || len > max)
                return -EBADMSG;
        *ret = TAKE_PTR(data);
        *ret_len = len;
        return 0;
}

int p11_wrapped_header_parse(const char *account, const char *text, size_t len,
                             struct p11_wrapped_header *ret)
{
        _cleanup_json_ cJSON *o = NULL;
        struct p11_wrapped_header h = {0};
        _cleanup_free_ uint8_t *iv = NULL;
        uint64_t kinds;
        size_t iv_len;
        const char *s;
        int r;

        r = json_parse(text, len, &o);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(o) || json_has_duplicate_keys(o))
                return -EBADMSG;
        s = json_get_string(o, "format");
        if (!s || strcmp(s, WRAPPED_FORMAT) != 0)
                return -EBADMSG;
        s = json_get_string(o, "account");
        if (!s || strcmp(s, account) != 0)
                return -EBADMSG;
        if (get_u64(o, "generation", &h.generation) < 0 || h.generation == 0 ||
            get_u64(o, "prev_generation", &h.prev_generation) < 0 ||
            h.prev_generation >= h.generation || get_u64(o, "kinds", &kinds) < 0 || kinds > 0xff ||
            get_u64(o, "refresh_token_generation", &h.refresh_token_generation) < 0 ||
            get_u64(o, "stored_at", &h.stored_at) < 0 ||
            unhex(json_get_string(o, "id"), h.id, sizeof(h.id)) < 0 ||
            unhex(json_get_string(o, "prev_id"), h.prev_id, sizeof(h.prev_id)) < 0 ||
            unhex(json_get_string(o, "kek"), h.blob.kek_id, sizeof(h.blob.kek_id)) < 0)
                return -EBADMSG;
        h.kinds = (unsigned)kinds;
        r = get_base64(o, "iv", WRAPPED_IV_LEN, WRAPPED_IV_LEN, &iv, &iv_len);
        if (r < 0)
                return r;
        memcpy(h.blob.iv, iv, WRAPPED_IV_LEN);
        r = get_base64(o, "sealed", WRAPPED_TAG_LEN + 1, WRAPPED_PLAIN_MAX + WRAPPED_TAG_LEN,
                       &h.blob.sealed, &h.blob.sealed_len);
        if (r < 0)
                return r;
        *ret = h;
        return 0;
}

/* ---- reading and writing ---- */

int p11_wrapped_file_read(struct store *s, const char *account, bool tmp,
                          struct p11_wrapped_header *ret)
{
        struct p11_wrapped *w = s->wrapped;
        _cleanup_free_ char *text = NULL;
        char name[NAME_MAX_LEN + 16];
        struct stat st;
        size_t len;
        int fd, r;

        file_name(account, tmp, name);
        fd = openat(w->dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOENT
                           ? -ENOENT
                           : log_error_errno(-errno, "Failed to open %s/%s", w->dir, name);
        text = malloc(FILE_MAX + 1);
        if (!text) {
                close(fd);
                return -ENOMEM;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != w->dir_uid ||
            (st.st_mode & 077) != 0) {
                close(fd);
                return log_error_errno(-EPERM,
                                       "%s/%s is not a regular file of uid %u with mode 0600; "
                                       "not reading it.",
                                       w->dir, name, (unsigned)w->dir_uid);
        }
        r = read_bounded(fd, text, FILE_MAX, &len);
        close(fd);
        if (r < 0)
                return log_error_errno(r == -EFBIG ? -EBADMSG : r, "Failed to read %s/%s", w->dir,
                                       name);
        text[len] = 0;
        r = p11_wrapped_header_parse(account, text, len, ret);
        /* A torn temporary file is the normal leftover of a kill: not worth an error. */
        if (r == -EBADMSG && !tmp)
                log_error("%s/%s is not a well-formed sealed account file of account %s.", w->dir,
                          name, account);
        return r;
}

static int write_tmp_fd(struct store *s, int fd, const char *text)
{
        struct p11_wrapped *w = s->wrapped;

        /* Root (the CLI) writes files the broker's user can read. */
        if (geteuid() == 0 && w->dir_uid != 0 && fchown(fd, w->dir_uid, w->dir_gid) < 0)
                return -errno;
        if (write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0)
                return -EIO;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int p11_wrapped_file_write_tmp(struct store *s, const char *account,
                               const struct p11_wrapped_header *h)
{
        struct p11_wrapped *w = s->wrapped;
        char name[NAME_MAX_LEN + 16];
        char *text;
        int fd, r;

        text = p11_wrapped_header_print(account, h);
        if (!text)
                return -ENOMEM;
        file_name(account, true, name);
        /* A leftover of an interrupted write (or anything else under that name) goes first, so
         * O_EXCL can refuse to follow whatever might be planted there meanwhile. */
        if (unlinkat(w->dir_fd, name, 0) < 0 && errno != ENOENT) {
                json_free_string(text);
                return log_error_errno(-errno, "Failed to remove %s/%s", w->dir, name);
        }
        fd = openat(w->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
                json_free_string(text);
                return log_error_errno(-errno, "Failed to create %s/%s", w->dir, name);
        }
        r = write_tmp_fd(s, fd, text);
        json_free_string(text);
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r < 0) {
                (void)unlinkat(w->dir_fd, name, 0);
                return log_error_errno(r, "Failed to write %s/%s", w->dir, name);
        }
        return 0;
}

int p11_wrapped_file_commit(struct store *s, const char *account)
{
        struct p11_wrapped *w = s->wrapped;
        char tmp[NAME_MAX_LEN + 16], name[NAME_MAX_LEN + 16];

        file_name(account, true, tmp);
        file_name(account, false, name);
        if (renameat(w->dir_fd, tmp, w->dir_fd, name) < 0)
                return log_error_errno(-errno, "Failed to rename %s/%s", w->dir, tmp);
        if (fsync(w->dir_fd) < 0)
                return log_error_errno(-errno, "Failed to fsync %s", w->dir);
        return 0;
}

int p11_wrapped_file_unlink(struct store *s, const char *account, bool tmp)
{
        struct p11_wrapped *w = s->wrapped;
        char name[NAME_MAX_LEN + 16];

        file_name(account, tmp, name);
        if (unlinkat(w->dir_fd, name, 0) < 0)
                return errno == ENOENT
                           ? -ENOENT
                           : log_error_errno(-errno, "Failed to remove %s/%s", w->dir, name);
        if (fsync(w->dir_fd) < 0)
                return log_error_errno(-errno, "Failed to fsync %s", w->dir);
        return 0;
}

/* Waits for the lock at most WRAPPED_LOCK_TIMEOUT_MS: a process stopped while holding it (a CLI
 * suspended with ^Z) must not stall the broker's store worker for good. -EAGAIN after that. */
static int lock_bounded(int fd)
{
        uint64_t deadline = now_boottime_usec() + WRAPPED_LOCK_TIMEOUT_MS * 1000ULL;
        useconds_t pause = 1000;

        for (;;) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                        return 0;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return -errno;
                if (now_boottime_usec() >= deadline)
                        return -EAGAIN;
                (void)usleep(pause);
                pause = pause < 50000 ? pause * 2 : 50000;
        }
}

/* Opens and locks name in the directory; what says whose lock it is in the error. */
static int lock_file(struct store *s, const char *name, const char *what)
{
        struct p11_wrapped *w = s->wrapped;
        int fd, r;

        fd = openat(w->dir_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to open %s/%s", w->dir, name);
        /* Root (the CLI) creates it for the broker's user, as the files. */
        if (geteuid() == 0 && w->dir_uid != 0 && fchown(fd, w->dir_uid, w->dir_gid) < 0)
                log_debug_errno(-errno, "Failed to chown %s/%s", w->dir, name);
        r = lock_bounded(fd);
        if (r < 0) {
                close(fd);
                if (r == -EAGAIN)
                        return log_error_errno(r,
                                               "%s is locked by another process (%s/%s) for more "
                                               "than %u s; try again later.",
                                               what, w->dir, name, WRAPPED_LOCK_TIMEOUT_MS / 1000);
                return log_error_errno(r, "Failed to lock %s/%s", w->dir, name);
        }
        return fd;
}

/* The lock file ".<account>.lock" (never removed: unlinking a lock file another process waits on
 * would let a third one lock a new file beside it). */
int p11_wrapped_lock(struct store *s, const char *account)
{
        char name[NAME_MAX_LEN + 16], what[NAME_MAX_LEN + 16];

        snprintf(name, sizeof(name), ".%s.lock", account);
        snprintf(what, sizeof(what), "Account %s", account);
        return lock_file(s, name, what);
}

int p11_wrapped_lock_shard(struct store *s, unsigned index)
{
        char name[64], what[64];

        snprintf(name, sizeof(name), ".counter-shard@%u.lock", index);
        snprintf(what, sizeof(what), "Counter shard %u", index);
        return lock_file(s, name, what);
}

void p11_wrapped_unlock(int fd)
{
        if (fd >= 0)
                close(fd); /* releases the flock */
}
