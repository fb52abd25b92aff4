/* Unit tests for the wrapped store backend (pkcs11/store-wrapped*.c) against a private SoftHSM2
 * token: the key-encryption key, AES-GCM seal/open and what its AAD binds, the account files
 * (modes, no plaintext, tampering, moving, rollback, a write interrupted between the rename and
 * the counter), and the store API on top. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "build-config.h"
#include "secret.h"
#include "softhsm-token.h"
#include "store-private.h"
#include "store-wrapped.h"
#include "store.h"
#include "tap.h"
#include "util.h"

#define TOKEN_LABEL "credbroker-wrapped"

static struct test_token softhsm;

/* ---- the order of durable steps: fsync and renameat, interposed ----
 *
 * A kill leaves the page cache behind, so the crash tests cannot see a missing fsync; a power cut
 * would. These definitions replace libc's for the whole test program (the store library is linked
 * in statically) and record which calls happen, in order, while `recording` is set. */

static bool recording;
static char events[32][16];
static size_t n_events;

static void record(const char *what)
{
        if (recording && n_events < ELEMENTSOF(events))
                snprintf(events[n_events++], sizeof(events[0]), "%s", what);
}

int fsync(int fd)
{
        struct stat st;

        record(fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) ? "fsync-dir" : "fsync-file");
        return (int)syscall(SYS_fsync, fd);
}

int renameat(int old_dir, const char *old_path, int new_dir, const char *new_path)
{
        record("rename");
        return (int)syscall(SYS_renameat, old_dir, old_path, new_dir, new_path);
}
static char store_dir[PATH_MAX];

static int open_wrapped_at(const char *dir, struct store **ret);

static int open_wrapped(struct store **ret)
{
        return open_wrapped_at(store_dir, ret);
}

static int open_wrapped_at(const char *dir, struct store **ret)
{
        static char pattern_lib[] = "/usr/lib*";
        static char *const lib_dirs[] = {pattern_lib};
        struct store_options options = {
            .module_path = softhsm.module,
            .token_uri = "pkcs11:token=" TOKEN_LABEL,
            .pin_source = softhsm.pin_source,
            .module_dirs = lib_dirs,
            .n_module_dirs = 1,
            .backend = STORE_BACKEND_WRAPPED,
            .wrapped_dir = dir,
        };

        return store_open(&options, ret);
}

static struct secret *secret_of(const char *text)
{
        struct secret *s = NULL;

        if (secret_new_from(text, strlen(text), &s) < 0)
                test_die("secret_new_from");
        return s;
}

static void file_path(const char *account, char out[static PATH_MAX])
{
        if ((size_t)snprintf(out, PATH_MAX, "%s/%s" WRAPPED_FILE_SUFFIX, store_dir, account) >=
            PATH_MAX)
                test_die("path too long");
}

static char *read_text(const char *path)
{
        static char buf[262144];
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return NULL;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return NULL;
        buf[n] = 0;
        return strdup(buf);
}

static void write_text(const char *path, const char *text)
{
        test_write_file(path, text, 0600);
}

/* Replaces the first occurrence of from in text (same length or not). */
static char *replace(const char *text, const char *from, const char *to)
{
        const char *at = strstr(text, from);
        char *out;

        if (!at)
                return NULL;
        if (asprintf(&out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from)) < 0)
                test_die("asprintf");
        return out;
}

/* ---- seal and open ---- */

static void test_seal_open(struct store *s)
{
        _cleanup_secret_ struct secret *plain = secret_of("the plaintext"), *back = NULL;
        struct p11_wrapped_aad aad = {"alerts", "meta", 7, "ctx"}, other;
        struct p11_wrapped_blob blob = {0};

        is_int(p11_wrapped_seal(s, &aad, plain, &blob), 0, "seal");
        is_int(blob.sealed_len, secret_len(plain) + WRAPPED_TAG_LEN,
               "ciphertext and a 16-byte tag");
        ok(!memmem(blob.sealed, blob.sealed_len, "plaintext", 9), "no plaintext in the blob");
        is_int(p11_wrapped_open(s, &aad, &blob, &back), 0, "open with the same AAD");
        ok(back && secret_equal(back, plain), "opens to the plaintext");

        other = aad;
        other.account = "alerts2";
        is_int(p11_wrapped_open(s, &other, &blob, &back), -EBADMSG, "another account fails");
        other = aad;
        other.kind = "refresh_token";
        is_int(p11_wrapped_open(s, &other, &blob, &back), -EBADMSG, "another kind fails");
        other = aad;
        other.generation = 6;
        is_int(p11_wrapped_open(s, &other, &blob, &back), -EBADMSG, "another generation fails");
        other = aad;
        other.context = "ctx2";
        is_int(p11_wrapped_open(s, &other, &blob, &back), -EBADMSG, "another context fails");
        /* NUL separators: "alerts" + "meta" must not equal "alertsm" + "eta". */
        other = aad;
        other.account = "alertsm";
        other.kind = "eta";
        is_int(p11_wrapped_open(s, &other, &blob, &back), -EBADMSG, "fields cannot shift");

        for (size_t i = 0; i < blob.sealed_len; i += blob.sealed_len - 1) {
                blob.sealed[i] ^= 0x01;
                is_int(p11_wrapped_open(s, &aad, &blob, &back), -EBADMSG,
                       i == 0 ? "a flipped ciphertext bit fails" : "a flipped tag bit fails");
                blob.sealed[i] ^= 0x01;
        }
        blob.iv[0] ^= 0x80;
        is_int(p11_wrapped_open(s, &aad, &blob, &back), -EBADMSG, "another IV fails");
        blob.iv[0] ^= 0x80;
        blob.kek_id[0] ^= 0x01;
        is_int(p11_wrapped_open(s, &aad, &blob, &back), -ENOKEY, "an unknown key id: -ENOKEY");
        blob.kek_id[0] ^= 0x01;
        is_int(p11_wrapped_open(s, &aad, &blob, &back), 0, "the restored blob opens again");

        {
                struct p11_wrapped_blob again = {0};

                is_int(p11_wrapped_seal(s, &aad, plain, &again), 0, "seal twice");
                ok(memcmp(again.iv, blob.iv, WRAPPED_IV_LEN) != 0, "a fresh IV per seal");
                p11_wrapped_blob_clear(&again);
        }
        p11_wrapped_blob_clear(&blob);
}

/* The KEK: one, in the token, sensitive, not extractable, AES-256. */
static void test_kek(struct store *s)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_CLASS class = CKO_SECRET_KEY;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_LABEL, (void *)WRAPPED_KEK_LABEL, strlen(WRAPPED_KEK_LABEL)},
        };
        CK_OBJECT_HANDLE handles[4];
        CK_ULONG n = 0, len = 0;
        CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, token = CK_FALSE;
        uint8_t value[64];
        CK_ATTRIBUTE attributes[] = {
            {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
            {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
            {CKA_TOKEN, &token, sizeof(token)},
            {CKA_VALUE_LEN, &len, sizeof(len)},
        };
        CK_ATTRIBUTE secret_value = {CKA_VALUE, value, sizeof(value)};

        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, template, 2) != CKR_OK ||
            m->C_FindObjects(session, handles, 4, &n) != CKR_OK ||
            m->C_FindObjectsFinal(session) != CKR_OK)
                test_die("find the KEK");
        is_int(n, 1, "one key-encryption key in the token");
        if (n < 1)
                return;
        is_int(m->C_GetAttributeValue(session, handles[0], attributes, 4), CKR_OK,
               "its attributes");
        ok(sensitive && !extractable && token && len == 32,
           "a 32-byte token key, sensitive and not extractable");
        ok(m->C_GetAttributeValue(session, handles[0], &secret_value, 1) != CKR_OK,
           "its value cannot be read");
}

/* ---- the store API ---- */

static void test_api(struct store *s)
{
        _cleanup_secret_ struct secret *rt1 = secret_of("refresh-token-one"),
                                       *rt2 = secret_of("refresh-token-two"),
                                       *cs = secret_of("cs~1"), *back = NULL;
        char path[PATH_MAX], *json = NULL, *text;
        char **names = NULL;
        size_t n = 0;
        uint64_t g = 0;
        struct store_refresh_token_info info;
        struct stat st;

        is_int(store_get_backend(s), STORE_BACKEND_WRAPPED, "the wrapped backend");
        is_int(store_get_meta(s, "alerts", &json), -ENOENT, "no meta yet");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), -ENOENT, "no refresh token yet");
        is_int(store_has_client_secret(s, "alerts"), 0, "no client secret yet");
        is_int(store_put_meta(s, "alerts", "{\"tenant\":\"t\"}"), 0, "put meta");
        is_int(store_get_meta(s, "alerts", &json), 0, "get meta");
        is_str(json, "{\"tenant\":\"t\"}", "meta as stored");
        free(json);
        json = NULL;

        is_int(store_write_refresh_token(s, "alerts", rt1, &g), 0, "write a refresh token");
        is_int(g, 1, "generation 1");
        is_int(store_write_refresh_token(s, "alerts", rt2, &g), 0, "rotate it");
        is_int(g, 2, "generation 2");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "read it");
        ok(back && secret_equal(back, rt2) && g == 2, "the newest, generation 2");
        secret_free(TAKE_PTR(back));
        is_int(store_refresh_token_info(s, "alerts", &info), 0, "info");
        ok(info.generation == 2 && info.n_generations == 1 && info.stored_at > 0,
           "generation 2, one present, a write time");
        is_int(store_put_client_secret(s, "alerts", cs), 0, "put a client secret");
        is_int(store_has_client_secret(s, "alerts"), 1, "has it");
        is_int(store_get_client_secret(s, "alerts", &back), 0, "get it");
        ok(back && secret_equal(back, cs), "as stored");
        secret_free(TAKE_PTR(back));
        is_int(store_get_meta(s, "alerts", &json), 0, "meta kept through the other writes");
        free(json);
        json = NULL;
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "refresh token kept");
        ok(back && secret_equal(back, rt2) && g == 2, "through the client secret write");
        secret_free(TAKE_PTR(back));

        is_int(store_write_refresh_token(s, "apponly", rt1, &g), 0, "an account without meta");
        is_int(store_list_accounts(s, &names, &n), 0, "list accounts");
        ok(n == 1 && strcmp(names[0], "alerts") == 0, "only the one with meta");
        store_names_free(names, n);
        is_int(store_list_all_accounts(s, &names, &n), 0, "list all accounts");
        ok(n == 2 && strcmp(names[0], "alerts") == 0 && strcmp(names[1], "apponly") == 0,
           "both, sorted");
        store_names_free(names, n);

        ok(stat(store_dir, &st) == 0 && (st.st_mode & 0777) == 0700, "the directory is 0700");
        file_path("alerts", path);
        ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_uid == geteuid(),
           "the file is ours and 0600");
        text = read_text(path);
        ok(text && !strstr(text, "refresh-token") && !strstr(text, "cs~1") &&
               !strstr(text, "tenant"),
           "no plaintext in the file");
        free(text);
}

/* ---- the files under attack ---- */

static void expect_refused(struct store *s, const char *account, int want, const char *what)
{
        char *json = NULL;

        is_int(store_get_meta(s, account, &json), want, what);
        free(json);
}

static void test_tamper(struct store *s)
{
        char path[PATH_MAX], *good, *bad;

        file_path("alerts", path);
        good = read_text(path);
        if (!good)
                test_die("read alerts");
        /* A flipped byte of the sealed blob: the first character of its base64. */
        bad = strdup(good);
        {
                char *at = strstr(bad, "\"sealed\":\"") + strlen("\"sealed\":\"");
                *at = *at == 'A' ? 'B' : 'A';
        }
        write_text(path, bad);
        expect_refused(s, "alerts", -EBADMSG, "a changed byte of the blob fails");
        free(bad);
        /* A header field bound by the AAD: the refresh token generation. */
        bad = replace(good, "\"refresh_token_generation\":\"2\"",
                      "\"refresh_token_generation\":\"9\"");
        ok(bad != NULL, "the header names generation 2");
        write_text(path, bad ? bad : good);
        expect_refused(s, "alerts", -EBADMSG, "a changed header field fails");
        free(bad);
        write_text(path, good);
        expect_refused(s, "alerts", 0, "the original file is fine again");

        /* Moved to another account, its name in the header changed to match. */
        {
                char other[PATH_MAX];
                char *moved = replace(good, "\"account\":\"alerts\"", "\"account\":\"victim\"");

                file_path("victim", other);
                write_text(other, moved);
                expect_refused(s, "victim", -EBADMSG, "a file moved to another account fails");
                unlink(other);
                free(moved);
        }
        free(good);
}

/* An older file put back after a newer generation: refused, in this store and a fresh one. */
static void test_rollback(struct store **sp)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-three"), *back = NULL;
        char path[PATH_MAX], *old, *now;
        uint64_t g;

        file_path("alerts", path);
        old = read_text(path);
        is_int(store_write_refresh_token(*sp, "alerts", rt, &g), 0, "a newer generation");
        now = read_text(path);
        write_text(path, old);
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), -ESTALE,
               "the older file put back is refused");
        store_close(*sp);
        is_int(open_wrapped(sp), 0, "open the store again");
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), -ESTALE,
               "and refused by a fresh store too");
        is_int(store_write_refresh_token(*sp, "alerts", rt, &g), -ESTALE,
               "no write on top of a rolled-back file");
        write_text(path, now);
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), 0, "the current file works");
        ok(back && secret_equal(back, rt) && g == 3, "generation 3");
        free(old);
        free(now);
}

/* The value of "key":"…" in a file's text, into out. */
static void field(const char *text, const char *key, char *out, size_t size)
{
        char pattern[64];
        const char *at, *end;

        snprintf(pattern, sizeof(pattern), "\"%s\":\"", key);
        at = strstr(text, pattern);
        if (!at)
                test_die(key);
        at += strlen(pattern);
        end = strchr(at, '"');
        snprintf(out, size, "%.*s", (int)(end - at), at);
}

/* ---- the counter shards, through the raw session ---- */

struct raw_shard {
        CK_OBJECT_HANDLE handles[8]; /* every object of the shard */
        CK_ULONG n;
        CK_OBJECT_HANDLE newest;
        unsigned long long version; /* the newest's */
        char value[65536];          /* the newest's */
};

static void shard_application(const char *account, char out[static 64])
{
        snprintf(out, 64, WRAPPED_SHARD_PREFIX "%u", p11_wrapped_shard_of(account));
}

/* The objects of account's shard and the newest one's value. */
static void raw_shard(struct store *s, const char *account, struct raw_shard *ret)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        char application[64];
        CK_ATTRIBUTE template[] = {{CKA_APPLICATION, application, 0}};

        *ret = (struct raw_shard){0};
        shard_application(account, application);
        template[0].ulValueLen = strlen(application);
        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, template, 1) != CKR_OK ||
            m->C_FindObjects(session, ret->handles, 8, &ret->n) != CKR_OK ||
            m->C_FindObjectsFinal(session) != CKR_OK)
                test_die("find the shard");
        for (CK_ULONG i = 0; i < ret->n; i++) {
                char label[256];
                CK_ATTRIBUTE a = {CKA_LABEL, label, sizeof(label) - 1};
                unsigned long long v;

                if (m->C_GetAttributeValue(session, ret->handles[i], &a, 1) != CKR_OK)
                        test_die("shard label");
                label[a.ulValueLen] = 0;
                v = strtoull(strrchr(label, '/') + 1, NULL, 10);
                if (v > ret->version) {
                        ret->version = v;
                        ret->newest = ret->handles[i];
                }
        }
        if (ret->n > 0) {
                CK_ATTRIBUTE a = {CKA_VALUE, ret->value, sizeof(ret->value) - 1};

                if (m->C_GetAttributeValue(session, ret->newest, &a, 1) != CKR_OK)
                        test_die("shard value");
                ret->value[a.ulValueLen] = 0;
        }
}

/* account's line in its shard ("" for none), without the newline. */
static void raw_counter_line(struct store *s, const char *account, char line[static 256])
{
        struct raw_shard sh;
        char start[80];
        const char *at;

        raw_shard(s, account, &sh);
        snprintf(start, sizeof(start), "%s ", account);
        line[0] = 0;
        for (at = sh.value; *at; at = strchr(at, '\n') + 1)
                if (strncmp(at, start, strlen(start)) == 0) {
                        snprintf(line, 256, "%.*s", (int)(strchr(at, '\n') - at), at);
                        return;
                }
}

/* Creates a version of account's shard with the given value (as it is). */
static void raw_create_shard(struct store *s, const char *account, unsigned long long version,
                             const char *value)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        CK_OBJECT_HANDLE handle;
        char application[64], label[96];
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_APPLICATION, application, 0},
            {CKA_LABEL, label, 0},
            {CKA_VALUE, (void *)value, strlen(value)},
        };

        shard_application(account, application);
        snprintf(label, sizeof(label), "%s/%llu", application, version);
        template[3].ulValueLen = strlen(application);
        template[4].ulValueLen = strlen(label);
        store_private_session(s, &m, &session);
        if (m->C_CreateObject(session, template, 6, &handle) != CKR_OK)
                test_die("create a shard");
}

/* Replaces account's shard (every version) with one version, version_step past the newest,
 * whose value is value. */
static void raw_replace_shard(struct store *s, const char *account, const char *value,
                              unsigned long long version_step)
{
        struct raw_shard sh;
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;

        raw_shard(s, account, &sh);
        store_private_session(s, &m, &session);
        for (CK_ULONG i = 0; i < sh.n; i++)
                if (m->C_DestroyObject(session, sh.handles[i]) != CKR_OK)
                        test_die("destroy a shard");
        raw_create_shard(s, account, sh.version + version_step, value);
}

/* Replaces account's shard with one version whose line for account is line (the others kept). */
static void raw_set_line_at(struct store *s, const char *account, const char *line,
                            unsigned long long version_step)
{
        struct raw_shard sh;
        char value[65536] = "", start[80];

        raw_shard(s, account, &sh);
        snprintf(start, sizeof(start), "%s ", account);
        for (const char *at = sh.value; *at; at = strchr(at, '\n') + 1) {
                size_t len = (size_t)(strchr(at, '\n') - at) + 1;

                if (strncmp(at, start, strlen(start)) == 0)
                        snprintf(value + strlen(value), sizeof(value) - strlen(value), "%s\n",
                                 line);
                else
                        snprintf(value + strlen(value), sizeof(value) - strlen(value), "%.*s",
                                 (int)len, at);
        }
        raw_replace_shard(s, account, value, version_step);
}

/* Replaces account's line in its shard with a new version, as another process would. */
static void raw_set_line(struct store *s, const char *account, const char *line)
{
        raw_set_line_at(s, account, line, 1);
}

/* The line account's counter has when it names (generation, id) with no refresh marker. */
static void counter_line_for(const char *account, const char *generation, const char *id,
                             char line[static 256])
{
        snprintf(line, 256, "%s %s %s 0 0000000000000000", account, generation, id);
}

/* A write stopped after its rename, before the counter moved: the file is the counter's
 * successor, accepted, and the counter moves on. Simulated by moving the counter back. */
static void test_interrupted_write(struct store *s)
{
        _cleanup_secret_ struct secret *back = NULL;
        char before[256], after[256], line[256], path[PATH_MAX], generation[24], id[24], *text;
        uint64_t g;

        raw_counter_line(s, "alerts", before);
        ok(before[0] != 0, "the account has a counter");
        file_path("alerts", path);
        text = read_text(path);
        field(text, "prev_generation", generation, sizeof(generation));
        field(text, "prev_id", id, sizeof(id));
        counter_line_for("alerts", generation, id, line);
        raw_set_line(s, "alerts", line);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0,
               "the file one ahead of the counter is accepted");
        raw_counter_line(s, "alerts", after);
        is_str(after, before, "and the counter moved on to it");
        free(text);
}

/* A crash between a shard's create and destroy leaves two versions: the newer rules, so the
 * file the older one names is still refused, and the older one goes at the next use. */
static void test_two_counters(struct store **sp)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-four"), *back = NULL;
        char path[PATH_MAX], *old, *now;
        struct raw_shard before, sh;
        uint64_t g;

        file_path("alerts", path);
        old = read_text(path);
        raw_shard(*sp, "alerts", &before);
        is_int(store_write_refresh_token(*sp, "alerts", rt, &g), 0, "a newer generation");
        now = read_text(path);
        raw_create_shard(*sp, "alerts", before.version, before.value);
        raw_shard(*sp, "alerts", &sh);
        is_int(sh.n, 2, "two versions of the shard, as a crash before the destroy leaves them");
        store_close(*sp);
        is_int(open_wrapped(sp), 0, "a fresh store (it finds both)");
        write_text(path, old);
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), -ESTALE,
               "the file the older version names is refused: the newer one rules");
        write_text(path, now);
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), 0, "the current file is used");
        raw_shard(*sp, "alerts", &sh);
        is_int(sh.n, 1, "and the older version is gone");
        free(old);
        free(now);
}

/* Sets the counter of "alerts" to the state of the file text (generation, id). */
static void raw_set_counter(struct store *s, const char *text)
{
        char generation[24], id[24], line[256];

        field(text, "generation", generation, sizeof(generation));
        field(text, "id", id, sizeof(id));
        counter_line_for("alerts", generation, id, line);
        raw_set_line(s, "alerts", line);
}

/* A write killed after its temporary file was complete, before the rename: the next load
 * finishes it (the new refresh token is not lost); a stale or torn temporary file is removed. */
static void test_promote_tmp(struct store **sp)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-five"), *back = NULL;
        char path[PATH_MAX], tmp[PATH_MAX], *old, *now;
        uint64_t g, before;

        file_path("alerts", path);
        test_token_path(&softhsm, tmp, sizeof(tmp), "store/.alerts.tmp");
        old = read_text(path);
        is_int(store_write_refresh_token(*sp, "alerts", rt, &before), 0, "a newer generation");
        now = read_text(path);
        write_text(path, old);
        write_text(tmp, now);
        raw_set_counter(*sp, old);
        store_close(*sp);
        is_int(open_wrapped(sp), 0, "a fresh store, as after the kill");
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), 0, "read");
        ok(back && secret_equal(back, rt) && g == before,
           "the complete temporary file's refresh token is used");
        ok(access(tmp, F_OK) != 0, "the temporary file was renamed");
        secret_free(TAKE_PTR(back));
        store_close(*sp);
        is_int(open_wrapped(sp), 0, "and again");
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), 0, "the counter moved with it");
        secret_free(TAKE_PTR(back));

        write_text(tmp, old); /* not the successor of the current state */
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), 0, "a stale temporary file");
        ok(back && secret_equal(back, rt) && g == before, "is not used");
        ok(access(tmp, F_OK) != 0, "and is removed");
        secret_free(TAKE_PTR(back));
        write_text(tmp, "{\"format\":");
        is_int(store_read_refresh_token(*sp, "alerts", &back, &g), 0, "a torn temporary file");
        ok(access(tmp, F_OK) != 0, "is removed");
        free(old);
        free(now);
}

/* A write whose read-back differs (CREDBROKER_FAULT=readback-differs, fault-point builds) fails
 * and leaves the previous state and no temporary file. */
static void test_readback_differs(struct store *s)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-lost"), *back = NULL,
                                       *before = NULL;
        char tmp[PATH_MAX];
        uint64_t g, g_before;

        if (!ENABLE_FAULT_POINTS) {
                ok(1, "# SKIP readback-differs needs -Dfault_points=true");
                return;
        }
        test_token_path(&softhsm, tmp, sizeof(tmp), "store/.alerts.tmp");
        is_int(store_read_refresh_token(s, "alerts", &before, &g_before), 0, "the current token");
        setenv("CREDBROKER_FAULT", "readback-differs", 1);
        is_int(store_write_refresh_token(s, "alerts", rt, &g), -EIO, "a differing read-back fails");
        unsetenv("CREDBROKER_FAULT");
        ok(access(tmp, F_OK) != 0, "its temporary file is removed");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "read");
        ok(back && before && secret_equal(back, before) && g == g_before,
           "the previous token stays");
}

/* A write: the temporary file fsynced before the rename, the directory fsynced after it. */
static void test_durable_order(struct store *s)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-durable");
        char sequence[256] = "";
        uint64_t g;

        n_events = 0;
        recording = true;
        is_int(store_write_refresh_token(s, "alerts", rt, &g), 0, "a write, recorded");
        recording = false;
        for (size_t i = 0; i < n_events; i++)
                snprintf(sequence + strlen(sequence), sizeof(sequence) - strlen(sequence),
                         "%s%.15s", i ? " " : "", events[i]);
        is_str(sequence, "fsync-file rename fsync-dir",
               "fsync(temporary file), rename, fsync(directory), in that order");
}

/* A token that cannot take a new counter (full, read-only; CREDBROKER_FAULT=counter-move-fails):
 * a write whose file is committed stands, the account stays readable with the counter one
 * behind, and no further write is made until the counter has moved: a file two ahead of the
 * counter would be refused for good. */
static void test_counter_behind(struct store *s)
{
        _cleanup_secret_ struct secret *rt1 = secret_of("refresh-token-behind-1"),
                                       *rt2 = secret_of("refresh-token-behind-2"), *back = NULL;
        uint64_t g, g1;

        if (!ENABLE_FAULT_POINTS) {
                ok(1, "# SKIP counter-move-fails needs -Dfault_points=true");
                return;
        }
        setenv("CREDBROKER_FAULT", "counter-move-fails", 1);
        is_int(store_write_refresh_token(s, "alerts", rt1, &g1), 0,
               "a write whose counter cannot move stands");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "and reads back");
        ok(back && secret_equal(back, rt1) && g == g1, "the token just written");
        secret_free(TAKE_PTR(back));
        ok(store_write_refresh_token(s, "alerts", rt2, &g) < 0,
           "no write while the counter is behind and cannot move");
        unsetenv("CREDBROKER_FAULT");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "the token can move again");
        ok(back && secret_equal(back, rt1) && g == g1, "the refused write changed nothing");
        secret_free(TAKE_PTR(back));
        is_int(store_write_refresh_token(s, "alerts", rt2, &g), 0, "writes work again");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "read");
        ok(back && secret_equal(back, rt2) && g == g1 + 1, "the next generation");
}

/* However many accounts, the token holds at most WRAPPED_SHARDS counter objects: SoftHSM2's
 * calls cost more with every object in the token (issue 14). */
static void test_objects_flat(struct store *s)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE handles[1024];
        CK_ULONG n = 0;
        unsigned failed = 0;

        for (unsigned i = 0; i < 300; i++) {
                char name[32];

                snprintf(name, sizeof(name), "many-%u", i);
                failed += store_put_meta(s, name, "{}") < 0;
        }
        is_int(failed, 0, "300 accounts");
        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, NULL, 0) != CKR_OK ||
            m->C_FindObjects(session, handles, ELEMENTSOF(handles), &n) != CKR_OK ||
            m->C_FindObjectsFinal(session) != CKR_OK)
                test_die("find every object");
        printf("# %lu objects in the token\n", (unsigned long)n);
        ok(n <= WRAPPED_SHARDS + 1, "the token holds the shards and the key, nothing per account");
        for (unsigned i = 0; i < 300; i++) {
                char name[32];
                unsigned removed;

                snprintf(name, sizeof(name), "many-%u", i);
                failed += store_remove_account(s, name, &removed) < 0;
        }
        is_int(failed, 0, "and removed again");
}

/* The refresh marker lives beside the counter: another run's marker for the very generation
 * about to be sent says that run stopped during the refresh (and keeps saying it); this run's
 * own does not. */
static void test_marker(struct store **sp)
{
        char line[256];
        bool interrupted = true;

        is_int(store_mark_refresh(*sp, "alerts", 7, &interrupted), 0, "mark generation 7");
        ok(!interrupted, "a first mark is no interrupted refresh");
        raw_counter_line(*sp, "alerts", line);
        ok(strstr(line, " 7 ") != NULL, "the marker is in the account's counter line");
        is_int(store_mark_refresh(*sp, "alerts", 7, &interrupted), 0, "again in the same run");
        ok(!interrupted, "still not interrupted: this run sent it");
        store_close(*sp);
        is_int(open_wrapped(sp), 0, "a new run");
        is_int(store_mark_refresh(*sp, "alerts", 7, &interrupted), 0, "mark 7 in the new run");
        ok(interrupted, "the previous run stopped during the refresh with 7");
        is_int(store_mark_refresh(*sp, "alerts", 7, &interrupted), 0, "and again");
        ok(interrupted, "which it keeps saying");
        is_int(store_mark_refresh(*sp, "alerts", 0, NULL), 0, "cleared");
        raw_counter_line(*sp, "alerts", line);
        ok(strstr(line, " 0 0000000000000000") != NULL, "no marker left");
        is_int(store_mark_refresh(*sp, "alerts", 7, &interrupted), 0, "mark 7 once more");
        ok(!interrupted, "after a clear it is a first mark again");
        is_int(store_mark_refresh(*sp, "alerts", 0, NULL), 0, "cleared");
}

/* A shard that does not parse is no shard: its accounts are refused, never read unchecked. */
static void test_malformed_shard(struct store *s)
{
        _cleanup_secret_ struct secret *back = NULL;
        static struct raw_shard before;
        char line[600], good[256];
        uint64_t g;

        raw_shard(s, "alerts", &before);
        raw_counter_line(s, "alerts", good);
        snprintf(line, sizeof(line), "%s junk", good);
        raw_set_line(s, "alerts", line);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), -EBADMSG,
               "a malformed shard refuses the account");
        snprintf(line, sizeof(line), "%s\n%s", good, good);
        raw_set_line(s, "alerts", line);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), -EBADMSG,
               "a shard naming an account twice refuses it");
        is_int(store_read_refresh_token(s, "alerts", &back, &g), -EBADMSG,
               "and again: a shard that fails its check is not kept (a kept one is trusted)");
        raw_replace_shard(s, "alerts", before.value, 1);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "the good one is used again");
}

/* The store keeps each shard's value as it last read or wrote it (a refresh loads its shard five
 * times), but uses it only while the shard's newest version is the very object it came from:
 * another process's change is read from the token, even one that replaced the object under the
 * same version. */
static void test_kept_shard(struct store *s)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-from-elsewhere");
        struct store *other = NULL;
        char line[300], good[256];
        uint64_t g = 0, g_other = 0;

        {
                _cleanup_secret_ struct secret *back = NULL;

                is_int(store_read_refresh_token(s, "alerts", &back, &g), 0,
                       "read: the account's shard is kept");
        }
        is_int(open_wrapped(&other), 0, "another process's store");
        is_int(store_write_refresh_token(other, "alerts", rt, &g_other), 0,
               "writes the account: a new version of the shard");
        store_close(other);
        {
                _cleanup_secret_ struct secret *back = NULL;

                is_int(store_read_refresh_token(s, "alerts", &back, &g), 0,
                       "the first store reads the other's write");
                ok(g == g_other && back && secret_equal(back, rt),
                   "at the other's generation, with its token");
        }
        raw_counter_line(s, "alerts", good);
        snprintf(line, sizeof(line), "%s junk", good);
        raw_set_line_at(s, "alerts", line, 0);
        {
                _cleanup_secret_ struct secret *back = NULL;

                is_int(store_read_refresh_token(s, "alerts", &back, &g), -EBADMSG,
                       "a new object under the kept version is read, not the kept copy");
        }
        raw_set_line(s, "alerts", good);
        {
                _cleanup_secret_ struct secret *back = NULL;

                is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "the good line again");
        }
}

/* The path of account's shard lock file, which holds the shard's change stamp. */
static void stamp_path(const char *account, char out[static PATH_MAX])
{
        if ((size_t)snprintf(out, PATH_MAX, "%s/.counter-shard@%u.lock", store_dir,
                             p11_wrapped_shard_of(account)) >= PATH_MAX)
                test_die("path too long");
}

/* A shard's kept copy is used without a search only while the stamp in its lock file is the one
 * it was kept with: every change writes a new one first, and a change the stamp announces is read
 * from the token (here one that a crash between another process's create and destroy left: a
 * newer version beside the kept one, which is still there under its label). */
static void test_shard_stamp(struct store *s)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-stamped");
        _cleanup_free_ char *before = NULL, *after = NULL;
        char path[PATH_MAX], value[65536], good[256];
        struct raw_shard sh;
        uint64_t g = 0;
        size_t at;

        stamp_path("alerts", path);
        before = read_text(path); /* NULL: no lock file yet */
        is_int(store_write_refresh_token(s, "alerts", rt, &g), 0, "a write changes the shard");
        after = read_text(path);
        ok(after && strlen(after) == 17 && after[16] == '\n' &&
               (!before || strcmp(after, before) != 0),
           "and wrote a new change stamp first");
        {
                _cleanup_secret_ struct secret *back = NULL;

                is_int(store_read_refresh_token(s, "alerts", &back, &g), 0,
                       "read: the shard is kept");
        }
        raw_counter_line(s, "alerts", good);
        raw_shard(s, "alerts", &sh);
        snprintf(value, sizeof(value), "%s", sh.value);
        at = (size_t)(strstr(value, good) - value) + strlen(good);
        memmove(value + at + 5, value + at, strlen(value + at) + 1);
        memcpy(value + at, " junk", 5);
        raw_create_shard(s, "alerts", sh.version + 1, value);
        {
                _cleanup_secret_ struct secret *back = NULL;

                write_text(path, "00000000000000ab\n");
                is_int(store_read_refresh_token(s, "alerts", &back, &g), -EBADMSG,
                       "a new stamp: the newer version beside the kept one is read");
        }
        raw_set_line(s, "alerts", good);
        {
                _cleanup_secret_ struct secret *back = NULL;

                is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "the good line again");
                ok(back && secret_equal(back, rt), "with the token written");
        }
}

/* Root (the CLI before the broker ever ran) makes the directory and the files the broker's: the
 * owner of the directory above. */
static void test_root_owner(void)
{
        struct store *s = NULL;
        char parent[PATH_MAX], dir[PATH_MAX], file[PATH_MAX], *json = NULL;
        struct stat st;

        if (geteuid() != 0) {
                ok(1, "# SKIP needs root");
                return;
        }
        test_token_path(&softhsm, parent, sizeof(parent), "state");
        test_token_path(&softhsm, dir, sizeof(dir), "state/store");
        test_token_path(&softhsm, file, sizeof(file), "state/store/owned" WRAPPED_FILE_SUFFIX);
        if (mkdir(parent, 0755) < 0 || chown(parent, 4242, 4242) < 0)
                test_die(parent);
        is_int(open_wrapped_at(dir, &s), 0, "open a store whose directory root creates");
        if (!s)
                return;
        is_int(store_put_meta(s, "owned", "{}"), 0, "write an account");
        ok(stat(dir, &st) == 0 && st.st_uid == 4242 && st.st_gid == 4242 &&
               (st.st_mode & 0777) == 0700,
           "the directory is the state directory owner's, 0700");
        ok(stat(file, &st) == 0 && st.st_uid == 4242 && (st.st_mode & 0777) == 0600,
           "and so is the file, 0600");
        is_int(store_get_meta(s, "owned", &json), 0, "and it reads back");
        free(json);
        store_close(s);
}

/* What an HSM restart does to its clients: every session of the slot is gone, with the login. */
static void lose_session(struct store *s)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_SESSION_INFO info;

        store_private_session(s, &m, &session);
        if (m->C_GetSessionInfo(session, &info) != CKR_OK ||
            m->C_CloseAllSessions(info.slotID) != CKR_OK)
                test_die("close the sessions");
}

/* Handles found in a lost session (key, counters) are not used again: the operation that meets
 * the loss opens the session again and is retried, unseen by its caller, as with the object
 * store. */
static void test_session_loss(struct store *s)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-after-loss"), *back = NULL;
        char *json = NULL;
        uint64_t g, g_before;

        is_int(store_read_refresh_token(s, "alerts", &back, &g_before), 0, "handles found");
        secret_free(TAKE_PTR(back));
        lose_session(s);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "a read right after a loss");
        ok(g == g_before, "the same generation");
        secret_free(TAKE_PTR(back));
        lose_session(s);
        is_int(store_write_refresh_token(s, "alerts", rt, &g), 0, "a write right after a loss");
        is_int(g, g_before + 1, "the next generation");
        lose_session(s);
        is_int(store_get_meta(s, "alerts", &json), 0, "meta right after a loss");
        free(json);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), 0, "and the token reads back");
        ok(back && secret_equal(back, rt), "the one written after the loss");
}

/* A removed account's counter goes with it, and one left over (an interrupted removal, or a file
 * deleted by someone else) is destroyed when the account is created again: its old file must not
 * come back. */
static void test_recreate(struct store *s)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-new"), *back = NULL;
        char path[PATH_MAX], *old, line[256];
        uint64_t g;
        unsigned removed = 0;

        file_path("alerts", path);
        old = read_text(path);
        unlink(path); /* the file deleted behind the store's back */
        is_int(store_write_refresh_token(s, "alerts", rt, &g), 0, "the account made again");
        is_int(g, 1, "from generation 1");
        write_text(path, old);
        is_int(store_read_refresh_token(s, "alerts", &back, &g), -ESTALE,
               "the old incarnation's file is refused");
        is_int(store_remove_account(s, "alerts", &removed), 0, "remove the account");
        ok(access(path, F_OK) != 0, "its file is gone");
        raw_counter_line(s, "alerts", line);
        is_str(line, "", "and its counter");
        free(old);
}

/* Two processes (the CLI and the broker) writing the same account: each write holds the
 * account's lock from loading the state to its counter, so neither removes the other's temporary
 * file nor writes a successor of a state the other has already replaced. Each child makes its own
 * store (its own session), as two programs would. */
#define RACE_WRITES 20

static int race_child(unsigned id, const char *account, int ready, int go)
{
        struct store *s = NULL;
        unsigned failed = 0;
        char text[64], byte = 0;

        /* Logged in before the other starts: SoftHSM2 rewrites token.object on C_Login, and a
         * process reading it meanwhile finds no token (docs/softhsm-torn-writes.md). */
        if (open_wrapped(&s) < 0)
                return 100;
        if (write(ready, "x", 1) != 1 || read(go, &byte, 1) < 0)
                return 101;
        for (unsigned i = 0; i < RACE_WRITES; i++) {
                _cleanup_secret_ struct secret *rt = NULL;
                uint64_t g;

                snprintf(text, sizeof(text), "refresh-token-%u-%u", id, i);
                rt = secret_of(text);
                if (store_write_refresh_token(s, account, rt, &g) < 0)
                        failed++;
        }
        store_close(s);
        return (int)failed;
}

/* Runs race_child() in two processes at once, on accounts[0] and accounts[1]; returns how many
 * writes failed. */
static int race(const char *const accounts[static 2])
{
        pid_t pids[2];
        int failed = 0, ready[2], go[2];
        char byte;

        if (pipe(ready) < 0 || pipe(go) < 0)
                test_die("pipe");
        for (unsigned i = 0; i < ELEMENTSOF(pids); i++) {
                pids[i] = fork();
                if (pids[i] < 0)
                        test_die("fork");
                if (pids[i] == 0) {
                        close(go[1]);
                        _exit(race_child(i, accounts[i], ready[1], go[0]));
                }
                if (read(ready[0], &byte, 1) != 1)
                        test_die("a writer did not start");
        }
        close(go[1]); /* both go at once */
        close(go[0]);
        close(ready[0]);
        close(ready[1]);
        for (unsigned i = 0; i < ELEMENTSOF(pids); i++) {
                int status;

                if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status))
                        test_die("waitpid");
                failed += WEXITSTATUS(status);
        }
        return failed;
}

static void test_two_writers(void)
{
        _cleanup_secret_ struct secret *back = NULL;
        const char *const accounts[] = {"race", "race"};
        struct store *s = NULL;
        uint64_t g = 0;
        char lock[PATH_MAX];
        struct stat st;

        is_int(race(accounts), 0, "two processes writing one account: every write succeeds");
        is_int(open_wrapped(&s), 0, "open the store again");
        is_int(store_read_refresh_token(s, "race", &back, &g), 0,
               "the account reads back after the race");
        is_int(g, 2 * RACE_WRITES, "no write was lost: one generation per write");
        if ((size_t)snprintf(lock, sizeof(lock), "%s/.race.lock", store_dir) >= sizeof(lock))
                test_die("path too long");
        ok(stat(lock, &st) == 0 && (st.st_mode & 0777) == 0600, "the lock file, mode 0600");
        store_close(s);
}

/* Two processes writing two accounts that share a counter shard: each change of the shard holds
 * its lock from the search to the destroy, so neither loses the other's counter. */
static void test_shard_writers(void)
{
        char other[32];
        const char *const accounts[] = {"shared-0", other};
        struct store *s = NULL;
        unsigned ok_reads = 0;

        for (unsigned i = 1;; i++) {
                snprintf(other, sizeof(other), "shared-%u", i);
                if (p11_wrapped_shard_of(other) == p11_wrapped_shard_of(accounts[0]))
                        break;
        }
        is_int(race(accounts), 0, "two processes writing two accounts of one shard");
        is_int(open_wrapped(&s), 0, "open the store again");
        for (unsigned i = 0; i < ELEMENTSOF(accounts); i++) {
                _cleanup_secret_ struct secret *back = NULL;
                uint64_t g = 0;

                ok_reads +=
                    store_read_refresh_token(s, accounts[i], &back, &g) == 0 && g == RACE_WRITES;
        }
        is_int(ok_reads, 2, "both read back at their last generation: no counter was lost");
        store_close(s);
}

/* A process that holds an account's lock and does not let go (stopped with ^Z) delays another's
 * operation on that account by at most WRAPPED_LOCK_TIMEOUT_MS, which then fails with -EAGAIN;
 * other accounts are not held up. */
static void test_lock_timeout(void)
{
        _cleanup_secret_ struct secret *rt = secret_of("refresh-token-after-wait");
        struct store *s = NULL;
        char lock[PATH_MAX];
        uint64_t g = 0, t0, waited;
        int fd;

        if ((size_t)snprintf(lock, sizeof(lock), "%s/.race.lock", store_dir) >= sizeof(lock))
                test_die("path too long");
        fd = open(lock, O_RDWR | O_CLOEXEC);
        if (fd < 0 || flock(fd, LOCK_EX) < 0)
                test_die("flock");
        is_int(open_wrapped(&s), 0, "open the store");
        t0 = now_boottime_usec();
        is_int(store_write_refresh_token(s, "race", rt, &g), -EAGAIN,
               "a write on an account another process holds fails with -EAGAIN");
        waited = (now_boottime_usec() - t0) / 1000;
        printf("# waited %llu ms\n", (unsigned long long)waited);
        ok(waited >= WRAPPED_LOCK_TIMEOUT_MS - 100 && waited < WRAPPED_LOCK_TIMEOUT_MS + 3000,
           "after waiting WRAPPED_LOCK_TIMEOUT_MS");
        is_int(store_write_refresh_token(s, "other", rt, &g), 0, "another account is not held up");
        close(fd);
        is_int(store_write_refresh_token(s, "race", rt, &g), 0, "released: the write goes through");
        is_int(g, 2 * RACE_WRITES + 1, "at the next generation");
        store_close(s);
}

int main(void)
{
        struct store *s = NULL;

        test_token_init(&softhsm, TOKEN_LABEL, "1234", "5678");
        test_token_path(&softhsm, store_dir, sizeof(store_dir), "store");
        is_int(open_wrapped(&s), 0, "open the wrapped store");
        if (!s)
                return done_testing();
        test_seal_open(s);
        test_kek(s);
        test_api(s);
        store_close(s);
        is_int(open_wrapped(&s), 0, "open it again");
        test_kek(s); /* found again, not generated twice */
        test_tamper(s);
        test_rollback(&s);
        test_interrupted_write(s);
        test_two_counters(&s);
        test_promote_tmp(&s);
        test_readback_differs(s);
        test_durable_order(s);
        test_session_loss(s);
        test_counter_behind(s);
        test_objects_flat(s);
        test_marker(&s);
        test_malformed_shard(s);
        test_kept_shard(s);
        test_shard_stamp(s);
        test_root_owner();
        test_recreate(s);
        store_close(s);
        test_two_writers();
        test_shard_writers();
        test_lock_timeout();
        test_token_cleanup(&softhsm);
        return done_testing();
}
