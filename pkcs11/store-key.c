/* The assertion key and certificate of an account (design.md §4): an RSA key pair generated inside
 * the token, never extractable, and an X.509 certificate (or PKCS#10 request) built by GnuTLS and
 * signed by that key through our own PKCS#11 session, so neither a second PKCS#11 stack nor a
 * second login is involved and the private key never leaves the token. */
#include "store-internal.h"
#include "store-key-internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "fault.h"
#include "log.h"
#include "util.h"

#define SECONDS_PER_DAY 86400ULL
/* RSA signatures are as long as the modulus: 4096 bits at most here. */

static void x509_crt_deinitp(gnutls_x509_crt_t *crt)
{
        if (*crt)
                gnutls_x509_crt_deinit(*crt);
}

static void x509_crq_deinitp(gnutls_x509_crq_t *crq)
{
        if (*crq)
                gnutls_x509_crq_deinit(*crq);
}

static void pubkey_deinitp(gnutls_pubkey_t *key)
{
        if (*key)
                gnutls_pubkey_deinit(*key);
}

static void privkey_deinitp(gnutls_privkey_t *key)
{
        if (*key)
                gnutls_privkey_deinit(*key);
}

static void datum_freep(gnutls_datum_t *d)
{
        gnutls_free(d->data);
        d->data = NULL;
        d->size = 0;
}

/* The one place a GnuTLS error becomes an errno, with its text in the log. */
static int gnutls_fail(const char *call, int error)
{
        if (error == GNUTLS_E_MEMORY_ERROR)
                return -ENOMEM;
        return log_error_errno(EIO, "%s failed: %s", call, gnutls_strerror(error));
}

/* ---- finding objects that are not CKO_DATA ---- */

int p11_find_labeled_objects(struct store *s, CK_OBJECT_CLASS class, const char *label,
                             const void *id, size_t id_len, CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_LABEL, (void *)label, strlen(label)},
            {CKA_ID, (void *)id, id_len},
        };

        return p11_find_objects(s, template, id ? 5 : 4, label, ret, ret_n);
}

static void labels(const char *account, char key[static LABEL_MAX], char cert[static LABEL_MAX])
{
        snprintf(key, LABEL_MAX, "%s" ASSERTION_KEY_SUFFIX, account);
        snprintf(cert, LABEL_MAX, "%s" ASSERTION_CERT_SUFFIX, account);
}

static int certificate_not_before(const uint8_t *der, size_t len, time_t *ret)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        gnutls_datum_t datum = {(unsigned char *)der, (unsigned)len};
        int e;

        e = gnutls_x509_crt_init(&crt);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_init", e);
        e = gnutls_x509_crt_import(crt, &datum, GNUTLS_X509_FMT_DER);
        if (e < 0)
                return -EBADMSG;
        *ret = gnutls_x509_crt_get_activation_time(crt);
        return 0;
}

int p11_find_assertion_pair(struct store *s, const char *account, CK_OBJECT_HANDLE *ret_key,
                            uint8_t **ret_der, size_t *ret_der_len)
{
        _cleanup_free_ CK_OBJECT_HANDLE *certs = NULL;
        _cleanup_free_ uint8_t *best_der = NULL;
        char key_label[LABEL_MAX], cert_label[LABEL_MAX];
        CK_OBJECT_HANDLE best_key = CK_INVALID_HANDLE;
        size_t n_certs, best_len = 0, n_pairs = 0;
        time_t best_start = 0;
        int r;

        labels(account, key_label, cert_label);
        r = p11_find_labeled_objects(s, CKO_CERTIFICATE, cert_label, NULL, 0, &certs, &n_certs);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_certs; i++) {
                _cleanup_free_ CK_OBJECT_HANDLE *keys = NULL;
                _cleanup_free_ void *id = NULL, *der = NULL;
                size_t id_len, der_len, n_keys;
                time_t start = 0;

                r = p11_read_attribute(s, certs[i], CKA_ID, KEY_ID_MAX, cert_label, &id, &id_len);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (id_len == 0)
                        continue;
                r = p11_read_attribute(s, certs[i], CKA_VALUE, CERT_DER_MAX, cert_label, &der,
                                       &der_len);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (certificate_not_before(der, der_len, &start) < 0) {
                        log_warning("Ignoring certificate \"%s\" on token \"%s\": not a DER "
                                    "X.509 certificate.",
                                    cert_label, s->token_label);
                        continue;
                }
                r = p11_find_labeled_objects(s, CKO_PRIVATE_KEY, key_label, id, id_len, &keys,
                                             &n_keys);
                if (r < 0)
                        return r;
                if (n_keys == 0)
                        continue;
                n_pairs++;
                if (!best_der || start > best_start) {
                        free(best_der);
                        best_der = TAKE_PTR(der);
                        best_len = der_len;
                        best_key = keys[0];
                        best_start = start;
                }
        }
        if (!best_der)
                return -ENOENT;
        if (n_pairs > 1)
                log_warning("Account %s has %zu assertion key pairs (an interrupted keygen "
                            "--replace?); using the newest. Run keygen --replace to clean up.",
                            account, n_pairs);
        *ret_key = best_key;
        *ret_der = TAKE_PTR(best_der);
        *ret_der_len = best_len;
        return 0;
}

/* ---- certificate facts ---- */

void store_certificate_info_clear(struct store_certificate_info *info)
{
        if (!info)
                return;
        free(info->subject);
        free(info->issuer);
        free(info->pem);
        memset(info, 0, sizeof(*info));
}

static int hex_thumbprint(gnutls_digest_algorithm_t algorithm, const gnutls_datum_t *der, char *out,
                          size_t out_size)
{
        uint8_t digest[64];
        size_t digest_len = gnutls_hash_get_len(algorithm);
        gnutls_datum_t datum = {digest, (unsigned)digest_len};
        size_t size = out_size;
        int e;

        if (digest_len == 0 || digest_len > sizeof(digest) || out_size < digest_len * 2 + 1)
                return -EINVAL;
        e = gnutls_hash_fast(algorithm, der->data, der->size, digest);
        if (e < 0)
                return gnutls_fail("gnutls_hash_fast", e);
        e = gnutls_hex_encode(&datum, out, &size);
        if (e < 0)
                return gnutls_fail("gnutls_hex_encode", e);
        /* The Entra portal shows thumbprints in uppercase. */
        for (size_t i = 0; out[i]; i++)
                out[i] = (char)toupper((unsigned char)out[i]);
        return 0;
}

static int datum_to_string(gnutls_datum_t *d, char **ret)
{
        char *s = strndup((const char *)d->data, d->size);

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int certificate_info_from_der(const gnutls_datum_t *der, struct store_certificate_info *ret)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(datum_freep) gnutls_datum_t subject = {0}, issuer = {0}, pem = {0};
        struct store_certificate_info info = {0};
        unsigned bits = 0;
        time_t start, end;
        int e, r;

        e = gnutls_x509_crt_init(&crt);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_init", e);
        e = gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER);
        if (e < 0)
                return -EBADMSG;
        e = gnutls_x509_crt_get_dn3(crt, &subject, 0);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_get_dn3", e);
        e = gnutls_x509_crt_get_issuer_dn3(crt, &issuer, 0);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_get_issuer_dn3", e);
        e = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_export2", e);
        start = gnutls_x509_crt_get_activation_time(crt);
        end = gnutls_x509_crt_get_expiration_time(crt);
        if (gnutls_x509_crt_get_pk_algorithm(crt, &bits) != GNUTLS_PK_RSA)
                bits = 0;

        info.not_before = start > 0 ? (uint64_t)start : 0;
        info.not_after = end > 0 ? (uint64_t)end : 0;
        info.bits = bits;
        r = hex_thumbprint(GNUTLS_DIG_SHA1, der, info.sha1_hex, sizeof(info.sha1_hex));
        if (r >= 0)
                r = hex_thumbprint(GNUTLS_DIG_SHA256, der, info.sha256_hex,
                                   sizeof(info.sha256_hex));
        if (r >= 0)
                r = datum_to_string(&subject, &info.subject);
        if (r >= 0)
                r = datum_to_string(&issuer, &info.issuer);
        if (r >= 0)
                r = datum_to_string(&pem, &info.pem);
        if (r < 0) {
                store_certificate_info_clear(&info);
                return r;
        }
        *ret = info;
        return 0;
}

int store_get_certificate(struct store *s, const char *account, struct store_certificate_info *ret)
{
        _cleanup_free_ uint8_t *der = NULL;
        CK_OBJECT_HANDLE key;
        gnutls_datum_t datum;
        size_t len;
        int r;

        if (!s || !p11_account_is_valid(account) || !ret)
                return -EINVAL;
        r = p11_find_assertion_pair(s, account, &key, &der, &len);
        if (r < 0)
                return r;
        datum = (gnutls_datum_t){der, (unsigned)len};
        return certificate_info_from_der(&datum, ret);
}

/* ---- signing through our session ---- */

int p11_sign_in_token(struct store *s, CK_OBJECT_HANDLE key, CK_MECHANISM *mechanism,
                      const void *data, size_t len, uint8_t signature[static SIGNATURE_MAX],
                      size_t *ret_len)
{
        CK_ULONG signature_len = SIGNATURE_MAX;
        CK_RV rv;

        rv = s->module->C_SignInit(s->session, mechanism, key);
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_SignInit", "the assertion key", rv);
        /* One call into a buffer as large as any key we make, rather than asking the size first:
         * the broker signs on every client-credential refresh. */
        rv = s->module->C_Sign(s->session, (CK_BYTE_PTR)data, len, signature, &signature_len);
        if (rv == CKR_BUFFER_TOO_SMALL) {
                log_error("The assertion key on token \"%s\" is larger than 4096 bits; it is "
                          "not one credbroker made. Replace it with credbroker account keygen "
                          "--replace.",
                          s->token_label);
                s->session_lost = true; /* ends the signing operation left active */
                return -EFBIG;
        }
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_Sign", "the assertion key", rv);
        if (signature_len == 0 || signature_len > SIGNATURE_MAX)
                return -EBADMSG;
        *ret_len = signature_len;
        return 0;
}

struct token_key {
        struct store *store;
        CK_OBJECT_HANDLE handle;
        unsigned bits;
};

/* Certificates and requests are signed sha256WithRSAEncryption. For that GnuTLS hands the
 * callback GNUTLS_SIGN_RSA_RAW with the DigestInfo already built, so the mechanism is
 * CKM_RSA_PKCS, which only pads and exponentiates. Nothing else is offered (token_key_info). */
static int token_key_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                               unsigned flags, const gnutls_datum_t *digest_info,
                               gnutls_datum_t *signature)
{
        struct token_key *k = userdata;
        CK_MECHANISM mechanism = {CKM_RSA_PKCS, NULL, 0};
        uint8_t buffer[SIGNATURE_MAX];
        size_t len;

        if (algo != GNUTLS_SIGN_RSA_RAW)
                return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
        if (p11_sign_in_token(k->store, k->handle, &mechanism, digest_info->data, digest_info->size,
                              buffer, &len) < 0)
                return GNUTLS_E_PK_SIGN_FAILED;
        signature->data = gnutls_malloc(len);
        if (!signature->data)
                return GNUTLS_E_MEMORY_ERROR;
        memcpy(signature->data, buffer, len);
        signature->size = (unsigned)len;
        return 0;
}

static int token_key_info(gnutls_privkey_t key, unsigned flags, void *userdata)
{
        struct token_key *k = userdata;

        if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
                return GNUTLS_PK_RSA;
        if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
                return (int)k->bits;
        if (flags & GNUTLS_PRIVKEY_INFO_SIGN_ALGO)
                return GNUTLS_SIGN_RSA_SHA256;
        if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO) {
                gnutls_sign_algorithm_t algo = GNUTLS_FLAGS_TO_SIGN_ALGO(flags);

                return algo == GNUTLS_SIGN_RSA_SHA256;
        }
        return -1;
}

static int token_privkey(struct token_key *k, gnutls_privkey_t *ret)
{
        _cleanup_(privkey_deinitp) gnutls_privkey_t key = NULL;
        int e;

        e = gnutls_privkey_init(&key);
        if (e < 0)
                return gnutls_fail("gnutls_privkey_init", e);
        e = gnutls_privkey_import_ext4(key, k, NULL, token_key_sign_hash, NULL, NULL,
                                       token_key_info, 0);
        if (e < 0)
                return gnutls_fail("gnutls_privkey_import_ext4", e);
        *ret = TAKE_PTR(key);
        return 0;
}

/* ---- key generation ---- */

static bool subject_is_plain(const char *subject)
{
        size_t len = strlen(subject);

        if (len == 0 || len > STORE_SUBJECT_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)subject[i] < ' ' || (unsigned char)subject[i] > '~')
                        return false;
        return true;
}

static int check_keygen_options(const struct store_keygen_options *o, const char *subject)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t probe = NULL;
        const char *error_at = NULL;
        int e;

        if (o->bits != 2048 && o->bits != 3072 && o->bits != 4096) {
                log_error("RSA key size %u is not supported; use 2048, 3072 or 4096.", o->bits);
                return -EINVAL;
        }
        if (o->days == 0 || o->days > STORE_CERT_DAYS_MAX) {
                log_error("Certificate validity of %u days is out of range 1..%d.", o->days,
                          STORE_CERT_DAYS_MAX);
                return -EINVAL;
        }
        if (o->now == 0 || o->now > UINT64_C(253402300799) - o->days * SECONDS_PER_DAY)
                return -EINVAL;
        if (!subject_is_plain(subject)) {
                log_error("The subject must be 1..%d printable ASCII characters.",
                          STORE_SUBJECT_MAX);
                return -EINVAL;
        }
        /* Before any key exists: a DN GnuTLS refuses must not cost a key generation. */
        e = gnutls_x509_crt_init(&probe);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_init", e);
        e = gnutls_x509_crt_set_dn(probe, subject, &error_at);
        if (e < 0) {
                log_error(
                    "The subject \"%s\" is not a distinguished name like \"CN=alerts,O=Contoso\" "
                    "(%s%s%s).",
                    subject, gnutls_strerror(e), error_at ? " at: " : "", error_at ? error_at : "");
                return -EINVAL;
        }
        return 0;
}

static int generate_key_pair(struct store *s, const char *key_label, const uint8_t *id,
                             unsigned bits, CK_OBJECT_HANDLE *ret_public,
                             CK_OBJECT_HANDLE *ret_private)
{
        CK_MECHANISM mechanism = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG modulus_bits = bits;
        CK_BYTE exponent[] = {0x01, 0x00, 0x01};
        CK_KEY_TYPE key_type = CKK_RSA;
        /* The public half is a session object: the certificate carries it from now on. */
        CK_ATTRIBUTE public_template[] = {
            {CKA_TOKEN, &no, sizeof(no)},
            {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
            {CKA_MODULUS_BITS, &modulus_bits, sizeof(modulus_bits)},
            {CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent)},
            {CKA_VERIFY, &yes, sizeof(yes)},
            {CKA_ENCRYPT, &no, sizeof(no)},
            {CKA_WRAP, &no, sizeof(no)},
            {CKA_LABEL, (void *)key_label, strlen(key_label)},
            {CKA_ID, (void *)id, KEY_ID_SIZE},
        };
        CK_ATTRIBUTE private_template[] = {
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
            {CKA_SENSITIVE, &yes, sizeof(yes)},
            {CKA_EXTRACTABLE, &no, sizeof(no)},
            {CKA_SIGN, &yes, sizeof(yes)},
            {CKA_DECRYPT, &no, sizeof(no)},
            {CKA_UNWRAP, &no, sizeof(no)},
            {CKA_DERIVE, &no, sizeof(no)},
            {CKA_LABEL, (void *)key_label, strlen(key_label)},
            {CKA_ID, (void *)id, KEY_ID_SIZE},
        };
        CK_RV rv;

        rv = s->module->C_GenerateKeyPair(s->session, &mechanism, public_template,
                                          ELEMENTSOF(public_template), private_template,
                                          ELEMENTSOF(private_template), ret_public, ret_private);
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_GenerateKeyPair", key_label, rv);
        return 0;
}

static int public_key_of(struct store *s, CK_OBJECT_HANDLE handle, gnutls_pubkey_t *ret)
{
        _cleanup_(pubkey_deinitp) gnutls_pubkey_t key = NULL;
        _cleanup_free_ void *modulus = NULL, *exponent = NULL;
        size_t modulus_len, exponent_len;
        gnutls_datum_t m, e;
        int r, error;

        r = p11_read_attribute(s, handle, CKA_MODULUS, SIGNATURE_MAX, "the public key", &modulus,
                               &modulus_len);
        if (r < 0)
                return r;
        r = p11_read_attribute(s, handle, CKA_PUBLIC_EXPONENT, 16, "the public key", &exponent,
                               &exponent_len);
        if (r < 0)
                return r;
        if (modulus_len == 0 || exponent_len == 0)
                return -EBADMSG;
        m = (gnutls_datum_t){modulus, (unsigned)modulus_len};
        e = (gnutls_datum_t){exponent, (unsigned)exponent_len};
        error = gnutls_pubkey_init(&key);
        if (error < 0)
                return gnutls_fail("gnutls_pubkey_init", error);
        error = gnutls_pubkey_import_rsa_raw(key, &m, &e);
        if (error < 0)
                return gnutls_fail("gnutls_pubkey_import_rsa_raw", error);
        *ret = TAKE_PTR(key);
        return 0;
}

static int build_certificate(gnutls_pubkey_t public_key, gnutls_privkey_t signer,
                             const char *subject, const struct store_keygen_options *o,
                             gnutls_datum_t *ret_der, gnutls_datum_t *ret_subject)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        uint8_t serial[16], key_id[64];
        size_t key_id_len = sizeof(key_id);
        int e;

        /* A positive serial of 127 random bits (RFC 5280 §4.1.2.2: at most 20 octets). */
        e = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
        if (e < 0)
                return gnutls_fail("gnutls_rnd", e);
        serial[0] = (serial[0] & 0x7f) | 0x40;

        e = gnutls_x509_crt_init(&crt);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_init", e);
        if ((e = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
            (e = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
            (e = gnutls_x509_crt_set_dn(crt, subject, NULL)) < 0 ||
            (e = gnutls_x509_crt_set_issuer_dn(crt, subject, NULL)) < 0 ||
            (e = gnutls_x509_crt_set_activation_time(crt, (time_t)o->now)) < 0 ||
            (e = gnutls_x509_crt_set_expiration_time(
                 crt, (time_t)(o->now + o->days * SECONDS_PER_DAY))) < 0 ||
            (e = gnutls_x509_crt_set_pubkey(crt, public_key)) < 0 ||
            (e = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
            (e = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
            (e = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0 ||
            (e = gnutls_pubkey_get_key_id(public_key, GNUTLS_KEYID_USE_SHA1, key_id, &key_id_len)) <
                0 ||
            (e = gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_len)) < 0 ||
            (e = gnutls_x509_crt_set_authority_key_id(crt, key_id, key_id_len)) < 0)
                return gnutls_fail("Building the certificate", e);
        e = gnutls_x509_crt_privkey_sign(crt, crt, signer, GNUTLS_DIG_SHA256, 0);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_privkey_sign", e);
        e = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, ret_der);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_export2", e);
        e = gnutls_x509_crt_get_raw_dn(crt, ret_subject);
        if (e < 0) {
                datum_freep(ret_der);
                return gnutls_fail("gnutls_x509_crt_get_raw_dn", e);
        }
        return 0;
}

static int build_request(gnutls_pubkey_t public_key, gnutls_privkey_t signer, const char *subject,
                         char **ret_pem)
{
        _cleanup_(x509_crq_deinitp) gnutls_x509_crq_t crq = NULL;
        _cleanup_(datum_freep) gnutls_datum_t pem = {0};
        int e;

        e = gnutls_x509_crq_init(&crq);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crq_init", e);
        if ((e = gnutls_x509_crq_set_version(crq, 1)) < 0 ||
            (e = gnutls_x509_crq_set_dn(crq, subject, NULL)) < 0 ||
            (e = gnutls_x509_crq_set_pubkey(crq, public_key)) < 0 ||
            (e = gnutls_x509_crq_set_key_usage(crq, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0)
                return gnutls_fail("Building the certificate request", e);
        e = gnutls_x509_crq_privkey_sign(crq, signer, GNUTLS_DIG_SHA256, 0);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crq_privkey_sign", e);
        e = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &pem);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crq_export2", e);
        return datum_to_string(&pem, ret_pem);
}

static int create_certificate_object(struct store *s, const char *label, const uint8_t *id,
                                     size_t id_len, const gnutls_datum_t *der,
                                     const gnutls_datum_t *subject, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_CLASS class = CKO_CERTIFICATE;
        CK_CERTIFICATE_TYPE type = CKC_X_509;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_CERTIFICATE_TYPE, &type, sizeof(type)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_LABEL, (void *)label, strlen(label)},
            {CKA_ID, (void *)id, id_len},
            {CKA_SUBJECT, subject->data, subject->size},
            {CKA_VALUE, der->data, der->size},
        };
        CK_RV rv;

        rv = s->module->C_CreateObject(s->session, template, ELEMENTSOF(template), ret);
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_CreateObject", label, rv);
        return 0;
}

/* Every key and certificate with the account's labels, whatever their CKA_ID: the objects a
 * --replace retires (orphans of an interrupted run included). */
static int find_existing(struct store *s, const char *key_label, const char *cert_label,
                         CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *keys = NULL, *certs = NULL;
        CK_OBJECT_HANDLE *all;
        size_t n_keys, n_certs;
        int r;

        r = p11_find_labeled_objects(s, CKO_PRIVATE_KEY, key_label, NULL, 0, &keys, &n_keys);
        if (r < 0)
                return r;
        r = p11_find_labeled_objects(s, CKO_CERTIFICATE, cert_label, NULL, 0, &certs, &n_certs);
        if (r < 0)
                return r;
        all = calloc(n_keys + n_certs + 1, sizeof(*all));
        if (!all)
                return -ENOMEM;
        if (n_keys)
                memcpy(all, keys, n_keys * sizeof(*all));
        if (n_certs)
                memcpy(all + n_keys, certs, n_certs * sizeof(*all));
        *ret = all;
        *ret_n = n_keys + n_certs;
        return 0;
}

int store_keygen(struct store *s, const char *account, const struct store_keygen_options *options,
                 struct store_certificate_info *ret_cert, char **ret_csr_pem)
{
        _cleanup_free_ CK_OBJECT_HANDLE *old = NULL;
        _cleanup_(pubkey_deinitp) gnutls_pubkey_t public_key = NULL;
        _cleanup_(privkey_deinitp) gnutls_privkey_t signer = NULL;
        _cleanup_(datum_freep) gnutls_datum_t der = {0}, subject_der = {0};
        _cleanup_free_ char *csr = NULL;
        struct store_certificate_info info = {0};
        char key_label[LABEL_MAX], cert_label[LABEL_MAX], default_subject[NAME_MAX_LEN + 32];
        CK_OBJECT_HANDLE public_handle = CK_INVALID_HANDLE, private_handle = CK_INVALID_HANDLE;
        CK_OBJECT_HANDLE cert_handle = CK_INVALID_HANDLE;
        struct token_key token_key;
        const char *subject;
        uint8_t id[KEY_ID_SIZE];
        size_t n_old;
        int r, e;

        if (!s || !p11_account_is_valid(account) || !options || !ret_cert)
                return -EINVAL;
        snprintf(default_subject, sizeof(default_subject), "CN=credbroker %s", account);
        subject = options->subject ? options->subject : default_subject;
        r = check_keygen_options(options, subject);
        if (r < 0)
                return r;

        labels(account, key_label, cert_label);
        r = find_existing(s, key_label, cert_label, &old, &n_old);
        if (r < 0)
                return r;
        if (n_old > 0 && !options->replace)
                return -EEXIST;

        e = gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof(id));
        if (e < 0)
                return gnutls_fail("gnutls_rnd", e);
        r = generate_key_pair(s, key_label, id, options->bits, &public_handle, &private_handle);
        if (r < 0)
                return r;
        fault_point("keygen-after-key");

        r = public_key_of(s, public_handle, &public_key);
        if (r < 0)
                goto fail;
        token_key = (struct token_key){s, private_handle, options->bits};
        r = token_privkey(&token_key, &signer);
        if (r < 0)
                goto fail;
        r = build_certificate(public_key, signer, subject, options, &der, &subject_der);
        if (r < 0)
                goto fail;
        if (ret_csr_pem && options->csr) {
                r = build_request(public_key, signer, subject, &csr);
                if (r < 0)
                        goto fail;
        }
        r = certificate_info_from_der(&der, &info);
        if (r < 0)
                goto fail;
        r = create_certificate_object(s, cert_label, id, sizeof(id), &der, &subject_der,
                                      &cert_handle);
        if (r < 0)
                goto fail;
        fault_point("keygen-after-cert");

        /* Only now is the new pair complete: the old one can go. A leftover is harmless (the
         * newest pair is used) and the next --replace removes it. */
        for (size_t i = 0; i < n_old; i++) {
                r = p11_destroy_object(s, old[i], key_label);
                if (r < 0 && r != -ENOENT)
                        log_warning("Could not destroy an old assertion key or certificate of "
                                    "account %s; run keygen --replace again to clean up.",
                                    account);
        }
        (void)p11_destroy_object(s, public_handle, "the session public key");

        *ret_cert = info;
        if (ret_csr_pem)
                *ret_csr_pem = TAKE_PTR(csr);
        return 0;

fail:
        store_certificate_info_clear(&info);
        if (cert_handle != CK_INVALID_HANDLE)
                (void)p11_destroy_object(s, cert_handle, cert_label);
        if (p11_destroy_object(s, private_handle, key_label) < 0)
                log_warning("Could not destroy the new, unused key \"%s\"; it is ignored without "
                            "a certificate and the next keygen --replace removes it.",
                            key_label);
        (void)p11_destroy_object(s, public_handle, "the session public key");
        return r;
}

/* ---- a CA-issued certificate for the key ---- */

static int public_key_id(gnutls_pubkey_t key, uint8_t out[static 32])
{
        size_t size = 32;
        int e;

        e = gnutls_pubkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, out, &size);
        if (e < 0)
                return gnutls_fail("gnutls_pubkey_get_key_id", e);
        return size == 32 ? 0 : -EBADMSG;
}

/* The account's private key whose public half is the certificate's, and its CKA_ID. */
static int find_key_of(struct store *s, const char *key_label, gnutls_pubkey_t wanted,
                       void **ret_id, size_t *ret_id_len)
{
        _cleanup_free_ CK_OBJECT_HANDLE *keys = NULL;
        uint8_t wanted_id[32];
        size_t n_keys;
        int r;

        r = public_key_id(wanted, wanted_id);
        if (r < 0)
                return r;
        r = p11_find_labeled_objects(s, CKO_PRIVATE_KEY, key_label, NULL, 0, &keys, &n_keys);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_keys; i++) {
                _cleanup_(pubkey_deinitp) gnutls_pubkey_t candidate = NULL;
                uint8_t candidate_id[32];

                /* CKA_MODULUS and CKA_PUBLIC_EXPONENT are public even on a sensitive key. */
                r = public_key_of(s, keys[i], &candidate);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                r = public_key_id(candidate, candidate_id);
                if (r < 0)
                        return r;
                if (memcmp(candidate_id, wanted_id, sizeof(wanted_id)) != 0)
                        continue;
                r = p11_read_attribute(s, keys[i], CKA_ID, KEY_ID_MAX, key_label, ret_id,
                                       ret_id_len);
                if (r < 0)
                        return r;
                return *ret_id_len > 0 ? 0 : -EBADMSG;
        }
        return -ENOKEY;
}

int store_import_certificate(struct store *s, const char *account, const void *data, size_t len,
                             struct store_certificate_info *ret)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(pubkey_deinitp) gnutls_pubkey_t public_key = NULL;
        _cleanup_(datum_freep) gnutls_datum_t der = {0}, subject = {0};
        _cleanup_free_ CK_OBJECT_HANDLE *old = NULL;
        _cleanup_free_ void *id = NULL;
        struct store_certificate_info info = {0};
        char key_label[LABEL_MAX], cert_label[LABEL_MAX];
        gnutls_datum_t input = {(unsigned char *)data, (unsigned)len};
        CK_OBJECT_HANDLE handle;
        size_t id_len = 0, n_old;
        int r, e;

        if (!s || !p11_account_is_valid(account) || !data || len == 0 || len > CERT_PEM_MAX || !ret)
                return -EINVAL;

        e = gnutls_x509_crt_init(&crt);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_init", e);
        e = gnutls_x509_crt_import(crt, &input,
                                   memmem(data, len, "-----BEGIN ", 11) ? GNUTLS_X509_FMT_PEM
                                                                        : GNUTLS_X509_FMT_DER);
        if (e < 0)
                return -EBADMSG;
        e = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_export2", e);
        if (der.size > CERT_DER_MAX)
                return -EFBIG;
        e = gnutls_pubkey_init(&public_key);
        if (e < 0)
                return gnutls_fail("gnutls_pubkey_init", e);
        e = gnutls_pubkey_import_x509(public_key, crt, 0);
        if (e < 0)
                return -EBADMSG;
        if (gnutls_pubkey_get_pk_algorithm(public_key, NULL) != GNUTLS_PK_RSA)
                return -ENOKEY;

        labels(account, key_label, cert_label);
        r = find_key_of(s, key_label, public_key, &id, &id_len);
        if (r < 0)
                return r;
        e = gnutls_x509_crt_get_raw_dn(crt, &subject);
        if (e < 0)
                return gnutls_fail("gnutls_x509_crt_get_raw_dn", e);
        r = certificate_info_from_der(&der, &info);
        if (r < 0)
                return r;

        /* The certificates this one replaces: those of the same key. New first, then the old. */
        r = p11_find_labeled_objects(s, CKO_CERTIFICATE, cert_label, id, id_len, &old, &n_old);
        if (r >= 0)
                r = create_certificate_object(s, cert_label, id, id_len, &der, &subject, &handle);
        if (r < 0) {
                store_certificate_info_clear(&info);
                return r;
        }
        for (size_t i = 0; i < n_old; i++) {
                r = p11_destroy_object(s, old[i], cert_label);
                if (r < 0 && r != -ENOENT)
                        log_warning("Could not destroy the previous certificate of account %s; "
                                    "import the certificate again to clean up.",
                                    account);
        }
        *ret = info;
        return 0;
}
