/* The wrapped backend's rollback guard: the token holds, for every account, the one file state
 * (generation, id) that may be used, and whether a refresh is in flight (the refresh marker).
 *
 * They are kept in WRAPPED_SHARDS shard objects, not one object per account: SoftHSM2's file
 * store re-reads its token directory and stats every object file on each call, so a call's cost
 * grows with the number of objects in the token (75 ms per refresh at 10,000 accounts with an
 * object per account, against 7 ms at one; issue 14). With shards the token holds a fixed number
 * of objects whatever the number of accounts.
 *
 * A shard is a CKO_DATA object, private, CKA_APPLICATION "credbroker/wrapped-counters/<k>",
 * labelled "credbroker/wrapped-counters/<k>/<version>", whose CKA_VALUE is one line per account
 * of the shard, sorted by name:
 *
 *     <account> <generation> <id, hex> <refresh marker: generation, 0 for none> <run id, hex>
 *
 * Changing it creates the next version and then destroys the previous one, never
 * C_SetAttributeValue: SoftHSM2 rewrites an object's file in place (ftruncate, then write), so a
 * kill between the two would lose every counter of the shard, while a torn C_CreateObject leaves
 * no object with our label and C_DestroyObject is an unlink (docs/softhsm-torn-writes.md). After
 * a crash between the create and the destroy, the newest version rules and the older ones are
 * destroyed at the next use. Every use of a shard holds its lock (a file in the wrapped
 * directory) from the search to the last write, after the account's lock: the CLI and the broker
 * never change one shard at once, and no one reads a shard between a create and its destroy.
 *
 * A search is what a shard costs most: SoftHSM2 opens, locks and stats every object's file on
 * it, so with 16 shards in the token a refresh (five loads of its shard) cost twice the CPU it
 * costs with one. So the lock file also holds the shard's change stamp, a random value whoever
 * changes the shard writes first, under the lock. A load that finds the stamp it last saw, and
 * its kept object still in the token under its label, uses what it kept without a search. */
#include "store-wrapped.h"

#include "build-config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"

/* One line: account, two generations, the id and the run id in hex, four separators and the
 * newline. */
#define ENTRY_LINE_MAX (NAME_MAX_LEN + 2 * 20 + 2 * (WRAPPED_STATE_ID_LEN + WRAPPED_RUN_ID_LEN) + 5)

struct counter {
        char account[NAME_MAX_LEN + 1];
        /* The rest of its line, as the shard's value has it, until the counter is used: a load
         * checks every line's name and order, and only the used line's fields (a shard of 10,000
         * accounts has 625 lines, and a refresh loads it four times). NULL once parsed. */
        const char *raw;
        uint64_t generation;
        uint8_t id[WRAPPED_STATE_ID_LEN];
        uint64_t refreshing; /* the refresh-token generation sent and not acted on; 0: none */
        uint8_t run[WRAPPED_RUN_ID_LEN]; /* the process that sent it (p11_wrapped.run_id) */
};

struct shard {
        unsigned index;
        int lock_fd;
        uint64_t stamp;           /* in its lock file when it was locked; 0: none */
        uint64_t version;         /* of its object; 0: the shard has none */
        CK_OBJECT_HANDLE object;  /* its newest version */
        struct counter *counters; /* sorted by account */
        size_t n, allocated;
        char *text; /* the value the unparsed counters point into */
};

unsigned p11_wrapped_shard_of(const char *account)
{
        uint32_t h = 2166136261u;

        for (const char *p = account; *p; p++)
                h = (h ^ (uint8_t)*p) * 16777619u;
        return h % WRAPPED_SHARDS;
}

static void shard_clear(struct shard *sh)
{
        p11_wrapped_unlock(sh->lock_fd);
        free(sh->counters);
        free(sh->text);
        *sh = (struct shard){.lock_fd = -1};
}

#define _cleanup_shard_ _cleanup_(shard_clear)

/* ---- the value: text, one line per account ---- */

/* Room for at least n counters. */
static int shard_reserve(struct shard *sh, size_t n)
{
        struct counter *p;

        if (n <= sh->allocated)
                return 0;
        p = reallocarray(sh->counters, n, sizeof(*p));
        if (!p)
                return -ENOMEM;
        sh->counters = p;
        sh->allocated = n;
        return 0;
}

static int shard_add(struct shard *sh, size_t at, const struct counter *c)
{
        if (sh->n == sh->allocated) {
                int r = shard_reserve(sh, sh->allocated ? sh->allocated * 2 : 16);

                if (r < 0)
                        return r;
        }
        memmove(&sh->counters[at + 1], &sh->counters[at], (sh->n - at) * sizeof(*sh->counters));
        sh->counters[at] = *c;
        sh->n++;
        return 0;
}

static int parse_hex_field(const char *text, uint8_t out[static WRAPPED_STATE_ID_LEN])
{
        return hex_decode(text, strlen(text), out, WRAPPED_STATE_ID_LEN);
}

/* The fields after a counter's name: generation, id, refresh marker, run id. */
static int parse_fields(char *rest, struct counter *ret)
{
        char *fields[4], *save = NULL;
        size_t n = 0;

        for (char *f = strtok_r(rest, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
                if (n == ELEMENTSOF(fields))
                        return -EBADMSG;
                fields[n++] = f;
        }
        if (n != ELEMENTSOF(fields) || parse_u64(fields[0], &ret->generation) < 0 ||
            parse_hex_field(fields[1], ret->id) < 0 || parse_u64(fields[2], &ret->refreshing) < 0 ||
            parse_hex_field(fields[3], ret->run) < 0)
                return -EBADMSG;
        return 0;
}

/* Parses what a load left unparsed of c; -EBADMSG (logged) when it is malformed. */
static int counter_parse(const struct shard *sh, struct counter *c)
{
        char rest[ENTRY_LINE_MAX];

        if (!c->raw)
                return 0;
        snprintf(rest, sizeof(rest), "%.*s", (int)strcspn(c->raw, "\n"), c->raw);
        if (parse_fields(rest, c) < 0)
                return log_error_errno(-EBADMSG,
                                       "Counter shard %u: the line of account %s is malformed: "
                                       "refusing the account.",
                                       sh->index, c->account);
        c->raw = NULL;
        return 0;
}

/* Every line's name: well formed, of this shard, in order, each once; the rest stays raw. A
 * value this process kept (checked when it came from the token, or printed from checked
 * counters) is trusted: at 10,000 accounts a shard has 625 lines, and a refresh loads it five
 * times. */
static int shard_parse(struct shard *sh, const char *text, size_t len, bool trusted)
{
        const char *line = text, *end = text + len;
        size_t lines = 0;
        int r;

        if (strlen(text) != len)
                return -EBADMSG;
        for (const char *p = text; (p = memchr(p, '\n', (size_t)(end - p))); p++)
                lines++;
        r = shard_reserve(sh, lines);
        if (r < 0)
                return r;
        while (line < end) {
                const char *newline = memchr(line, '\n', (size_t)(end - line));
                const char *space = newline ? memchr(line, ' ', (size_t)(newline - line)) : NULL;
                struct counter *c;

                if (!space || (size_t)(newline - line) >= ENTRY_LINE_MAX ||
                    (size_t)(space - line) > NAME_MAX_LEN)
                        return -EBADMSG;
                c = &sh->counters[sh->n];
                *c = (struct counter){.raw = space + 1};
                memcpy(c->account, line, (size_t)(space - line));
                if (!trusted &&
                    (!p11_account_is_valid(c->account) ||
                     p11_wrapped_shard_of(c->account) != sh->index ||
                     (sh->n > 0 && strcmp(sh->counters[sh->n - 1].account, c->account) >= 0)))
                        return -EBADMSG;
                sh->n++;
                line = newline + 1;
        }
        return 0;
}

static char *shard_print(const struct shard *sh, size_t *ret_len)
{
        char *text = malloc(sh->n * ENTRY_LINE_MAX + 1);
        size_t at = 0;

        if (!text)
                return NULL;
        for (size_t i = 0; i < sh->n; i++) {
                const struct counter *c = &sh->counters[i];
                char id[2 * WRAPPED_STATE_ID_LEN + 1], run[2 * WRAPPED_RUN_ID_LEN + 1];

                if (c->raw) { /* unchanged: as it was, copied (625 snprintf()s were slow) */
                        size_t name = strlen(c->account), rest = strcspn(c->raw, "\n");

                        memcpy(text + at, c->account, name);
                        text[at + name] = ' ';
                        memcpy(text + at + name + 1, c->raw, rest);
                        text[at + name + 1 + rest] = '\n';
                        at += name + rest + 2;
                        continue;
                }
                hex_encode(c->id, sizeof(c->id), id);
                hex_encode(c->run, sizeof(c->run), run);
                at += (size_t)snprintf(text + at, ENTRY_LINE_MAX + 1,
                                       "%s %" PRIu64 " %s %" PRIu64 " %s\n", c->account,
                                       c->generation, id, c->refreshing, run);
        }
        text[at] = 0;
        *ret_len = at;
        return text;
}

/* ---- the shard's objects ---- */

static void shard_application(unsigned index, char out[static LABEL_MAX])
{
        snprintf(out, LABEL_MAX, WRAPPED_SHARD_PREFIX "%u", index);
}

/* The version a shard label names, 0 when it is not one of this shard's. */
static uint64_t label_version(unsigned index, const char *label)
{
        char prefix[LABEL_MAX];
        uint64_t v;

        snprintf(prefix, sizeof(prefix), WRAPPED_SHARD_PREFIX "%u/", index);
        if (!p11_parse_generation(label, prefix, &v))
                return 0;
        return v;
}

/* Every object of shard sh->index, the newest first (the others are what a crash between a
 * create and a destroy left); its version in sh->version, 0 when there is none. */
static int shard_find_objects(struct store *s, struct shard *sh, CK_OBJECT_HANDLE **ret,
                              size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char application[LABEL_MAX];
        size_t n, kept = 0, newest = 0;
        int r;

        shard_application(sh->index, application);
        r = p11_find_app_objects(s, application, NULL, &handles, &n);
        if (r < 0)
                return r;
        p11_wrapped_check_epoch(s); /* the search may have opened the session again */
        for (size_t i = 0; i < n; i++) {
                CK_OBJECT_HANDLE h = handles[i];
                char label[LABEL_MAX + 1];
                uint64_t v;

                r = p11_get_label(s, h, label);
                if (r == -EBADMSG || r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                v = label_version(sh->index, label);
                if (v == 0)
                        continue; /* not one of ours */
                if (v > sh->version) {
                        sh->version = v;
                        newest = kept;
                }
                handles[kept++] = h;
        }
        if (kept > 0) { /* the newest first */
                CK_OBJECT_HANDLE h = handles[newest];

                handles[newest] = handles[0];
                handles[0] = h;
        }
        *ret = TAKE_PTR(handles);
        *ret_n = kept;
        return 0;
}

static void destroy_version(struct store *s, const struct shard *sh, CK_OBJECT_HANDLE handle)
{
        if (p11_destroy_object(s, handle, "an older counter shard") < 0)
                log_warning("Could not destroy an older version of counter shard %u; the next use "
                            "does.",
                            sh->index);
}

/* ---- the change stamp, in the shard's lock file ---- */

#define STAMP_HEX_LEN (2 * sizeof(uint64_t))

/* The stamp the lock file holds: 0 when it holds none (a new file, or one a crash tore). */
static uint64_t stamp_read(int lock_fd)
{
        char text[STAMP_HEX_LEN + 2];
        uint8_t raw[sizeof(uint64_t)];
        uint64_t stamp;

        if (pread(lock_fd, text, sizeof(text), 0) != STAMP_HEX_LEN + 1 ||
            text[STAMP_HEX_LEN] != '\n' || hex_decode(text, STAMP_HEX_LEN, raw, sizeof(raw)) < 0)
                return 0;
        memcpy(&stamp, raw, sizeof(stamp));
        return stamp;
}

/* Writes a new stamp before the shard changes: every process's kept copy is then stale. */
static int stamp_write(struct shard *sh)
{
        char text[STAMP_HEX_LEN + 1];
        uint8_t raw[sizeof(uint64_t)];

        do {
                if (gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof(raw)) < 0)
                        return -EIO;
                memcpy(&sh->stamp, raw, sizeof(sh->stamp));
        } while (sh->stamp == 0);
        hex_encode(raw, sizeof(raw), text);
        text[STAMP_HEX_LEN] = '\n';
        if (pwrite(sh->lock_fd, text, sizeof(text), 0) != (ssize_t)sizeof(text))
                return log_error_errno(errno > 0 ? -errno : -EIO,
                                       "Counter shard %u: failed to write its change stamp",
                                       sh->index);
        return 0;
}

/* ---- the shards' values, kept between uses ----
 *
 * A refresh loads its account's shard five times (marking the refresh, reading the refresh
 * token, checking the rotated file, moving the counter, clearing the mark), and at 10,000
 * accounts a shard's value is some 30 KB that SoftHSM2 decrypts and copies on every read: 3.4 ms
 * of a refresh's CPU (docs/benchmark.md). The store keeps each shard's value as it last read or
 * wrote it, and uses it only while the shard's newest version is still that very object: same
 * version, same object handle, same session epoch. Another process's change is a new object,
 * which is read. The values hold names, generations and ids, no secret: about 52 bytes an
 * account. */

static bool shard_is_kept(const struct store *s, const struct shard *sh)
{
        const struct p11_wrapped_kept_shard *k = &s->wrapped->kept_shards[sh->index];

        return k->version != 0 && k->version == sh->version && k->object == sh->object &&
               k->epoch == s->session_epoch;
}

static void shard_forget(struct store *s, unsigned index)
{
        struct p11_wrapped_kept_shard *k = &s->wrapped->kept_shards[index];

        free(k->text);
        *k = (struct p11_wrapped_kept_shard){0};
}

/* Keeps text (taken; NULL keeps nothing), the value of sh's newest version (sh->object). */
static void shard_keep(struct store *s, const struct shard *sh, char *text, size_t len)
{
        shard_forget(s, sh->index);
        if (text)
                s->wrapped->kept_shards[sh->index] =
                    (struct p11_wrapped_kept_shard){.epoch = s->session_epoch,
                                                    .stamp = sh->stamp,
                                                    .version = sh->version,
                                                    .object = sh->object,
                                                    .text = text,
                                                    .len = len};
}

/* Whether the kept copy of sh is still its newest version, found without a search: the lock
 * file holds the stamp it was kept with (nobody changed the shard since), and its object is still
 * in the token under its label (nobody destroyed it, even with the stamp put back). */
static bool shard_kept_is_current(struct store *s, struct shard *sh)
{
        const struct p11_wrapped_kept_shard *k = &s->wrapped->kept_shards[sh->index];
        char label[LABEL_MAX + 1], want[LABEL_MAX];

        if (k->version == 0 || k->stamp == 0 || k->stamp != sh->stamp ||
            k->epoch != s->session_epoch)
                return false;
        snprintf(want, sizeof(want), WRAPPED_SHARD_PREFIX "%u/%" PRIu64, sh->index, k->version);
        /* The read may have opened the session again, which makes the handle another's. */
        if (p11_get_label(s, k->object, label) < 0 || strcmp(label, want) != 0 ||
            k->epoch != s->session_epoch)
                return false;
        sh->version = k->version;
        sh->object = k->object;
        return true;
}

/* The value of sh's newest version: the kept copy when it is of that object (*ret_kept), else
 * the token's, which the caller keeps once it has checked it. */
static int shard_read_value(struct store *s, const struct shard *sh, char **ret, size_t *ret_len,
                            bool *ret_kept)
{
        struct p11_wrapped_kept_shard *k = &s->wrapped->kept_shards[sh->index];

        *ret_kept = shard_is_kept(s, sh);
        if (*ret_kept) {
                k->stamp = sh->stamp; /* a search under the lock found it: the stamp is its */
                *ret = bytes_to_string(k->text, k->len);
                *ret_len = k->len;
                return *ret ? 0 : -ENOMEM;
        }
        return p11_read_attribute(s, sh->object, CKA_VALUE, WRAPPED_SHARD_VALUE_MAX,
                                  "a counter shard", (void **)ret, ret_len);
}

/* ---- loading and saving ---- */

/* Locks shard index and reads its newest version; the older ones, once it is read, go. */
static int shard_load_index(struct store *s, unsigned index, struct shard *ret)
{
        _cleanup_shard_ struct shard sh = {.index = index, .lock_fd = -1};
        _cleanup_free_ CK_OBJECT_HANDLE *objects = NULL;
        size_t n_objects = 0, len;
        int r;

        sh.lock_fd = p11_wrapped_lock_shard(s, sh.index);
        if (sh.lock_fd < 0)
                return sh.lock_fd;
        sh.stamp = stamp_read(sh.lock_fd);
        if (shard_kept_is_current(s, &sh))
                n_objects = 1;
        else {
                r = shard_find_objects(s, &sh, &objects, &n_objects);
                if (r < 0)
                        return r;
                if (n_objects > 0)
                        sh.object = objects[0];
        }
        if (n_objects > 0) {
                bool kept;

                r = shard_read_value(s, &sh, &sh.text, &len, &kept);
                if (r >= 0)
                        r = shard_parse(&sh, sh.text, len, kept);
                if (r >= 0 && !kept)
                        shard_keep(s, &sh, bytes_to_string(sh.text, len), len);
                if (r == -EBADMSG || r == -EFBIG)
                        return log_error_errno(-EBADMSG,
                                               "Counter shard %u on token \"%s\" is malformed: "
                                               "refusing the accounts it counts.",
                                               sh.index, s->token_label);
                if (r < 0)
                        return r;
                for (size_t i = 1; i < n_objects; i++)
                        destroy_version(s, &sh, objects[i]);
        }
        *ret = sh;
        sh = (struct shard){.lock_fd = -1};
        return 0;
}

/* Writes the shard's next version, then destroys the one it replaces; a shard left with no
 * account is destroyed. */
static int shard_save(struct store *s, struct shard *sh)
{
        _cleanup_free_ char *text = NULL;
        char application[LABEL_MAX], label[LABEL_MAX];
        CK_OBJECT_HANDLE handle;
        size_t len;
        int r;

        r = stamp_write(sh);
        if (r < 0)
                return r;
        if (sh->n == 0) {
                if (sh->version > 0)
                        destroy_version(s, sh, sh->object);
                sh->version = 0;
                shard_forget(s, sh->index);
                return 0;
        }
        text = shard_print(sh, &len);
        if (!text)
                return -ENOMEM;
        if (len > WRAPPED_SHARD_VALUE_MAX)
                return log_error_errno(-EFBIG, "Counter shard %u is full.", sh->index);
        shard_application(sh->index, application);
        snprintf(label, sizeof(label), WRAPPED_SHARD_PREFIX "%u/%" PRIu64, sh->index,
                 sh->version + 1);
        r = p11_create_app_object(s, application, label, text, len, &handle);
        if (r < 0)
                return r;
        if (sh->version > 0)
                destroy_version(s, sh, sh->object);
        sh->object = handle;
        sh->version++;
        shard_keep(s, sh, TAKE_PTR(text), len);
        return 0;
}

static int shard_load(struct store *s, const char *account, struct shard *ret)
{
        return shard_load_index(s, p11_wrapped_shard_of(account), ret);
}

static size_t shard_lower_bound(const struct shard *sh, const char *account)
{
        size_t lo = 0, hi = sh->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(sh->counters[mid].account, account) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The account's counter, parsed: -ENOENT when the shard has none, -EBADMSG when its line is
 * malformed. */
static int shard_find(struct shard *sh, const char *account, struct counter **ret)
{
        size_t at = shard_lower_bound(sh, account);
        int r;

        if (at >= sh->n || strcmp(sh->counters[at].account, account) != 0)
                return -ENOENT;
        r = counter_parse(sh, &sh->counters[at]);
        if (r < 0)
                return r;
        *ret = &sh->counters[at];
        return 0;
}

/* The account's counter, added (zeroed) when the shard has none for it. */
static int shard_get(struct shard *sh, const char *account, struct counter **ret)
{
        struct counter c = {0};
        int r;

        r = shard_find(sh, account, ret);
        if (r != -ENOENT)
                return r;
        snprintf(c.account, sizeof(c.account), "%s", account);
        r = shard_add(sh, shard_lower_bound(sh, account), &c);
        if (r < 0)
                return r;
        return shard_find(sh, account, ret);
}

/* ---- the operations ---- */

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

static int move_in(struct store *s, struct shard *sh, const char *account, uint64_t generation,
                   const uint8_t id[static WRAPPED_STATE_ID_LEN])
{
        struct counter *c;
        int r;

        if (fault_counter_move_fails())
                return log_error_errno(-EIO, "Account %s: the counter cannot be moved (fault).",
                                       account);
        r = shard_get(sh, account, &c);
        if (r < 0)
                return r;
        c->generation = generation;
        memcpy(c->id, id, WRAPPED_STATE_ID_LEN);
        return shard_save(s, sh);
}

int p11_wrapped_counter_move(struct store *s, const char *account, uint64_t generation,
                             const uint8_t id[static WRAPPED_STATE_ID_LEN])
{
        _cleanup_shard_ struct shard sh = {.lock_fd = -1};
        int r;

        r = shard_load(s, account, &sh);
        if (r < 0)
                return r;
        return move_in(s, &sh, account, generation, id);
}

static bool names(const struct counter *c, uint64_t generation,
                  const uint8_t id[static WRAPPED_STATE_ID_LEN])
{
        return c->generation == generation && memcmp(c->id, id, WRAPPED_STATE_ID_LEN) == 0;
}

int p11_wrapped_counter_check(struct store *s, const char *account,
                              const struct p11_wrapped_header *h, bool quiet)
{
        _cleanup_shard_ struct shard sh = {.lock_fd = -1};
        struct counter *c = NULL;
        int r;

        r = shard_load(s, account, &sh);
        if (r < 0)
                return r;
        r = shard_find(&sh, account, &c);
        if (r < 0 && r != -ENOENT) /* no counter for it: refused below */
                return r;
        if (c && names(c, h->generation, h->id))
                return 0;
        if (!c || !names(c, h->prev_generation, h->prev_id)) {
                if (quiet)
                        return -ESTALE;
                if (c)
                        return log_error_errno(-ESTALE,
                                               "Account %s: its sealed file (generation %" PRIu64
                                               ") is not the one token \"%s\" counts (generation "
                                               "%" PRIu64 "): an older copy put back, or a file "
                                               "from elsewhere. Refusing it.",
                                               account, h->generation, s->token_label,
                                               c->generation);
                return log_error_errno(-ESTALE,
                                       "Account %s: token \"%s\" has no counter for its sealed "
                                       "file (generation %" PRIu64 "). Refusing it.",
                                       account, s->token_label, h->generation);
        }
        /* The file is the successor of the counted state: a write stopped after its rename.
         * Only the broker can seal a file naming the current state as prev, so this moves
         * forward, never back. The file is good either way; a token that cannot take the new
         * counter now (full, read-only) must not make the account unreadable, but no write may
         * follow (1). */
        if (move_in(s, &sh, account, h->generation, h->id) < 0) {
                log_warning("Account %s: could not move the token's counter on to sealed "
                            "generation %" PRIu64 "; the next use tries again.",
                            account, h->generation);
                return 1;
        }
        log_notice("Account %s: completed the interrupted update to sealed generation %" PRIu64 ".",
                   account, h->generation);
        return 0;
}

int p11_wrapped_counter_create(struct store *s, const char *account, uint64_t *ret_generation,
                               uint8_t ret_id[static WRAPPED_STATE_ID_LEN])
{
        _cleanup_shard_ struct shard sh = {.lock_fd = -1};
        struct counter *c;
        int r;

        /* A counter left over (an interrupted removal) would let the file it named be put back
         * under the new account: it is replaced. */
        r = shard_load(s, account, &sh);
        if (r < 0)
                return r;
        r = shard_get(&sh, account, &c);
        if (r < 0)
                return r;
        *c = (struct counter){0};
        snprintf(c->account, sizeof(c->account), "%s", account);
        if (gnutls_rnd(GNUTLS_RND_NONCE, c->id, WRAPPED_STATE_ID_LEN) < 0)
                return -EIO;
        r = shard_save(s, &sh);
        if (r < 0)
                return r;
        *ret_generation = 0;
        memcpy(ret_id, c->id, WRAPPED_STATE_ID_LEN);
        return 0;
}

int p11_wrapped_counters_destroy(struct store *s, const char *account, unsigned *ret_n)
{
        _cleanup_shard_ struct shard sh = {.lock_fd = -1};
        size_t at;
        int r;

        r = shard_load(s, account, &sh);
        if (r < 0)
                return r;
        at = shard_lower_bound(&sh, account);
        if (ret_n)
                *ret_n = 0;
        if (at >= sh.n || strcmp(sh.counters[at].account, account) != 0)
                return 0;
        memmove(&sh.counters[at], &sh.counters[at + 1], (sh.n - at - 1) * sizeof(*sh.counters));
        sh.n--;
        r = shard_save(s, &sh);
        if (r < 0)
                return r;
        if (ret_n)
                *ret_n = 1;
        return 0;
}

int p11_wrapped_list_counters(struct store *s, char ***names, size_t *n, size_t *allocated)
{
        for (unsigned k = 0; k < WRAPPED_SHARDS; k++) {
                _cleanup_shard_ struct shard sh = {.lock_fd = -1};
                int r;

                r = shard_load_index(s, k, &sh);
                for (size_t i = 0; r >= 0 && i < sh.n; i++)
                        r = p11_names_add(names, n, allocated, sh.counters[i].account,
                                          strlen(sh.counters[i].account));
                if (r < 0)
                        return r;
        }
        return 0;
}

int p11_wrapped_counter_mark(struct store *s, const char *account, uint64_t generation,
                             bool *ret_interrupted)
{
        _cleanup_shard_ struct shard sh = {.lock_fd = -1};
        const uint8_t *run = s->wrapped->run_id;
        struct counter *c;
        int r;

        r = shard_load(s, account, &sh);
        if (r >= 0)
                r = shard_find(&sh, account, &c);
        if (r < 0)
                return r;
        /* Sent by another run and never acted on: that run stopped during the refresh. The
         * marker is left as it is, so later runs say so too. */
        if (c->refreshing == generation) {
                if (ret_interrupted)
                        *ret_interrupted =
                            generation != 0 && memcmp(c->run, run, WRAPPED_RUN_ID_LEN) != 0;
                return 0;
        }
        if (ret_interrupted)
                *ret_interrupted = false;
        c->refreshing = generation;
        if (generation == 0)
                memset(c->run, 0, WRAPPED_RUN_ID_LEN);
        else
                memcpy(c->run, run, WRAPPED_RUN_ID_LEN);
        return shard_save(s, &sh);
}
