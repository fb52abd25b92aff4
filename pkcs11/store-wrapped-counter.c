/* The wrapped backend's rollback guard: per account one CKO_DATA object in the token labelled
 * "<account>/wrapped-state/<generation>-<id>", naming the one file state that may be used. Moving
 * it on creates the new counter and then destroys the old one, never C_SetAttributeValue:
 * SoftHSM2 rewrites an object's file in place (ftruncate, then write), so a kill between the two
 * would lose the counter and with it the account, while a torn C_CreateObject leaves no object
 * with our label and C_DestroyObject is an unlink (docs/softhsm-torn-writes.md). After a crash
 * between the create and the destroy, the counter with the highest generation rules.
 *
 * All counters are found with one search (their own CKA_APPLICATION) the first time a session
 * needs one; each check then reads the label of the account's handle: per operation O(1) calls
 * and no search, whatever the number of accounts (a search is O(objects) in SoftHSM2, which
 * reads its whole token directory). */
#include "store-wrapped.h"

#include "build-config.h"

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

/* The generation a counter label names (0 when it is not a counter label). */
static uint64_t counter_label_generation(const char *label)
{
        const char *infix = strstr(label, WRAPPED_STATE_INFIX), *dash;
        char digits[21];
        uint64_t g;

        if (!infix)
                return 0;
        infix += strlen(WRAPPED_STATE_INFIX);
        dash = strchr(infix, '-');
        if (!dash || dash == infix || (size_t)(dash - infix) >= sizeof(digits))
                return 0;
        memcpy(digits, infix, (size_t)(dash - infix));
        digits[dash - infix] = 0;
        return parse_u64(digits, &g) < 0 ? 0 : g;
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

static int counter_create(struct store *s, const char *account, uint64_t generation,
                          const uint8_t id[static WRAPPED_STATE_ID_LEN], CK_OBJECT_HANDLE *ret)
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
        CK_RV rv;

        counter_label(account, generation, id, label);
        template[4].ulValueLen = strlen(label);
        rv = s->module->C_CreateObject(s->session, template, ELEMENTSOF(template), ret);
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_CreateObject", label, rv);
        }
        return table_add(s->wrapped, account, *ret);
}

/* Drops handle from the table and destroys it; a failure leaves an older counter, which the
 * newer one outranks (and the next check destroys). A handle no longer in the table belongs to a
 * session that was lost since (the table is emptied then): its number may name another object
 * now, so it is left alone. */
static void counter_destroy(struct store *s, const char *account, CK_OBJECT_HANDLE handle)
{
        struct p11_wrapped *w = s->wrapped;
        bool found = false;

        for (size_t i = table_lower_bound(w, account);
             i < w->n_counters && strcmp(w->counters[i].account, account) == 0; i++)
                if (w->counters[i].handle == handle) {
                        table_remove(w, i);
                        found = true;
                        break;
                }
        if (found && p11_destroy_object(s, handle, account) < 0)
                log_warning("Account %s: could not destroy its previous counter object; the next "
                            "use does.",
                            account);
}

/* Test builds: CREDBROKER_FAULT=counter-move-fails makes every move fail, as a token that is
 * full or read-only would (tests/unit/test-store-wrapped.c). */
static bool fault_counter_move_fails(void)
{
#if ENABLE_FAULT_POINTS
        const char *want = secure_getenv("CREDBROKER_FAULT");

        return want && strcmp(want, "counter-move-fails") == 0;
#else
        return false;
#endif
}

int p11_wrapped_counter_move(struct store *s, const char *account, CK_OBJECT_HANDLE *handle,
                             uint64_t generation, const uint8_t id[static WRAPPED_STATE_ID_LEN])
{
        CK_OBJECT_HANDLE new_handle;
        int r;

        if (fault_counter_move_fails())
                return log_error_errno(-EIO, "Account %s: the counter cannot be moved (fault).",
                                       account);
        r = counter_create(s, account, generation, id, &new_handle);
        if (r < 0)
                return r;
        counter_destroy(s, account, *handle);
        *handle = new_handle;
        return 0;
}

/* Which of the file's two states the label names: 1 its own, 2 its prev, 0 neither. */
static int label_names(const char *label, const char *self, const char *prev)
{
        return strcmp(label, self) == 0 ? 1 : strcmp(label, prev) == 0 ? 2 : 0;
}

/* The account's counter with the highest generation, from the table: whether its label names
 * the file's state (1) or its prev (2), or neither (0, its label in found). Older counters (left
 * by a crash between a move's create and destroy) are destroyed once the newest one matches. */
static int check_table(struct store *s, const char *account, const char *self, const char *prev,
                       CK_OBJECT_HANDLE *ret_handle, char found[static LABEL_MAX + 1])
{
        struct p11_wrapped *w = s->wrapped;
        size_t i = table_lower_bound(w, account);
        CK_OBJECT_HANDLE best = CK_INVALID_HANDLE, older[4];
        uint64_t best_generation = 0;
        size_t n_older = 0;
        int r;

        while (i < w->n_counters && strcmp(w->counters[i].account, account) == 0) {
                char label[LABEL_MAX + 1];
                uint64_t g;

                r = p11_get_label(s, w->counters[i].handle, label);
                if (r == -ENOENT || r == -EBADMSG) {
                        table_remove(w, i); /* destroyed by another process */
                        continue;
                }
                if (r < 0)
                        return r;
                g = counter_label_generation(label);
                if (best != CK_INVALID_HANDLE && n_older < ELEMENTSOF(older))
                        older[n_older++] = g > best_generation ? best : w->counters[i].handle;
                if (best == CK_INVALID_HANDLE || g > best_generation) {
                        best = w->counters[i].handle;
                        best_generation = g;
                        snprintf(found, LABEL_MAX + 1, "%s", label);
                }
                i++;
        }
        if (best == CK_INVALID_HANDLE)
                return 0;
        r = label_names(found, self, prev);
        if (r == 0)
                return 0;
        for (size_t k = 0; k < n_older; k++)
                counter_destroy(s, account, older[k]);
        *ret_handle = best;
        return r;
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
                              const struct p11_wrapped_header *h, bool quiet, CK_OBJECT_HANDLE *ret)
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
        /* Unknown to this session (made by another process): exact-label searches. */
        if (r == 0 && !found[0])
                r = check_search(s, account, self, prev, &handle);
        if (r < 0)
                return r;
        if (r == 0 && quiet)
                return -ESTALE;
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
        *ret = handle;
        if (r == 1)
                return 0;
        /* The file is good either way; a token that cannot take the new counter now (full,
         * read-only) must not make the account unreadable, but no write may follow (1). */
        if (p11_wrapped_counter_move(s, account, ret, h->generation, h->id) < 0) {
                log_warning("Account %s: could not move the token's counter on to sealed "
                            "generation %" PRIu64 "; the next use tries again.",
                            account, h->generation);
                return 1;
        }
        log_notice("Account %s: completed the interrupted update to sealed generation %" PRIu64 ".",
                   account, h->generation);
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
        r = counter_create(s, account, 0, ret_id, ret);
        if (r < 0)
                return r;
        *ret_generation = 0;
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
