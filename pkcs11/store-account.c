/* Accounts in the token: their metadata object, their client secret, the list of accounts, and
 * removing every object of one account with a report of what went. */
#include "store-internal.h"
#include "store-key-internal.h"
#include "store-wrapped.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "fault.h"

#include "log.h"
#include "util.h"

/* After a put: destroys every object the new one replaced and returns the first failure (an
 * object already gone is none). */
static int destroy_replaced(struct store *s, const CK_OBJECT_HANDLE *old, size_t n_old,
                            const char *label)
{
        int r, ret = 0;

        for (size_t i = 0; i < n_old; i++) {
                r = p11_destroy_object(s, old[i], label);
                if (r < 0 && r != -ENOENT && ret == 0)
                        ret = r;
        }
        return ret;
}

/* ---- account metadata ---- */

int store_put_meta(struct store *s, const char *account, const char *json)
{
        _cleanup_free_ CK_OBJECT_HANDLE *old = NULL;
        char label[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        CK_OBJECT_HANDLE handle;
        size_t n_old, len;
        int r;

        if (!s || !p11_account_is_valid(account) || !json)
                return -EINVAL;
        len = strlen(json);
        if (len == 0 || len > META_MAX || !utf8_is_valid((const uint8_t *)json, len))
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_put_meta(s, account, json);

        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        r = p11_find_data_objects(s, label, &old, &n_old);
        if (r < 0)
                return r;
        /* New first: a crash in between leaves two copies, never none. */
        r = p11_create_data_object(s, label, json, len, &handle);
        if (r < 0)
                return r;
        /* Unlike refresh tokens, two meta objects cannot be told apart, so a leftover makes get
         * ambiguous: report it (the next put retries the cleanup). */
        return destroy_replaced(s, old, n_old, label);
}

int store_get_meta(struct store *s, const char *account, char **ret_json)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        void *json = NULL;
        size_t n, len = 0;
        int r;

        if (!s || !p11_account_is_valid(account) || !ret_json)
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_get_meta(s, account, ret_json);

        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                log_warning("Token \"%s\" holds %zu objects \"%s\" (an interrupted update?); "
                            "using one of them. Store the metadata again to clean up.",
                            s->token_label, n, label);

        r = p11_read_attribute(s, handles[0], CKA_VALUE, META_MAX, label, &json, &len);
        if (r == -EFBIG)
                return log_error_errno(-EBADMSG,
                                       "Object \"%s\" on token \"%s\" is larger than %d "
                                       "bytes.",
                                       label, s->token_label, META_MAX);
        if (r < 0)
                return r;
        if (strlen(json) != len) {
                free(json);
                return log_error_errno(-EBADMSG,
                                       "Object \"%s\" on token \"%s\" contains a NUL "
                                       "byte.",
                                       label, s->token_label);
        }
        *ret_json = json;
        return 0;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

void store_names_free(char **names, size_t n)
{
        if (!names)
                return;
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static int names_add(char ***names, size_t *n, size_t *allocated, const char *label,
                     size_t name_len);
static size_t names_sort_unique(char **names, size_t n);

/* The accounts whose sealed file holds metadata. */
static int wrapped_list_accounts(struct store *s, char ***ret_names, size_t *ret_n)
{
        char **names = NULL;
        size_t n = 0, allocated = 0;
        int r;

        r = p11_wrapped_list(s, true, &names, &n, &allocated);
        if (r >= 0 && !names) {
                names = calloc(1, sizeof(char *));
                if (!names)
                        r = -ENOMEM;
        }
        if (r < 0) {
                store_names_free(names, n);
                return r;
        }
        *ret_names = names;
        *ret_n = names_sort_unique(names, n);
        return 0;
}

/* Sorts names and frees the repeats; returns how many are left. */
static size_t names_sort_unique(char **names, size_t n)
{
        size_t unique = 0;

        if (n > 0)
                qsort(names, n, sizeof(char *), compare_names);
        for (size_t i = 0; i < n; i++) {
                if (unique > 0 && strcmp(names[unique - 1], names[i]) == 0) {
                        free(names[i]);
                        continue;
                }
                names[unique++] = names[i];
        }
        return unique;
}

int store_list_accounts(struct store *s, char ***ret_names, size_t *ret_n)
{
        struct p11_data_object *objects = NULL;
        size_t n_objects, n = 0;
        char **names;
        int r;

        if (!s || !ret_names || !ret_n)
                return -EINVAL;
        if (s->wrapped)
                return wrapped_list_accounts(s, ret_names, ret_n);

        r = p11_list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        names = calloc(n_objects ? n_objects : 1, sizeof(char *));
        if (!names) {
                p11_data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objects; i++) {
                char *label = objects[i].label;
                size_t len = strlen(label);

                if (len <= strlen(META_SUFFIX) ||
                    strcmp(label + len - strlen(META_SUFFIX), META_SUFFIX) != 0)
                        continue;
                label[len - strlen(META_SUFFIX)] = 0;
                if (!p11_account_is_valid(label))
                        continue;
                names[n++] = TAKE_PTR(objects[i].label);
        }
        p11_data_objects_free(objects, n_objects);

        /* An interrupted store_put_meta() leaves two "<account>/meta": one name each. */
        *ret_n = names_sort_unique(names, n);
        *ret_names = names;
        return 0;
}

/* ---- client secret ---- */

/* Entra's generated secrets are printable ASCII; quotes, backslashes and spaces are refused for
 * the same reason as in token_is_valid(): the value ends up in a form body. */
static bool client_secret_is_valid(const struct secret *secret)
{
        const char *value = secret_str(secret);
        size_t len = secret_len(secret);

        if (len == 0 || len > STORE_CLIENT_SECRET_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (value[i] <= ' ' || value[i] > '~' || value[i] == '"' || value[i] == '\\')
                        return false;
        return true;
}

static void client_secret_label(const char *account, char label[static LABEL_MAX])
{
        snprintf(label, LABEL_MAX, "%s" CLIENT_SECRET_SUFFIX, account);
}

int store_put_client_secret(struct store *s, const char *account, const struct secret *secret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *old = NULL;
        _cleanup_secret_ struct secret *back = NULL;
        char label[LABEL_MAX];
        CK_OBJECT_HANDLE handle;
        size_t n_old;
        int r;

        if (!s || !p11_account_is_valid(account) || !secret || !client_secret_is_valid(secret))
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_put_client_secret(s, account, secret);

        client_secret_label(account, label);
        r = p11_find_data_objects(s, label, &old, &n_old);
        if (r < 0)
                return r;
        /* New first, read back, and only then the old: a crash leaves two, never none. */
        r = p11_create_data_object(s, label, secret_str(secret), secret_len(secret), &handle);
        if (r < 0)
                return r;
        fault_point("client-secret-after-create");
        r = p11_read_secret_value(s, handle, STORE_CLIENT_SECRET_MAX, label, &back);
        if (r < 0 || !secret_equal(back, secret)) {
                if (p11_destroy_object(s, handle, label) < 0)
                        log_warning("Could not destroy the unverified object \"%s\".", label);
                if (r >= 0 || r == -EFBIG)
                        r = log_error_errno(-EIO,
                                            "The client secret read back from token \"%s\" "
                                            "differs from what was written; keeping the "
                                            "previous one.",
                                            s->token_label);
                return r;
        }
        return destroy_replaced(s, old, n_old, label);
}

static int wrapped_get_client_secret(struct store *s, const char *account, struct secret **ret)
{
        _cleanup_secret_ struct secret *value = NULL;
        int r;

        r = p11_wrapped_get_client_secret(s, account, &value);
        if (r < 0)
                return r;
        if (!client_secret_is_valid(value))
                return -ENOENT;
        *ret = TAKE_PTR(value);
        return 0;
}

/* Two objects after an interrupted put: the old and the new one are both valid secrets, and
 * which one Entra still accepts cannot be known here, so the first intact one is used and the
 * next put cleans up. */
int store_get_client_secret(struct store *s, const char *account, struct secret **ret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n;
        int r;

        if (!s || !p11_account_is_valid(account) || !ret)
                return -EINVAL;
        if (s->wrapped)
                return wrapped_get_client_secret(s, account, ret);

        client_secret_label(account, label);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        if (n > 1)
                log_warning("Token \"%s\" holds %zu objects \"%s\" (an interrupted update?); "
                            "set the secret again to clean up.",
                            s->token_label, n, label);
        for (size_t i = 0; i < n; i++) {
                _cleanup_secret_ struct secret *value = NULL;

                r = p11_read_secret_value(s, handles[i], STORE_CLIENT_SECRET_MAX, label, &value);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (!client_secret_is_valid(value))
                        continue;
                *ret = TAKE_PTR(value);
                return 0;
        }
        return -ENOENT;
}

/* Presence only: the value is not read (and so not decrypted) to answer `account show`. */
int store_has_client_secret(struct store *s, const char *account)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n;
        int r;

        if (!s || !p11_account_is_valid(account))
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_has_client_secret(s, account);
        client_secret_label(account, label);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        return n > 0;
}

/* ---- accounts ---- */

const char *p11_class_name(CK_OBJECT_CLASS class)
{
        switch (class) {
        case CKO_DATA:
                return "data";
        case CKO_PRIVATE_KEY:
                return "private key";
        case CKO_PUBLIC_KEY:
                return "public key";
        case CKO_CERTIFICATE:
                return "certificate";
        case CKO_SECRET_KEY:
                return "secret key";
        default:
                return "object";
        }
}

void store_removed_free(struct store_removed_object *objects, size_t n)
{
        if (!objects)
                return;
        for (size_t i = 0; i < n; i++)
                free(objects[i].label);
        free(objects);
}

struct removal {
        struct store_removed_object *objects;
        size_t n;
        size_t allocated;
};

static int removal_add(struct removal *removal, const char *label, CK_OBJECT_CLASS class)
{
        if (removal->n == removal->allocated) {
                size_t more = removal->allocated ? removal->allocated * 2 : 8;
                struct store_removed_object *p;

                p = reallocarray(removal->objects, more, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                removal->objects = p;
                removal->allocated = more;
        }
        removal->objects[removal->n].label = strdup(label);
        if (!removal->objects[removal->n].label)
                return -ENOMEM;
        removal->objects[removal->n++].class_name = p11_class_name(class);
        return 0;
}

/* Objects of other classes (the assertion key pair and certificate) carry no CKA_APPLICATION,
 * so they are found by exact label among token objects of any class but CKO_DATA; a public key
 * left as a token object by another tool goes with them. */
static int destroy_labeled_non_data(struct store *s, const char *label, struct removal *removal)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        CK_ATTRIBUTE template[] = {
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_LABEL, (void *)label, strlen(label)},
        };
        size_t n;
        int r, ret = 0;

        r = p11_find_objects(s, template, ELEMENTSOF(template), label, &handles, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                CK_OBJECT_CLASS class;
                CK_ATTRIBUTE a = {CKA_CLASS, &class, sizeof(class)};
                CK_RV rv;

                rv = s->module->C_GetAttributeValue(s->session, handles[i], &a, 1);
                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        continue;
                if (rv != CKR_OK) {
                        r = p11_ck_fail(s, "C_GetAttributeValue(CKA_CLASS)", label, rv);
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                if (class == CKO_DATA)
                        continue;
                r = p11_destroy_object(s, handles[i], label);
                if (r == -ENOENT)
                        continue;
                if (r == 0)
                        r = removal_add(removal, label, class);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

static int removal_add_sealed(struct removal *removal, const char *label)
{
        int r = removal_add(removal, label, CKO_DATA);

        if (r >= 0)
                removal->objects[removal->n - 1].class_name = "sealed";
        return r;
}

/* Reports what the sealed file held under the labels the object backend would have used. */
static int wrapped_remove(struct store *s, const char *account, struct removal *removal)
{
        struct p11_wrapped_removed removed;
        char label[LABEL_MAX];
        int r;

        r = p11_wrapped_remove(s, account, &removed);
        if (r < 0)
                return r;
        if (removed.refresh_token_generation > 0) {
                snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         removed.refresh_token_generation);
                r = removal_add_sealed(removal, label);
        }
        if (r >= 0 && removed.client_secret) {
                snprintf(label, sizeof(label), "%s" CLIENT_SECRET_SUFFIX, account);
                r = removal_add_sealed(removal, label);
        }
        if (r >= 0 && removed.meta) {
                snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
                r = removal_add_sealed(removal, label);
        }
        return r;
}

int store_remove_account_report(struct store *s, const char *account,
                                struct store_removed_object **ret_objects, size_t *ret_n)
{
        static const char *const key_suffixes[] = {ASSERTION_KEY_SUFFIX, ASSERTION_CERT_SUFFIX};
        struct removal removal = {0};
        struct p11_data_object *objects = NULL;
        char prefix[NAME_MAX_LEN + 2];
        char meta[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        size_t n_objects;
        int r, failed = 0;

        if (!s || !p11_account_is_valid(account) || !ret_objects || !ret_n)
                return -EINVAL;

        p11_generation_hints_forget(s, account);
        snprintf(prefix, sizeof(prefix), "%s/", account);
        snprintf(meta, sizeof(meta), "%s" META_SUFFIX, account);

        for (size_t i = 0; i < ELEMENTSOF(key_suffixes); i++) {
                char label[LABEL_MAX];

                snprintf(label, sizeof(label), "%s%s", account, key_suffixes[i]);
                r = destroy_labeled_non_data(s, label, &removal);
                if (r < 0 && failed == 0)
                        failed = r;
        }

        r = p11_list_data_objects(s, &objects, &n_objects);
        if (r < 0) {
                store_removed_free(removal.objects, removal.n);
                return r;
        }
        /* Meta goes last: while it exists the account is listed, so an interrupted removal
         * can be seen and repeated rather than leaving invisible orphans. */
        for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < n_objects; i++) {
                        bool is_meta = strcmp(objects[i].label, meta) == 0;

                        if (!p11_startswith(objects[i].label, prefix))
                                continue;
                        if (is_meta != (pass == 1))
                                continue;
                        if (is_meta && failed < 0)
                                continue;
                        r = p11_destroy_object(s, objects[i].handle, objects[i].label);
                        if (r == -ENOENT)
                                continue;
                        /* The refresh token index is bookkeeping, not a credential: unreported. */
                        if (r == 0 &&
                            !p11_startswith(objects[i].label + strlen(prefix) - 1, INDEX_INFIX))
                                r = removal_add(&removal, objects[i].label, CKO_DATA);
                        if (r < 0 && failed == 0)
                                failed = r;
                }
        }
        p11_data_objects_free(objects, n_objects);
        /* The sealed file holds the meta: it goes last, like the meta object. */
        if (s->wrapped && failed == 0)
                failed = wrapped_remove(s, account, &removal);
        if (failed < 0) {
                store_removed_free(removal.objects, removal.n);
                return failed;
        }

        *ret_objects = removal.objects;
        *ret_n = removal.n;
        return 0;
}

int store_remove_account(struct store *s, const char *account, unsigned *ret_removed)
{
        struct store_removed_object *removed = NULL;
        size_t n = 0;
        int r;

        r = store_remove_account_report(s, account, &removed, &n);
        if (r < 0)
                return r;
        store_removed_free(removed, n);
        if (ret_removed)
                *ret_removed = (unsigned)n;
        return 0;
}

/* ---- every account, with or without meta ---- */

static int names_add(char ***names, size_t *n, size_t *allocated, const char *label,
                     size_t name_len)
{
        char *name;

        if (name_len == 0 || name_len > NAME_MAX_LEN)
                return 0;
        name = strndup(label, name_len);
        if (!name)
                return -ENOMEM;
        if (!p11_account_is_valid(name)) {
                free(name);
                return 0;
        }
        if (*n == *allocated) {
                size_t more = *allocated ? *allocated * 2 : 16;
                char **p = reallocarray(*names, more, sizeof(char *));

                if (!p) {
                        free(name);
                        return -ENOMEM;
                }
                *names = p;
                *allocated = more;
        }
        (*names)[(*n)++] = name;
        return 0;
}

int p11_names_add(char ***names, size_t *n, size_t *allocated, const char *label, size_t name_len)
{
        return names_add(names, n, allocated, label, name_len);
}

/* The account part of labels of our private token objects of one class ending in suffix. */
static int add_names_of_class(struct store *s, CK_OBJECT_CLASS class, const char *suffix,
                              char ***names, size_t *n, size_t *allocated)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
        };
        size_t n_handles;
        int r;

        r = p11_find_objects(s, template, ELEMENTSOF(template), p11_class_name(class), &handles,
                             &n_handles);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_handles; i++) {
                char label[LABEL_MAX + 1];
                size_t len;

                r = p11_get_label(s, handles[i], label);
                if (r == -ENOENT || r == -EBADMSG)
                        continue;
                if (r < 0)
                        return r;
                len = strlen(label);
                if (len <= strlen(suffix) || strcmp(label + len - strlen(suffix), suffix) != 0)
                        continue;
                r = names_add(names, n, allocated, label, len - strlen(suffix));
                if (r < 0)
                        return r;
        }
        return 0;
}

int store_list_all_accounts(struct store *s, char ***ret_names, size_t *ret_n)
{
        struct p11_data_object *objects = NULL;
        char **names = NULL;
        size_t n_objects, n = 0, allocated = 0, unique = 0;
        int r;

        if (!s || !ret_names || !ret_n)
                return -EINVAL;

        r = p11_list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_objects && r >= 0; i++) {
                const char *slash = strchr(objects[i].label, '/');

                if (slash)
                        r = names_add(&names, &n, &allocated, objects[i].label,
                                      (size_t)(slash - objects[i].label));
        }
        p11_data_objects_free(objects, n_objects);
        if (r >= 0 && s->wrapped)
                r = p11_wrapped_list(s, false, &names, &n, &allocated);
        if (r >= 0 && s->wrapped)
                r = p11_wrapped_list_counters(s, &names, &n, &allocated);
        if (r >= 0)
                r = add_names_of_class(s, CKO_PRIVATE_KEY, ASSERTION_KEY_SUFFIX, &names, &n,
                                       &allocated);
        if (r >= 0)
                r = add_names_of_class(s, CKO_CERTIFICATE, ASSERTION_CERT_SUFFIX, &names, &n,
                                       &allocated);
        if (r < 0) {
                store_names_free(names, n);
                return r;
        }
        unique = names_sort_unique(names, n);
        if (!names) {
                names = calloc(1, sizeof(char *));
                if (!names)
                        return -ENOMEM;
        }
        *ret_names = names;
        *ret_n = unique;
        return 0;
}
