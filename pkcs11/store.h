/* The credential store: every account's objects inside one PKCS#11 token, reached through
 * p11-kit (design.md §4 and §6). The broker and the CLI are its only users; everything here
 * blocks on the token, so the broker calls it only off the cached-token path. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "secret.h"

struct store;

/* Where account metadata, refresh tokens and client secrets live ([pkcs11] store): as objects in
 * the token, or sealed by a key in the token into files of a directory (pkcs11/README.md). */
enum store_backend {
        STORE_BACKEND_OBJECTS,
        STORE_BACKEND_WRAPPED,
};

struct store_options {
        const char *module_path;  /* absolute; realpath() must fall in module_dirs */
        const char *token_uri;    /* RFC 7512 PKCS#11 URI selecting exactly one token */
        const char *pin_source;   /* "file:/path" or "credential:NAME" */
        char *const *module_dirs; /* glob patterns of allowed directories, e.g. "/usr/lib*" */
        size_t n_module_dirs;
        enum store_backend backend; /* default (0): objects */
        const char *wrapped_dir;    /* wrapped: the directory of sealed files (created 0700) */
        /* A SoftHSM2 token only: the objects destroyed after which store_reopen_if_due() opens
         * the token again; 0: never. */
        unsigned softhsm_reopen_after;
};

/* Loads the module, finds the token, opens a session and logs in. Logs the reason on failure. */
int store_open(const struct store_options *options, struct store **ret);
void store_close(struct store *s);
/* Which backend this store was opened with. */
enum store_backend store_get_backend(const struct store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct store *, store_close)

/* When a call finds the session gone (HSM restarted, p11-kit server vanished, login lost), the
 * store marks it lost and the next operation opens it again: C_Initialize, the token by URI,
 * C_OpenSession, C_Login with the PIN read anew. Failed attempts back off (1 s doubling to
 * 60 s): meanwhile operations fail with -EAGAIN without touching the token. A refused PIN is
 * never tried again (-EACCES). Operations call this themselves; it is public so that a caller
 * can retry an operation that failed because the session was lost under it. */
int store_ensure_session(struct store *s);
bool store_session_lost(const struct store *s);

/* SoftHSM2 keeps about 870 bytes for every object destroyed through it until the module is
 * finalized (its token remembers every object file it ever had), and every refresh destroys one
 * or two: a broker refreshing 10,000 accounts an hour would grow by 200-400 MB a day. After
 * options->softhsm_reopen_after destroyed objects this finalizes the module and opens the token
 * again the whole way, as after a lost session (C_Initialize, C_OpenSession, C_Login with the
 * PIN read anew), which gives all of it back, in 3-10 ms. Call it between operations, never in
 * one: object handles do not outlive it. Returns 1 when it reopened, 0 when not due (or not
 * SoftHSM2), a negative errno when the reopen failed: the session is then lost, and the next
 * operation opens it again with the usual backoff. */
int store_reopen_if_due(struct store *s);

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

/* Moves the account's refresh marker (store-refresh-token.c) to generation, the refresh token
 * about to be sent to the token endpoint; generation 0 removes it after an answer that rotated
 * nothing. *ret_interrupted (may be NULL): the marker already named generation when this store
 * first looked, i.e. the previous run stopped during a refresh with it. One PKCS#11 call per
 * refresh once this store has found the marker. */
int store_mark_refresh(struct store *s, const char *account, uint64_t generation,
                       bool *ret_interrupted);

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

/* ---- client secret (app-only flow with a secret) ---- */

#define STORE_CLIENT_SECRET_MAX 1024

/* CKO_DATA "<account>/client_secret". put writes the new object and reads it back before any old
 * one is destroyed, so an interrupted put leaves a usable secret. get returns -ENOENT when absent.
 * has returns 1 when present, 0 when absent, negative errno on failure. */
int store_put_client_secret(struct store *s, const char *account, const struct secret *secret);
int store_get_client_secret(struct store *s, const char *account, struct secret **ret);
int store_has_client_secret(struct store *s, const char *account);

/* ---- account removal with a report ---- */

struct store_removed_object {
        char *label;
        const char *class_name; /* "data", "private key", "public key", "certificate", ... */
};

/* Like store_remove_account(), and says what it destroyed: an array of *ret_n entries (0 when the
 * account had no object at all), free with store_removed_free(). On failure nothing is returned
 * and whatever could not be destroyed is still there (meta last, so the account stays listed). */
int store_remove_account_report(struct store *s, const char *account,
                                struct store_removed_object **ret, size_t *ret_n);
void store_removed_free(struct store_removed_object *objects, size_t n);

/* Every account name that has any object of ours (meta, refresh token, client secret, assertion
 * key or certificate), sorted; app-only accounts may have no meta. Free with store_names_free(). */
int store_list_all_accounts(struct store *s, char ***ret_names, size_t *ret_n);

/* ---- assertion key and certificate (client_certificate flow) ---- */

/* The RSA key "<account>/assertion-key" is generated inside the token (never extractable) and
 * the certificate "<account>/assertion-cert" carries the same random CKA_ID. Keys and certificates
 * cannot carry CKA_APPLICATION (a CKO_DATA attribute), so they are found by class, CKA_TOKEN,
 * CKA_PRIVATE=TRUE (only a logged-in user can create them) and exact label, and paired by
 * CKA_ID. */

#define STORE_KEY_BITS_DEFAULT  2048
#define STORE_CERT_DAYS_DEFAULT 730
#define STORE_CERT_DAYS_MAX     3650
#define STORE_SUBJECT_MAX       256

struct store_keygen_options {
        unsigned bits;       /* 2048, 3072 or 4096 */
        unsigned days;       /* validity of the self-signed certificate, 1..STORE_CERT_DAYS_MAX */
        const char *subject; /* RFC 4514 DN such as "CN=alerts"; NULL: "CN=credbroker <account>" */
        bool csr;            /* also make a PKCS#10 request for the key */
        bool replace;        /* replace an existing key and certificate */
        uint64_t now;        /* unix seconds: notBefore */
};

/* A certificate's public facts. Thumbprints are uppercase hex without separators, as the Entra
 * portal shows them ("Thumbprint" is the SHA-1 one). */
struct store_certificate_info {
        char *subject;
        char *issuer;
        uint64_t not_before;
        uint64_t not_after;
        unsigned bits;
        char sha1_hex[41];
        char sha256_hex[65];
        char *pem;
};

void store_certificate_info_clear(struct store_certificate_info *info);

/* Generates the key pair in the token, signs a self-signed certificate with it and stores the
 * certificate. -EEXIST when the account has a key or certificate and !replace; with replace the
 * new pair is complete before the old one is destroyed, and a failure leaves the old one. With
 * csr, *ret_csr_pem (else NULL) receives a PKCS#10 request signed by the new key. */
int store_keygen(struct store *s, const char *account, const struct store_keygen_options *options,
                 struct store_certificate_info *ret_cert, char **ret_csr_pem);

/* Stores a certificate (PEM or DER, e.g. issued by a CA for the request keygen --csr printed)
 * for the account's key with the same public key, replacing that key's earlier certificate (new
 * object first). -EBADMSG for data that is not a certificate, -ENOKEY when no key of the account
 * matches its public key. */
#define STORE_CERTIFICATE_FILE_MAX 32768
int store_import_certificate(struct store *s, const char *account, const void *data, size_t len,
                             struct store_certificate_info *ret);

/* -ENOENT when the account has no complete key + certificate pair. */
int store_get_certificate(struct store *s, const char *account, struct store_certificate_info *ret);

/* ---- JWT client assertion (microsoft-identity.md, "Certificate credential") ---- */

enum store_assertion_alg {
        STORE_ASSERTION_PS256, /* header x5t#S256; the default */
        STORE_ASSERTION_RS256, /* header x5t, for older authorities */
};

#define STORE_ASSERTION_LIFETIME 600 /* seconds, as MSAL */
#define STORE_AUDIENCE_MAX       512
#define STORE_CLIENT_ID_MAX      128

/* A compact JWT signed with C_Sign in the token: header {alg, typ, x5t#S256 | x5t}, claims aud,
 * iss = sub = client_id, jti (random UUID), nbf = iat = now, exp = now + 600. audience must be an
 * https:// URL; *ret is malloc()ed. */
int store_sign_assertion(struct store *s, const char *account, const char *audience,
                         const char *client_id, enum store_assertion_alg alg, uint64_t now,
                         struct secret **ret);

/* ---- moving accounts between backends (credbroker store migrate, store-migrate.c) ----
 *
 * What a backend keeps of an account: its metadata, its newest intact refresh token with that
 * token's generation, and its client secret (keys, certificates, the refresh marker, the install
 * and audit keys are token objects in both backends and never move). */

struct store_account_copy {
        char *meta;                   /* NULL: none */
        struct secret *refresh_token; /* NULL: none */
        uint64_t generation;          /* of refresh_token */
        uint64_t stored_at;           /* when it was written, unix seconds; 0: unknown */
        struct secret *client_secret; /* NULL: none */
};

void store_account_copy_clear(struct store_account_copy *c);
/* -ENOENT when s keeps none of the three for the account. The object store's refresh token is
 * the newest intact one of the n generations given (store_list_refresh_token_generations(),
 * oldest first), each read by its exact label; generations NULL: found as
 * store_read_refresh_token() finds it. The wrapped store ignores them. */
int store_export_account(struct store *s, const char *account, const uint64_t *generations,
                         size_t n, struct store_account_copy *ret);
/* Writes into s what copy holds that s lacks or holds otherwise: metadata and client secret when
 * absent or different, the refresh token at copy->generation itself (never renumbered, so the
 * next rotation writes generation + 1 and the refresh marker keeps its meaning) unless s holds
 * that generation or a newer one. 1 when s held all of it already (nothing written), 0 after a
 * write. Idempotent: run again after a crash, it finishes or finds nothing to do. */
int store_import_account(struct store *s, const char *account,
                         const struct store_account_copy *copy);
/* Reads the account back from s: 0 when s holds everything copy holds (the refresh token at
 * copy's generation with the same value, read by its label in the object store; the newest in
 * the wrapped one, which may be newer), -ESTALE (logged) otherwise. */
int store_verify_account(struct store *s, const char *account,
                         const struct store_account_copy *copy);
/* Every refresh-token object of the object store, "<account>/refresh_token/<generation>", from one
 * scan of the token's labels, sorted by account then generation: what a migration drops for each
 * account without scanning the token again per account. Empty for a wrapped store. */
struct store_generation_entry {
        char account[65]; /* NAME_MAX_LEN + 1 */
        uint64_t generation;
};
int store_list_refresh_token_generations(struct store *s, struct store_generation_entry **ret,
                                         size_t *ret_n);
/* Removes from s what its backend keeps of the account, refresh tokens first (in the object
 * store: the n generations given, by exact label) and metadata last (so an account interrupted
 * half-way stays listed and store_account_backends() still finds it there); never a key,
 * certificate or the refresh marker. */
int store_drop_account_data(struct store *s, const char *account, const uint64_t *generations,
                            size_t n);

#define STORE_BACKEND_BIT(b) (1u << (b))
/* Which backends hold data of the account: bits STORE_BACKEND_BIT(). The object backend's
 * metadata and client secret are looked up by label in s's token; the wrapped one's file in s's
 * directory, or, for a store opened with `objects`, in wrapped_dir (may be NULL: not looked at). */
int store_account_backends(struct store *s, const char *wrapped_dir, const char *account,
                           unsigned *ret);

/* ---- audit key (signed checkpoints of the audit log, audit-spec.md) ---- */

struct note_key; /* common/signed-note.h */

/* The key pair "credbroker/audit-key" is generated inside the token (private key CKA_TOKEN,
 * CKA_PRIVATE, CKA_SENSITIVE, !CKA_EXTRACTABLE, CKA_SIGN; public key a private token object with
 * the same label and CKA_ID). When two processes generated at once, every caller uses the pair
 * with the smallest CKA_ID. */

/* The audit key's public half, generating the pair in the token when there is none
 * (Ed25519, else ECDSA P-256). */
int store_audit_key(struct store *s, struct note_key *ret);
/* Makes every later lookup (store_audit_sign() included, after a session was opened again)
 * prefer the pair whose key hash is hash, over the smallest CKA_ID: the key a log is signed with
 * must not change because another process generated a pair with a smaller id after it. 0 and
 * *ret its public key; -ENOKEY when the token has no such pair (nothing is pinned then). */
int store_audit_key_pin(struct store *s, const uint8_t hash[4], struct note_key *ret);
/* Signs a note body with the audit key: Ed25519 over the body, ECDSA P-256 over its
 * SHA-256 (r||s). sig must hold 64 bytes. -ENOKEY when the token has no audit key (it is never
 * generated here: a key made now would not be the one the chain's genesis names). The key's
 * handle is looked up once per session; *ret_looked_up (may be NULL) says whether this call
 * looked it up, so that a caller can check the first signature of each handle against the key
 * it expects rather than every one. */
int store_audit_sign(struct store *s, const void *body, size_t len, uint8_t sig[static 64],
                     size_t *ret_len, bool *ret_looked_up);
