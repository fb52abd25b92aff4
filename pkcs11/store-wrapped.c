/* The wrapped backend's accounts: loading an account's file (authenticated by the token's key,
 * then checked against the token's counter), and writing the next state in the order of design
 * §6: seal → temporary file → fsync → read back and compare → rename → fsync(dir) → counter. A
 * crash before the rename leaves the old state, after it the new one, which the next load accepts
 * as the counter's successor and finishes. */
#include "store-wrapped.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "fault.h"
#include "log.h"
#include "util.h"

/* ---- the plaintext: records of kind (1 byte), length (4 bytes big-endian), value ---- */

#define RECORD_HEADER 5

static size_t record_max(unsigned kind)
{
        return kind == WRAPPED_KIND_META            ? META_MAX
               : kind == WRAPPED_KIND_REFRESH_TOKEN ? TOKEN_MAX_LEN
                                                    : STORE_CLIENT_SECRET_MAX;
}

/* Checks every record and returns the kinds present; -EBADMSG for anything malformed. */
static int plain_kinds(const struct secret *plain, unsigned *ret)
{
        const uint8_t *p = (const uint8_t *)secret_str(plain);
        size_t len = secret_len(plain), at = 0;
        unsigned kinds = 0;

        while (at < len) {
                unsigned kind;
                size_t n;

                if (len - at < RECORD_HEADER)
                        return -EBADMSG;
                kind = p[at];
                n = (size_t)p[at + 1] << 24 | (size_t)p[at + 2] << 16 | (size_t)p[at + 3] << 8 |
                    p[at + 4];
                if (kind < WRAPPED_KIND_META || kind > WRAPPED_KIND_CLIENT_SECRET ||
                    (kinds & 1u << kind) || n == 0 || n > record_max(kind) ||
                    n > len - at - RECORD_HEADER)
                        return -EBADMSG;
                kinds |= 1u << kind;
                at += RECORD_HEADER + n;
        }
        *ret = kinds;
        return 0;
}

static int plain_find(const struct secret *plain, unsigned kind, const char **ret, size_t *ret_len)
{
        const uint8_t *p = (const uint8_t *)secret_str(plain);
        size_t len = secret_len(plain), at = 0;

        /* plain_kinds() checked the framing when the state was loaded. */
        while (len - at >= RECORD_HEADER) {
                size_t n = (size_t)p[at + 1] << 24 | (size_t)p[at + 2] << 16 |
                           (size_t)p[at + 3] << 8 | p[at + 4];

                if (p[at] == kind) {
                        *ret = (const char *)p + at + RECORD_HEADER;
                        *ret_len = n;
                        return 0;
                }
                at += RECORD_HEADER + n;
        }
        return -ENOENT;
}

/* What a new state holds: each part NULL (absent) or its bytes. */
struct parts {
        const char *value[WRAPPED_KIND_CLIENT_SECRET + 1];
        size_t len[WRAPPED_KIND_CLIENT_SECRET + 1];
};

static int plain_build(const struct parts *parts, struct secret **ret, unsigned *ret_kinds)
{
        _cleanup_secret_ struct secret *plain = NULL;
        size_t total = 0;
        unsigned kinds = 0;
        int r;

        for (unsigned k = WRAPPED_KIND_META; k <= WRAPPED_KIND_CLIENT_SECRET; k++)
                if (parts->value[k])
                        total += RECORD_HEADER + parts->len[k];
        if (total == 0)
                return -EINVAL;
        r = secret_new(total, &plain);
        if (r < 0)
                return r;
        for (unsigned k = WRAPPED_KIND_META; k <= WRAPPED_KIND_CLIENT_SECRET; k++) {
                size_t n = parts->len[k];
                uint8_t header[RECORD_HEADER] = {(uint8_t)k, (uint8_t)(n >> 24), (uint8_t)(n >> 16),
                                                 (uint8_t)(n >> 8), (uint8_t)n};

                if (!parts->value[k])
                        continue;
                r = secret_append(plain, header, sizeof(header));
                if (r >= 0)
                        r = secret_append(plain, parts->value[k], n);
                if (r < 0)
                        return r;
                kinds |= 1u << k;
        }
        *ret = TAKE_PTR(plain);
        *ret_kinds = kinds;
        return 0;
}

/* ---- an account's state ---- */

struct state {
        bool exists;
        struct p11_wrapped_header header;
        bool counter_behind; /* names the state before header's: move it before a write */
        struct secret *plain;
};

static void state_clear(struct state *st)
{
        p11_wrapped_blob_clear(&st->header.blob);
        secret_free(st->plain);
        *st = (struct state){0};
}

static int header_open(struct store *s, const char *account, const struct p11_wrapped_header *h,
                       bool quiet, struct secret **ret)
{
        char context[WRAPPED_CONTEXT_MAX];
        struct p11_wrapped_aad aad = {
            .account = account,
            .kind = WRAPPED_AAD_KIND,
            .generation = h->generation,
            .context = context,
        };
        unsigned kinds;
        int r;

        p11_wrapped_header_context(h, context);
        r = p11_wrapped_open(s, &aad, &h->blob, ret);
        if (r == -EBADMSG && !quiet)
                return log_error_errno(r,
                                       "Account %s: its sealed file in %s does not authenticate "
                                       "(changed, or not sealed for this account).",
                                       account, s->wrapped->dir);
        if (r == -ENOKEY && !quiet)
                return log_error_errno(r, "Account %s: token \"%s\" lacks the key that sealed it.",
                                       account, s->token_label);
        if (r < 0)
                return r;
        if (plain_kinds(*ret, &kinds) < 0 || kinds != h->kinds) {
                secret_free(TAKE_PTR(*ret));
                return quiet ? -EBADMSG
                             : log_error_errno(
                                   -EBADMSG, "Account %s: its sealed file is malformed.", account);
        }
        return 0;
}

static bool same_state(uint64_t generation, const uint8_t *id, uint64_t other_generation,
                       const uint8_t *other_id)
{
        return generation == other_generation && memcmp(id, other_id, WRAPPED_STATE_ID_LEN) == 0;
}

/* A temporary file left by a write that was killed after it was complete (written, fsynced,
 * maybe read back) but before its rename: when it authenticates and is the successor of the
 * state just loaded (or, for an account whose first write stopped, of its counter), the write
 * is finished now, rename and counter, so its refresh token is not lost (design §6: the new
 * generation, once written intact, is the one used). Anything else there is removed. 1: cur is
 * now the promoted state. */
static int promote_tmp(struct store *s, const char *account, struct state *cur)
{
        struct state tmp = {0};
        int r;

        r = p11_wrapped_file_read(s, account, true, &tmp.header);
        if (r == -ENOENT)
                return 0;
        if (r >= 0)
                r = header_open(s, account, &tmp.header, true, &tmp.plain);
        if (r >= 0 && cur->exists &&
            !same_state(tmp.header.prev_generation, tmp.header.prev_id, cur->header.generation,
                        cur->header.id))
                r = -ESTALE;
        if (r >= 0 && !cur->exists) {
                r = p11_wrapped_counter_check(s, account, &tmp.header, true);
                tmp.counter_behind = r == 1;
        }
        if (r >= 0)
                r = p11_wrapped_file_commit(s, account);
        if (r >= 0 && cur->exists) {
                tmp.counter_behind =
                    p11_wrapped_counter_move(s, account, tmp.header.generation, tmp.header.id) < 0;
        }
        if (r == -EBADMSG || r == -ESTALE) {
                (void)p11_wrapped_file_unlink(s, account, true);
                state_clear(&tmp);
                return 0;
        }
        if (r < 0) {
                state_clear(&tmp);
                return r;
        }
        log_notice("Account %s: finished the interrupted write of sealed generation %" PRIu64 ".",
                   account, tmp.header.generation);
        state_clear(cur);
        tmp.exists = true;
        *cur = tmp;
        return 1;
}

/* The account's current state: -ENOENT without a file. The file is authenticated first (a
 * forged header must not move the counter), then checked against the counter. */
static int state_load(struct store *s, const char *account, struct state *ret)
{
        struct state st = {0};
        int r;

        r = store_ensure_session(s);
        if (r < 0)
                return r;
        p11_wrapped_check_epoch(s);
        r = p11_wrapped_file_read(s, account, false, &st.header);
        if (r >= 0)
                r = header_open(s, account, &st.header, false, &st.plain);
        if (r >= 0) {
                r = p11_wrapped_counter_check(s, account, &st.header, false);
                st.counter_behind = r == 1;
        }
        if (r >= 0)
                st.exists = true;
        /* A temporary file is the successor of a state the counter names, never of one ahead. */
        if ((r >= 0 && !st.counter_behind) || r == -ENOENT)
                r = promote_tmp(s, account, &st);
        if (r >= 0 && !st.exists)
                r = -ENOENT;
        if (r < 0) {
                state_clear(&st);
                return r;
        }
        *ret = st;
        return 0;
}

/* Test builds: CREDBROKER_FAULT=readback-differs makes the read-back differ from what was
 * written, as a disk that lost or garbled the write would (the object store has the same). */
static void fault_readback_differs(struct secret *back)
{
#if ENABLE_FAULT_POINTS
        const char *want = secure_getenv("CREDBROKER_FAULT");

        if (back && secret_len(back) > 0 && want && strcmp(want, "readback-differs") == 0)
                secret_data(back)[secret_len(back) - 1] ^= 0x01;
#else
        (void)back;
#endif
}

/* Reads the temporary file back and compares it with what was sealed (design §6, step 3). */
static int verify_tmp(struct store *s, const char *account, const struct p11_wrapped_header *h,
                      const struct secret *plain)
{
        _cleanup_secret_ struct secret *back = NULL;
        struct p11_wrapped_header read = {0};
        int r;

        r = p11_wrapped_file_read(s, account, true, &read);
        if (r >= 0)
                r = header_open(s, account, &read, false, &back);
        fault_readback_differs(back);
        if (r >= 0 && (read.generation != h->generation ||
                       memcmp(read.id, h->id, sizeof(h->id)) != 0 || !secret_equal(back, plain)))
                r = -EIO;
        p11_wrapped_blob_clear(&read.blob);
        if (r < 0)
                return log_error_errno(r == -EIO ? r : -EIO,
                                       "Account %s: the sealed file read back differs from what "
                                       "was written; keeping the previous one.",
                                       account);
        return 0;
}

static void fault(bool rotation, const char *name)
{
        if (rotation)
                fault_point(name);
}

/* Writes the state after cur (which may not exist yet) with parts; rotation names the fault
 * points of a refresh-token rotation (tests/integration/crash.test.js). */
static int state_save(struct store *s, const char *account, struct state *cur,
                      const struct parts *parts, uint64_t rt_generation, uint64_t stored_at,
                      bool rotation)
{
        _cleanup_secret_ struct secret *plain = NULL;
        struct p11_wrapped_header h = {0};
        char context[WRAPPED_CONTEXT_MAX];
        struct p11_wrapped_aad aad = {.account = account, .kind = WRAPPED_AAD_KIND};
        int r;

        if (!cur->exists) {
                r = p11_wrapped_counter_create(s, account, &cur->header.generation, cur->header.id);
                if (r < 0)
                        return r;
        }
        /* The counter must name cur before a successor of cur is written: two steps ahead of
         * it, the file would be refused. */
        if (cur->counter_behind) {
                r = p11_wrapped_counter_move(s, account, cur->header.generation, cur->header.id);
                if (r < 0)
                        return r;
                cur->counter_behind = false;
        }
        if (cur->header.generation == UINT64_MAX)
                return -EOVERFLOW;
        h.generation = cur->header.generation + 1;
        h.prev_generation = cur->header.generation;
        memcpy(h.prev_id, cur->header.id, sizeof(h.prev_id));
        if (gnutls_rnd(GNUTLS_RND_NONCE, h.id, sizeof(h.id)) < 0)
                return -EIO;
        h.refresh_token_generation = rt_generation;
        h.stored_at = stored_at;
        r = plain_build(parts, &plain, &h.kinds);
        if (r < 0)
                return r;
        p11_wrapped_header_context(&h, context);
        aad.generation = h.generation;
        aad.context = context;
        r = p11_wrapped_seal(s, &aad, plain, &h.blob);
        if (r < 0)
                return r;
        r = p11_wrapped_file_write_tmp(s, account, &h);
        if (r >= 0)
                r = verify_tmp(s, account, &h, plain);
        p11_wrapped_blob_clear(&h.blob);
        if (r < 0) {
                (void)p11_wrapped_file_unlink(s, account, true);
                return r;
        }
        fault(rotation, "wrapped-after-write");
        r = p11_wrapped_file_commit(s, account);
        if (r < 0)
                return r;
        fault(rotation, "after-create");
        /* The file is durable: a failure here is finished by the next load (the file is the
         * counter's successor), so the write stands. */
        if (p11_wrapped_counter_move(s, account, h.generation, h.id) < 0)
                log_warning("Account %s: could not move the token's counter on; the next use "
                            "does.",
                            account);
        fault(rotation, "after-readback");
        fault(rotation, "after-destroy");
        return 0;
}

/* The parts of cur, to be carried into the next state. */
static void parts_of(const struct state *cur, struct parts *ret)
{
        *ret = (struct parts){0};
        if (!cur->exists)
                return;
        for (unsigned k = WRAPPED_KIND_META; k <= WRAPPED_KIND_CLIENT_SECRET; k++)
                if (plain_find(cur->plain, k, &ret->value[k], &ret->len[k]) < 0)
                        ret->value[k] = NULL;
}

static int state_load_or_new(struct store *s, const char *account, struct state *ret)
{
        int r = state_load(s, account, ret);

        if (r == -ENOENT) {
                *ret = (struct state){0};
                return 0;
        }
        return r;
}

/* ---- the operations ----
 *
 * Each is tried again once when it failed because the session was lost under it (an HSM
 * restart): the object store's operations begin with a search that reopens the session
 * unnoticed, these use handles found earlier and see the loss only on their first call. Nothing
 * is committed before a failure that can be retried: a write fails before its rename, and a
 * counter that cannot be moved after it does not fail the write. */

static bool retry_after_loss(struct store *s, int r)
{
        return r < 0 && store_session_lost(s) && store_ensure_session(s) >= 0;
}

static int put_meta_once(struct store *s, const char *account, const char *json)
{
        struct state cur = {0};
        struct parts parts;
        int r;

        r = state_load_or_new(s, account, &cur);
        if (r < 0)
                return r;
        parts_of(&cur, &parts);
        parts.value[WRAPPED_KIND_META] = json;
        parts.len[WRAPPED_KIND_META] = strlen(json);
        r = state_save(s, account, &cur, &parts, cur.header.refresh_token_generation,
                       cur.header.stored_at, false);
        state_clear(&cur);
        return r;
}

static int get_meta_once(struct store *s, const char *account, char **ret_json)
{
        struct state cur = {0};
        const char *value;
        size_t len;
        int r;

        r = state_load(s, account, &cur);
        if (r < 0)
                return r;
        r = plain_find(cur.plain, WRAPPED_KIND_META, &value, &len);
        if (r >= 0 && memchr(value, 0, len))
                r = log_error_errno(-EBADMSG, "Account %s: its metadata contains a NUL byte.",
                                    account);
        if (r >= 0) {
                *ret_json = bytes_to_string(value, len);
                if (!*ret_json)
                        r = -ENOMEM;
        }
        state_clear(&cur);
        return r;
}

static int read_refresh_token_once(struct store *s, const char *account, struct secret **ret_token,
                                   uint64_t *ret_generation, uint64_t *ret_stored_at)
{
        struct state cur = {0};
        const char *value;
        size_t len;
        int r;

        r = state_load(s, account, &cur);
        if (r < 0)
                return r;
        r = plain_find(cur.plain, WRAPPED_KIND_REFRESH_TOKEN, &value, &len);
        if (r >= 0 && !token_is_valid(value, len))
                r = log_error_errno(-EBADMSG, "Account %s: its sealed refresh token is malformed.",
                                    account);
        if (r >= 0)
                r = secret_new_from(value, len, ret_token);
        if (r >= 0) {
                if (ret_generation)
                        *ret_generation = cur.header.refresh_token_generation;
                if (ret_stored_at)
                        *ret_stored_at = cur.header.stored_at;
        }
        state_clear(&cur);
        return r;
}

static int write_refresh_token_once(struct store *s, const char *account,
                                    const struct secret *token, uint64_t *ret_generation)
{
        struct state cur = {0};
        struct parts parts;
        time_t now = time(NULL);
        uint64_t next;
        int r;

        r = state_load_or_new(s, account, &cur);
        if (r < 0)
                return r;
        if (cur.header.refresh_token_generation == UINT64_MAX) {
                state_clear(&cur);
                return log_error_errno(-EOVERFLOW,
                                       "Account %s has used up its refresh token generations; "
                                       "remove and re-add it.",
                                       account);
        }
        next = cur.header.refresh_token_generation + 1;
        parts_of(&cur, &parts);
        parts.value[WRAPPED_KIND_REFRESH_TOKEN] = secret_str(token);
        parts.len[WRAPPED_KIND_REFRESH_TOKEN] = secret_len(token);
        r = state_save(s, account, &cur, &parts, next, now > 0 ? (uint64_t)now : 0, true);
        state_clear(&cur);
        if (r >= 0 && ret_generation)
                *ret_generation = next;
        return r;
}

static int put_client_secret_once(struct store *s, const char *account, const struct secret *secret)
{
        struct state cur = {0};
        struct parts parts;
        int r;

        r = state_load_or_new(s, account, &cur);
        if (r < 0)
                return r;
        parts_of(&cur, &parts);
        parts.value[WRAPPED_KIND_CLIENT_SECRET] = secret_str(secret);
        parts.len[WRAPPED_KIND_CLIENT_SECRET] = secret_len(secret);
        r = state_save(s, account, &cur, &parts, cur.header.refresh_token_generation,
                       cur.header.stored_at, false);
        state_clear(&cur);
        return r;
}

static int get_client_secret_once(struct store *s, const char *account, struct secret **ret)
{
        struct state cur = {0};
        const char *value;
        size_t len;
        int r;

        r = state_load(s, account, &cur);
        if (r < 0)
                return r;
        r = plain_find(cur.plain, WRAPPED_KIND_CLIENT_SECRET, &value, &len);
        if (r >= 0)
                r = secret_new_from(value, len, ret);
        state_clear(&cur);
        return r;
}

static int has_client_secret_once(struct store *s, const char *account)
{
        struct state cur = {0};
        int r;

        r = state_load(s, account, &cur);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = (cur.header.kinds & 1u << WRAPPED_KIND_CLIENT_SECRET) != 0;
        state_clear(&cur);
        return r;
}

static void unlockp(int *fd)
{
        p11_wrapped_unlock(*fd);
}

/* Holds the account's lock for the rest of the enclosing block (p11_wrapped_lock()). */
#define LOCK_ACCOUNT(s, account)                                                                   \
        _cleanup_(unlockp) int lock_fd = p11_wrapped_lock(s, account);                             \
        if (lock_fd < 0)                                                                           \
        return lock_fd

/* ---- an account moved in from the object store (store-migrate.c) ---- */

static bool part_differs(const struct parts *parts, unsigned kind, const char *value, size_t len)
{
        return !parts->value[kind] || parts->len[kind] != len ||
               memcmp(parts->value[kind], value, len) != 0;
}

/* Takes into parts what copy holds that cur lacks or holds older; whether anything changed. */
static bool import_parts(const struct state *cur, const struct store_account_copy *copy,
                         struct parts *parts, uint64_t *rt_generation, uint64_t *stored_at)
{
        bool changed = false;

        if (copy->meta && part_differs(parts, WRAPPED_KIND_META, copy->meta, strlen(copy->meta))) {
                parts->value[WRAPPED_KIND_META] = copy->meta;
                parts->len[WRAPPED_KIND_META] = strlen(copy->meta);
                changed = true;
        }
        if (copy->client_secret &&
            part_differs(parts, WRAPPED_KIND_CLIENT_SECRET, secret_str(copy->client_secret),
                         secret_len(copy->client_secret))) {
                parts->value[WRAPPED_KIND_CLIENT_SECRET] = secret_str(copy->client_secret);
                parts->len[WRAPPED_KIND_CLIENT_SECRET] = secret_len(copy->client_secret);
                changed = true;
        }
        /* A newer generation here (never the case while nothing else writes) is kept. */
        if (copy->refresh_token && (!parts->value[WRAPPED_KIND_REFRESH_TOKEN] ||
                                    cur->header.refresh_token_generation < copy->generation)) {
                parts->value[WRAPPED_KIND_REFRESH_TOKEN] = secret_str(copy->refresh_token);
                parts->len[WRAPPED_KIND_REFRESH_TOKEN] = secret_len(copy->refresh_token);
                *rt_generation = copy->generation;
                *stored_at = copy->stored_at;
                changed = true;
        }
        return changed;
}

static int import_once(struct store *s, const char *account, const struct store_account_copy *copy)
{
        struct state cur = {0};
        struct parts parts;
        uint64_t rt_generation, stored_at;
        int r;

        r = state_load_or_new(s, account, &cur);
        if (r < 0)
                return r;
        parts_of(&cur, &parts);
        rt_generation = cur.header.refresh_token_generation;
        stored_at = cur.header.stored_at;
        if (!import_parts(&cur, copy, &parts, &rt_generation, &stored_at)) {
                state_clear(&cur);
                return 1;
        }
        r = state_save(s, account, &cur, &parts, rt_generation, stored_at, false);
        state_clear(&cur);
        return r;
}

int p11_wrapped_put_meta(struct store *s, const char *account, const char *json)
{
        LOCK_ACCOUNT(s, account);
        int r = put_meta_once(s, account, json);

        return retry_after_loss(s, r) ? put_meta_once(s, account, json) : r;
}

int p11_wrapped_get_meta(struct store *s, const char *account, char **ret_json)
{
        LOCK_ACCOUNT(s, account);
        int r = get_meta_once(s, account, ret_json);

        return retry_after_loss(s, r) ? get_meta_once(s, account, ret_json) : r;
}

int p11_wrapped_read_refresh_token(struct store *s, const char *account, struct secret **ret_token,
                                   uint64_t *ret_generation, uint64_t *ret_stored_at)
{
        LOCK_ACCOUNT(s, account);
        int r = read_refresh_token_once(s, account, ret_token, ret_generation, ret_stored_at);

        return retry_after_loss(s, r)
                   ? read_refresh_token_once(s, account, ret_token, ret_generation, ret_stored_at)
                   : r;
}

int p11_wrapped_write_refresh_token(struct store *s, const char *account,
                                    const struct secret *token, uint64_t *ret_generation)
{
        LOCK_ACCOUNT(s, account);
        int r = write_refresh_token_once(s, account, token, ret_generation);

        return retry_after_loss(s, r) ? write_refresh_token_once(s, account, token, ret_generation)
                                      : r;
}

int p11_wrapped_put_client_secret(struct store *s, const char *account, const struct secret *secret)
{
        LOCK_ACCOUNT(s, account);
        int r = put_client_secret_once(s, account, secret);

        return retry_after_loss(s, r) ? put_client_secret_once(s, account, secret) : r;
}

int p11_wrapped_get_client_secret(struct store *s, const char *account, struct secret **ret)
{
        LOCK_ACCOUNT(s, account);
        int r = get_client_secret_once(s, account, ret);

        return retry_after_loss(s, r) ? get_client_secret_once(s, account, ret) : r;
}

int p11_wrapped_import(struct store *s, const char *account, const struct store_account_copy *copy)
{
        LOCK_ACCOUNT(s, account);
        int r = import_once(s, account, copy);

        return retry_after_loss(s, r) ? import_once(s, account, copy) : r;
}

int p11_wrapped_mark_refresh(struct store *s, const char *account, uint64_t generation,
                             bool *ret_interrupted)
{
        LOCK_ACCOUNT(s, account);
        int r = p11_wrapped_counter_mark(s, account, generation, ret_interrupted);

        return retry_after_loss(s, r)
                   ? p11_wrapped_counter_mark(s, account, generation, ret_interrupted)
                   : r;
}

int p11_wrapped_has_client_secret(struct store *s, const char *account)
{
        LOCK_ACCOUNT(s, account);
        int r = has_client_secret_once(s, account);

        return retry_after_loss(s, r) ? has_client_secret_once(s, account) : r;
}

/* ---- removal and listing ---- */

int p11_wrapped_remove(struct store *s, const char *account, struct p11_wrapped_removed *ret)
{
        struct p11_wrapped_header h = {0};
        struct p11_wrapped_removed removed = {0};
        LOCK_ACCOUNT(s, account);
        int r;

        /* What the header says is only for the report: a file that fails its checks goes too. */
        r = p11_wrapped_file_read(s, account, false, &h);
        if (r >= 0) {
                removed.meta = h.kinds & 1u << WRAPPED_KIND_META;
                removed.client_secret = h.kinds & 1u << WRAPPED_KIND_CLIENT_SECRET;
                if (h.kinds & 1u << WRAPPED_KIND_REFRESH_TOKEN)
                        removed.refresh_token_generation = h.refresh_token_generation;
                p11_wrapped_blob_clear(&h.blob);
        }
        (void)p11_wrapped_file_unlink(s, account, true);
        r = p11_wrapped_file_unlink(s, account, false);
        if (r < 0 && r != -ENOENT)
                return r;
        removed.file = r >= 0;
        /* Between the file and the counters (credbroker store migrate's crash tests). */
        fault_point("migrate-drop-midway");
        r = p11_wrapped_counters_destroy(s, account, &removed.counters);
        if (r < 0)
                return r;
        *ret = removed;
        return 0;
}

int p11_wrapped_list(struct store *s, bool with_meta, char ***names, size_t *n, size_t *allocated)
{
        struct p11_wrapped *w = s->wrapped;
        struct dirent *entry;
        DIR *dir;
        int fd, r = 0;

        fd = dup(w->dir_fd);
        if (fd < 0)
                return -errno;
        dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return -errno;
        }
        rewinddir(dir);
        while (r >= 0 && (entry = readdir(dir))) {
                const char *name = entry->d_name;
                size_t len = strlen(name);
                char account[NAME_MAX_LEN + 1];
                struct p11_wrapped_header h = {0};

                if (name[0] == '.' || len <= strlen(WRAPPED_FILE_SUFFIX) ||
                    len - strlen(WRAPPED_FILE_SUFFIX) > NAME_MAX_LEN ||
                    strcmp(name + len - strlen(WRAPPED_FILE_SUFFIX), WRAPPED_FILE_SUFFIX) != 0)
                        continue;
                snprintf(account, sizeof(account), "%.*s", (int)(len - strlen(WRAPPED_FILE_SUFFIX)),
                         name);
                if (!p11_account_is_valid(account))
                        continue;
                /* Listing reads headers only: which kinds a file holds is checked when used. */
                if (with_meta) {
                        if (p11_wrapped_file_read(s, account, false, &h) < 0)
                                continue;
                        p11_wrapped_blob_clear(&h.blob);
                        if (!(h.kinds & 1u << WRAPPED_KIND_META))
                                continue;
                }
                r = p11_names_add(names, n, allocated, account, strlen(account));
        }
        closedir(dir);
        return r;
}
