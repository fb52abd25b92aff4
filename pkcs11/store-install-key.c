/* The per-install key that fingerprints tokens in the audit log. */
#include "store-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "log.h"
#include "util.h"

#define INSTALL_KEY_LABEL STORE_APPLICATION "/audit-hmac-key"
#define INSTALL_KEY_SIZE  32

/* ---- install key ---- */

int store_get_install_key(struct store *s, struct secret **ret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        _cleanup_secret_ struct secret *best = NULL;
        _cleanup_secret_ struct secret *key = NULL, *back = NULL;
        CK_OBJECT_HANDLE handle;
        size_t n;
        int r;

        if (!s || !ret)
                return -EINVAL;

        r = p11_find_data_objects(s, INSTALL_KEY_LABEL, &handles, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_secret_ struct secret *candidate = NULL;

                r = p11_read_secret_value(s, handles[i], INSTALL_KEY_SIZE, INSTALL_KEY_LABEL,
                                          &candidate);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (secret_len(candidate) != INSTALL_KEY_SIZE)
                        continue;
                /* Two processes creating the key at once leave two: every caller picks the
                 * smallest, so fingerprints stay the same whichever process computes them. */
                if (!best ||
                    memcmp(secret_data(candidate), secret_data(best), INSTALL_KEY_SIZE) < 0) {
                        secret_free(best);
                        best = TAKE_PTR(candidate);
                }
        }
        if (best) {
                *ret = TAKE_PTR(best);
                return 0;
        }
        if (n > 0) {
                /* A fresh key would silently change every fingerprint in the audit log. */
                log_error("Object \"%s\" on token \"%s\" is not a %d-byte key; remove it to have "
                          "a new one made (audit fingerprints will change).",
                          INSTALL_KEY_LABEL, s->token_label, INSTALL_KEY_SIZE);
                return -EBADMSG;
        }

        r = secret_new(INSTALL_KEY_SIZE, &key);
        if (r < 0)
                return r;
        if (gnutls_rnd(GNUTLS_RND_KEY, secret_data(key), INSTALL_KEY_SIZE) < 0)
                return log_error_errno(-EIO,
                                       "Failed to generate random bytes for the install key.");
        r = secret_set_len(key, INSTALL_KEY_SIZE);
        if (r < 0)
                return r;

        r = p11_create_data_object(s, INSTALL_KEY_LABEL, secret_data(key), INSTALL_KEY_SIZE,
                                   &handle);
        if (r < 0)
                return r;
        r = p11_read_secret_value(s, handle, INSTALL_KEY_SIZE, INSTALL_KEY_LABEL, &back);
        if (r < 0 || !secret_equal(back, key)) {
                (void)p11_destroy_object(s, handle, INSTALL_KEY_LABEL);
                if (r >= 0 || r == -EFBIG)
                        r = log_error_errno(-EIO,
                                            "The install key read back from token \"%s\" "
                                            "differs from what was written.",
                                            s->token_label);
                return r;
        }
        log_info("Created a new install key \"%s\" on token \"%s\".", INSTALL_KEY_LABEL,
                 s->token_label);
        *ret = TAKE_PTR(key);
        return 0;
}
