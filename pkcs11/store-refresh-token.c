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

/* Every "<account>/refresh_token/<g>" object, whatever its value, newest first. */
static int list_generations(struct store *s, const char *account, struct generation **ret,
                            size_t *ret_n)
{
        struct p11_data_object *objects = NULL;
        char prefix[NAME_MAX_LEN + sizeof(REFRESH_TOKEN_INFIX)];
        struct generation *generations;
        size_t n_objects, n = 0;
        int r;

        snprintf(prefix, sizeof(prefix), "%s" REFRESH_TOKEN_INFIX, account);
        r = p11_list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        generations = calloc(n_objects ? n_objects : 1, sizeof(*generations));
        if (!generations) {
                p11_data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objects; i++) {
                uint64_t g;

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
        qsort(generations, n, sizeof(*generations), compare_generation_desc);
        *ret = generations;
        *ret_n = n;
        return 0;
}

/* ---- generation hints ----
 *
 * Searches match labels exactly, never by prefix, so finding an account's generations means
 * reading the label of every data object in the token: hundreds of calls with a hundred accounts,
 * each a network round trip through p11-kit-client. Once an account's generations have been
 * scanned, its newest generation number is remembered, and later reads and rotations look that
 * one label up. The hint is only a shortcut: a generation it names that is gone or unusable falls
 * back to the full scan, and so does a rotation after which older generations may be left. */

struct p11_generation_hint {
        char account[NAME_MAX_LEN + 1];
        uint64_t newest;
        /* The newest is the only generation present: a rotation need destroy only it. */
        bool only_one;
        /* The refresh marker (store_mark_refresh()), once looked up: its object (0: none yet)
         * and what the previous run left in it. */
        bool marker_known;
        CK_OBJECT_HANDLE marker_handle;
        uint64_t marker_generation; /* what marker_handle's label names */
        uint64_t marker_found;      /* the generation it named at the first look, 0: other */
};

static struct p11_generation_hint *generation_hint_find(struct store *s, const char *account)
{
        for (size_t i = 0; i < s->n_generation_hints; i++)
                if (strcmp(s->generation_hints[i].account, account) == 0)
                        return &s->generation_hints[i];
        return NULL;
}

/* Remembering is an optimisation: out of memory, the next operation scans again. */
static void generation_hint_set(struct store *s, const char *account, uint64_t newest,
                                bool only_one)
{
        struct p11_generation_hint *h = generation_hint_find(s, account), *grown;

        if (!h) {
                grown =
                    reallocarray(s->generation_hints, s->n_generation_hints + 1, sizeof(*grown));
                if (!grown)
                        return;
                s->generation_hints = grown;
                h = &grown[s->n_generation_hints++];
                *h = (struct p11_generation_hint){0};
                snprintf(h->account, sizeof(h->account), "%s", account);
        }
        h->newest = newest;
        h->only_one = only_one;
}

void p11_generation_hints_forget(struct store *s, const char *account)
{
        struct p11_generation_hint *h = generation_hint_find(s, account);

        if (h)
                *h = s->generation_hints[--s->n_generation_hints];
}

void p11_generation_hints_free(struct store *s)
{
        free(s->generation_hints);
        s->generation_hints = NULL;
        s->n_generation_hints = 0;
}

/* The hinted newest generation of account, looked up by its exact label: 0 or 1 of them in
 * *ret (-ENOENT without a hint, or when the hint names a label that matches no single object). */
static int hinted_generation(struct store *s, const char *account, struct generation *ret)
{
        struct p11_generation_hint *h = generation_hint_find(s, account);
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[LABEL_MAX];
        size_t n;
        int r;

        if (!h)
                return -ENOENT;
        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, h->newest);
        r = p11_find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        if (n != 1)
                return -ENOENT;
        *ret = (struct generation){.handle = handles[0], .generation = h->newest};
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

static const uint8_t envelope_magic[5] = {0x00, 'c', 'b', 'r', 't'};
#define ENVELOPE_VERSION 1
#define ENVELOPE_HEADER  (sizeof(envelope_magic) + 1 + 8)
#define ENVELOPE_CHECK   8
#define ENVELOPE_MAX     (ENVELOPE_HEADER + TOKEN_MAX_LEN + ENVELOPE_CHECK)

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

static int envelope_build(const char *label, const struct secret *token, uint64_t stored_at,
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
static int envelope_parse(const char *label, struct secret *value, struct secret **ret_token,
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
        r = envelope_parse(what, value, &token, &stored_at, &why);
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

/* The newest generation that reads back intact. Corrupt, half-written and vanished generations
 * are skipped (with a warning for the corrupt ones), never chosen and never fatal. */
static int read_newest_intact(struct store *s, const char *account, struct secret **ret_token,
                              uint64_t *ret_generation, uint64_t *ret_stored_at,
                              size_t *ret_n_generations)
{
        _cleanup_free_ struct generation *generations = NULL;
        struct generation hinted;
        size_t n;
        int r;

        /* The hinted generation alone, when it reads back intact (every caller but the count
         * for an administrator, who wants the scan). */
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

        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 0)
                generation_hint_set(s, account, generations[0].generation, n == 1);
        if (ret_n_generations)
                *ret_n_generations = n;
        if (n > 1)
                log_debug("Account %s has %zu refresh token generations (normal after an "
                          "interrupted rotation).",
                          account, n);

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
        /* A session that lost its login finds no private object at all: that is the token's
         * trouble (unavailable, retried), not a missing refresh token (needs_reauth). */
        {
                CK_SESSION_INFO info;

                if (!p11_session_is_logged_in(s, &info))
                        return -ENOTCONN;
        }
        return -ENOENT;
}

/* The generations a rotation replaces, from the hint alone: only when the hinted newest is
 * known to be the only generation and is still there. -ENOENT: scan instead. */
static int hinted_rotation_base(struct store *s, const char *account, struct generation **ret,
                                size_t *ret_n)
{
        struct p11_generation_hint *h = generation_hint_find(s, account);
        struct generation *g;
        int r;

        if (!h || !h->only_one)
                return -ENOENT;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        r = hinted_generation(s, account, g);
        if (r < 0) {
                free(g);
                return r;
        }
        *ret = g;
        *ret_n = 1;
        return 0;
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

/* Destroys the n generations a verified write replaced; whether all are gone (a failure is
 * logged and left to the next rotation). */
static bool destroy_generations(struct store *s, const char *account,
                                const struct generation *generations, size_t n)
{
        bool all = true;

        for (size_t i = 0; i < n; i++) {
                char old[LABEL_MAX];
                int r;

                snprintf(old, sizeof(old), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i].generation);
                r = p11_destroy_object(s, generations[i].handle, old);
                if (r < 0 && r != -ENOENT) {
                        log_warning("Could not destroy old refresh token \"%s\"; the next "
                                    "rotation retries.",
                                    old);
                        all = false;
                }
        }
        return all;
}

int store_write_refresh_token(struct store *s, const char *account, const struct secret *token,
                              uint64_t *ret_generation)
{
        _cleanup_free_ struct generation *generations = NULL;
        _cleanup_secret_ struct secret *envelope = NULL, *back = NULL;
        char label[LABEL_MAX];
        CK_OBJECT_HANDLE handle;
        time_t now = time(NULL);
        bool only_one;
        uint64_t next;
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
         * occupies its number, and reusing it would make two objects claim it. A hint that
         * knows the newest to be the only one saves the scan. */
        r = hinted_rotation_base(s, account, &generations, &n);
        if (r == -ENOENT)
                r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 0 && generations[0].generation == UINT64_MAX)
                return log_error_errno(-EOVERFLOW,
                                       "Account %s has used up its refresh token "
                                       "generations; remove and re-add it.",
                                       account);
        next = n > 0 ? generations[0].generation + 1 : 1;
        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, next);
        r = envelope_build(label, token, now > 0 ? (uint64_t)now : 0, &envelope);
        if (r < 0)
                return r;

        r = p11_create_data_object(s, label, secret_data(envelope), secret_len(envelope), &handle);
        if (r < 0)
                return r;
        fault_point("after-create");

        /* The whole envelope is compared, so the write time is verified with the token. */
        r = p11_read_secret_value(s, handle, ENVELOPE_MAX, label, &back);
        fault_readback_differs(back);
        if (r < 0 || !secret_equal(back, envelope)) {
                /* The old generations stay: they are the last token known to be intact. */
                if (p11_destroy_object(s, handle, label) < 0) {
                        log_warning("Could not destroy the unverified object \"%s\"; the next "
                                    "rotation removes it.",
                                    label);
                        /* It occupies generation g+1 now: only a scan sees it. */
                        p11_generation_hints_forget(s, account);
                }
                if (r >= 0 || r == -EFBIG)
                        r = log_error_errno(-EIO,
                                            "Refresh token \"%s\" read back from token "
                                            "\"%s\" differs from what was written; "
                                            "keeping the previous generation.",
                                            label, s->token_label);
                return r;
        }
        fault_point("after-readback");

        /* Only now is the new token safely stored. A failure here leaves an extra old
         * generation, which the next rotation removes: no reason to fail the write. */
        only_one = destroy_generations(s, account, generations, n);
        fault_point("after-destroy");
        generation_hint_set(s, account, next, only_one);

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
        h = generation_hint_find(s, account);
        if (!h) {
                /* Reads set the hint first; this is out of memory or an unusual order. */
                generation_hint_set(s, account, 0, false);
                h = generation_hint_find(s, account);
                if (!h)
                        return -ENOMEM;
        }
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
