/* Accounts in the token: their metadata object, the list of accounts, and removing every object of
 * one account. */
#include "store-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"

/* ---- account metadata ---- */

int store_put_meta(struct store *s, const char *account, const char *json)
{
        _cleanup_free_ CK_OBJECT_HANDLE *old = NULL;
        char label[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        CK_OBJECT_HANDLE handle;
        size_t n_old, len;
        int r, ret = 0;

        if (!s || !account_is_valid(account) || !json)
                return -EINVAL;
        len = strlen(json);
        if (len == 0 || len > META_MAX || !utf8_is_valid((const uint8_t *)json, len))
                return -EINVAL;

        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        r = find_data_objects(s, label, &old, &n_old);
        if (r < 0)
                return r;
        /* New first: a crash in between leaves two copies, never none. */
        r = create_data_object(s, label, json, len, &handle);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_old; i++) {
                r = destroy_object(s, old[i], label);
                /* Unlike refresh tokens, two meta objects cannot be told apart, so a leftover
                 * makes get ambiguous: report it (the next put retries the cleanup). */
                if (r < 0 && r != -ENOENT && ret == 0)
                        ret = r;
        }
        return ret;
}

int store_get_meta(struct store *s, const char *account, char **ret_json)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        char *json = NULL;
        size_t n, len = 0;
        int r;

        if (!s || !account_is_valid(account) || !ret_json)
                return -EINVAL;

        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        r = find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                log_warning("Token \"%s\" holds %zu objects \"%s\" (an interrupted update?); "
                            "using one of them. Store the metadata again to clean up.",
                            s->token_label, n, label);

        r = read_plain_value(s, handles[0], META_MAX, label, &json, &len);
        if (r == -EFBIG)
                return log_error_errno(EBADMSG,
                                       "Object \"%s\" on token \"%s\" is larger than %d "
                                       "bytes.",
                                       label, s->token_label, META_MAX);
        if (r < 0)
                return r;
        if (strlen(json) != len) {
                free(json);
                return log_error_errno(EBADMSG,
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

int store_list_accounts(struct store *s, char ***ret_names, size_t *ret_n)
{
        struct data_object *objects = NULL;
        size_t n_objects, n = 0;
        char **names;
        int r;

        if (!s || !ret_names || !ret_n)
                return -EINVAL;

        r = list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        names = calloc(n_objects ? n_objects : 1, sizeof(char *));
        if (!names) {
                data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objects; i++) {
                char *label = objects[i].label;
                size_t len = strlen(label);

                if (len <= strlen(META_SUFFIX) ||
                    strcmp(label + len - strlen(META_SUFFIX), META_SUFFIX) != 0)
                        continue;
                label[len - strlen(META_SUFFIX)] = 0;
                if (!account_is_valid(label))
                        continue;
                names[n++] = TAKE_PTR(objects[i].label);
        }
        data_objects_free(objects, n_objects);

        qsort(names, n, sizeof(char *), compare_names);
        /* An interrupted store_put_meta() leaves two "<account>/meta": one name each. */
        size_t unique = 0;
        for (size_t i = 0; i < n; i++) {
                if (unique > 0 && strcmp(names[unique - 1], names[i]) == 0) {
                        free(names[i]);
                        continue;
                }
                names[unique++] = names[i];
        }

        *ret_names = names;
        *ret_n = unique;
        return 0;
}

/* ---- accounts ---- */

/* Objects of other classes (the assertion key pair and certificate) carry no CKA_APPLICATION,
 * so they are found by exact label among token objects of any class but CKO_DATA. */
static int destroy_labeled_non_data(struct store *s, const char *label, unsigned *removed)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        CK_ATTRIBUTE template[] = {
            {CKA_TOKEN, &store_true, sizeof(store_true)},
            {CKA_LABEL, (void *)label, strlen(label)},
        };
        size_t n;
        int r, ret = 0;

        r = find_objects(s, template, ELEMENTSOF(template), label, &handles, &n);
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
                        r = ck_fail(s, "C_GetAttributeValue(CKA_CLASS)", label, rv);
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                if (class == CKO_DATA)
                        continue;
                r = destroy_object(s, handles[i], label);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                (*removed)++;
        }
        return ret;
}

int store_remove_account(struct store *s, const char *account, unsigned *ret_removed)
{
        struct data_object *objects = NULL;
        static const char *const key_suffixes[] = {"/assertion-key", "/assertion-cert"};
        char prefix[NAME_MAX_LEN + 2];
        char meta[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        unsigned removed = 0;
        size_t n_objects;
        int r, ret = 0;

        if (!s || !account_is_valid(account))
                return -EINVAL;

        snprintf(prefix, sizeof(prefix), "%s/", account);
        snprintf(meta, sizeof(meta), "%s" META_SUFFIX, account);

        for (size_t i = 0; i < ELEMENTSOF(key_suffixes); i++) {
                char label[LABEL_MAX];

                snprintf(label, sizeof(label), "%s%s", account, key_suffixes[i]);
                r = destroy_labeled_non_data(s, label, &removed);
                if (r < 0 && ret == 0)
                        ret = r;
        }

        r = list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        /* Meta goes last: while it exists the account is listed, so an interrupted removal
         * can be seen and repeated rather than leaving invisible orphans. */
        for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < n_objects; i++) {
                        bool is_meta = strcmp(objects[i].label, meta) == 0;

                        if (!startswith(objects[i].label, prefix))
                                continue;
                        if (is_meta != (pass == 1))
                                continue;
                        if (is_meta && ret < 0)
                                continue;
                        r = destroy_object(s, objects[i].handle, objects[i].label);
                        if (r == -ENOENT)
                                continue;
                        if (r < 0) {
                                if (ret == 0)
                                        ret = r;
                                continue;
                        }
                        removed++;
                }
        }
        data_objects_free(objects, n_objects);
        if (ret < 0)
                return ret;

        if (ret_removed)
                *ret_removed = removed;
        return 0;
}
