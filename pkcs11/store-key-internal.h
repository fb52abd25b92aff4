/* What the account, key and assertion files of the store share about the objects that are not
 * CKO_DATA (the assertion key pair and certificate) and the client secret. Not for use outside
 * pkcs11/. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "store-internal.h"

#define CLIENT_SECRET_SUFFIX  "/client_secret"
#define ASSERTION_KEY_SUFFIX  "/assertion-key"
#define ASSERTION_CERT_SUFFIX "/assertion-cert"

/* A random CKA_ID binds a key to its certificate; longer ones are not ours. */
#define KEY_ID_SIZE 16
#define KEY_ID_MAX  64
/* A DER certificate larger than this is not one we made (4096-bit RSA makes about 1.4 KiB). */
#define CERT_DER_MAX 16384
#define CERT_PEM_MAX STORE_CERTIFICATE_FILE_MAX

#define SECONDS_PER_DAY 86400ULL

/* "private key", "certificate", ...: for what `account remove` reports. */
const char *p11_class_name(CK_OBJECT_CLASS class);

/* Token objects of one class with CKA_PRIVATE=TRUE and one exact label, optionally also one
 * CKA_ID. */
int p11_find_labeled_objects(struct store *s, CK_OBJECT_CLASS class, const char *label,
                             const void *id, size_t id_len, CK_OBJECT_HANDLE **ret, size_t *ret_n);

/* The account's complete key + certificate pair (same CKA_ID): the certificate's DER and the
 * key's handle. When an interrupted `keygen --replace` left two pairs, the one whose certificate
 * starts last wins. -ENOENT when there is no complete pair. */
int p11_find_assertion_pair(struct store *s, const char *account, CK_OBJECT_HANDLE *ret_key,
                            uint8_t **ret_der, size_t *ret_der_len);

/* C_SignInit + C_Sign of data with key, into signature (SIGNATURE_MAX bytes). A key too large
 * for the buffer (not one we make, but one planted under our label) is refused, and the session
 * is marked lost: PKCS#11 keeps an operation that failed with CKR_BUFFER_TOO_SMALL active, and
 * only a new session ends it. */
#define SIGNATURE_MAX 512 /* 4096-bit RSA, the largest key keygen makes */
int p11_sign_in_token(struct store *s, CK_OBJECT_HANDLE key, CK_MECHANISM *mechanism,
                      const void *data, size_t len, uint8_t signature[static SIGNATURE_MAX],
                      size_t *ret_len);

/* ---- GnuTLS ---- */

static inline void x509_crt_deinitp(gnutls_x509_crt_t *crt)
{
        if (*crt)
                gnutls_x509_crt_deinit(*crt);
}

static inline void x509_crq_deinitp(gnutls_x509_crq_t *crq)
{
        if (*crq)
                gnutls_x509_crq_deinit(*crq);
}

static inline void pubkey_deinitp(gnutls_pubkey_t *key)
{
        if (*key)
                gnutls_pubkey_deinit(*key);
}

static inline void privkey_deinitp(gnutls_privkey_t *key)
{
        if (*key)
                gnutls_privkey_deinit(*key);
}

static inline void datum_freep(gnutls_datum_t *d)
{
        gnutls_free(d->data);
        d->data = NULL;
        d->size = 0;
}

/* store-key.c: the one place a GnuTLS error becomes an errno, with its text in the log. */
int p11_gnutls_fail(const char *call, int error);

/* store-key.c: the labels of an account's assertion key and certificate. */
void p11_key_labels(const char *account, char key[static LABEL_MAX], char cert[static LABEL_MAX]);
/* store-key.c: the RSA public key of a key object (CKA_MODULUS, CKA_PUBLIC_EXPONENT). */
int p11_public_key_of(struct store *s, CK_OBJECT_HANDLE handle, gnutls_pubkey_t *ret);

/* store-key-sign.c: a private key in the token, for GnuTLS. */
struct p11_token_key {
        struct store *store;
        CK_OBJECT_HANDLE handle;
        unsigned bits;
};
/* A gnutls_privkey_t that signs sha256WithRSAEncryption with k's key through p11_sign_in_token();
 * k must outlive it. */
int p11_token_privkey(struct p11_token_key *k, gnutls_privkey_t *ret);

/* store-cert.c: certificates */
int p11_certificate_info_from_der(const gnutls_datum_t *der, struct store_certificate_info *ret);
/* The self-signed certificate of keygen (o->now, o->days), signed by signer. */
int p11_build_certificate(gnutls_pubkey_t public_key, gnutls_privkey_t signer, const char *subject,
                          const struct store_keygen_options *o, gnutls_datum_t *ret_der,
                          gnutls_datum_t *ret_subject);
/* A PKCS#10 request for a CA, as PEM. */
int p11_build_request(gnutls_pubkey_t public_key, gnutls_privkey_t signer, const char *subject,
                      char **ret_pem);
int p11_create_certificate_object(struct store *s, const char *label, const uint8_t *id,
                                  size_t id_len, const gnutls_datum_t *der,
                                  const gnutls_datum_t *subject, CK_OBJECT_HANDLE *ret);
