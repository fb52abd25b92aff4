/* How the store finds, reads, creates and destroys its PKCS#11 objects (design.md §4): every
 * C_FindObjects, C_GetAttributeValue, C_CreateObject and C_DestroyObject of the store is here. */
#include "store-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"

char p11_application[] = STORE_APPLICATION;
CK_BBOOL p11_true = CK_TRUE;

/* Account names are file-name-safe by name_is_valid(); "credbroker" is reserved, see above. */
bool p11_account_is_valid(const char *account)
{
        return name_is_valid(account) && strcmp(account, STORE_APPLICATION) != 0;
}

const char *p11_startswith(const char *s, const char *prefix)
{
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* Strict: the digits after "<account>/refresh_token/" with no sign, no leading zero, no junk. */
bool p11_parse_generation(const char *label, const char *prefix, uint64_t *ret)
{
        size_t n = strlen(prefix);
        const char *digits;

        if (strncmp(label, prefix, n) != 0)
                return false;
        digits = label + n;
        if (digits[0] == '0' && digits[1] != 0)
                return false;
        return parse_u64(digits, ret) >= 0;
}

/* ---- objects ---- */

/* p11_ck_fail() for calls on the session: a return value that means the session is gone marks it
 * lost, so the next operation opens it again (store_ensure_session()). */
static int object_fail(struct store *s, const char *call, const char *what, CK_RV rv)
{
        p11_note_rv(s, rv);
        return p11_ck_fail(s, call, what, rv);
}

/* Whether a failure reading one object was the token's or the session's rather than the
 * object's: then every other object would fail the same way (or, worse, a search would quietly
 * find no private object), and "no refresh token" would be the wrong conclusion. The errno alone
 * cannot tell (-EACCES is a sensitive attribute as much as a lost login), so the session is
 * asked. */
bool p11_error_is_token_wide(struct store *s, int r)
{
        CK_SESSION_INFO info;

        if (r == -ENOMEM || r == -ENODEV || r == -ENOTCONN)
                return true;
        return !p11_session_is_logged_in(s, &info);
}

bool p11_session_is_logged_in(struct store *s, CK_SESSION_INFO *info)
{
        CK_RV rv = s->module->C_GetSessionInfo(s->session, info);

        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                log_warning("Token \"%s\": the session is gone (C_GetSessionInfo: %s).",
                            s->token_label, p11_rv_name(rv));
                return false;
        }
        if (info->state != CKS_RW_USER_FUNCTIONS && info->state != CKS_RO_USER_FUNCTIONS) {
                log_warning("Token \"%s\": the session is no longer logged in.", s->token_label);
                return false;
        }
        return true;
}

int p11_find_objects(struct store *s, CK_ATTRIBUTE *template, CK_ULONG n_template, const char *what,
                     CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        size_t n = 0, allocated = 0;
        CK_RV rv;
        int r = 0;

        /* Every store operation begins with a search: the place to open a lost session again. */
        r = store_ensure_session(s);
        if (r < 0)
                return r;
        rv = s->module->C_FindObjectsInit(s->session, template, n_template);
        if (rv != CKR_OK && p11_note_rv(s, rv)) {
                /* Lost since the last operation, and nothing of the old session is in use yet:
                 * open it again and the caller never sees the loss. */
                r = store_ensure_session(s);
                if (r < 0)
                        return r;
                rv = s->module->C_FindObjectsInit(s->session, template, n_template);
        }
        if (rv != CKR_OK)
                return object_fail(s, "C_FindObjectsInit", what, rv);
        for (;;) {
                CK_ULONG got = 0;

                if (n == allocated) {
                        size_t more = allocated ? allocated * 2 : 16;
                        CK_OBJECT_HANDLE *p;

                        if (more > OBJECTS_MAX) {
                                r = log_error_errno(-E2BIG,
                                                    "Token \"%s\" holds more than %d objects "
                                                    "matching %s; refusing to scan it.",
                                                    s->token_label, OBJECTS_MAX, what);
                                break;
                        }
                        p = reallocarray(handles, more, sizeof(*handles));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        handles = p;
                        allocated = more;
                }
                rv = s->module->C_FindObjects(s->session, handles + n, allocated - n, &got);
                if (rv != CKR_OK) {
                        r = object_fail(s, "C_FindObjects", what, rv);
                        break;
                }
                /* Only a zero count means the end (PKCS#11 §5.14); a short batch does not. */
                if (got == 0)
                        break;
                n += got;
        }
        /* Always end the search, or the session refuses the next one with OPERATION_ACTIVE. */
        rv = s->module->C_FindObjectsFinal(s->session);
        if (r < 0)
                return r;
        if (rv != CKR_OK)
                return object_fail(s, "C_FindObjectsFinal", what, rv);

        *ret = TAKE_PTR(handles);
        *ret_n = n;
        return 0;
}

/* CKA_PRIVATE=TRUE is part of the search: only a logged-in user can create private objects, so
 * a public look-alike planted through an unauthenticated session is never taken for ours. */
int p11_find_app_objects(struct store *s, const char *application, const char *label,
                         CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_APPLICATION, (void *)application, strlen(application)},
            {CKA_LABEL, (void *)label, label ? strlen(label) : 0},
        };

        char what[LABEL_MAX + 16];

        if (label)
                return p11_find_objects(s, template, 5, label, ret, ret_n);
        /* Named in errors by what was searched for: "credbroker objects", say. */
        snprintf(what, sizeof(what), "%s objects", application);
        return p11_find_objects(s, template, 4, what, ret, ret_n);
}

int p11_find_data_objects(struct store *s, const char *label, CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        return p11_find_app_objects(s, p11_application, label, ret, ret_n);
}

/* The label in one call: a label that does not fit LABEL_MAX is not one of ours. Returns
 * -ENOENT for an object gone since the search and -EBADMSG for a label that is not ours. */
int p11_get_label(struct store *s, CK_OBJECT_HANDLE handle, char label[static LABEL_MAX + 1])
{
        CK_ATTRIBUTE a = {CKA_LABEL, label, LABEL_MAX};
        CK_RV rv;

        rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
        if (rv == CKR_BUFFER_TOO_SMALL)
                return -EBADMSG;
        if (rv != CKR_OK)
                return object_fail(s, "C_GetAttributeValue(CKA_LABEL)", "an object", rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > LABEL_MAX)
                return -EBADMSG;
        label[a.ulValueLen] = 0;
        if (strlen(label) != a.ulValueLen)
                return -EBADMSG;
        return 0;
}

void p11_data_objects_free(struct p11_data_object *objects, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(objects[i].label);
        free(objects);
}

/* Every CKO_DATA object of ours with its label. Searches cannot match a label prefix, so the
 * callers that need "<account>/…" filter this list. */
int p11_list_data_objects(struct store *s, struct p11_data_object **ret, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        struct p11_data_object *objects;
        size_t n_handles, n = 0;
        int r;

        r = p11_find_data_objects(s, NULL, &handles, &n_handles);
        if (r < 0)
                return r;
        objects = calloc(n_handles ? n_handles : 1, sizeof(*objects));
        if (!objects)
                return -ENOMEM;
        for (size_t i = 0; i < n_handles; i++) {
                char label[LABEL_MAX + 1];

                r = p11_get_label(s, handles[i], label);
                if (r == -ENOENT || r == -EBADMSG)
                        continue;
                /* One unreadable object (a torn write, say) must not hide all the others. */
                if (r < 0 && !p11_error_is_token_wide(s, r)) {
                        log_warning_errno(r,
                                          "Skipping an object on token \"%s\" whose label "
                                          "cannot be read",
                                          s->token_label);
                        continue;
                }
                if (r < 0) {
                        p11_data_objects_free(objects, n);
                        return r;
                }
                objects[n].label = strdup(label);
                if (!objects[n].label) {
                        p11_data_objects_free(objects, n);
                        return -ENOMEM;
                }
                objects[n++].handle = handles[i];
        }
        *ret = objects;
        *ret_n = n;
        return 0;
}

/* The size of an attribute, asked for first so the buffer is exactly as large as the value and
 * a hostile or broken token cannot make us allocate more than max. */
static int get_value_size(struct store *s, CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type,
                          size_t max, const char *what, size_t *ret)
{
        CK_ATTRIBUTE a = {type, NULL, 0};
        CK_RV rv;

        rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
        if (rv != CKR_OK)
                return object_fail(s, "C_GetAttributeValue", what, rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
                log_error("The value of %s on token \"%s\" cannot be read.", what, s->token_label);
                return -EACCES;
        }
        if (a.ulValueLen > max)
                return -EFBIG;
        *ret = a.ulValueLen;
        return 0;
}

/* The value itself, into a buffer of the size get_value_size() gave. */
static int get_value(struct store *s, CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type, void *buf,
                     size_t size, const char *what, size_t *ret_len)
{
        CK_ATTRIBUTE a = {type, buf, size};
        CK_RV rv;

        if (size == 0) {
                *ret_len = 0;
                return 0;
        }
        rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
        /* BUFFER_TOO_SMALL: changed since we asked its size. Not what we wrote. */
        if (rv == CKR_BUFFER_TOO_SMALL)
                return -EFBIG;
        if (rv != CKR_OK)
                return object_fail(s, "C_GetAttributeValue", what, rv);
        if (a.ulValueLen > size)
                return -EFBIG;
        *ret_len = a.ulValueLen;
        return 0;
}

int p11_read_secret_value(struct store *s, CK_OBJECT_HANDLE handle, size_t max, const char *what,
                          struct secret **ret)
{
        _cleanup_secret_ struct secret *value = NULL;
        size_t size, len;
        int r;

        r = get_value_size(s, handle, CKA_VALUE, max, what, &size);
        if (r < 0)
                return r;
        r = secret_new(size ? size : 1, &value);
        if (r < 0)
                return r;
        r = get_value(s, handle, CKA_VALUE, secret_data(value), size, what, &len);
        if (r < 0)
                return r;
        if (size > 0) {
                r = secret_set_len(value, len);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(value);
        return 0;
}

int p11_read_attribute(struct store *s, CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type, size_t max,
                       const char *what, void **ret, size_t *ret_len)
{
        _cleanup_free_ char *value = NULL;
        size_t size, len;
        int r;

        r = get_value_size(s, handle, type, max, what, &size);
        if (r < 0)
                return r;
        value = malloc(size + 1);
        if (!value)
                return -ENOMEM;
        r = get_value(s, handle, type, value, size, what, &len);
        if (r < 0)
                return r;
        value[len] = 0;
        *ret = TAKE_PTR(value);
        *ret_len = len;
        return 0;
}

int p11_create_app_object(struct store *s, const char *application, const char *label,
                          const void *value, size_t len, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_APPLICATION, (void *)application, strlen(application)},
            {CKA_LABEL, (void *)label, strlen(label)},
            {CKA_VALUE, (void *)value, len},
        };
        CK_OBJECT_HANDLE handle;
        CK_RV rv;

        rv = s->module->C_CreateObject(s->session, template, ELEMENTSOF(template), &handle);
        if (rv != CKR_OK)
                return object_fail(s, "C_CreateObject", label, rv);
        *ret = handle;
        return 0;
}

int p11_create_data_object(struct store *s, const char *label, const void *value, size_t len,
                           CK_OBJECT_HANDLE *ret)
{
        return p11_create_app_object(s, p11_application, label, value, len, ret);
}

int p11_destroy_object(struct store *s, CK_OBJECT_HANDLE handle, const char *what)
{
        CK_RV rv;

        rv = s->module->C_DestroyObject(s->session, handle);
        if (rv != CKR_OK)
                return object_fail(s, "C_DestroyObject", what, rv);
        s->destroyed++;
        return 0;
}
