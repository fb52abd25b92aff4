/* The audit key (audit-spec.md, "The audit key in the PKCS#11 token"): the key pair that signs
 * the audit log's checkpoints, generated inside the token and never extractable. Ed25519
 * (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA) when the token has it, else ECDSA P-256. */
#include "store-internal.h"
#include "store-key-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "fault.h"
#include "log.h"
#include "signed-note.h"
#include "util.h"

#define AUDIT_KEY_LABEL STORE_APPLICATION "/audit-key"

/* CKA_EC_PARAMS: Ed25519 as the OID 1.3.101.112, or as the printable string "edwards25519" some
 * tokens (SoftHSM2 among them) also accept; P-256 as the OID 1.2.840.10045.3.1.7. */
static const uint8_t ed25519_oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const uint8_t ed25519_name[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                       'd',  's',  '2', '5', '5', '1', '9'};
static const uint8_t p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

#define EC_PARAMS_MAX 64
/* DER OCTET STRING around a 65-byte point, with room for a long-form length. */
#define EC_POINT_MAX 128

struct audit_key {
        CK_OBJECT_HANDLE private_key;
        struct note_key pub;
        uint8_t id[KEY_ID_MAX];
        size_t id_len;
};

/* The key hash: the first 4 bytes of SHA-256(name "\n" type pub), as note_key_init() computes it
 * (common/signed-note.h); computed here so the store needs nothing but the header. */
static int audit_note_key(uint8_t type, const uint8_t *pub, size_t pub_len, struct note_key *ret)
{
        uint8_t input[sizeof(NOTE_KEY_NAME) + 1 + sizeof(ret->pub)], digest[32];
        size_t n = 0;
        int e;

        if (pub_len > sizeof(ret->pub))
                return -EINVAL;
        memcpy(input, NOTE_KEY_NAME, strlen(NOTE_KEY_NAME));
        n += strlen(NOTE_KEY_NAME);
        input[n++] = '\n';
        input[n++] = type;
        memcpy(input + n, pub, pub_len);
        n += pub_len;
        e = gnutls_hash_fast(GNUTLS_DIG_SHA256, input, n, digest);
        if (e < 0)
                return log_error_errno(-EIO, "gnutls_hash_fast failed: %s", gnutls_strerror(e));
        *ret = (struct note_key){.type = type, .pub_len = pub_len};
        memcpy(ret->pub, pub, pub_len);
        memcpy(ret->hash, digest, sizeof(ret->hash));
        return 0;
}

/* The raw point inside CKA_EC_POINT: a DER OCTET STRING (short or one/two-byte long form
 * length) whose content is exactly want bytes. A token that hands back the bare point of
 * exactly that length is accepted too. */
static int ec_point_unwrap(const uint8_t *der, size_t len, size_t want, const uint8_t **ret)
{
        size_t header, content;

        if (len >= 2 && der[0] == 0x04) {
                if (der[1] < 0x80) {
                        header = 2;
                        content = der[1];
                } else if (der[1] == 0x81 && len >= 3) {
                        header = 3;
                        content = der[2];
                } else if (der[1] == 0x82 && len >= 4) {
                        header = 4;
                        content = (size_t)der[2] << 8 | der[3];
                } else
                        header = content = 0;
                if (header > 0 && content == want && len - header == content) {
                        *ret = der + header;
                        return 0;
                }
        }
        if (len == want) {
                *ret = der;
                return 0;
        }
        return -EBADMSG;
}

/* The public key object of the pair (same label, same CKA_ID) as a note key, checked for the
 * curve and point length the key type requires. -ENOENT when there is none (a pair whose
 * generation was interrupted), -EBADMSG when it is not a key we make. */
static int read_public_key(struct store *s, CK_KEY_TYPE key_type, const uint8_t *id, size_t id_len,
                           struct note_key *ret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *publics = NULL;
        _cleanup_free_ void *params = NULL, *point = NULL;
        size_t n, params_len, point_len, want;
        const uint8_t *raw;
        uint8_t type;
        int r;

        r = p11_find_labeled_objects(s, CKO_PUBLIC_KEY, AUDIT_KEY_LABEL, id, id_len, &publics, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        r = p11_read_attribute(s, publics[0], CKA_EC_PARAMS, EC_PARAMS_MAX, AUDIT_KEY_LABEL,
                               &params, &params_len);
        if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;
        if (key_type == CKK_EC_EDWARDS &&
            ((params_len == sizeof(ed25519_oid) && memcmp(params, ed25519_oid, params_len) == 0) ||
             (params_len == sizeof(ed25519_name) &&
              memcmp(params, ed25519_name, params_len) == 0))) {
                type = NOTE_KEY_ED25519;
                want = 32;
        } else if (key_type == CKK_EC && params_len == sizeof(p256_oid) &&
                   memcmp(params, p256_oid, params_len) == 0) {
                type = NOTE_KEY_ECDSA_P256;
                want = 65;
        } else
                return -EBADMSG;
        r = p11_read_attribute(s, publics[0], CKA_EC_POINT, EC_POINT_MAX, AUDIT_KEY_LABEL, &point,
                               &point_len);
        if (r < 0)
                return r == -EFBIG ? -EBADMSG : r;
        r = ec_point_unwrap(point, point_len, want, &raw);
        if (r < 0)
                return r;
        if (type == NOTE_KEY_ECDSA_P256 && raw[0] != 0x04) /* uncompressed only */
                return -EBADMSG;
        return audit_note_key(type, raw, want, ret);
}

/* Whether pair a (pinned: its key is the pinned one) is to be used rather than the best so far. */
static bool better_pair(const struct audit_key *a, bool pinned, const struct audit_key *best,
                        bool best_pinned)
{
        if (best->private_key == CK_INVALID_HANDLE || pinned != best_pinned)
                return best->private_key == CK_INVALID_HANDLE || pinned;
        return a->id_len < best->id_len ||
               (a->id_len == best->id_len && memcmp(a->id, best->id, a->id_len) < 0);
}

/* The complete pair to use: a private key whose public key object is there and readable. Two
 * processes generating at once leave two pairs; every caller takes the smallest CKA_ID, so all
 * sign with the same key, unless a key is pinned (store_audit_key_pin()): then that key's pair
 * comes first. -ENOENT when there is no complete pair. */
static int find_audit_key(struct store *s, struct audit_key *ret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *keys = NULL;
        struct audit_key best = {.private_key = CK_INVALID_HANDLE};
        bool best_pinned = false;
        size_t n;
        int r;

        r = p11_find_labeled_objects(s, CKO_PRIVATE_KEY, AUDIT_KEY_LABEL, NULL, 0, &keys, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ void *id = NULL, *key_type = NULL;
                size_t id_len, key_type_len;
                struct note_key pub;

                r = p11_read_attribute(s, keys[i], CKA_ID, KEY_ID_MAX, AUDIT_KEY_LABEL, &id,
                                       &id_len);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (id_len == 0)
                        continue;
                r = p11_read_attribute(s, keys[i], CKA_KEY_TYPE, sizeof(CK_KEY_TYPE),
                                       AUDIT_KEY_LABEL, &key_type, &key_type_len);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (key_type_len != sizeof(CK_KEY_TYPE))
                        continue;
                r = read_public_key(s, *(CK_KEY_TYPE *)key_type, id, id_len, &pub);
                if (r == -ENOENT)
                        continue;
                if (r == -EBADMSG) {
                        log_warning("Ignoring key \"%s\" on token \"%s\": not an Ed25519 or P-256 "
                                    "key pair credbroker made.",
                                    AUDIT_KEY_LABEL, s->token_label);
                        continue;
                }
                if (r < 0)
                        return r;
                struct audit_key pair = {.private_key = keys[i], .pub = pub, .id_len = id_len};
                bool pinned = s->audit_key_pinned && memcmp(pub.hash, s->audit_key_pin, 4) == 0;
                memcpy(pair.id, id, id_len);
                if (!better_pair(&pair, pinned, &best, best_pinned))
                        continue;
                best = pair;
                best_pinned = pinned;
        }
        if (best.private_key == CK_INVALID_HANDLE)
                return -ENOENT;
        *ret = best;
        return 0;
}

static bool have_mechanism(struct store *s, CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_FLAGS flags)
{
        CK_MECHANISM_INFO info;

        if (s->module->C_GetMechanismInfo(slot, type, &info) != CKR_OK)
                return false;
        return (info.flags & flags) == flags;
}

/* The token's answer to parameters or a curve it does not take, as opposed to a failure. */
static bool rv_is_refusal(CK_RV rv)
{
        return rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_TEMPLATE_INCONSISTENT ||
               rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_CURVE_NOT_SUPPORTED ||
               rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID ||
               rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

static CK_RV generate_pair(struct store *s, CK_MECHANISM_TYPE mechanism_type, CK_KEY_TYPE key_type,
                           const uint8_t *params, size_t params_len, const uint8_t *id,
                           size_t id_len)
{
        CK_MECHANISM mechanism = {mechanism_type, NULL, 0};
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        /* The public half is a private token object too: only a logged-in user can make one, so
         * a look-alike planted without the PIN is never taken for ours. */
        CK_ATTRIBUTE public_template[] = {
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
            {CKA_EC_PARAMS, (void *)params, params_len},
            {CKA_VERIFY, &yes, sizeof(yes)},
            {CKA_LABEL, (void *)AUDIT_KEY_LABEL, strlen(AUDIT_KEY_LABEL)},
            {CKA_ID, (void *)id, id_len},
        };
        CK_ATTRIBUTE private_template[] = {
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
            {CKA_SENSITIVE, &yes, sizeof(yes)},
            {CKA_EXTRACTABLE, &no, sizeof(no)},
            {CKA_SIGN, &yes, sizeof(yes)},
            {CKA_DERIVE, &no, sizeof(no)},
            {CKA_LABEL, (void *)AUDIT_KEY_LABEL, strlen(AUDIT_KEY_LABEL)},
            {CKA_ID, (void *)id, id_len},
        };
        CK_OBJECT_HANDLE public_handle, private_handle;

        return s->module->C_GenerateKeyPair(
            s->session, &mechanism, public_template, ELEMENTSOF(public_template), private_template,
            ELEMENTSOF(private_template), &public_handle, &private_handle);
}

static int generate_audit_key(struct store *s)
{
        CK_SESSION_INFO info;
        uint8_t id[KEY_ID_SIZE];
        CK_RV rv = CKR_MECHANISM_INVALID;
        const char *what = "Ed25519";
        int e;

        e = gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof(id));
        if (e < 0)
                return log_error_errno(-EIO, "gnutls_rnd failed: %s", gnutls_strerror(e));
        rv = s->module->C_GetSessionInfo(s->session, &info);
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_GetSessionInfo", AUDIT_KEY_LABEL, rv);
        }

        rv = CKR_MECHANISM_INVALID;
        if (have_mechanism(s, info.slotID, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR) &&
            have_mechanism(s, info.slotID, CKM_EDDSA, CKF_SIGN)) {
                rv = generate_pair(s, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS, ed25519_oid,
                                   sizeof(ed25519_oid), id, sizeof(id));
                if (rv_is_refusal(rv))
                        rv = generate_pair(s, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS,
                                           ed25519_name, sizeof(ed25519_name), id, sizeof(id));
        }
        if (rv_is_refusal(rv)) {
                if (!have_mechanism(s, info.slotID, CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR) ||
                    !have_mechanism(s, info.slotID, CKM_ECDSA, CKF_SIGN)) {
                        log_error("Token \"%s\" can make neither Ed25519 nor ECDSA P-256 keys; "
                                  "it cannot hold the audit key.",
                                  s->token_label);
                        return -EOPNOTSUPP;
                }
                what = "ECDSA P-256";
                rv = generate_pair(s, CKM_EC_KEY_PAIR_GEN, CKK_EC, p256_oid, sizeof(p256_oid), id,
                                   sizeof(id));
        }
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_GenerateKeyPair", AUDIT_KEY_LABEL, rv);
        }
        log_info("Created the %s audit key \"%s\" on token \"%s\".", what, AUDIT_KEY_LABEL,
                 s->token_label);
        return 0;
}

int store_audit_key(struct store *s, struct note_key *ret)
{
        struct audit_key key;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = find_audit_key(s, &key);
        if (r == -ENOENT) {
                r = generate_audit_key(s);
                if (r < 0)
                        return r;
                fault_point("audit-key-after-generate");
                /* Found again rather than taken from the generation: a pair another process
                 * made meanwhile may have the smaller CKA_ID, and every caller must agree. */
                r = find_audit_key(s, &key);
                if (r == -ENOENT)
                        r = log_error_errno(-EIO,
                                            "The audit key generated on token \"%s\" cannot be "
                                            "found again.",
                                            s->token_label);
        }
        if (r < 0)
                return r;
        *ret = key.pub;
        return 0;
}

int store_audit_key_pin(struct store *s, const uint8_t hash[4], struct note_key *ret)
{
        struct audit_key key;
        int r;

        if (!s || !hash || !ret)
                return -EINVAL;
        s->audit_key_pinned = true;
        memcpy(s->audit_key_pin, hash, 4);
        s->audit_key_handle = CK_INVALID_HANDLE; /* found again, the pinned pair first */
        r = find_audit_key(s, &key);
        if (r < 0)
                return r;
        if (memcmp(key.pub.hash, hash, 4) != 0) {
                s->audit_key_pinned = false;
                return -ENOKEY;
        }
        *ret = key.pub;
        return 0;
}

int store_audit_sign(struct store *s, const void *body, size_t len, uint8_t sig[static 64],
                     size_t *ret_len, bool *ret_looked_up)
{
        bool looked_up = false;
        CK_MECHANISM mechanism = {CKM_EDDSA, NULL, 0};
        uint8_t digest[32];
        const void *data = body;
        size_t data_len = len;
        struct audit_key key;
        CK_ULONG sig_len = 64;
        CK_RV rv;
        int r, e;

        if (!s || (!body && len > 0) || !sig || !ret_len)
                return -EINVAL;
        if (s->audit_key_handle != CK_INVALID_HANDLE && s->session_open &&
            s->audit_key_session == s->session) {
                key.private_key = s->audit_key_handle;
                key.pub.type = s->audit_key_type;
        } else {
                r = find_audit_key(s, &key);
                if (r == -ENOENT)
                        return log_error_errno(-ENOKEY, "Token \"%s\" has no audit key \"%s\".",
                                               s->token_label, AUDIT_KEY_LABEL);
                if (r < 0)
                        return r;
                s->audit_key_session = s->session;
                s->audit_key_handle = key.private_key;
                s->audit_key_type = key.pub.type;
                looked_up = true;
        }
        if (key.pub.type == NOTE_KEY_ECDSA_P256) {
                e = gnutls_hash_fast(GNUTLS_DIG_SHA256, body, len, digest);
                if (e < 0)
                        return log_error_errno(-EIO, "gnutls_hash_fast failed: %s",
                                               gnutls_strerror(e));
                mechanism.mechanism = CKM_ECDSA;
                data = digest;
                data_len = sizeof(digest);
        }

        rv = s->module->C_SignInit(s->session, &mechanism, key.private_key);
        if (rv != CKR_OK) {
                s->audit_key_handle = CK_INVALID_HANDLE; /* found again next time */
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_SignInit", AUDIT_KEY_LABEL, rv);
        }
        rv = s->module->C_Sign(s->session, (CK_BYTE_PTR)data, data_len, sig, &sig_len);
        if (rv == CKR_BUFFER_TOO_SMALL) {
                /* Not a key we make; the operation stays active until the session ends. */
                s->session_lost = true;
                return -EBADMSG;
        }
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_Sign", AUDIT_KEY_LABEL, rv);
        }
        if (sig_len != 64)
                return -EBADMSG;
        *ret_len = sig_len;
        if (ret_looked_up)
                *ret_looked_up = looked_up;
        return 0;
}
