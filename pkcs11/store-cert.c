/* The certificate side of an account's assertion key: the facts shown to an administrator
 * (thumbprints, subject, validity), building the self-signed X.509 certificate and the PKCS#10
 * request that keygen signs with the token's key (store-key-sign.c), storing a certificate
 * object, and importing a CA-issued certificate for the key. */
#include "store-internal.h"
#include "store-key-internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <time.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "util.h"

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
                return p11_gnutls_fail("gnutls_hash_fast", e);
        e = gnutls_hex_encode(&datum, out, &size);
        if (e < 0)
                return p11_gnutls_fail("gnutls_hex_encode", e);
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

int p11_certificate_info_from_der(const gnutls_datum_t *der, struct store_certificate_info *ret)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(datum_freep) gnutls_datum_t subject = {0}, issuer = {0}, pem = {0};
        struct store_certificate_info info = {0};
        unsigned bits = 0;
        time_t start, end;
        int e, r;

        e = gnutls_x509_crt_init(&crt);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_init", e);
        e = gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER);
        if (e < 0)
                return -EBADMSG;
        e = gnutls_x509_crt_get_dn3(crt, &subject, 0);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_get_dn3", e);
        e = gnutls_x509_crt_get_issuer_dn3(crt, &issuer, 0);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_get_issuer_dn3", e);
        e = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_export2", e);
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
        return p11_certificate_info_from_der(&datum, ret);
}

int p11_build_certificate(gnutls_pubkey_t public_key, gnutls_privkey_t signer, const char *subject,
                          const struct store_keygen_options *o, gnutls_datum_t *ret_der,
                          gnutls_datum_t *ret_subject)
{
        _cleanup_(x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        uint8_t serial[16], key_id[64];
        size_t key_id_len = sizeof(key_id);
        int e;

        /* A positive serial of 127 random bits (RFC 5280 §4.1.2.2: at most 20 octets). */
        e = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
        if (e < 0)
                return p11_gnutls_fail("gnutls_rnd", e);
        serial[0] = (serial[0] & 0x7f) | 0x40;

        e = gnutls_x509_crt_init(&crt);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_init", e);
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
                return p11_gnutls_fail("Building the certificate", e);
        e = gnutls_x509_crt_privkey_sign(crt, crt, signer, GNUTLS_DIG_SHA256, 0);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_privkey_sign", e);
        e = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, ret_der);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_export2", e);
        e = gnutls_x509_crt_get_raw_dn(crt, ret_subject);
        if (e < 0) {
                datum_freep(ret_der);
                return p11_gnutls_fail("gnutls_x509_crt_get_raw_dn", e);
        }
        return 0;
}

int p11_build_request(gnutls_pubkey_t public_key, gnutls_privkey_t signer, const char *subject,
                      char **ret_pem)
{
        _cleanup_(x509_crq_deinitp) gnutls_x509_crq_t crq = NULL;
        _cleanup_(datum_freep) gnutls_datum_t pem = {0};
        int e;

        e = gnutls_x509_crq_init(&crq);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crq_init", e);
        if ((e = gnutls_x509_crq_set_version(crq, 1)) < 0 ||
            (e = gnutls_x509_crq_set_dn(crq, subject, NULL)) < 0 ||
            (e = gnutls_x509_crq_set_pubkey(crq, public_key)) < 0 ||
            (e = gnutls_x509_crq_set_key_usage(crq, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0)
                return p11_gnutls_fail("Building the certificate request", e);
        e = gnutls_x509_crq_privkey_sign(crq, signer, GNUTLS_DIG_SHA256, 0);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crq_privkey_sign", e);
        e = gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &pem);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crq_export2", e);
        return datum_to_string(&pem, ret_pem);
}

int p11_create_certificate_object(struct store *s, const char *label, const uint8_t *id,
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

/* ---- a CA-issued certificate for the key ---- */

static int public_key_id(gnutls_pubkey_t key, uint8_t out[static 32])
{
        size_t size = 32;
        int e;

        e = gnutls_pubkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, out, &size);
        if (e < 0)
                return p11_gnutls_fail("gnutls_pubkey_get_key_id", e);
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
                r = p11_public_key_of(s, keys[i], &candidate);
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
                return p11_gnutls_fail("gnutls_x509_crt_init", e);
        e = gnutls_x509_crt_import(crt, &input,
                                   memmem(data, len, "-----BEGIN ", 11) ? GNUTLS_X509_FMT_PEM
                                                                        : GNUTLS_X509_FMT_DER);
        if (e < 0)
                return -EBADMSG;
        e = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_export2", e);
        if (der.size > CERT_DER_MAX)
                return -EFBIG;
        e = gnutls_pubkey_init(&public_key);
        if (e < 0)
                return p11_gnutls_fail("gnutls_pubkey_init", e);
        e = gnutls_pubkey_import_x509(public_key, crt, 0);
        if (e < 0)
                return -EBADMSG;
        if (gnutls_pubkey_get_pk_algorithm(public_key, NULL) != GNUTLS_PK_RSA)
                return -ENOKEY;

        p11_key_labels(account, key_label, cert_label);
        r = find_key_of(s, key_label, public_key, &id, &id_len);
        if (r < 0)
                return r;
        e = gnutls_x509_crt_get_raw_dn(crt, &subject);
        if (e < 0)
                return p11_gnutls_fail("gnutls_x509_crt_get_raw_dn", e);
        r = p11_certificate_info_from_der(&der, &info);
        if (r < 0)
                return r;

        /* The certificates this one replaces: those of the same key. New first, then the old. */
        r = p11_find_labeled_objects(s, CKO_CERTIFICATE, cert_label, id, id_len, &old, &n_old);
        if (r >= 0)
                r = p11_create_certificate_object(s, cert_label, id, id_len, &der, &subject,
                                                  &handle);
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
