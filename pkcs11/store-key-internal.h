/* What the account, key and assertion files of the store share about the objects that are not
 * CKO_DATA (the assertion key pair and certificate) and the client secret. Not for use outside
 * pkcs11/. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

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
