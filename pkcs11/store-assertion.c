/* JWT client assertions for the client_certificate flow (microsoft-identity.md, "Certificate
 * credential"): the header names the certificate by thumbprint, the claims bind the assertion to
 * one token endpoint and client for ten minutes, and C_Sign in the token makes the signature. */
#include "store-internal.h"
#include "store-key-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "build-config.h"
#include "json.h"
#include "log.h"
#include "util.h"

/* Unix seconds beyond the year 9999 are not a clock reading. */
#define NOW_MAX UINT64_C(253402300799)

/* RFC 7515 §2: base64url without padding. GnuTLS does the base64; only the alphabet changes. */
static int base64url(const void *data, size_t len, char **ret)
{
        gnutls_datum_t in = {(unsigned char *)data, (unsigned)len}, out = {0};
        char *text;
        size_t n = 0;
        int e;

        if (len > UINT32_MAX / 2)
                return -E2BIG;
        e = gnutls_base64_encode2(&in, &out);
        if (e < 0)
                return e == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EIO;
        text = malloc(out.size + 1);
        if (!text) {
                gnutls_free(out.data);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < out.size; i++) {
                char c = (char)out.data[i];

                if (c == '=' || c == '\n' || c == '\r')
                        continue;
                text[n++] = c == '+' ? '-' : c == '/' ? '_' : c;
        }
        text[n] = 0;
        gnutls_free(out.data);
        *ret = text;
        return 0;
}

/* The token endpoint goes verbatim into "aud": an https URL of plain printable characters. */
static bool audience_is_valid(const char *audience)
{
        size_t len;

        if (!audience || strncmp(audience, "https://", 8) != 0)
                return false;
        len = strlen(audience);
        if (len <= 8 || len > STORE_AUDIENCE_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (audience[i] <= ' ' || audience[i] > '~' || audience[i] == '"' ||
                    audience[i] == '\\')
                        return false;
        return true;
}

static bool client_id_is_valid(const char *client_id)
{
        size_t len;

        if (!client_id)
                return false;
        len = strlen(client_id);
        if (len == 0 || len > STORE_CLIENT_ID_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = client_id[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_'))
                        return false;
        }
        return true;
}

/* RFC 4122 version 4: the "fresh GUID each time" Entra wants in jti. */
static int random_uuid(char out[static 37])
{
        uint8_t b[16];

        if (gnutls_rnd(GNUTLS_RND_NONCE, b, sizeof(b)) < 0)
                return -EIO;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                 b[13], b[14], b[15]);
        return 0;
}

static int json_part(cJSON *object, char **ret)
{
        char *text = cJSON_PrintUnformatted(object);
        int r;

        if (!text)
                return -ENOMEM;
        r = base64url(text, strlen(text), ret);
        json_free_string(text);
        return r;
}

/* Whether the token can sign RSA-PSS with SHA-256 (PS256); unknown counts as yes, and the
 * signature itself decides. A test build can pretend it cannot. */
static bool token_signs_pss(struct store *s)
{
        CK_SESSION_INFO session;
        CK_MECHANISM_INFO info;
        CK_RV rv;

#if ENABLE_FAULT_POINTS
        const char *fake = secure_getenv("CREDBROKER_TEST_NO_PSS");
        if (fake && strcmp(fake, "1") == 0)
                return false;
#endif
        if (s->module->C_GetSessionInfo(s->session, &session) != CKR_OK)
                return true;
        rv = s->module->C_GetMechanismInfo(session.slotID, CKM_SHA256_RSA_PKCS_PSS, &info);
        if (rv == CKR_MECHANISM_INVALID)
                return false;
        return rv != CKR_OK || (info.flags & CKF_SIGN);
}

/* The certificate's thumbprint for the JWT header: base64url of its SHA-256 (x5t#S256, with
 * PS256) or SHA-1 (x5t, with RS256). */
static int certificate_thumbprint(enum store_assertion_alg alg, const uint8_t *der, size_t der_len,
                                  char **ret)
{
        gnutls_digest_algorithm_t digest_algorithm;
        uint8_t digest[32];

        digest_algorithm = alg == STORE_ASSERTION_PS256 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA1;
        if (gnutls_hash_fast(digest_algorithm, der, der_len, digest) < 0)
                return -EIO;
        return base64url(digest, gnutls_hash_get_len(digest_algorithm), ret);
}

/* "header.claims", the part of the JWT the token signs. */
static int signing_input(enum store_assertion_alg alg, const char *thumbprint, const char *audience,
                         const char *client_id, const char *jti, uint64_t now, char **ret)
{
        _cleanup_json_ cJSON *header = NULL, *claims = NULL;
        _cleanup_free_ char *header_part = NULL, *claims_part = NULL;
        int r;

        header = cJSON_CreateObject();
        claims = cJSON_CreateObject();
        if (!header || !claims)
                return -ENOMEM;
        if (!json_add_string_ref(header, "alg", alg == STORE_ASSERTION_PS256 ? "PS256" : "RS256") ||
            !json_add_string_ref(header, "typ", "JWT") ||
            !json_add_string_ref(header, alg == STORE_ASSERTION_PS256 ? "x5t#S256" : "x5t",
                                 thumbprint))
                return -ENOMEM;
        if (!json_add_string_ref(claims, "aud", audience) ||
            !json_add_string_ref(claims, "iss", client_id) ||
            !json_add_string_ref(claims, "sub", client_id) ||
            !json_add_string_ref(claims, "jti", jti) || !json_add_uint(claims, "nbf", now) ||
            !json_add_uint(claims, "iat", now) ||
            !json_add_uint(claims, "exp", now + STORE_ASSERTION_LIFETIME))
                return -ENOMEM;

        r = json_part(header, &header_part);
        if (r < 0)
                return r;
        r = json_part(claims, &claims_part);
        if (r < 0)
                return r;
        if (asprintf(ret, "%s.%s", header_part, claims_part) < 0) {
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

int store_sign_assertion(struct store *s, const char *account, const char *audience,
                         const char *client_id, enum store_assertion_alg alg, uint64_t now,
                         struct secret **ret)
{
        _cleanup_free_ uint8_t *der = NULL;
        _cleanup_free_ char *thumbprint = NULL;
        _cleanup_free_ char *input = NULL, *signature_part = NULL;
        _cleanup_secret_ struct secret *jwt = NULL;
        uint8_t signature[SIGNATURE_MAX];
        CK_OBJECT_HANDLE key;
        size_t der_len, signature_len = 0;
        char jti[37];
        int r;

        if (!s || !p11_account_is_valid(account) || !ret)
                return -EINVAL;
        if (!audience_is_valid(audience) || !client_id_is_valid(client_id))
                return -EINVAL;
        if (alg != STORE_ASSERTION_PS256 && alg != STORE_ASSERTION_RS256)
                return -EINVAL;
        if (now == 0 || now > NOW_MAX)
                return -EINVAL;

        r = p11_find_assertion_pair(s, account, &key, &der, &der_len);
        if (r == -ENOENT) {
                log_error("Account %s has no assertion key and certificate; create them with: "
                          "credbroker account keygen %s",
                          account, account);
                return -ENOENT;
        }
        if (r < 0)
                return r;

        if (alg == STORE_ASSERTION_PS256 && !token_signs_pss(s))
                return -EOPNOTSUPP; /* the caller may sign RS256 instead */
        r = certificate_thumbprint(alg, der, der_len, &thumbprint);
        if (r < 0)
                return r;
        r = random_uuid(jti);
        if (r < 0)
                return r;
        r = signing_input(alg, thumbprint, audience, client_id, jti, now, &input);
        if (r < 0)
                return r;

        /* PS256: RSASSA-PSS with SHA-256, MGF1-SHA256 and a 32-byte salt (RFC 7518 §3.5). */
        CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
        CK_MECHANISM mechanism = alg == STORE_ASSERTION_PS256
                                     ? (CK_MECHANISM){CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)}
                                     : (CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0};

        r = p11_sign_in_token(s, key, &mechanism, input, strlen(input), signature, &signature_len);
        if (r < 0)
                return r;
        r = base64url(signature, signature_len, &signature_part);
        if (r < 0)
                return r;
        /* The signed assertion is a bearer credential for its lifetime: it is put together in
         * secret memory, and the signature's encoding is wiped before it is freed. */
        r = secret_new(strlen(input) + 1 + strlen(signature_part), &jwt);
        if (r >= 0)
                r = secret_append(jwt, input, strlen(input));
        if (r >= 0)
                r = secret_append(jwt, ".", 1);
        if (r >= 0)
                r = secret_append(jwt, signature_part, strlen(signature_part));
        explicit_bzero(signature_part, strlen(signature_part));
        explicit_bzero(signature, sizeof(signature));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(jwt);
        return 0;
}
