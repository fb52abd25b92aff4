/* The GnuTLS <-> PKCS#11 signing bridge: a gnutls_privkey_t whose signing callback runs C_Sign
 * on the assertion key inside the token, through the store's own session, so GnuTLS can sign a
 * certificate or request (store-cert.c) without a second PKCS#11 stack or a second login. Also
 * the one C_SignInit + C_Sign the client assertion (store-assertion.c) uses. */
#include "store-internal.h"
#include "store-key-internal.h"

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

/* Certificates and requests are signed sha256WithRSAEncryption. For that GnuTLS hands the
 * callback GNUTLS_SIGN_RSA_RAW with the DigestInfo already built, so the mechanism is
 * CKM_RSA_PKCS, which only pads and exponentiates. Nothing else is offered (token_key_info). */
static int token_key_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                               unsigned flags, const gnutls_datum_t *digest_info,
                               gnutls_datum_t *signature)
{
        struct p11_token_key *k = userdata;
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
        struct p11_token_key *k = userdata;

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

int p11_token_privkey(struct p11_token_key *k, gnutls_privkey_t *ret)
{
        _cleanup_(privkey_deinitp) gnutls_privkey_t key = NULL;
        int e;

        e = gnutls_privkey_init(&key);
        if (e < 0)
                return p11_gnutls_fail("gnutls_privkey_init", e);
        e = gnutls_privkey_import_ext4(key, k, NULL, token_key_sign_hash, NULL, NULL,
                                       token_key_info, 0);
        if (e < 0)
                return p11_gnutls_fail("gnutls_privkey_import_ext4", e);
        *ret = TAKE_PTR(key);
        return 0;
}
