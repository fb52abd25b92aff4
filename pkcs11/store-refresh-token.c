/* Refresh-token generations "<account>/refresh_token/<g>" and their rotation in the order of
 * design.md §6: a crash at any instant leaves at least one intact generation. */
#include "store-internal.h"
#include "store-wrapped.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <p11-kit/pkcs11.h>

#include "fault.h"
#include "log.h"
#include "util.h"

/* Test builds: CREDBROKER_FAULT=readback-differs makes a rotation's read-back differ from what
 * was written, as a token that lost or garbled the write would (tests/unit/test-store.c). */
static void fault_readback_differs(struct secret *back)
{
#if ENABLE_FAULT_POINTS
        const char *want = secure_getenv("CREDBROKER_FAULT");

        if (back && secret_len(back) > 0 && want && strcmp(want, "readback-differs") == 0)
                ((uint8_t *)secret_data(back))[secret_len(back) - 1] ^= 0x01;
#else
        (void)back;
#endif
}

struct generation {
        CK_OBJECT_HANDLE handle;
        uint64_t generation;
};

static int compare_generation_desc(const void *a, const void *b)
{
        const struct generation *x = a, *y = b;

        return x->generation < y->generation ? 1 : x->generation > y->generation ? -1 : 0;
}

/* One generation by its exact label: how many objects carry it, and the first one's handle. */
static int find_generation(struct store *s, const char *account, uint64_t generation,
                           CK_OBJECT_HANDLE *ret, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n;
        int r;

        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, generation);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        *ret = n > 0 ? handles[0] : 0;
        *ret_n = n;
        return 0;
}

/* ---- generation hints ----
 *
 * Searches match labels exactly, never by prefix, so finding an account's generations without
 * help means reading the label of every data object in the token: hundreds of calls with a
 * hundred accounts, each a network round trip through p11-kit-client. Two things spare that
 * scan:
 *
 * In memory, each account's newest generation as last seen and the oldest one that may still be
 * present, so later reads and rotations look those labels up, and the newest one's object
 * handle, checked by reading its label (one call, no search) before it is used. The hint is only
 * a shortcut: a generation it names that is gone or unusable falls back to the index below or
 * the scan.
 *
 * In the token, one index object per account (see "the index" below) that names a lower bound
 * of its generations, so an account's first read after start is a handful of exact-label
 * searches whatever the number of accounts.
 *
 * The hints are kept in a hash table (open addressing, linear probing) keyed by account name:
 * with thousands of accounts a linear search per operation would grow with them. */

struct p11_generation_hint {
        char account[NAME_MAX_LEN + 1];
        uint64_t newest;
        /* The oldest generation that may still be present: a rotation looks up every label in
         * [oldest, newest] (oldest == newest: the newest alone). */
        uint64_t oldest;
        /* The newest generation's object as found or made in session newest_epoch (0: not
         * known). Before it is used its label is read (one call) and must still name newest. */
        CK_OBJECT_HANDLE newest_handle;
        unsigned newest_epoch;
        /* The index object, once looked for: index_handle 0 means the account has none yet. The
         * handle is only good in the session it was found in (index_epoch). */
        bool index_known;
        CK_OBJECT_HANDLE index_handle;
        unsigned index_epoch;
        uint64_t index_generation; /* what index_handle's label names */
        bool index_extra;          /* more than one index object: the next move removes the rest */
        /* The refresh marker (store_mark_refresh()), once looked up: its object (0: none yet)
         * and what the previous run left in it. */
        bool marker_known;
        CK_OBJECT_HANDLE marker_handle;
        uint64_t marker_generation; /* what marker_handle's label names */
        uint64_t marker_found;      /* the generation it named at the first look, 0: other */
};

static size_t hint_hash(const char *account)
{
        uint64_t h = UINT64_C(14695981039346656037);

        for (const char *p = account; *p; p++) {
                h ^= (uint8_t)*p;
                h *= UINT64_C(1099511628211);
        }
        return (size_t)(h ^ (h >> 32));
}

/* The slot that holds account, or the empty slot where it would go. */
static size_t hint_slot(const struct store *s, const char *account)
{
        size_t mask = s->generation_hints_size - 1, i = hint_hash(account) & mask;

        while (s->generation_hints[i] && strcmp(s->generation_hints[i]->account, account) != 0)
                i = (i + 1) & mask;
        return i;
}

static struct p11_generation_hint *generation_hint_find(struct store *s, const char *account)
{
        if (s->generation_hints_size == 0)
                return NULL;
        return s->generation_hints[hint_slot(s, account)];
}

/* Keeps the table at most half full: doubles it (or makes the first one). */
static int hints_grow(struct store *s)
{
        size_t size = s->generation_hints_size ? s->generation_hints_size * 2 : 64;
        struct p11_generation_hint **old = s->generation_hints;
        size_t old_size = s->generation_hints_size;

        if (2 * (s->n_generation_hints + 1) <= old_size)
                return 0;
        s->generation_hints = calloc(size, sizeof(*s->generation_hints));
        if (!s->generation_hints) {
                s->generation_hints = old;
                return -ENOMEM;
        }
        s->generation_hints_size = size;
        for (size_t i = 0; i < old_size; i++)
                if (old[i])
                        s->generation_hints[hint_slot(s, old[i]->account)] = old[i];
        free(old);
        return 0;
}

/* account's hint, made empty if there is none; NULL out of memory (the next operation then
 * scans: remembering is an optimisation). */
static struct p11_generation_hint *generation_hint_get(struct store *s, const char *account)
{
        struct p11_generation_hint *h = generation_hint_find(s, account);

        if (h)
                return h;
        if (hints_grow(s) < 0)
                return NULL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        snprintf(h->account, sizeof(h->account), "%s", account);
        s->generation_hints[hint_slot(s, account)] = h;
        s->n_generation_hints++;
        return h;
}

static void generation_hint_set(struct store *s, const char *account, uint64_t newest,
                                uint64_t oldest, CK_OBJECT_HANDLE newest_handle)
{
        struct p11_generation_hint *h = generation_hint_get(s, account);

        if (!h)
                return;
        h->newest = newest;
        h->oldest = oldest <= newest ? oldest : newest;
        h->newest_handle = newest_handle;
        h->newest_epoch = s->session_epoch;
}

/* Removes the hint and closes the gap behind it, so every probe sequence stays unbroken. */
void p11_generation_hints_forget(struct store *s, const char *account)
{
        size_t mask, i, j;

        if (s->generation_hints_size == 0)
                return;
        mask = s->generation_hints_size - 1;
        i = hint_slot(s, account);
        if (!s->generation_hints[i])
                return;
        free(s->generation_hints[i]);
        s->generation_hints[i] = NULL;
        s->n_generation_hints--;
        for (j = (i + 1) & mask; s->generation_hints[j]; j = (j + 1) & mask) {
                size_t home = hint_hash(s->generation_hints[j]->account) & mask;

                /* Moves back the entries whose home is not cyclically within (i, j]. */
                if (i <= j ? home <= i || home > j : home <= i && home > j) {
                        s->generation_hints[i] = s->generation_hints[j];
                        s->generation_hints[j] = NULL;
                        i = j;
                }
        }
}

void p11_generation_hints_free(struct store *s)
{
        for (size_t i = 0; i < s->generation_hints_size; i++)
                free(s->generation_hints[i]);
        free(s->generation_hints);
        s->generation_hints = NULL;
        s->generation_hints_size = 0;
        s->n_generation_hints = 0;
}

/* ---- the index ----
 *
 * "<account>/refresh_index/<g>" is a data object whose value never changes (a magic, a version
 * and the account's name) and whose label names g, a lower bound of the account's refresh-token
 * generations: every generation present is g or above, and those present are consecutive. It
 * is found by its value, not its label, because the label is the one attribute of a data object
 * SoftHSM2 lets C_SetAttributeValue change (CKA_VALUE is read-only after creation): moving the
 * index on after a rotation is one call, like the refresh marker's.
 *
 * A first read finds the index and looks up g, g+1, … by exact label: misses before the first
 * generation present are skipped (at most PROBE_MISSES_MAX), and the first miss after it ends
 * the run. No index, one whose label does not parse, more misses, more than PROBE_HITS_MAX
 * generations, two objects with one label: the full scan, as before the index existed, and the
 * next rotation writes or moves the index.
 *
 * Why that holds whenever a crash strikes: a rotation creates g+1 right above every generation
 * present (still consecutive), reads it back, destroys the old ones oldest first and stops at
 * the first that will not go (what is left is still consecutive: that one up to g+1), and only
 * then relabels the index to the oldest generation still present. The index never moves past a
 * generation that is still present, and generations below it are all gone. A crash before the
 * relabel leaves the index behind: the destroyed generations are the probe's leading misses
 * (one after an ordinary rotation). A torn relabel leaves a label that does not parse: the
 * scan. An index moved before the new generation was confirmed and the old ones destroyed would
 * hide those old ones below it for good (the crash tests see them left over). */

static const uint8_t index_magic[6] = {0x00, 'c', 'b', 'i', 'x', 0x01};
#define INDEX_VALUE_MAX  (sizeof(index_magic) + NAME_MAX_LEN)
#define PROBE_MISSES_MAX 4
#define PROBE_HITS_MAX   8

static size_t index_value(const char *account, uint8_t value[static INDEX_VALUE_MAX])
{
        size_t len = strnlen(account, NAME_MAX_LEN);

        memcpy(value, index_magic, sizeof(index_magic));
        memcpy(value + sizeof(index_magic), account, len);
        return sizeof(index_magic) + len;
}

static void index_label(const char *account, uint64_t generation, char label[static LABEL_MAX])
{
        snprintf(label, LABEL_MAX, "%s" INDEX_INFIX "%" PRIu64, account, generation);
}

/* Every object that carries account's index value. */
static int index_search(struct store *s, const char *account, CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        uint8_t value[INDEX_VALUE_MAX];
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_APPLICATION, p11_application, sizeof(STORE_APPLICATION) - 1},
            {CKA_VALUE, value, 0},
        };

        template[4].ulValueLen = index_value(account, value);
        return p11_find_objects(s, template, ELEMENTSOF(template), "a refresh token index", ret,
                                ret_n);
}

/* Finds account's index into h: the object naming the lowest generation (handle 0: none).
 * -ENOENT when there is none that names one. */
static int index_find(struct store *s, const char *account, struct p11_generation_hint *h)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char prefix[NAME_MAX_LEN + sizeof(INDEX_INFIX)];
        size_t n, found = 0;
        int r;

        snprintf(prefix, sizeof(prefix), "%s" INDEX_INFIX, account);
        r = index_search(s, account, &handles, &n);
        if (r < 0)
                return r;
        h->index_handle = 0;
        h->index_generation = 0;
        for (size_t i = 0; i < n; i++) {
                char label[LABEL_MAX + 1];
                uint64_t g;

                r = p11_get_label(s, handles[i], label);
                if (r < 0 && r != -ENOENT && r != -EBADMSG && p11_error_is_token_wide(s, r))
                        return r;
                if (r < 0 || !p11_parse_generation(label, prefix, &g))
                        continue;
                if (found++ == 0 || g < h->index_generation) {
                        h->index_handle = handles[i];
                        h->index_generation = g;
                }
        }
        h->index_known = true;
        h->index_epoch = s->session_epoch;
        h->index_extra = n > (found > 0 ? 1 : 0);
        return found > 0 ? 0 : -ENOENT;
}

static void generations_reverse(struct generation *g, size_t n)
{
        for (size_t i = 0; i < n / 2; i++) {
                struct generation t = g[i];

                g[i] = g[n - 1 - i];
                g[n - 1 - i] = t;
        }
}

/* The generations from the index up, newest first. -ENOENT: scan instead. */
static int probe_generations(struct store *s, const char *account, struct generation **ret,
                             size_t *ret_n)
{
        struct p11_generation_hint *h = generation_hint_get(s, account);
        _cleanup_free_ struct generation *found = NULL;
        unsigned misses = 0;
        size_t n = 0;
        int r;

        if (!h)
                return -ENOENT;
        r = index_find(s, account, h);
        if (r < 0)
                return r;
        found = calloc(PROBE_HITS_MAX, sizeof(*found));
        if (!found)
                return -ENOMEM;
        for (uint64_t g = h->index_generation;; g++) {
                CK_OBJECT_HANDLE handle;
                size_t count;

                r = find_generation(s, account, g, &handle, &count);
                if (r < 0)
                        return r;
                if (count > 1 || (count == 1 && n == PROBE_HITS_MAX))
                        return -ENOENT;
                if (count == 1)
                        found[n++] = (struct generation){.handle = handle, .generation = g};
                else if (n > 0)
                        break;
                else if (++misses > PROBE_MISSES_MAX)
                        return -ENOENT;
                if (g == UINT64_MAX)
                        break;
        }
        if (n == 0)
                return -ENOENT;
        generations_reverse(found, n);
        *ret = TAKE_PTR(found);
        *ret_n = n;
        return 0;
}

/* Destroys every object but the kept index that carries account's index value. */
static void index_remove_extra(struct store *s, const char *account, struct p11_generation_hint *h)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        size_t n;

        if (index_search(s, account, &handles, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                if (handles[i] != h->index_handle)
                        (void)p11_destroy_object(s, handles[i], "an extra refresh token index");
        h->index_extra = false;
}

void p11_index_drop(struct store *s, const char *account)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        size_t n;

        if (index_search(s, account, &handles, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                (void)p11_destroy_object(s, handles[i], "a refresh token index");
        p11_generation_hints_forget(s, account);
}

/* Points the known index object at generation, or makes one. -ENOENT: the object is gone. */
static int index_write(struct store *s, const char *account, struct p11_generation_hint *h,
                       uint64_t generation)
{
        uint8_t value[INDEX_VALUE_MAX];
        char label[LABEL_MAX];
        CK_ATTRIBUTE attribute = {CKA_LABEL, label, 0};
        CK_RV rv;
        int r;

        index_label(account, generation, label);
        if (h->index_handle == 0) {
                r = p11_create_data_object(s, label, value, index_value(account, value),
                                           &h->index_handle);
                if (r < 0) {
                        h->index_handle = 0;
                        return r;
                }
        } else if (h->index_generation != generation) {
                attribute.ulValueLen = strlen(label);
                rv = s->module->C_SetAttributeValue(s->session, h->index_handle, &attribute, 1);
                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        return -ENOENT;
                if (rv != CKR_OK) {
                        p11_note_rv(s, rv);
                        return p11_ck_fail(s, "C_SetAttributeValue", label, rv);
                }
        }
        h->index_generation = generation;
        return 0;
}

/* After a rotation: moves the index on to generation, the oldest one still present, or makes
 * it. A failure is logged and left: the index stays a lower bound, and a read that finds it too
 * far behind scans. */
void p11_index_move(struct store *s, const char *account, uint64_t generation)
{
        struct p11_generation_hint *h = generation_hint_get(s, account);
        int r = 0;

        if (!h)
                return;
        for (int attempt = 0; attempt < 2; attempt++) {
                if (!h->index_known || h->index_epoch != s->session_epoch || r == -ENOENT) {
                        r = index_find(s, account, h);
                        if (r < 0 && r != -ENOENT)
                                break;
                }
                r = index_write(s, account, h, generation);
                if (r != -ENOENT)
                        break;
                h->index_known = false;
        }
        if (r < 0) {
                h->index_known = false;
                log_warning_errno(r,
                                  "Could not move the refresh token index of account %s on to "
                                  "generation %" PRIu64 "; its next first read may scan",
                                  account, generation);
                return;
        }
        h->index_epoch = s->session_epoch;
        if (h->index_extra)
                index_remove_extra(s, account, h);
}

/* Every "<account>/refresh_token/<g>" object, whatever its value, newest first; the account's
 * index objects, seen on the way, go into its hint. */
static int list_generations(struct store *s, const char *account, struct generation **ret,
                            size_t *ret_n)
{
        struct p11_data_object *objects = NULL;
        char prefix[NAME_MAX_LEN + sizeof(REFRESH_TOKEN_INFIX)];
        char index_prefix[NAME_MAX_LEN + sizeof(INDEX_INFIX)];
        struct p11_generation_hint *h = generation_hint_get(s, account);
        struct generation *generations;
        size_t n_objects, n = 0, n_index = 0;
        int r;

        snprintf(prefix, sizeof(prefix), "%s" REFRESH_TOKEN_INFIX, account);
        snprintf(index_prefix, sizeof(index_prefix), "%s" INDEX_INFIX, account);
        r = p11_list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        generations = calloc(n_objects ? n_objects : 1, sizeof(*generations));
        if (!generations) {
                p11_data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        if (h)
                h->index_handle = 0;
        for (size_t i = 0; i < n_objects; i++) {
                uint64_t g;

                if (p11_parse_generation(objects[i].label, index_prefix, &g)) {
                        if (h && (n_index++ == 0 || g < h->index_generation)) {
                                h->index_handle = objects[i].handle;
                                h->index_generation = g;
                        }
                        continue;
                }
                if (!p11_startswith(objects[i].label, prefix))
                        continue;
                if (!p11_parse_generation(objects[i].label, prefix, &g)) {
                        log_warning("Ignoring object \"%s\" on token \"%s\": not a valid "
                                    "refresh token generation.",
                                    objects[i].label, s->token_label);
                        continue;
                }
                generations[n].handle = objects[i].handle;
                generations[n++].generation = g;
        }
        p11_data_objects_free(objects, n_objects);
        if (h) {
                h->index_known = true;
                h->index_epoch = s->session_epoch;
                h->index_extra = n_index > 1;
        }
        qsort(generations, n, sizeof(*generations), compare_generation_desc);
        *ret = generations;
        *ret_n = n;
        return 0;
}

/* The hinted newest generation of account, looked up by its exact label: 0 or 1 of them in
 * *ret (-ENOENT without a hint, or when the hint names a label that matches no single object). */
/* Whether the hinted newest generation's object is still the one found in this session: its
 * label, read in one call, still names it (a search would re-read a file-backed token's whole
 * directory). Gone, relabelled or unreadable: no, and the caller searches. */
static bool hinted_handle_is_current(struct store *s, const char *account,
                                     struct p11_generation_hint *h)
{
        char label[LABEL_MAX + 1], want[LABEL_MAX];
        CK_ATTRIBUTE a = {CKA_LABEL, label, LABEL_MAX};
        CK_RV rv;

        if (h->newest_handle == 0 || h->newest_epoch != s->session_epoch || !s->session_open)
                return false;
        snprintf(want, sizeof(want), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, h->newest);
        rv = s->module->C_GetAttributeValue(s->session, h->newest_handle, &a, 1);
        if (rv == CKR_OK && a.ulValueLen == strlen(want) && memcmp(label, want, a.ulValueLen) == 0)
                return true;
        p11_note_rv(s, rv); /* a lost session is opened again by the search that follows */
        h->newest_handle = 0;
        return false;
}

static int hinted_generation(struct store *s, const char *account, struct generation *ret)
{
        struct p11_generation_hint *h = generation_hint_find(s, account);
        CK_OBJECT_HANDLE handle;
        size_t n;
        int r;

        if (!h || h->newest == 0)
                return -ENOENT;
        if (hinted_handle_is_current(s, account, h)) {
                *ret = (struct generation){.handle = h->newest_handle, .generation = h->newest};
                return 0;
        }
        r = find_generation(s, account, h->newest, &handle, &n);
        if (r < 0)
                return r;
        if (n != 1)
                return -ENOENT;
        h->newest_handle = handle;
        h->newest_epoch = s->session_epoch;
        *ret = (struct generation){.handle = handle, .generation = h->newest};
        return 0;
}

/* ---- the value of a generation ----
 *
 * A generation's CKA_VALUE is an envelope around the token:
 *
 *   "\0cbrt" (5 bytes) | version 1 (1 byte) | stored_at (u64, big-endian unix seconds) |
 *   refresh token (1..TOKEN_MAX_LEN bytes) | check (8 bytes)
 *
 * where check is the first 8 bytes of SHA-256(label, NUL, everything before the check), label
 * being the object's own "<account>/refresh_token/<g>".
 *
 * Why in the value: the write time must be exactly as crash-consistent as the token it dates.
 * C_CreateObject makes the object visible with every template attribute at once (SoftHSM2 applies
 * the template in one rewrite of the object file, docs/softhsm-torn-writes.md), so whatever lives
 * in the same attribute is written, read back and destroyed together with the token. A second
 * object would be a second write a crash can separate from the first, and CKA_START_DATE is
 * neither defined for CKO_DATA nor finer than a day.
 *
 * Why the check: SoftHSM2 encrypts private values with AES-CBC and no MAC, so a flipped bit on
 * disk decrypts to a silently different token; the check makes such a generation corrupt (skipped)
 * instead of chosen. The label is hashed too because it is encrypted the same way: a flip that
 * turned ".../3" into ".../7" would otherwise make an old token look like the newest. The check
 * detects accidents, it does not authenticate: the token's own encryption and access control
 * do that.
 *
 * Tokens stored before the envelope existed are the raw token bytes. A raw token is printable
 * ASCII (token_is_valid()), so it can never start with the envelope's NUL byte; such a value is
 * read as a legacy generation whose write time is unknown. */

static const uint8_t envelope_magic[ENVELOPE_MAGIC_LEN] = {0x00, 'c', 'b', 'r', 't'};
#define ENVELOPE_VERSION 1

static int envelope_check(const char *label, const uint8_t *data, size_t len,
                          uint8_t check[static ENVELOPE_CHECK])
{
        gnutls_hash_hd_t hash;
        uint8_t digest[32];

        if (gnutls_hash_init(&hash, GNUTLS_DIG_SHA256) < 0)
                return -ENOMEM;
        if (gnutls_hash(hash, label, strlen(label) + 1) < 0 || gnutls_hash(hash, data, len) < 0) {
                gnutls_hash_deinit(hash, NULL);
                return -EIO;
        }
        gnutls_hash_deinit(hash, digest);
        memcpy(check, digest, ENVELOPE_CHECK);
        return 0;
}

int p11_envelope_build(const char *label, const struct secret *token, uint64_t stored_at,
                       struct secret **ret)
{
        _cleanup_secret_ struct secret *envelope = NULL;
        uint8_t header[ENVELOPE_HEADER], check[ENVELOPE_CHECK];
        int r;

        memcpy(header, envelope_magic, sizeof(envelope_magic));
        header[sizeof(envelope_magic)] = ENVELOPE_VERSION;
        for (size_t i = 0; i < 8; i++)
                header[sizeof(envelope_magic) + 1 + i] = (uint8_t)(stored_at >> (56 - 8 * i));

        r = secret_new(ENVELOPE_HEADER + secret_len(token) + ENVELOPE_CHECK, &envelope);
        if (r < 0)
                return r;
        r = secret_append(envelope, header, sizeof(header));
        if (r >= 0)
                r = secret_append(envelope, secret_str(token), secret_len(token));
        if (r >= 0)
                r = envelope_check(label, secret_data(envelope), secret_len(envelope), check);
        if (r >= 0)
                r = secret_append(envelope, check, sizeof(check));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(envelope);
        return 0;
}

/* Parses a stored value strictly: -EBADMSG for anything but an intact envelope of a known version
 * or a valid legacy raw token. *ret_stored_at is 0 for a legacy value. */
int p11_envelope_parse(const char *label, struct secret *value, struct secret **ret_token,
                       uint64_t *ret_stored_at, const char **ret_why)
{
        const uint8_t *data = secret_data(value);
        size_t len = secret_len(value), token_len;
        uint8_t check[ENVELOPE_CHECK];
        uint64_t stored_at = 0;
        int r;

        if (len == 0) {
                *ret_why = "its value is empty";
                return -EBADMSG;
        }
        if (data[0] != envelope_magic[0]) {
                if (!token_is_valid(secret_str(value), len)) {
                        *ret_why = "its value is not a refresh token";
                        return -EBADMSG;
                }
                r = secret_new_from(data, len, ret_token);
                if (r < 0)
                        return r;
                *ret_stored_at = 0;
                return 0;
        }
        if (len < ENVELOPE_HEADER + 1 + ENVELOPE_CHECK ||
            memcmp(data, envelope_magic, sizeof(envelope_magic)) != 0) {
                *ret_why = "its value is truncated or not an envelope";
                return -EBADMSG;
        }
        if (data[sizeof(envelope_magic)] != ENVELOPE_VERSION) {
                *ret_why = "its envelope has an unknown version (written by a newer credbroker?)";
                return -EBADMSG;
        }
        token_len = len - ENVELOPE_HEADER - ENVELOPE_CHECK;
        r = envelope_check(label, data, len - ENVELOPE_CHECK, check);
        if (r < 0)
                return r;
        if (memcmp(check, data + len - ENVELOPE_CHECK, ENVELOPE_CHECK) != 0) {
                *ret_why = "its check value does not match (its value or label changed)";
                return -EBADMSG;
        }
        if (!token_is_valid((const char *)data + ENVELOPE_HEADER, token_len)) {
                *ret_why = "its value is not a refresh token";
                return -EBADMSG;
        }
        for (size_t i = 0; i < 8; i++)
                stored_at = stored_at << 8 | data[sizeof(envelope_magic) + 1 + i];
        r = secret_new_from(data + ENVELOPE_HEADER, token_len, ret_token);
        if (r < 0)
                return r;
        *ret_stored_at = stored_at;
        return 0;
}

/* One generation's token. -EBADMSG when it is gone, unreadable, oversized or corrupt (logged,
 * but for gone): skipped, never chosen and never fatal. Other errors are the token's, not the
 * object's. */
static int read_generation(struct store *s, const char *account, const struct generation *g,
                           struct secret **ret_token, uint64_t *ret_stored_at)
{
        _cleanup_secret_ struct secret *value = NULL, *token = NULL;
        const char *why = NULL;
        uint64_t stored_at = 0;
        char what[LABEL_MAX];
        int r;

        snprintf(what, sizeof(what), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, g->generation);
        r = p11_read_secret_value(s, g->handle, ENVELOPE_MAX, what, &value);
        if (r == -ENOENT)
                return -EBADMSG; /* destroyed by a concurrent rotation */
        if (r == -EFBIG) {
                log_warning("Skipping refresh token object \"%s\" on token \"%s\": larger "
                            "than %zu bytes.",
                            what, s->token_label, (size_t)ENVELOPE_MAX);
                return -EBADMSG;
        }
        /* An unplugged HSM is not "no refresh token": that would mean needs_reauth. */
        if (r < 0 && p11_error_is_token_wide(s, r))
                return r;
        if (r < 0) {
                log_warning_errno(r,
                                  "Skipping refresh token object \"%s\" on token \"%s\": it "
                                  "cannot be read",
                                  what, s->token_label);
                return -EBADMSG;
        }
        r = p11_envelope_parse(what, value, &token, &stored_at, &why);
        if (r == -EBADMSG)
                log_warning("Skipping refresh token object \"%s\" on token \"%s\": %s.", what,
                            s->token_label, why);
        if (r < 0)
                return r;
        *ret_token = TAKE_PTR(token);
        if (ret_stored_at)
                *ret_stored_at = stored_at;
        return 0;
}

/* The first of generations (newest first) that reads back intact; -ENOENT for none. Corrupt,
 * half-written and vanished generations are skipped (with a warning for the corrupt ones),
 * never chosen and never fatal. */
static int read_first_intact(struct store *s, const char *account,
                             const struct generation *generations, size_t n,
                             struct secret **ret_token, uint64_t *ret_generation,
                             uint64_t *ret_stored_at)
{
        int r;

        for (size_t i = 0; i < n; i++) {
                r = read_generation(s, account, &generations[i], ret_token, ret_stored_at);
                if (r == -EBADMSG)
                        continue;
                if (r < 0)
                        return r;
                if (i > 0)
                        log_warning("Account %s: using refresh token generation %" PRIu64
                                    "; the %zu newer one(s) are unusable.",
                                    account, generations[i].generation, i);
                if (ret_generation)
                        *ret_generation = generations[i].generation;
                return 0;
        }
        return -ENOENT;
}

/* The generations found, newest first, and what the hint remembers of them. */
static void note_generations(struct store *s, const char *account,
                             const struct generation *generations, size_t n,
                             size_t *ret_n_generations)
{
        if (n > 0)
                generation_hint_set(s, account, generations[0].generation,
                                    generations[n - 1].generation, generations[0].handle);
        if (ret_n_generations)
                *ret_n_generations = n;
        if (n > 1)
                log_debug("Account %s has %zu refresh token generations (normal after an "
                          "interrupted rotation).",
                          account, n);
}

/* The newest generation that reads back intact: the hinted one, else those the index leads to,
 * else (no index, or none of those intact) every one a scan finds. */
static int read_newest_intact(struct store *s, const char *account, struct secret **ret_token,
                              uint64_t *ret_generation, uint64_t *ret_stored_at,
                              size_t *ret_n_generations)
{
        _cleanup_free_ struct generation *generations = NULL;
        struct generation hinted;
        size_t n;
        int r;

        /* The hinted generation alone, when it reads back intact (every caller but the count
         * for an administrator, who wants them all). */
        if (!ret_n_generations && hinted_generation(s, account, &hinted) >= 0) {
                r = read_generation(s, account, &hinted, ret_token, ret_stored_at);
                if (r >= 0) {
                        if (ret_generation)
                                *ret_generation = hinted.generation;
                        return 0;
                }
                if (r != -EBADMSG)
                        return r;
        }

        r = probe_generations(s, account, &generations, &n);
        if (r >= 0) {
                note_generations(s, account, generations, n, ret_n_generations);
                r = read_first_intact(s, account, generations, n, ret_token, ret_generation,
                                      ret_stored_at);
                if (r != -ENOENT)
                        return r;
                free(generations);
                generations = NULL;
        }
        if (r != -ENOENT)
                return r;

        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        note_generations(s, account, generations, n, ret_n_generations);
        r = read_first_intact(s, account, generations, n, ret_token, ret_generation, ret_stored_at);
        if (r != -ENOENT)
                return r;
        /* A session that lost its login finds no private object at all: that is the token's
         * trouble (unavailable, retried), not a missing refresh token (needs_reauth). */
        {
                CK_SESSION_INFO info;

                if (!p11_session_is_logged_in(s, &info))
                        return -ENOTCONN;
        }
        return -ENOENT;
}

/* The generations a rotation replaces, from the hint alone: every label in [oldest, newest],
 * when the hinted newest is still there. -ENOENT: look again (the index, or the scan). */
static int hinted_rotation_base(struct store *s, const char *account, struct generation **ret,
                                size_t *ret_n)
{
        struct p11_generation_hint *h = generation_hint_find(s, account);
        _cleanup_free_ struct generation *found = NULL;
        size_t n = 0;
        int r;

        if (!h || h->newest == 0 || h->newest - h->oldest >= PROBE_HITS_MAX)
                return -ENOENT;
        found = calloc(h->newest - h->oldest + 1, sizeof(*found));
        if (!found)
                return -ENOMEM;
        if (h->oldest == h->newest && hinted_handle_is_current(s, account, h)) {
                found[0] = (struct generation){.handle = h->newest_handle, .generation = h->newest};
                *ret = TAKE_PTR(found);
                *ret_n = 1;
                return 0;
        }
        for (uint64_t g = h->newest;; g--) {
                CK_OBJECT_HANDLE handle;
                size_t count;

                r = find_generation(s, account, g, &handle, &count);
                if (r < 0)
                        return r;
                if (count > 1 || (count == 0 && g == h->newest))
                        return -ENOENT;
                if (count == 1)
                        found[n++] = (struct generation){.handle = handle, .generation = g};
                if (g == h->oldest)
                        break;
        }
        *ret = TAKE_PTR(found);
        *ret_n = n;
        return 0;
}

/* What a rotation replaces, newest first: from the hint, else the index, else the scan. */
static int rotation_base(struct store *s, const char *account, struct generation **ret,
                         size_t *ret_n)
{
        int r = hinted_rotation_base(s, account, ret, ret_n);

        if (r == -ENOENT)
                r = probe_generations(s, account, ret, ret_n);
        if (r == -ENOENT)
                r = list_generations(s, account, ret, ret_n);
        return r;
}

/* ---- refresh tokens ---- */

int store_read_refresh_token(struct store *s, const char *account, struct secret **ret_token,
                             uint64_t *ret_generation)
{
        if (!s || !p11_account_is_valid(account) || !ret_token)
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_read_refresh_token(s, account, ret_token, ret_generation, NULL);
        return read_newest_intact(s, account, ret_token, ret_generation, NULL, NULL);
}

/* Destroys the n generations (newest first) a verified write of generation next replaced,
 * oldest first, and stops at the first that will not go (logged; the next rotation retries),
 * so that those left stay consecutive. Returns the oldest generation still present. */
static uint64_t destroy_generations(struct store *s, const char *account,
                                    const struct generation *generations, size_t n, uint64_t next)
{
        for (size_t i = n; i > 0; i--) {
                char old[LABEL_MAX];
                int r;

                snprintf(old, sizeof(old), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i - 1].generation);
                r = p11_destroy_object(s, generations[i - 1].handle, old);
                if (r < 0 && r != -ENOENT) {
                        log_warning("Could not destroy old refresh token \"%s\"; the next "
                                    "rotation retries.",
                                    old);
                        return generations[i - 1].generation;
                }
        }
        return next;
}

/* The new generation, created and read back; on a differing read-back it is destroyed again
 * and the old generations stay (the last token known to be intact). */
static int create_verified(struct store *s, const char *account, const char *label,
                           struct secret *envelope, CK_OBJECT_HANDLE *ret)
{
        _cleanup_secret_ struct secret *back = NULL;
        CK_OBJECT_HANDLE handle;
        int r;

        r = p11_create_data_object(s, label, secret_data(envelope), secret_len(envelope), &handle);
        if (r < 0)
                return r;
        fault_point("after-create");

        /* The whole envelope is compared, so the write time is verified with the token. */
        r = p11_read_secret_value(s, handle, ENVELOPE_MAX, label, &back);
        fault_readback_differs(back);
        if (r >= 0 && secret_equal(back, envelope)) {
                *ret = handle;
                return 0;
        }
        if (p11_destroy_object(s, handle, label) < 0) {
                log_warning("Could not destroy the unverified object \"%s\"; the next rotation "
                            "removes it.",
                            label);
                /* It occupies generation g+1 now: the hint must not lead past it. */
                p11_generation_hints_forget(s, account);
        }
        if (r >= 0 || r == -EFBIG)
                r = log_error_errno(-EIO,
                                    "Refresh token \"%s\" read back from token \"%s\" differs "
                                    "from what was written; keeping the previous generation.",
                                    label, s->token_label);
        return r;
}

int store_write_refresh_token(struct store *s, const char *account, const struct secret *token,
                              uint64_t *ret_generation)
{
        _cleanup_free_ struct generation *generations = NULL;
        _cleanup_secret_ struct secret *envelope = NULL;
        char label[LABEL_MAX];
        CK_OBJECT_HANDLE handle = 0;
        time_t now = time(NULL);
        uint64_t next, oldest;
        size_t n;
        int r;

        if (!s || !p11_account_is_valid(account) || !token)
                return -EINVAL;
        /* Refuse what store_read_refresh_token() would skip as corrupt. */
        if (secret_len(token) > TOKEN_MAX_LEN ||
            !token_is_valid(secret_str(token), secret_len(token)))
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_write_refresh_token(s, account, token, ret_generation);

        /* g is the highest generation present in any state: a corrupt newest one still
         * occupies its number, and reusing it would make two objects claim it. */
        r = rotation_base(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 0 && generations[0].generation == UINT64_MAX)
                return log_error_errno(-EOVERFLOW,
                                       "Account %s has used up its refresh token "
                                       "generations; remove and re-add it.",
                                       account);
        next = n > 0 ? generations[0].generation + 1 : 1;
        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, next);
        r = p11_envelope_build(label, token, now > 0 ? (uint64_t)now : 0, &envelope);
        if (r < 0)
                return r;
        r = create_verified(s, account, label, envelope, &handle);
        if (r < 0)
                return r;
        fault_point("after-readback");

        /* Only now is the new token safely stored. A failure here leaves an extra old
         * generation, which the next rotation removes: no reason to fail the write. */
        oldest = destroy_generations(s, account, generations, n, next);
        fault_point("after-destroy");
        /* Last: the index never leads past a generation that is still present. */
        p11_index_move(s, account, oldest);
        fault_point("after-index");
        generation_hint_set(s, account, next, oldest, handle);

        if (ret_generation)
                *ret_generation = next;
        return 0;
}

int store_refresh_token_info(struct store *s, const char *account,
                             struct store_refresh_token_info *ret)
{
        _cleanup_secret_ struct secret *token = NULL;
        struct store_refresh_token_info info = {0};
        int r;

        if (!s || !p11_account_is_valid(account) || !ret)
                return -EINVAL;
        if (s->wrapped) {
                /* One file, one generation: an interrupted rotation leaves none extra. */
                r = p11_wrapped_read_refresh_token(s, account, &token, &info.generation,
                                                   &info.stored_at);
                info.n_generations = r >= 0;
        } else
                r = read_newest_intact(s, account, &token, &info.generation, &info.stored_at,
                                       &info.n_generations);
        /* With none intact, the count of what is there still helps an administrator. */
        if (r >= 0 || r == -ENOENT)
                *ret = info;
        return r < 0 ? r : 0;
}

/* ---- the refresh marker ----
 *
 * "<account>/refreshing/<g>" says that refresh-token generation g was sent to the token
 * endpoint and the answer has not been acted on. It is written right before a refresh is sent,
 * goes stale as soon as the rotated token is stored (the newest generation is then past g) and
 * is destroyed after an answer that rotated nothing. A broker that finds it naming the newest
 * generation knows the previous run stopped, or lost the rotated token, during a refresh with
 * that token: a server with strict rotation has replaced it, and reauth_required then means a
 * family lost in a crash, not a revocation.
 *
 * The generation is in the label because the label is the one attribute of a data object that
 * SoftHSM2 lets C_SetAttributeValue change (CKA_VALUE is read-only after creation): moving the
 * marker on is one call. The object is found by its exact label, first for the generation about
 * to be sent, then for the one before it (where the last completed refresh left it). Its value
 * is one meaningless byte. A crash while relabelling leaves the marker at either label: at worst a
 * reauth_required is not recognised as crash-lost. */

#define MARKER_INFIX "/refreshing/"

static void marker_label(const char *account, uint64_t generation, char label[static LABEL_MAX])
{
        snprintf(label, LABEL_MAX, "%s" MARKER_INFIX "%" PRIu64, account, generation);
}

/* The marker labelled for generation, if there is one: 0 or its handle in *ret. */
static int marker_find(struct store *s, const char *account, uint64_t generation,
                       CK_OBJECT_HANDLE *ret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n;
        int r;

        *ret = 0;
        if (generation == 0)
                return 0;
        marker_label(account, generation, label);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        if (n > 0)
                *ret = handles[0];
        return 0;
}

/* This store's first look at the account's marker, for generation about to be sent. */
static int marker_look_up(struct store *s, const char *account, uint64_t generation,
                          struct p11_generation_hint *h)
{
        CK_OBJECT_HANDLE handle;
        int r;

        r = marker_find(s, account, generation, &handle);
        if (r < 0)
                return r;
        if (handle != 0) {
                h->marker_handle = handle;
                h->marker_generation = generation;
                h->marker_found = generation; /* the previous run sent it */
        } else {
                r = marker_find(s, account, generation - 1, &handle);
                if (r < 0)
                        return r;
                h->marker_handle = handle;
                h->marker_generation = handle ? generation - 1 : 0;
                h->marker_found = 0;
        }
        h->marker_known = true;
        return 0;
}

static int marker_destroy(struct store *s, const char *account, struct p11_generation_hint *h)
{
        char label[LABEL_MAX];
        int r;

        if (h->marker_handle == 0)
                return 0;
        marker_label(account, h->marker_generation, label);
        r = p11_destroy_object(s, h->marker_handle, label);
        h->marker_handle = 0;
        h->marker_generation = 0;
        return r == -ENOENT ? 0 : r;
}

int store_mark_refresh(struct store *s, const char *account, uint64_t generation,
                       bool *ret_interrupted)
{
        struct p11_generation_hint *h;
        char label[LABEL_MAX];
        CK_ATTRIBUTE attribute = {CKA_LABEL, label, 0};
        static const char nothing[] = "m";
        CK_RV rv;
        int r;

        if (!s || !p11_account_is_valid(account) || generation == UINT64_MAX)
                return -EINVAL;
        if (s->wrapped)
                return p11_wrapped_mark_refresh(s, account, generation, ret_interrupted);
        /* Reads make the hint first; this is out of memory or an unusual order. */
        h = generation_hint_get(s, account);
        if (!h)
                return -ENOMEM;
        if (generation == 0) {
                if (ret_interrupted)
                        *ret_interrupted = false;
                return h->marker_known ? marker_destroy(s, account, h) : 0;
        }
        if (!h->marker_known) {
                r = marker_look_up(s, account, generation, h);
                if (r < 0)
                        return r;
        }
        if (ret_interrupted)
                *ret_interrupted = h->marker_found != 0 && h->marker_found == generation;
        if (h->marker_handle != 0 && h->marker_generation == generation)
                return 0;
        marker_label(account, generation, label);
        if (h->marker_handle != 0) {
                attribute.ulValueLen = strlen(label);
                rv = s->module->C_SetAttributeValue(s->session, h->marker_handle, &attribute, 1);
                if (rv == CKR_OK) {
                        h->marker_generation = generation;
                        return 0;
                }
                h->marker_known = false; /* looked up again next time */
                if (rv != CKR_OBJECT_HANDLE_INVALID) {
                        p11_note_rv(s, rv);
                        return p11_ck_fail(s, "C_SetAttributeValue", label, rv);
                }
                h->marker_known = true; /* destroyed behind our back: made again */
        }
        r = p11_create_data_object(s, label, nothing, 1, &h->marker_handle);
        if (r < 0) {
                h->marker_handle = 0;
                h->marker_known = false;
                return r;
        }
        h->marker_generation = generation;
        return 0;
}
