/* What the store's files share: the store itself, its label conventions, and the PKCS#11 object
 * helpers every part of it writes and reads objects with. Not for use outside pkcs11/. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "store.h"
#include "util.h"

/* Every object we own carries this CKA_APPLICATION; it is also the one account name we refuse,
 * because install-wide objects ("credbroker/audit-hmac-key", "credbroker/audit-key") live under
 * it and store_remove_account("credbroker") must never reach them. */
#define STORE_APPLICATION "credbroker"

#define META_MAX 65536
/* Our labels are at most 64 + strlen("/refresh_token/") + 20 bytes; longer ones are not ours. */
#define LABEL_MAX 256
/* A token holding more of our objects than this is broken or hostile; refuse to scan it. */
#define OBJECTS_MAX 65536

#define REFRESH_TOKEN_INFIX "/refresh_token/"
#define META_SUFFIX         "/meta"
/* "<account>/refresh_index/<g>": where an account's generations start (store-refresh-token.c). */
#define INDEX_INFIX "/refresh_index/"

struct store {
        CK_FUNCTION_LIST *module;
        bool initialized;
        CK_SESSION_HANDLE session;
        bool session_open;
        bool logged_in;
        char *token_label; /* for log messages only */

        /* What store_ensure_session() needs to open the session again after it was lost (the
         * HSM restarted, a p11-kit server went away), and its backoff. No PIN: it is read from
         * pin_path again for each login. */
        char *module_path; /* resolved, as loaded */
        char *token_uri;
        char *pin_source;
        char *pin_path;
        bool pin_check_mode;
        bool session_lost; /* a call failed in a way that says the session is gone */
        /* The audit key as last found, for the session it was found in: a checkpoint every
         * thousand records must not search the token each time (store-audit-key.c). */
        CK_SESSION_HANDLE audit_key_session;
        CK_OBJECT_HANDLE audit_key_handle;
        uint8_t audit_key_type;
        /* store_audit_key_pin(): the key hash of the pair every lookup prefers. */
        bool audit_key_pinned;
        uint8_t audit_key_pin[4];
        bool login_refused; /* a reopen's login was refused: the PIN is never tried again */
        unsigned reopen_failures;
        uint64_t reopen_at_usec; /* CLOCK_BOOTTIME before which no reopen is attempted */

        /* Each account's refresh-token generations as last seen and its index object, so that
         * a refresh looks its generation up by exact label instead of scanning every object in
         * the token (store-refresh-token.c): a hash table of generation_hints_size slots (a
         * power of two, at most half full) keyed by account. Labels outlive sessions, so a
         * reopen keeps them. */
        struct p11_generation_hint **generation_hints;
        size_t n_generation_hints;
        size_t generation_hints_size;

        /* Counts the sessions opened again: object handles found in an earlier one are stale. */
        unsigned session_epoch;
        /* store_reopen_if_due(): the objects destroyed since C_Initialize, and after how many
         * the token is opened again (0: never, a token that is not SoftHSM2). */
        unsigned destroyed;
        unsigned reopen_after;
        /* The `wrapped` backend's directory and handles (store-wrapped.h); NULL: `objects`. */
        struct p11_wrapped *wrapped;
};

/* A CKO_DATA object of ours and its label. */
struct p11_data_object {
        CK_OBJECT_HANDLE handle;
        char *label;
};

/* Template values shared by every object we search for or create. */
extern char p11_application[];
extern CK_BBOOL p11_true;

/* store-rv.c: errors */
const char *p11_rv_name(CK_RV rv);
int p11_rv_to_errno(CK_RV rv);
/* Logs a failed call with its CK_RV name and returns the negative errno it maps to. */
int p11_ck_fail(const struct store *s, const char *call, const char *what, CK_RV rv);

/* store-module.c: the module allow-list, loading, and the token */
/* Checks that path is absolute, inside an allowed module directory (module_dirs patterns), a
 * regular file, and that it and every directory above it only root (or we) can change; returns
 * the resolved path to load. Logs what is wrong and how to fix it. */
int p11_check_module_path(const char *path, char *const *dirs, size_t n_dirs, char **ret);
/* Loads and initializes the module at the (checked, resolved) path into s. */
int p11_load_module(struct store *s, const char *module);
/* The slot of the one initialized token token_uri selects: -ENODEV for none, -ENOTUNIQ for
 * several (each listed in the log). */
int p11_find_token(struct store *s, const char *module_path, const char *token_uri,
                   CK_SLOT_ID *ret_slot, CK_TOKEN_INFO *ret_info);
/* Whether the token is SoftHSM2's (its manufacturer), which keeps memory for destroyed objects
 * until it is finalized (store_reopen_if_due()). */
bool p11_token_is_softhsm(const CK_TOKEN_INFO *info);

/* store-pin.c: the PIN */
/* Checks pin_source's syntax and returns the file to read and whether its owner and mode are
 * checked (not for a systemd credential), before any module is loaded. */
int p11_pin_source_path(const char *pin_source, char **ret_path, bool *ret_check_mode);
int p11_read_pin(const char *path, bool check_mode, struct secret **ret);

/* store-session.c: login, session loss and reopening */
/* Logs what a failed C_Login means (wrong PIN, locked, expired, …) and returns its errno. */
int p11_login_error(const struct store *s, CK_RV rv, const char *pin_source, const char *pin_path);
int p11_login(struct store *s, const char *pin_source, const char *pin_path, bool check_mode,
              CK_SLOT_ID slot, const CK_TOKEN_INFO *info);
/* Marks the session lost when rv says so (session closed or invalid, login gone, device
 * removed or failing); returns whether it did. */
bool p11_note_rv(struct store *s, CK_RV rv);
/* Keeps what a reopen needs; store_open() calls it once the first session is logged in. */
int p11_remember_session(struct store *s, const char *module_path, const char *token_uri,
                         const char *pin_source, const char *pin_path, bool pin_check_mode);

/* store-refresh-token.c */
void p11_generation_hints_forget(struct store *s, const char *account);
void p11_generation_hints_free(struct store *s);
/* A refresh-token object's value: magic, version, write time (big-endian), the token, and the
 * first ENVELOPE_CHECK bytes of SHA-256 over the label with its NUL and all before. */
#define ENVELOPE_MAGIC_LEN 5
#define ENVELOPE_HEADER    (ENVELOPE_MAGIC_LEN + 1 + 8)
#define ENVELOPE_CHECK     8
#define ENVELOPE_MAX       (ENVELOPE_HEADER + TOKEN_MAX_LEN + ENVELOPE_CHECK)
int p11_envelope_build(const char *label, const struct secret *token, uint64_t stored_at,
                       struct secret **ret);
/* Strict: -EBADMSG (*ret_why says why) for anything but an intact envelope of a known version
 * or a valid legacy raw token, whose write time is 0. */
int p11_envelope_parse(const char *label, struct secret *value, struct secret **ret_token,
                       uint64_t *ret_stored_at, const char **ret_why);
/* Points the account's refresh token index at generation (the oldest one present), making it
 * when there is none; a failure is logged and left (the index is only a lower bound). */
void p11_index_move(struct store *s, const char *account, uint64_t generation);
/* Destroys the account's index objects and forgets what is known of its generations. */
void p11_index_drop(struct store *s, const char *account);

/* store-object.c: labels */
bool p11_account_is_valid(const char *account);
const char *p11_startswith(const char *s, const char *prefix);
bool p11_parse_generation(const char *label, const char *prefix, uint64_t *ret);

/* store-object.c: finding, reading, creating and destroying objects */
bool p11_session_is_logged_in(struct store *s, CK_SESSION_INFO *info);
bool p11_error_is_token_wide(struct store *s, int r);
int p11_find_objects(struct store *s, CK_ATTRIBUTE *template, CK_ULONG n_template, const char *what,
                     CK_OBJECT_HANDLE **ret, size_t *ret_n);
/* Our private CKO_DATA objects under CKA_APPLICATION application ("credbroker" for the
 * _data_ ones; the wrapped store's counter shards have their own), optionally only those with
 * one exact label. */
int p11_find_app_objects(struct store *s, const char *application, const char *label,
                         CK_OBJECT_HANDLE **ret, size_t *ret_n);
int p11_find_data_objects(struct store *s, const char *label, CK_OBJECT_HANDLE **ret,
                          size_t *ret_n);
int p11_get_label(struct store *s, CK_OBJECT_HANDLE handle, char label[static LABEL_MAX + 1]);
void p11_data_objects_free(struct p11_data_object *objects, size_t n);
int p11_list_data_objects(struct store *s, struct p11_data_object **ret, size_t *ret_n);
int p11_read_secret_value(struct store *s, CK_OBJECT_HANDLE handle, size_t max, const char *what,
                          struct secret **ret);
/* One attribute of at most max bytes (-EFBIG for more), as a malloc()ed copy with a NUL after
 * its ret_len bytes so a text value reads as a string. */
int p11_read_attribute(struct store *s, CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type, size_t max,
                       const char *what, void **ret, size_t *ret_len);
int p11_create_app_object(struct store *s, const char *application, const char *label,
                          const void *value, size_t len, CK_OBJECT_HANDLE *ret);
int p11_create_data_object(struct store *s, const char *label, const void *value, size_t len,
                           CK_OBJECT_HANDLE *ret);
int p11_destroy_object(struct store *s, CK_OBJECT_HANDLE handle, const char *what);
