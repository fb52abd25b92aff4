/* The `wrapped` credential-store backend ([pkcs11] store = wrapped, issue 14): account metadata,
 * refresh tokens and client secrets sealed with AES-256-GCM by a non-extractable key in the token
 * and kept one file per account in a directory of the broker's; counters in the token refuse an
 * older file put back. Not for use outside pkcs11/ (and its unit tests). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <p11-kit/pkcs11.h>

#include "store-internal.h"

/* The key-encryption key: CKO_SECRET_KEY CKK_AES, 32 bytes, generated in the token. */
#define WRAPPED_KEK_LABEL "credbroker/wrap-key"
/* The counters live in this many shard objects (store-wrapped-counter.c), whatever the number
 * of accounts. Each use of a counter reads and parses its shard and each change rewrites it, so
 * fewer, larger shards cost more per use while more objects make every SoftHSM2 call dearer
 * (it stats each object's file): 16 measured best at 1,000 to 10,000 accounts (docs/scale.md).
 * A shard's value holds at most WRAPPED_SHARD_VALUE_MAX bytes: about 7,000 accounts of
 * 64-character names, 110,000 in all. */
#define WRAPPED_SHARDS          16u
#define WRAPPED_SHARD_VALUE_MAX (1024u * 1024u)
#define WRAPPED_RUN_ID_LEN      8
#define WRAPPED_IV_LEN          12
#define WRAPPED_TAG_LEN         16
#define WRAPPED_KEK_ID_LEN      16
#define WRAPPED_STATE_ID_LEN    8
#define WRAPPED_FORMAT          "credbroker-wrapped-1"
/* The plaintext of one account: meta, refresh token and client secret with their headers. */
#define WRAPPED_PLAIN_MAX (META_MAX + TOKEN_MAX_LEN + STORE_CLIENT_SECRET_MAX + 3 * 5)

/* What a sealed blob is bound to: the additional authenticated data of AES-GCM is
 * WRAPPED_FORMAT NUL account NUL kind NUL generation (decimal) NUL context. A blob opened with
 * any other value of any field fails. */
struct p11_wrapped_aad {
        const char *account;
        const char *kind;
        uint64_t generation;
        const char *context; /* the rest of the file's header; "" for none */
};

struct p11_wrapped_blob {
        uint8_t kek_id[WRAPPED_KEK_ID_LEN]; /* CKA_ID of the key that sealed it */
        uint8_t iv[WRAPPED_IV_LEN];
        uint8_t *sealed; /* ciphertext || 16-byte tag, malloc()ed */
        size_t sealed_len;
};

void p11_wrapped_blob_clear(struct p11_wrapped_blob *blob);

struct p11_wrapped_kek {
        CK_OBJECT_HANDLE handle;
        uint8_t id[WRAPPED_KEK_ID_LEN];
};

/* A counter shard's value, not read again while the object it came from is still the shard's
 * newest version: a refresh loads its shard five times. */
struct p11_wrapped_kept_shard {
        unsigned epoch;   /* of the session the handle belongs to */
        uint64_t stamp;   /* the shard's change stamp when it was kept */
        uint64_t version; /* 0: none kept */
        CK_OBJECT_HANDLE object;
        char *text; /* NUL-terminated */
        size_t len;
};

struct p11_wrapped {
        int dir_fd;
        char *dir;
        uid_t dir_uid; /* who owns the directory owns the files */
        gid_t dir_gid;
        /* Random per store: a refresh marker written by another run was left by a run that
         * stopped during the refresh (p11_wrapped_counter_mark()). */
        uint8_t run_id[WRAPPED_RUN_ID_LEN];
        /* The handles below belong to session epoch `epoch` (store-session.c counts reopens). */
        unsigned epoch;
        bool keks_loaded;
        struct p11_wrapped_kek *keks; /* normally one; more if two processes generated at once */
        size_t n_keks;
        /* Each counter shard's value as this process last read or wrote it
         * (store-wrapped-counter.c). */
        struct p11_wrapped_kept_shard kept_shards[WRAPPED_SHARDS];
};

/* Seals plain (1..WRAPPED_PLAIN_MAX bytes) with the key-encryption key (generated in the token on
 * first use) and a fresh random IV. */
int p11_wrapped_seal(struct store *s, const struct p11_wrapped_aad *aad, const struct secret *plain,
                     struct p11_wrapped_blob *ret);
/* Opens a blob sealed with the same aad: -EBADMSG when it does not authenticate, -ENOKEY when the
 * token has no key with its CKA_ID. */
int p11_wrapped_open(struct store *s, const struct p11_wrapped_aad *aad,
                     const struct p11_wrapped_blob *blob, struct secret **ret);

/* store_open(): checks (or creates, 0700) the directory and keeps it open. */
int p11_wrapped_new(const char *dir, struct p11_wrapped **ret);
void p11_wrapped_free(struct p11_wrapped *w);

/* ---- store-wrapped-file.c: one file per account ----
 *
 * "<dir>/<account>.sealed", JSON: the header fields below in the clear (all bound to the blob
 * through the AAD context, so none can be changed without the blob failing to open) and the
 * sealed plaintext, which holds the account's meta, refresh token and client secret. Written as
 * "<dir>/.<account>.tmp" (account names never start with a dot) → fsync → rename → fsync(dir). */

#define WRAPPED_KIND_META          1u
#define WRAPPED_KIND_REFRESH_TOKEN 2u
#define WRAPPED_KIND_CLIENT_SECRET 3u
#define WRAPPED_FILE_SUFFIX        ".sealed"
/* What the AAD's kind field says of a whole account's blob. */
#define WRAPPED_AAD_KIND "account"

struct p11_wrapped_header {
        uint64_t generation; /* of the file; the token's counter must name it (or its prev) */
        uint8_t id[WRAPPED_STATE_ID_LEN]; /* random per write: a generation is never reused */
        uint64_t prev_generation;         /* the state this one replaced */
        uint8_t prev_id[WRAPPED_STATE_ID_LEN];
        unsigned kinds;                    /* bit 1 << WRAPPED_KIND_* for each kind present */
        uint64_t refresh_token_generation; /* 0: none */
        uint64_t stored_at;                /* when the refresh token was written */
        struct p11_wrapped_blob blob;
};

/* The context string of the AAD: every header field but generation, which has its own. */
#define WRAPPED_CONTEXT_MAX 160
void p11_wrapped_header_context(const struct p11_wrapped_header *h,
                                char out[static WRAPPED_CONTEXT_MAX]);
/* The file's text (cJSON-printed, free with json_free_string()) and its strict parser: -EBADMSG
 * for anything but a well-formed file of account (tests/fuzz/fuzz-wrapped-header.c). */
char *p11_wrapped_header_print(const char *account, const struct p11_wrapped_header *h);
int p11_wrapped_header_parse(const char *account, const char *text, size_t len,
                             struct p11_wrapped_header *ret);
/* Reads and parses "<account>.sealed" (tmp: the temporary one); -ENOENT when absent, -EBADMSG
 * when it is not a well-formed file of this account (logged). Nothing is opened here. */
int p11_wrapped_file_read(struct store *s, const char *account, bool tmp,
                          struct p11_wrapped_header *ret);
/* Writes the temporary file and fsyncs it. */
int p11_wrapped_file_write_tmp(struct store *s, const char *account,
                               const struct p11_wrapped_header *h);
/* Renames the temporary file over the account's and fsyncs the directory. */
int p11_wrapped_file_commit(struct store *s, const char *account);
int p11_wrapped_file_unlink(struct store *s, const char *account, bool tmp);
/* Takes the account's lock (flock on "<dir>/.<account>.lock", waiting for it at most
 * WRAPPED_LOCK_TIMEOUT_MS, then -EAGAIN) and returns its descriptor: every operation on an
 * account holds it from loading the state to the last write, so that two processes (the CLI and
 * the broker) never share the temporary file or both write the successor of one state.
 * p11_wrapped_unlock() releases it. */
#define WRAPPED_LOCK_TIMEOUT_MS 5000u
int p11_wrapped_lock(struct store *s, const char *account);
void p11_wrapped_unlock(int fd);

/* Takes counter shard index's lock ("<dir>/.counter-shard@<index>.lock": no account's lock file
 * can have that name), after the account's, never before it. */
int p11_wrapped_lock_shard(struct store *s, unsigned index);

/* ---- store-wrapped-counter.c: the trusted generation in the token ---- */

/* Which shard holds account: FNV-1a of the name, fixed for good (the shards are on tokens). A
 * shard is the object labelled "credbroker/wrapped-counters/<shard>/<version>". */
#define WRAPPED_SHARD_PREFIX "credbroker/wrapped-counters/"
unsigned p11_wrapped_shard_of(const char *account);

/* Checks the file's header against the account's counter: it must name the file's (generation,
 * id), or its prev, which means a write stopped between the rename and the counter update; then
 * the counter is moved on to the file (1 when that failed: the file may be read, but a write
 * must first move the counter). -ESTALE (logged unless quiet) for anything else: an older file
 * put back, or one from elsewhere. */
int p11_wrapped_counter_check(struct store *s, const char *account,
                              const struct p11_wrapped_header *h, bool quiet);
/* A new account's counter, at generation 0 with a random id, replacing any counter the account
 * had (left by an interrupted creation or removal). */
int p11_wrapped_counter_create(struct store *s, const char *account, uint64_t *ret_generation,
                               uint8_t ret_id[static WRAPPED_STATE_ID_LEN]);
/* Moves the counter on to (generation, id). */
int p11_wrapped_counter_move(struct store *s, const char *account, uint64_t generation,
                             const uint8_t id[static WRAPPED_STATE_ID_LEN]);
int p11_wrapped_counters_destroy(struct store *s, const char *account, unsigned *ret_n);
/* The refresh marker (store_mark_refresh()), kept beside the account's counter: generation is
 * the refresh-token generation about to be sent, 0 to clear it. *ret_interrupted: another run
 * marked this very generation and never acted on the answer. */
int p11_wrapped_counter_mark(struct store *s, const char *account, uint64_t generation,
                             bool *ret_interrupted);

/* store-wrapped-key.c: the key-encryption keys, found once per session. */
int p11_wrapped_kek_for_seal(struct store *s, CK_OBJECT_HANDLE *ret,
                             uint8_t ret_id[static WRAPPED_KEK_ID_LEN]);
int p11_wrapped_kek_for_open(struct store *s, const uint8_t id[static WRAPPED_KEK_ID_LEN],
                             CK_OBJECT_HANDLE *ret);
/* Forgets every handle (keys) when the session they belong to is gone. */
void p11_wrapped_check_epoch(struct store *s);

/* The backend's half of the public store_* operations (store-account.c and
 * store-refresh-token.c dispatch here when s->wrapped is set; arguments already checked). */
int p11_wrapped_put_meta(struct store *s, const char *account, const char *json);
int p11_wrapped_get_meta(struct store *s, const char *account, char **ret_json);
/* Accounts with a file (with_meta: only those whose file holds metadata), unsorted. */
int p11_wrapped_list(struct store *s, bool with_meta, char ***names, size_t *n, size_t *allocated);
int p11_wrapped_read_refresh_token(struct store *s, const char *account, struct secret **ret_token,
                                   uint64_t *ret_generation, uint64_t *ret_stored_at);
int p11_wrapped_write_refresh_token(struct store *s, const char *account,
                                    const struct secret *token, uint64_t *ret_generation);
int p11_wrapped_put_client_secret(struct store *s, const char *account,
                                  const struct secret *secret);
int p11_wrapped_get_client_secret(struct store *s, const char *account, struct secret **ret);
int p11_wrapped_has_client_secret(struct store *s, const char *account);
/* store_mark_refresh() of this backend: p11_wrapped_counter_mark() under the account's lock. */
int p11_wrapped_mark_refresh(struct store *s, const char *account, uint64_t generation,
                             bool *ret_interrupted);

/* Writes one new state holding what copy holds that the account's file lacks or holds older,
 * the refresh token at copy->generation (store_import_account()); 1 when nothing was missing. */
int p11_wrapped_import(struct store *s, const char *account, const struct store_account_copy *copy);

/* What removing an account took away: each as a label the object backend would have used. */
struct p11_wrapped_removed {
        bool file; /* the account's file */
        bool meta, client_secret;
        uint64_t refresh_token_generation; /* 0: none */
        unsigned counters;                 /* counters removed (0 or 1) */
};
/* Destroys the account's file, then its counter. */
int p11_wrapped_remove(struct store *s, const char *account, struct p11_wrapped_removed *ret);
/* Adds the accounts that have a counter (a removal may have been interrupted). */
int p11_wrapped_list_counters(struct store *s, char ***names, size_t *n, size_t *allocated);

/* store-account.c's list helper, shared. */
int p11_names_add(char ***names, size_t *n, size_t *allocated, const char *label, size_t name_len);
