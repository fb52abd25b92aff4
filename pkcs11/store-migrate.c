/* Moving an account's data between the two backends (credbroker store migrate, cli/cmd-store.c):
 * export from one store, import into the other at the same refresh-token generation, read it
 * back, and only then drop it from the first. Each step is idempotent, so a run killed anywhere
 * is finished by the next. */
#include "store-internal.h"
#include "store-wrapped.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"
#include "util.h"

static int objects_read_generation(struct store *s, const char *account, uint64_t g,
                                   struct secret **ret, uint64_t *ret_stored_at);

void store_account_copy_clear(struct store_account_copy *c)
{
        if (!c)
                return;
        free(c->meta);
        secret_free(c->refresh_token);
        secret_free(c->client_secret);
        *c = (struct store_account_copy){0};
}

/* The newest intact refresh token, its generation and write time: -ENOENT when none. In the
 * object store, from the n generations given (newest last) by exact label when given, else as
 * the store reads it (its scan); the wrapped store reads its one file. */
static int export_refresh_token(struct store *s, const char *account, const uint64_t *generations,
                                size_t n, struct store_account_copy *c)
{
        struct store_refresh_token_info info;
        int r;

        if (!s->wrapped && generations) {
                for (size_t i = n; i > 0; i--) {
                        r = objects_read_generation(s, account, generations[i - 1],
                                                    &c->refresh_token, &c->stored_at);
                        if (r >= 0)
                                c->generation = generations[i - 1];
                        if (r != -ENOENT && r != -EBADMSG)
                                return r;
                }
                return -ENOENT;
        }
        r = store_read_refresh_token(s, account, &c->refresh_token, &c->generation);
        if (r < 0 || !s->wrapped)
                return r;
        r = store_refresh_token_info(s, account, &info);
        if (r >= 0 && info.generation == c->generation)
                c->stored_at = info.stored_at;
        return r == -ENOENT ? 0 : r;
}

int store_export_account(struct store *s, const char *account, const uint64_t *generations,
                         size_t n, struct store_account_copy *ret)
{
        struct store_account_copy c = {0};
        int r;

        if (!s || !p11_account_is_valid(account) || !ret)
                return -EINVAL;
        r = store_get_meta(s, account, &c.meta);
        if (r >= 0 || r == -ENOENT)
                r = export_refresh_token(s, account, generations, n, &c);
        if (r >= 0 || r == -ENOENT)
                r = store_get_client_secret(s, account, &c.client_secret);
        if (r == -ENOENT)
                r = 0;
        if (r >= 0 && !c.meta && !c.refresh_token && !c.client_secret)
                r = -ENOENT;
        if (r < 0) {
                store_account_copy_clear(&c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ---- the object backend's side ---- */

/* Generation g of the account's refresh token, found by its exact label (no scan): -ENOENT when
 * no object bears it, -EBADMSG when none that does reads back intact. */
static int objects_read_generation(struct store *s, const char *account, uint64_t g,
                                   struct secret **ret, uint64_t *ret_stored_at)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n = 0;
        int r;

        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, g);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_secret_ struct secret *value = NULL;
                const char *why;

                r = p11_read_secret_value(s, handles[i], ENVELOPE_MAX, label, &value);
                if (r < 0 && p11_error_is_token_wide(s, r))
                        return r;
                if (r >= 0 && p11_envelope_parse(label, value, ret, ret_stored_at, &why) >= 0)
                        return 0;
        }
        return n == 0 ? -ENOENT : -EBADMSG;
}

/* Destroys every data object of ours with exactly this label; how many in *ret_n. */
static int destroy_label(struct store *s, const char *label, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        size_t n = 0;
        int r;

        r = p11_find_data_objects(s, label, &handles, &n);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = p11_destroy_object(s, handles[i], label);
                if (r == -ENOENT)
                        r = 0;
        }
        if (r >= 0 && ret_n)
                *ret_n = n;
        return r;
}

/* Creates "<account>/refresh_token/<generation>" (replacing whatever bears that label: an older
 * import's torn object) and reads it back by its label. */
static int objects_put_refresh_token(struct store *s, const char *account,
                                     const struct store_account_copy *copy)
{
        _cleanup_secret_ struct secret *envelope = NULL, *back = NULL;
        char label[LABEL_MAX];
        CK_OBJECT_HANDLE handle;
        uint64_t at = 0;
        int r;

        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                 copy->generation);
        r = p11_envelope_build(label, copy->refresh_token, copy->stored_at, &envelope);
        if (r >= 0)
                r = destroy_label(s, label, NULL);
        p11_generation_hints_forget(s, account);
        if (r >= 0)
                r = p11_create_data_object(s, label, secret_data(envelope), secret_len(envelope),
                                           &handle);
        if (r < 0)
                return r;
        r = objects_read_generation(s, account, copy->generation, &back, &at);
        if (r >= 0 && (at != copy->stored_at || !secret_equal(back, copy->refresh_token)))
                r = -EIO;
        if (r < 0) {
                (void)p11_destroy_object(s, handle, label);
                p11_generation_hints_forget(s, account);
                return log_error_errno(r, "Account %s: refresh token \"%s\" does not read back",
                                       account, label);
        }
        /* Its first read then probes from here instead of scanning the token. */
        p11_index_move(s, account, copy->generation);
        return 0;
}

static bool same_meta(const char *a, const char *b)
{
        return a && b && strcmp(a, b) == 0;
}

static int objects_import(struct store *s, const char *account,
                          const struct store_account_copy *copy)
{
        _cleanup_secret_ struct secret *token = NULL, *secret = NULL;
        _cleanup_free_ char *meta = NULL;
        bool wrote = false;
        uint64_t at = 0;
        int r;

        /* Generation g itself, by its label: a newer one could only come from a broker, which
         * does not run while accounts move (and would still be the one read). */
        if (copy->refresh_token) {
                r = objects_read_generation(s, account, copy->generation, &token, &at);
                if (r < 0 && r != -ENOENT && r != -EBADMSG)
                        return r;
                if (r < 0 || !secret_equal(token, copy->refresh_token)) {
                        r = objects_put_refresh_token(s, account, copy);
                        if (r < 0)
                                return r;
                        wrote = true;
                }
        }
        if (copy->client_secret) {
                r = store_get_client_secret(s, account, &secret);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r == -ENOENT || !secret_equal(secret, copy->client_secret)) {
                        r = store_put_client_secret(s, account, copy->client_secret);
                        if (r < 0)
                                return r;
                        wrote = true;
                }
        }
        if (copy->meta) {
                r = store_get_meta(s, account, &meta);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (!same_meta(meta, copy->meta)) {
                        r = store_put_meta(s, account, copy->meta);
                        if (r < 0)
                                return r;
                        wrote = true;
                }
        }
        return wrote ? 0 : 1;
}

int store_import_account(struct store *s, const char *account,
                         const struct store_account_copy *copy)
{
        if (!s || !p11_account_is_valid(account) || !copy ||
            (copy->refresh_token && copy->generation == 0))
                return -EINVAL;
        if (copy->meta && strlen(copy->meta) > META_MAX)
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_import(s, account, copy);
        return objects_import(s, account, copy);
}

int store_verify_account(struct store *s, const char *account,
                         const struct store_account_copy *copy)
{
        struct store_account_copy back = {0};
        const char *what = NULL;
        int r;

        if (!s || !p11_account_is_valid(account) || !copy)
                return -EINVAL;
        /* Its refresh token at copy's generation, by label (an empty list: none to read). */
        r = store_export_account(s, account, &copy->generation, copy->refresh_token ? 1 : 0, &back);
        if (r == -ENOENT)
                what = "the account";
        else if (r < 0)
                return r;
        else if (copy->meta && !same_meta(copy->meta, back.meta))
                what = "its metadata";
        else if (copy->client_secret &&
                 (!back.client_secret || !secret_equal(copy->client_secret, back.client_secret)))
                what = "its client secret";
        else if (copy->refresh_token &&
                 (!back.refresh_token || back.generation < copy->generation ||
                  (back.generation == copy->generation &&
                   !secret_equal(copy->refresh_token, back.refresh_token))))
                what = "its refresh token";
        store_account_copy_clear(&back);
        if (what)
                return log_error_errno(-ESTALE, "Account %s: %s did not read back as written",
                                       account, what);
        return 0;
}

/* The given refresh-token generations of the account, then the client secret, then the metadata,
 * each by its exact label. */
static int objects_drop(struct store *s, const char *account, const uint64_t *generations, size_t n)
{
        char label[LABEL_MAX];
        int r = 0;

        for (size_t i = 0; r >= 0 && i < n; i++) {
                snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i]);
                r = destroy_label(s, label, NULL);
        }
        if (r < 0) {
                p11_generation_hints_forget(s, account);
                return r;
        }
        p11_index_drop(s, account);
        fault_point("migrate-drop-midway");
        snprintf(label, sizeof(label), "%s/client_secret", account);
        r = destroy_label(s, label, NULL);
        if (r < 0)
                return r;
        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        return destroy_label(s, label, NULL);
}

static int compare_entries(const void *a, const void *b)
{
        const struct store_generation_entry *x = a, *y = b;
        int c = strcmp(x->account, y->account);

        return c ? c : x->generation < y->generation ? -1 : x->generation > y->generation;
}

int store_list_refresh_token_generations(struct store *s, struct store_generation_entry **ret,
                                         size_t *ret_n)
{
        struct p11_data_object *objects = NULL;
        struct store_generation_entry *entries;
        size_t n_objects = 0, n = 0;
        int r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        r = s->wrapped ? 0 : p11_list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        entries = calloc(n_objects ? n_objects : 1, sizeof(*entries));
        for (size_t i = 0; entries && i < n_objects; i++) {
                const char *infix = strstr(objects[i].label, REFRESH_TOKEN_INFIX);
                size_t len = infix ? (size_t)(infix - objects[i].label) : 0;
                char prefix[LABEL_MAX];

                if (!infix || len == 0 || len > NAME_MAX_LEN)
                        continue;
                memcpy(entries[n].account, objects[i].label, len);
                entries[n].account[len] = 0;
                snprintf(prefix, sizeof(prefix), "%s" REFRESH_TOKEN_INFIX, entries[n].account);
                if (p11_account_is_valid(entries[n].account) &&
                    p11_parse_generation(objects[i].label, prefix, &entries[n].generation))
                        n++;
        }
        p11_data_objects_free(objects, n_objects);
        if (!entries)
                return -ENOMEM;
        qsort(entries, n, sizeof(*entries), compare_entries);
        *ret = entries;
        *ret_n = n;
        return 0;
}

int store_drop_account_data(struct store *s, const char *account, const uint64_t *generations,
                            size_t n)
{
        struct p11_wrapped_removed removed;

        if (!s || !p11_account_is_valid(account) || (n > 0 && !generations))
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_remove(s, account, &removed);
        return objects_drop(s, account, generations, n);
}

/* ---- where an account is ---- */

static int objects_hold(struct store *s, const char *account, bool *ret)
{
        static const char *const suffixes[] = {META_SUFFIX, "/client_secret"};
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n = 0;
        int r = 0;

        *ret = false;
        for (size_t i = 0; i < ELEMENTSOF(suffixes) && !*ret; i++) {
                snprintf(label, sizeof(label), "%s%s", account, suffixes[i]);
                free(handles);
                handles = NULL;
                r = p11_find_data_objects(s, label, &handles, &n);
                if (r < 0)
                        return r;
                *ret = n > 0;
        }
        return 0;
}

static bool wrapped_file_exists(int dir_fd, const char *dir, const char *account)
{
        char name[NAME_MAX_LEN + 16], path[PATH_MAX];
        struct stat st;

        snprintf(name, sizeof(name), "%s" WRAPPED_FILE_SUFFIX, account);
        if (dir_fd >= 0)
                return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (!dir || (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
                return false;
        return lstat(path, &st) == 0;
}

int store_account_backends(struct store *s, const char *wrapped_dir, const char *account,
                           unsigned *ret)
{
        unsigned bits = 0;
        bool in_objects;
        int r;

        if (!s || !p11_account_is_valid(account) || !ret)
                return -EINVAL;
        r = objects_hold(s, account, &in_objects);
        if (r < 0)
                return r;
        if (in_objects)
                bits |= STORE_BACKEND_BIT(STORE_BACKEND_OBJECTS);
        if (wrapped_file_exists(s->wrapped ? s->wrapped->dir_fd : -1, wrapped_dir, account))
                bits |= STORE_BACKEND_BIT(STORE_BACKEND_WRAPPED);
        *ret = bits;
        return 0;
}
