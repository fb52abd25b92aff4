/* The credential store: every account's objects inside one PKCS#11 token, reached through
 * p11-kit (design.md §4 and §6). The broker and the CLI are its only users; everything here
 * blocks on the token, so the broker calls it only off the cached-token path. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "secret.h"

struct store;

struct store_options {
        const char *module_path;  /* absolute; realpath() must fall in module_dirs */
        const char *token_uri;    /* RFC 7512 PKCS#11 URI selecting exactly one token */
        const char *pin_source;   /* "file:/path" or "credential:NAME" */
        char *const *module_dirs; /* glob patterns of allowed directories, e.g. "/usr/lib*" */
        size_t n_module_dirs;
};

/* Loads the module, finds the token, opens a session and logs in. Logs the reason on failure. */
int store_open(const struct store_options *options, struct store **ret);
void store_close(struct store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct store *, store_close)

/* When a call finds the session gone (HSM restarted, p11-kit server vanished, login lost), the
 * store marks it lost and the next operation opens it again: C_Initialize, the token by URI,
 * C_OpenSession, C_Login with the PIN read anew. Failed attempts back off (1 s doubling to
 * 60 s): meanwhile operations fail with -EAGAIN without touching the token. A refused PIN is
 * never tried again (-EACCES). Operations call this themselves; it is public so that a caller
 * can retry an operation that failed because the session was lost under it. */
int store_ensure_session(struct store *s);
bool store_session_lost(const struct store *s);

/* Account metadata: a JSON object in CKO_DATA "<account>/meta". put replaces an existing one
 * (the new object is written before the old one is destroyed). get returns -ENOENT when absent;
 * *ret_json is a malloc()ed NUL-terminated string. */
int store_put_meta(struct store *s, const char *account, const char *json);
int store_get_meta(struct store *s, const char *account, char **ret_json);

/* Names of every account with a meta object, sorted; free with store_names_free(). */
int store_list_accounts(struct store *s, char ***ret_names, size_t *ret_n);
void store_names_free(char **names, size_t n);

/* The refresh token of the highest generation that reads back intact (-ENOENT if none). */
int store_read_refresh_token(struct store *s, const char *account, struct secret **ret_token,
                             uint64_t *ret_generation);
/* Stores a new refresh token in the order of design.md §6: create generation g+1, read it back
 * and compare, and only then destroy generation g and older. On failure the old generations are
 * left as they were. */
int store_write_refresh_token(struct store *s, const char *account, const struct secret *token,
                              uint64_t *ret_generation);

/* What an administrator may see of an account's refresh token: never its value. */
struct store_refresh_token_info {
        uint64_t generation;  /* the generation store_read_refresh_token() would use */
        uint64_t stored_at;   /* when it was written, unix seconds; 0 when unknown */
        size_t n_generations; /* objects present, intact or not (more than one after a crash) */
};

/* -ENOENT when the account has no refresh token that reads back intact. */
int store_refresh_token_info(struct store *s, const char *account,
                             struct store_refresh_token_info *ret);

/* Destroys every object of the account; *ret_removed counts them. */
int store_remove_account(struct store *s, const char *account, unsigned *ret_removed);

/* The per-install key that fingerprints tokens in the audit log (HMAC-SHA-256): a 32-byte
 * CKO_DATA object "credbroker/audit-hmac-key", created with random bytes on first use. */
int store_get_install_key(struct store *s, struct secret **ret);
