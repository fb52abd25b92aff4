/* The wrapped backend's rollback guard: per account one CKO_DATA object in the token labelled
 * "<account>/wrapped-state/<generation>-<id>", naming the one file state that may be used. The
 * label is the attribute SoftHSM2 lets C_SetAttributeValue change (CKA_VALUE is fixed after
 * creation), so moving the counter on is one call on a handle. All counters are found with one
 * search (their own CKA_APPLICATION) the first time a session needs one, and each check reads the
 * label of the account's handle: per operation O(1) calls and no search, whatever the number of
 * accounts (a search is O(objects) in SoftHSM2, which reads its whole token directory). */
#include "store-wrapped.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"

static char wrapped_application[] = WRAPPED_APPLICATION;

static void counter_label(const char *account, uint64_t generation,
                          const uint8_t id[static WRAPPED_STATE_ID_LEN], char out[static LABEL_MAX])
{
        char hex[2 * WRAPPED_STATE_ID_LEN + 1];

        for (size_t i = 0; i < WRAPPED_STATE_ID_LEN; i++)
                snprintf(hex + 2 * i, 3, "%02x", id[i]);
        snprintf(out, LABEL_MAX, "%s" WRAPPED_STATE_INFIX "%" PRIu64 "-%s", account, generation,
                 hex);
}

/* The account part of a counter label, when it is one. */
static bool counter_label_account(const char *label, char account[static NAME_MAX_LEN + 1])
{
        const char *infix = strstr(label, WRAPPED_STATE_INFIX);
        size_t len;

        if (!infix)
                return false;
        len = (size_t)(infix - label);
        if (len == 0 || len > NAME_MAX_LEN)
                return false;
        memcpy(account, label, len);
        account[len] = 0;
        return p11_account_is_valid(account);
}

/* ---- the table of counter handles, sorted by account ---- */

static size_t table_lower_bound(const struct p11_wrapped *w, const char *account)
{
        size_t lo = 0, hi = w->n_counters;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(w->counters[mid].account, account) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int table_add(struct p11_wrapped *w, const char *account, CK_OBJECT_HANDLE handle)
{
        size_t at;

        if (w->n_counters == w->allocated_counters) {
                size_t more = w->allocated_counters ? w->allocated_counters * 2 : 64;
                struct p11_wrapped_counter *p;

                p = reallocarray(w->counters, more, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                w->counters = p;
                w->allocated_counters = more;
        }
        at = table_lower_bound(w, account);
        memmove(&w->counters[at + 1], &w->counters[at],
                (w->n_counters - at) * sizeof(*w->counters));
        snprintf(w->counters[at].account, sizeof(w->counters[at].account), "%s", account);
        w->counters[at].handle = handle;
        w->n_counters++;
        return 0;
}

static void table_remove(struct p11_wrapped *w, size_t at)
{
        memmove(&w->counters[at], &w->counters[at + 1],
                (w->n_counters - at - 1) * sizeof(*w->counters));
        w->n_counters--;
}

static int search_counters(struct store *s, const char *label, CK_OBJECT_HANDLE **ret,
                           size_t *ret_n)
{
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_APPLICATION, wrapped_application, sizeof(wrapped_application) - 1},
            {CKA_LABEL, (void *)label, label ? strlen(label) : 0},
        };
        int r;

        r = p11_find_objects(s, template, ELEMENTSOF(template) - !label,
                             label ? label : WRAPPED_APPLICATION, ret, ret_n);
        if (r >= 0)
                p11_wrapped_check_epoch(s); /* the search may have opened the session again */
        return r;
}

/* One search for every counter of ours, then one label read each: once per session. */
static int table_load(struct store *s)
{
        struct p11_wrapped *w = s->wrapped;
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        size_t n;
        int r;

        r = search_counters(s, NULL, &handles, &n);
        if (r < 0)
                return r;
        w->n_counters = 0;
        for (size_t i = 0; i < n; i++) {
                char label[LABEL_MAX + 1], account[NAME_MAX_LEN + 1];

                r = p11_get_label(s, handles[i], label);
                if (r == -ENOENT || r == -EBADMSG)
                        continue;
                if (r < 0)
                        return r;
                if (!counter_label_account(label, account))
                        continue;
                r = table_add(w, account, handles[i]);
                if (r < 0)
                        return r;
        }
        w->counters_loaded = true;
        return 0;
}

static int table_ensure(struct store *s, bool fresh)
{
        int r;

        r = store_ensure_session(s);
        if (r < 0)
                return r;
        p11_wrapped_check_epoch(s);
        if (s->wrapped->counters_loaded && !fresh)
                return 0;
        return table_load(s);
}

/* ---- checking and moving on ---- */

int p11_wrapped_counter_set(struct store *s, const char *account, CK_OBJECT_HANDLE handle,
                            uint64_t generation, const uint8_t id[static WRAPPED_STATE_ID_LEN])
{
        char label[LABEL_MAX];
        CK_ATTRIBUTE attribute = {CKA_LABEL, label, 0};
        CK_RV rv;

        counter_label(account, generation, id, label);
        attribute.ulValueLen = strlen(label);
        rv = s->module->C_SetAttributeValue(s->session, handle, &attribute, 1);
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_SetAttributeValue", label, rv);
        }
        return 0;
}

/* Which of the file's two states the label names: 1 its own, 2 its prev, 0 neither. */
static int label_names(const char *label, const char *self, const char *prev)
{
        return strcmp(label, self) == 0 ? 1 : strcmp(label, prev) == 0 ? 2 : 0;
}

/* The table's handles for account: the one whose label names the file's state or its prev. */
static int check_table(struct store *s, const char *account, const char *self, const char *prev,
                       CK_OBJECT_HANDLE *ret_handle, char found[static LABEL_MAX + 1])
{
        struct p11_wrapped *w = s->wrapped;
        size_t i = table_lower_bound(w, account);
        int r;

        while (i < w->n_counters && strcmp(w->counters[i].account, account) == 0) {
                char label[LABEL_MAX + 1];

                r = p11_get_label(s, w->counters[i].handle, label);
                if (r == -ENOENT || r == -EBADMSG) {
                        table_remove(w, i); /* destroyed by another process */
                        continue;
                }
                if (r < 0)
                        return r;
                r = label_names(label, self, prev);
                if (r > 0) {
                        *ret_handle = w->counters[i].handle;
                        return r;
                }
                snprintf(found, LABEL_MAX + 1, "%s", label);
                i++;
        }
        return 0;
}

/* Not in the table (another process created or moved it): exact-label searches. */
static int check_search(struct store *s, const char *account, const char *self, const char *prev,
                        CK_OBJECT_HANDLE *ret_handle)
{
        const char *labels[] = {self, prev};

        for (size_t i = 0; i < ELEMENTSOF(labels); i++) {
                _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
                size_t n;
                int r;

                r = search_counters(s, labels[i], &handles, &n);
                if (r < 0)
                        return r;
                if (n == 0)
                        continue;
                r = table_add(s->wrapped, account, handles[0]);
                if (r < 0)
                        return r;
                *ret_handle = handles[0];
                return (int)i + 1;
        }
        return 0;
}

int p11_wrapped_counter_check(struct store *s, const char *account,
                              const struct p11_wrapped_header *h, CK_OBJECT_HANDLE *ret)
{
        char self[LABEL_MAX], prev[LABEL_MAX], found[LABEL_MAX + 1] = "";
        CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
        int r;

        r = table_ensure(s, false);
        if (r < 0)
                return r;
        counter_label(account, h->generation, h->id, self);
        counter_label(account, h->prev_generation, h->prev_id, prev);
        r = check_table(s, account, self, prev, &handle, found);
        if (r == 0)
                r = check_search(s, account, self, prev, &handle);
        if (r < 0)
                return r;
        if (r == 0) {
                if (found[0])
                        return log_error_errno(-ESTALE,
                                               "Account %s: its sealed file (generation %" PRIu64
                                               ") is not the one token \"%s\" names (\"%s\"): "
                                               "an older copy put back, or a file from elsewhere. "
                                               "Refusing it.",
                                               account, h->generation, s->token_label, found);
                return log_error_errno(-ESTALE,
                                       "Account %s: token \"%s\" has no counter object for its "
                                       "sealed file (generation %" PRIu64 "). Refusing it.",
                                       account, s->token_label, h->generation);
        }
        /* The file is the successor of the counted state: a write stopped after its rename.
         * Only the broker can seal a file naming the current state as prev, so this moves
         * forward, never back. */
        if (r == 2) {
                r = p11_wrapped_counter_set(s, account, handle, h->generation, h->id);
                if (r < 0)
                        return r;
                log_notice("Account %s: completed the interrupted update to sealed generation "
                           "%" PRIu64 ".",
                           account, h->generation);
        }
        *ret = handle;
        return 0;
}

/* ---- creating and destroying ---- */

static int destroy_in_table(struct store *s, const char *account, unsigned *ret_n)
{
        struct p11_wrapped *w = s->wrapped;
        unsigned destroyed = 0;
        size_t i;
        int r;

        i = table_lower_bound(w, account);
        while (i < w->n_counters && strcmp(w->counters[i].account, account) == 0) {
                r = p11_destroy_object(s, w->counters[i].handle, account);
                if (r < 0 && r != -ENOENT)
                        return r;
                destroyed += r == 0;
                table_remove(w, i);
        }
        if (ret_n)
                *ret_n = destroyed;
        return 0;
}

/* Removal is rare and must find every counter: a fresh scan. */
int p11_wrapped_counters_destroy(struct store *s, const char *account, unsigned *ret_n)
{
        int r;

        r = table_ensure(s, true);
        if (r < 0)
                return r;
        return destroy_in_table(s, account, ret_n);
}

int p11_wrapped_counter_create(struct store *s, const char *account, uint64_t *ret_generation,
                               uint8_t ret_id[static WRAPPED_STATE_ID_LEN], CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_CLASS class = CKO_DATA;
        static const char value[] = "w";
        char label[LABEL_MAX];
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_APPLICATION, wrapped_application, sizeof(wrapped_application) - 1},
            {CKA_LABEL, label, 0},
            {CKA_VALUE, (void *)value, 1},
        };
        CK_OBJECT_HANDLE handle;
        CK_RV rv;
        int r;

        /* A counter left over would let the file it named be put back under the new account.
         * The table this session loaded is used, not a fresh scan: creating 10,000 accounts in
         * one broker must not scan the token 10,000 times. */
        r = table_ensure(s, false);
        if (r >= 0)
                r = destroy_in_table(s, account, NULL);
        if (r < 0)
                return r;
        if (gnutls_rnd(GNUTLS_RND_NONCE, ret_id, WRAPPED_STATE_ID_LEN) < 0)
                return -EIO;
        counter_label(account, 0, ret_id, label);
        template[4].ulValueLen = strlen(label);
        rv = s->module->C_CreateObject(s->session, template, ELEMENTSOF(template), &handle);
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_CreateObject", label, rv);
        }
        r = table_add(s->wrapped, account, handle);
        if (r < 0)
                return r;
        *ret_generation = 0;
        *ret = handle;
        return 0;
}

int p11_wrapped_list_counters(struct store *s, char ***names, size_t *n, size_t *allocated)
{
        struct p11_wrapped *w = s->wrapped;
        int r;

        r = table_ensure(s, true);
        if (r < 0)
                return r;
        for (size_t i = 0; i < w->n_counters; i++) {
                r = p11_names_add(names, n, allocated, w->counters[i].account,
                                  strlen(w->counters[i].account));
                if (r < 0)
                        return r;
        }
        return 0;
}
