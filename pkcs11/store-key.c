/* The assertion key of an account (design.md §4): finding the account's key + certificate pair,
 * and keygen: an RSA key pair generated inside the token, never extractable, with an X.509
 * certificate (or PKCS#10 request) built by GnuTLS (store-cert.c) and signed by that key through
 * our own PKCS#11 session (store-key-sign.c), so neither a second PKCS#11 stack nor a second
 * login is involved and the private key never leaves the token. */
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

/* The one place a GnuTLS error becomes an errno, with its text in the log. */
int p11_gnutls_fail(const char *call, int error)
{
        if (error == GNUTLS_E_MEMORY_ERROR)
                return -ENOMEM;
        return log_error_errno(-EIO, "%s failed: %s", call, gnutls_strerror(error));
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

void p11_key_labels(const char *account, char key[static LABEL_MAX], char cert[static LABEL_MAX])
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
                return p11_gnutls_fail("gnutls_x509_crt_init", e);
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

        p11_key_labels(account, key_label, cert_label);
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
                return p11_gnutls_fail("gnutls_x509_crt_init", e);
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

int p11_public_key_of(struct store *s, CK_OBJECT_HANDLE handle, gnutls_pubkey_t *ret)
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
                return p11_gnutls_fail("gnutls_pubkey_init", error);
        error = gnutls_pubkey_import_rsa_raw(key, &m, &e);
        if (error < 0)
                return p11_gnutls_fail("gnutls_pubkey_import_rsa_raw", error);
        *ret = TAKE_PTR(key);
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

/* The pair a keygen --replace retired, once the new one is complete. A leftover is harmless (the
 * newest pair is used) and the next --replace removes it. */
static void destroy_replaced(struct store *s, const char *account, const char *key_label,
                             const CK_OBJECT_HANDLE *old, size_t n_old)
{
        for (size_t i = 0; i < n_old; i++) {
                int r = p11_destroy_object(s, old[i], key_label);

                if (r < 0 && r != -ENOENT)
                        log_warning("Could not destroy an old assertion key or certificate of "
                                    "account %s; run keygen --replace again to clean up.",
                                    account);
        }
}

/* The new key pair of a keygen that failed before its certificate was stored. */
static void destroy_new_key(struct store *s, const char *key_label, CK_OBJECT_HANDLE private_handle,
                            CK_OBJECT_HANDLE public_handle)
{
        if (p11_destroy_object(s, private_handle, key_label) < 0)
                log_warning("Could not destroy the new, unused key \"%s\"; it is ignored without "
                            "a certificate and the next keygen --replace removes it.",
                            key_label);
        (void)p11_destroy_object(s, public_handle, "the session public key");
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
        struct p11_token_key token_key;
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

        p11_key_labels(account, key_label, cert_label);
        r = find_existing(s, key_label, cert_label, &old, &n_old);
        if (r < 0)
                return r;
        if (n_old > 0 && !options->replace)
                return -EEXIST;

        e = gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof(id));
        if (e < 0)
                return p11_gnutls_fail("gnutls_rnd", e);
        r = generate_key_pair(s, key_label, id, options->bits, &public_handle, &private_handle);
        if (r < 0)
                return r;
        fault_point("keygen-after-key");

        r = p11_public_key_of(s, public_handle, &public_key);
        if (r < 0)
                goto fail;
        token_key = (struct p11_token_key){s, private_handle, options->bits};
        r = p11_token_privkey(&token_key, &signer);
        if (r < 0)
                goto fail;
        r = p11_build_certificate(public_key, signer, subject, options, &der, &subject_der);
        if (r < 0)
                goto fail;
        if (ret_csr_pem && options->csr) {
                r = p11_build_request(public_key, signer, subject, &csr);
                if (r < 0)
                        goto fail;
        }
        r = p11_certificate_info_from_der(&der, &info);
        if (r < 0)
                goto fail;
        r = p11_create_certificate_object(s, cert_label, id, sizeof(id), &der, &subject_der,
                                          &cert_handle);
        if (r < 0)
                goto fail;
        fault_point("keygen-after-cert");

        /* Only now is the new pair complete: the old one can go. A leftover is harmless (the
         * newest pair is used) and the next --replace removes it. */
        destroy_replaced(s, account, key_label, old, n_old);
        (void)p11_destroy_object(s, public_handle, "the session public key");

        *ret_cert = info;
        if (ret_csr_pem)
                *ret_csr_pem = TAKE_PTR(csr);
        return 0;

fail:
        store_certificate_info_clear(&info);
        if (cert_handle != CK_INVALID_HANDLE)
                (void)p11_destroy_object(s, cert_handle, cert_label);
        destroy_new_key(s, key_label, private_handle, public_handle);
        return r;
}
