/* Unit tests for the assertion key, certificate, JWT assertion, client secret and account removal
 * report of pkcs11/store, against a private SoftHSM2 token: the key never leaves the token, the
 * certificate and request verify, a failed or interrupted --replace keeps the old pair. */
#include "build-config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <p11-kit/pkcs11.h>

#include "secret.h"
#include "store-private.h"
#include "store.h"
#include "softhsm-token.h"
#include "tap.h"
#include "util.h"

#define TOKEN_LABEL "credbroker-key-test"
#define USER_PIN    "1234"
#define SO_PIN      "5678"
#define NOW         UINT64_C(1795856400) /* 2026-11-28 09:00:00 UTC */
#define AUDIENCE    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
#define CLIENT_ID   "11111111-2222-3333-4444-555555555555"
#define CANARY      "SECRET-CANARY-0123456789abcdef~._-"

static struct test_token softhsm;

static void setup(void)
{
        test_token_init(&softhsm, TOKEN_LABEL, USER_PIN, SO_PIN);
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("CREDBROKER_FAULT");
}

/* Token objects with one label and, when class is not (CK_ULONG)-1, one class: a raw search
 * that bypasses the store API. */
static size_t raw_find(struct store *s, CK_OBJECT_CLASS class, const char *label,
                       CK_OBJECT_HANDLE *handles, size_t max)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_ATTRIBUTE template[] = {
            {CKA_LABEL, (void *)label, strlen(label)},
            {CKA_CLASS, &class, sizeof(class)},
        };
        CK_ULONG n = 0;

        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, template, class == (CK_ULONG)-1 ? 1 : 2) != CKR_OK)
                return 0;
        if (m->C_FindObjects(session, handles, max, &n) != CKR_OK)
                n = 0;
        m->C_FindObjectsFinal(session);
        return n;
}

static size_t raw_count(struct store *s, CK_OBJECT_CLASS class, const char *label)
{
        CK_OBJECT_HANDLE handles[16];

        return raw_find(s, class, label, handles, 16);
}

static CK_BBOOL bool_attribute(struct store *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_BBOOL value = 0x55;
        CK_ATTRIBUTE a = {type, &value, sizeof(value)};

        store_private_session(s, &m, &session);
        if (m->C_GetAttributeValue(session, h, &a, 1) != CKR_OK)
                return 0x55;
        return value;
}

static void hex_upper(const unsigned char *data, size_t len, char *out)
{
        static const char digits[] = "0123456789ABCDEF";

        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[data[i] >> 4];
                out[2 * i + 1] = digits[data[i] & 15];
        }
        out[2 * len] = 0;
}

static gnutls_x509_crt_t import_pem(const char *pem)
{
        gnutls_x509_crt_t crt;
        gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};

        if (gnutls_x509_crt_init(&crt) < 0)
                abort();
        if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM) < 0) {
                gnutls_x509_crt_deinit(crt);
                return NULL;
        }
        return crt;
}

/* base64url back to bytes, through GnuTLS's standard base64. */
static int base64url_decode(const char *text, size_t len, gnutls_datum_t *out)
{
        char buf[4096];
        gnutls_datum_t in;
        size_t n = 0;

        if (len + 4 > sizeof(buf))
                return -1;
        for (size_t i = 0; i < len; i++)
                buf[n++] = text[i] == '-' ? '+' : text[i] == '_' ? '/' : text[i];
        while (n % 4)
                buf[n++] = '=';
        in = (gnutls_datum_t){(unsigned char *)buf, (unsigned)n};
        return gnutls_base64_decode2(&in, out);
}

static void test_keygen(struct store *s)
{
        struct store_keygen_options o = {.bits = 2048, .days = 30, .csr = true, .now = NOW};
        struct store_certificate_info info = {0}, again = {0};
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE keys[4], certs[4];
        unsigned char key_id[64], cert_id[64], exponent[512];
        CK_ATTRIBUTE key_id_attr = {CKA_ID, key_id, sizeof(key_id)};
        CK_ATTRIBUTE cert_id_attr = {CKA_ID, cert_id, sizeof(cert_id)};
        CK_ATTRIBUTE secret_exponent = {CKA_PRIVATE_EXPONENT, exponent, sizeof(exponent)};
        gnutls_x509_crt_t crt;
        char *csr = NULL;
        unsigned status = 99;

        store_private_session(s, &m, &session);
        is_int(store_get_certificate(s, "app1", &info), -ENOENT, "no certificate before keygen");
        is_int(store_keygen(s, "app1", &o, &info, &csr), 0, "keygen on an account without meta");
        ok(csr && strstr(csr, "-----BEGIN NEW CERTIFICATE REQUEST-----"), "keygen makes a CSR");
        is_str(info.subject, "CN=credbroker app1", "default subject");
        is_str(info.issuer, "CN=credbroker app1", "self-signed: issuer is the subject");
        is_int(info.not_before, NOW, "notBefore is now");
        is_int(info.not_after, NOW + 30 * 86400ULL, "notAfter is now + days");
        is_int(info.bits, 2048, "2048-bit RSA");
        is_int(strlen(info.sha1_hex), 40, "SHA-1 thumbprint is 40 hex digits");
        is_int(strlen(info.sha256_hex), 64, "SHA-256 thumbprint is 64 hex digits");

        is_int(raw_find(s, CKO_PRIVATE_KEY, "app1/assertion-key", keys, 4), 1, "one private key");
        is_int(raw_count(s, CKO_PUBLIC_KEY, "app1/assertion-key"), 0,
               "the public key was a session object");
        is_int(bool_attribute(s, keys[0], CKA_SENSITIVE), CK_TRUE, "CKA_SENSITIVE");
        is_int(bool_attribute(s, keys[0], CKA_EXTRACTABLE), CK_FALSE, "CKA_EXTRACTABLE is false");
        is_int(bool_attribute(s, keys[0], CKA_NEVER_EXTRACTABLE), CK_TRUE, "CKA_NEVER_EXTRACTABLE");
        is_int(bool_attribute(s, keys[0], CKA_ALWAYS_SENSITIVE), CK_TRUE, "CKA_ALWAYS_SENSITIVE");
        is_int(bool_attribute(s, keys[0], CKA_TOKEN), CK_TRUE, "CKA_TOKEN");
        is_int(bool_attribute(s, keys[0], CKA_PRIVATE), CK_TRUE, "CKA_PRIVATE");
        is_int(bool_attribute(s, keys[0], CKA_SIGN), CK_TRUE, "CKA_SIGN");
        is_int(bool_attribute(s, keys[0], CKA_DECRYPT), CK_FALSE, "CKA_DECRYPT is false");
        is_int(m->C_GetAttributeValue(session, keys[0], &secret_exponent, 1),
               CKR_ATTRIBUTE_SENSITIVE, "the private exponent cannot be read");

        is_int(raw_find(s, CKO_CERTIFICATE, "app1/assertion-cert", certs, 4), 1,
               "one certificate object");
        ok(m->C_GetAttributeValue(session, keys[0], &key_id_attr, 1) == CKR_OK &&
               m->C_GetAttributeValue(session, certs[0], &cert_id_attr, 1) == CKR_OK &&
               key_id_attr.ulValueLen == 16 && cert_id_attr.ulValueLen == 16 &&
               memcmp(key_id, cert_id, 16) == 0,
           "key and certificate share a 16-byte CKA_ID");
        is_int(bool_attribute(s, certs[0], CKA_PRIVATE), CK_TRUE, "the certificate is private");

        crt = info.pem ? import_pem(info.pem) : NULL;
        ok(crt != NULL, "the PEM imports");
        if (crt) {
                unsigned char fp[64];
                size_t fp_len = sizeof(fp);
                char hex[129];

                ok(gnutls_x509_crt_verify(crt, &crt, 1, 0, &status) == 0 && status == 0,
                   "the certificate verifies against its own public key");
                gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA1, fp, &fp_len);
                hex_upper(fp, fp_len, hex);
                is_str(info.sha1_hex, hex, "SHA-1 thumbprint matches GnuTLS's fingerprint");
                fp_len = sizeof(fp);
                gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fp_len);
                hex_upper(fp, fp_len, hex);
                is_str(info.sha256_hex, hex, "SHA-256 thumbprint matches GnuTLS's fingerprint");
                is_int(gnutls_x509_crt_get_signature_algorithm(crt), GNUTLS_SIGN_RSA_SHA256,
                       "signed sha256WithRSAEncryption");
                gnutls_x509_crt_deinit(crt);
        }
        if (csr) {
                gnutls_x509_crq_t crq;
                gnutls_datum_t d = {(unsigned char *)csr, (unsigned)strlen(csr)};

                gnutls_x509_crq_init(&crq);
                ok(gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_PEM) == 0 &&
                       gnutls_x509_crq_verify(crq, 0) == 0,
                   "the CSR's self-signature verifies");
                gnutls_x509_crq_deinit(crq);
        }
        free(csr);
        csr = NULL;

        is_int(store_get_certificate(s, "app1", &again), 0, "get the certificate");
        is_str(again.sha256_hex, info.sha256_hex, "the stored certificate is the one printed");
        store_certificate_info_clear(&again);

        is_int(store_keygen(s, "app1", &o, &again, NULL), -EEXIST,
               "keygen refuses an existing key without --replace");
        o.replace = true;
        o.bits = 1024;
        is_int(store_keygen(s, "app1", &o, &again, NULL), -EINVAL, "1024 bits is refused");
        o.bits = 2048;
        o.days = 0;
        is_int(store_keygen(s, "app1", &o, &again, NULL), -EINVAL, "0 days is refused");
        o.days = 30;
        o.subject = "not a distinguished name";
        is_int(store_keygen(s, "app1", &o, &again, NULL), -EINVAL, "a bad subject is refused");
        o.subject = NULL;
        is_int(raw_count(s, CKO_PRIVATE_KEY, "app1/assertion-key"), 1,
               "refused replacements made no key");
        is_int(store_get_certificate(s, "app1", &again), 0, "certificate after refusals");
        is_str(again.sha256_hex, info.sha256_hex, "refused replacements kept the old pair");
        store_certificate_info_clear(&again);

        o.subject = "CN=alerts,O=Contoso";
        o.bits = 3072;
        is_int(store_keygen(s, "app1", &o, &again, NULL), 0, "keygen --replace");
        ok(strcmp(again.sha256_hex, info.sha256_hex) != 0, "a new certificate");
        is_str(again.subject, "CN=alerts,O=Contoso", "the subject given");
        is_int(again.bits, 3072, "3072-bit RSA");
        is_int(raw_count(s, CKO_PRIVATE_KEY, "app1/assertion-key"), 1, "one key after replace");
        is_int(raw_count(s, CKO_CERTIFICATE, "app1/assertion-cert"), 1,
               "one certificate after replace");
        store_certificate_info_clear(&again);
        store_certificate_info_clear(&info);
}

#if ENABLE_FAULT_POINTS
/* Runs keygen --replace in a child that the named fault point kills. */
static void keygen_killed_at(const char *fault, uint64_t now)
{
        pid_t pid = fork();
        int status;

        if (pid < 0)
                test_die("fork");
        if (pid == 0) {
                struct store_keygen_options o = {
                    .bits = 2048, .days = 30, .replace = true, .now = now};
                struct store_certificate_info info;
                struct store *child = NULL;

                setenv("CREDBROKER_FAULT", fault, 1);
                if (test_token_open(&softhsm, &child) < 0)
                        _exit(2);
                (void)store_keygen(child, "app1", &o, &info, NULL);
                _exit(3);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        test_die("waitpid");
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, fault);
}
#endif

static void test_interrupted_replace(struct store **s)
{
#if ENABLE_FAULT_POINTS
        struct store_certificate_info before = {0}, after = {0};
        struct store_keygen_options o = {
            .bits = 2048, .days = 30, .replace = true, .now = NOW + 10};

        is_int(store_get_certificate(*s, "app1", &before), 0, "certificate before the crashes");
        store_close(*s);
        *s = NULL;

        keygen_killed_at("keygen-after-key", NOW + 5);
        if (test_token_open(&softhsm, s) < 0)
                return;
        is_int(raw_count(*s, CKO_PRIVATE_KEY, "app1/assertion-key"), 2,
               "a crash after key generation leaves the new key as an orphan");
        is_int(store_get_certificate(*s, "app1", &after), 0, "certificate after the crash");
        is_str(after.sha256_hex, before.sha256_hex, "the old pair is still the one used");
        store_certificate_info_clear(&after);
        store_close(*s);
        *s = NULL;

        keygen_killed_at("keygen-after-cert", NOW + 5);
        if (test_token_open(&softhsm, s) < 0)
                return;
        is_int(raw_count(*s, CKO_CERTIFICATE, "app1/assertion-cert"), 2,
               "a crash before the old pair is destroyed leaves two certificates");
        is_int(store_get_certificate(*s, "app1", &after), 0, "certificate with two pairs");
        ok(strcmp(after.sha256_hex, before.sha256_hex) != 0 && after.not_before == NOW + 5,
           "with two complete pairs the newest is used");
        store_certificate_info_clear(&after);

        is_int(store_keygen(*s, "app1", &o, &after, NULL), 0, "keygen --replace cleans up");
        is_int(raw_count(*s, CKO_PRIVATE_KEY, "app1/assertion-key"), 1, "one key left");
        is_int(raw_count(*s, CKO_CERTIFICATE, "app1/assertion-cert"), 1, "one certificate left");
        store_certificate_info_clear(&after);
        store_certificate_info_clear(&before);
#else
        (void)s;
        ok(1, "# SKIP fault points are not compiled in (-Dfault_points=true)");
#endif
}

/* Splits a compact JWT, decodes header and claims, and verifies the signature with the
 * certificate's public key. */
static void check_assertion(const char *jwt, const char *alg,
                            const struct store_certificate_info *c, char jti[64])
{
        const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        gnutls_datum_t header = {0}, claims = {0}, signature = {0}, input;
        gnutls_x509_crt_t crt = import_pem(c->pem);
        gnutls_pubkey_t pubkey = NULL;
        cJSON *h = NULL, *cl = NULL;
        char what[128];

        ok(dot1 && dot2 && !strchr(dot2 + 1, '.') && !strchr(jwt, '=') && !strchr(jwt, '+') &&
               !strchr(jwt, '/'),
           "three base64url parts without padding");
        if (!dot1 || !dot2 || !crt)
                return;
        ok(base64url_decode(jwt, (size_t)(dot1 - jwt), &header) == 0 &&
               base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &claims) == 0 &&
               base64url_decode(dot2 + 1, strlen(dot2 + 1), &signature) == 0,
           "parts decode");
        h = cJSON_ParseWithLength((const char *)header.data, header.size);
        cl = cJSON_ParseWithLength((const char *)claims.data, claims.size);
        ok(h && cl, "header and claims are JSON");
        if (h && cl) {
                const char *thumb_key = strcmp(alg, "PS256") == 0 ? "x5t#S256" : "x5t";
                unsigned char digest[32];
                gnutls_datum_t d = {0};
                char *expected = NULL;
                cJSON *thumb = cJSON_GetObjectItemCaseSensitive(h, thumb_key);

                is_int(cJSON_GetArraySize(h), 3, "header has three members");
                is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "alg")), alg,
                       "alg");
                is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "typ")), "JWT",
                       "typ");
                gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &d);
                gnutls_hash_fast(strcmp(alg, "PS256") == 0 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA1,
                                 d.data, d.size, digest);
                gnutls_free(d.data);
                d = (gnutls_datum_t){0};
                if (thumb && cJSON_IsString(thumb) &&
                    base64url_decode(thumb->valuestring, strlen(thumb->valuestring), &d) == 0) {
                        ok(d.size == gnutls_hash_get_len(strcmp(alg, "PS256") == 0
                                                             ? GNUTLS_DIG_SHA256
                                                             : GNUTLS_DIG_SHA1) &&
                               memcmp(d.data, digest, d.size) == 0,
                           "thumbprint is the hash of the certificate DER");
                        gnutls_free(d.data);
                } else {
                        ok(0, "thumbprint present");
                }
                free(expected);

                is_int(cJSON_GetArraySize(cl), 7, "claims have seven members");
                is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cl, "aud")), AUDIENCE,
                       "aud is the token endpoint");
                is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cl, "iss")), CLIENT_ID,
                       "iss is the client id");
                is_str(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cl, "sub")), CLIENT_ID,
                       "sub is the client id");
                is_int(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cl, "nbf")), NOW,
                       "nbf is now");
                is_int(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cl, "iat")), NOW,
                       "iat is now");
                is_int(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(cl, "exp")), NOW + 600,
                       "exp is now + 600");
                const char *j = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cl, "jti"));
                ok(j && strlen(j) == 36 && j[14] == '4', "jti is a UUID v4");
                snprintf(jti, 64, "%s", j ? j : "");
        }
        input = (gnutls_datum_t){(unsigned char *)jwt, (unsigned)(dot2 - jwt)};
        gnutls_pubkey_init(&pubkey);
        gnutls_pubkey_import_x509(pubkey, crt, 0);
        snprintf(what, sizeof(what), "the %s signature verifies with the certificate's key", alg);
        ok(gnutls_pubkey_verify_data2(pubkey,
                                      strcmp(alg, "PS256") == 0 ? GNUTLS_SIGN_RSA_PSS_RSAE_SHA256
                                                                : GNUTLS_SIGN_RSA_SHA256,
                                      0, &input, &signature) >= 0,
           what);
        gnutls_pubkey_deinit(pubkey);
        gnutls_x509_crt_deinit(crt);
        cJSON_Delete(h);
        cJSON_Delete(cl);
        gnutls_free(header.data);
        gnutls_free(claims.data);
        gnutls_free(signature.data);
}

static void test_assertion(struct store *s)
{
        struct store_certificate_info c = {0};
        struct secret *jwt = NULL, *other = NULL;
        char jti1[64] = "", jti2[64] = "";

        is_int(store_get_certificate(s, "app1", &c), 0, "certificate for assertions");
        is_int(
            store_sign_assertion(s, "app1", AUDIENCE, CLIENT_ID, STORE_ASSERTION_PS256, NOW, &jwt),
            0, "PS256 assertion");
        if (jwt)
                check_assertion(secret_str(jwt), "PS256", &c, jti1);
        is_int(store_sign_assertion(s, "app1", AUDIENCE, CLIENT_ID, STORE_ASSERTION_RS256, NOW,
                                    &other),
               0, "RS256 assertion");
        if (other)
                check_assertion(secret_str(other), "RS256", &c, jti2);
        ok(jti1[0] && strcmp(jti1, jti2) != 0, "jti differs between assertions");
        secret_free(jwt);
        secret_free(other);
        jwt = (struct secret *)0x1;

        is_int(
            store_sign_assertion(s, "nokey", AUDIENCE, CLIENT_ID, STORE_ASSERTION_PS256, NOW, &jwt),
            -ENOENT, "an account without a key has no assertion");
        is_int(store_sign_assertion(s, "app1", "http://login.example/token", CLIENT_ID,
                                    STORE_ASSERTION_PS256, NOW, &jwt),
               -EINVAL, "a non-https audience is refused");
        is_int(store_sign_assertion(s, "app1", "https://a\"b", CLIENT_ID, STORE_ASSERTION_PS256,
                                    NOW, &jwt),
               -EINVAL, "an audience with a quote is refused");
        is_int(store_sign_assertion(s, "app1", AUDIENCE, "id\"x", STORE_ASSERTION_PS256, NOW, &jwt),
               -EINVAL, "a client id with a quote is refused");
        is_int(store_sign_assertion(s, "app1", AUDIENCE, "", STORE_ASSERTION_PS256, NOW, &jwt),
               -EINVAL, "an empty client id is refused");
        is_int(store_sign_assertion(s, "app1", AUDIENCE, CLIENT_ID, (enum store_assertion_alg)7,
                                    NOW, &jwt),
               -EINVAL, "an unknown algorithm is refused");
        is_int(store_sign_assertion(s, "app1", AUDIENCE, CLIENT_ID, STORE_ASSERTION_PS256, 0, &jwt),
               -EINVAL, "time 0 is refused");
        is_int(
            store_sign_assertion(s, "Bad", AUDIENCE, CLIENT_ID, STORE_ASSERTION_PS256, NOW, &jwt),
            -EINVAL, "a bad account name is refused");
        ok(jwt == (struct secret *)0x1, "failures leave ret alone");
        store_certificate_info_clear(&c);
}

/* A CA made in memory issues a certificate for the public key of the account's certificate. */
static char *ca_issue(const char *app_pem, const char *cn)
{
        gnutls_x509_privkey_t ca_key;
        gnutls_x509_crt_t ca, leaf, app = import_pem(app_pem);
        gnutls_pubkey_t pub;
        gnutls_datum_t pem = {0};
        unsigned char serial[] = {0x01, 0x02};
        time_t now = (time_t)NOW;
        char *out;

        if (!app || gnutls_x509_privkey_init(&ca_key) < 0 ||
            gnutls_x509_privkey_generate(ca_key, GNUTLS_PK_RSA, 2048, 0) < 0 ||
            gnutls_x509_crt_init(&ca) < 0 || gnutls_x509_crt_init(&leaf) < 0 ||
            gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_x509(pub, app, 0) < 0)
                abort();
        gnutls_x509_crt_set_version(ca, 3);
        gnutls_x509_crt_set_serial(ca, serial, 1);
        gnutls_x509_crt_set_dn(ca, "CN=Test CA", NULL);
        gnutls_x509_crt_set_activation_time(ca, now);
        gnutls_x509_crt_set_expiration_time(ca, now + 86400);
        gnutls_x509_crt_set_key(ca, ca_key);
        gnutls_x509_crt_set_basic_constraints(ca, 1, -1);
        if (gnutls_x509_crt_sign2(ca, ca, ca_key, GNUTLS_DIG_SHA256, 0) < 0)
                abort();
        gnutls_x509_crt_set_version(leaf, 3);
        gnutls_x509_crt_set_serial(leaf, serial, 2);
        gnutls_x509_crt_set_dn(leaf, cn, NULL);
        gnutls_x509_crt_set_activation_time(leaf, now + 1);
        gnutls_x509_crt_set_expiration_time(leaf, now + 86400);
        gnutls_x509_crt_set_pubkey(leaf, pub);
        if (gnutls_x509_crt_sign2(leaf, ca, ca_key, GNUTLS_DIG_SHA256, 0) < 0 ||
            gnutls_x509_crt_export2(strcmp(cn, "CN=self") == 0 ? ca : leaf, GNUTLS_X509_FMT_PEM,
                                    &pem) < 0)
                abort();
        out = strndup((const char *)pem.data, pem.size);
        gnutls_free(pem.data);
        gnutls_pubkey_deinit(pub);
        gnutls_x509_crt_deinit(app);
        gnutls_x509_crt_deinit(leaf);
        gnutls_x509_crt_deinit(ca);
        gnutls_x509_privkey_deinit(ca_key);
        return out;
}

static void test_import_certificate(struct store *s)
{
        struct store_certificate_info before = {0}, info = {0}, after = {0};
        char *issued, *foreign;
        struct secret *jwt = NULL;

        is_int(store_get_certificate(s, "app1", &before), 0, "certificate before the import");
        issued = ca_issue(before.pem, "CN=issued app1");
        foreign = ca_issue(before.pem, "CN=self"); /* the CA certificate: another key */

        is_int(store_import_certificate(s, "app1", "garbage", 7, &info), -EBADMSG,
               "garbage is not a certificate");
        is_int(store_import_certificate(s, "app1", foreign, strlen(foreign), &info), -ENOKEY,
               "a certificate for another key is refused");
        is_int(store_import_certificate(s, "nokey", issued, strlen(issued), &info), -ENOKEY,
               "an account without a key cannot take a certificate");
        is_int(store_import_certificate(s, "app1", issued, strlen(issued), &info), 0,
               "a CA-issued certificate for the key is stored");
        is_str(info.issuer, "CN=Test CA", "its issuer is the CA");
        is_int(raw_count(s, CKO_CERTIFICATE, "app1/assertion-cert"), 1,
               "it replaced the self-signed certificate");
        is_int(store_get_certificate(s, "app1", &after), 0, "certificate after the import");
        is_str(after.sha256_hex, info.sha256_hex, "the issued certificate is the one used");
        is_int(
            store_sign_assertion(s, "app1", AUDIENCE, CLIENT_ID, STORE_ASSERTION_PS256, NOW, &jwt),
            0, "assertions work with the issued certificate");
        secret_free(jwt);
        store_certificate_info_clear(&before);
        store_certificate_info_clear(&info);
        store_certificate_info_clear(&after);
        free(issued);
        free(foreign);
}

static void test_client_secret(struct store *s)
{
        _cleanup_secret_ struct secret *canary = NULL, *second = NULL, *bad = NULL;
        struct secret *got = NULL;

        secret_new_from(CANARY, strlen(CANARY), &canary);
        secret_new_from("second-secret", 13, &second);
        secret_new_from("has space", 9, &bad);

        is_int(store_has_client_secret(s, "app1"), 0, "no client secret yet");
        is_int(store_get_client_secret(s, "app1", &got), -ENOENT, "get of an absent secret");
        is_int(store_put_client_secret(s, "app1", canary), 0, "put a client secret");
        is_int(store_has_client_secret(s, "app1"), 1, "has the client secret");
        is_int(store_get_client_secret(s, "app1", &got), 0, "get the client secret");
        ok(got && secret_equal(got, canary), "the secret reads back");
        secret_free(got);
        got = NULL;
        is_int(store_put_client_secret(s, "app1", second), 0, "replace the client secret");
        is_int(raw_count(s, CKO_DATA, "app1/client_secret"), 1, "one secret object after replace");
        is_int(store_get_client_secret(s, "app1", &got), 0, "get the replaced secret");
        ok(got && secret_equal(got, second), "the replaced secret reads back");
        secret_free(got);
        is_int(store_put_client_secret(s, "app1", bad), -EINVAL,
               "a secret with a space is refused");
        is_int(store_put_client_secret(s, "credbroker", second), -EINVAL,
               "the reserved name is refused");
        is_int(store_put_client_secret(s, "app1", canary), 0, "the canary again, for removal");
}

static void test_remove(struct store *s)
{
        struct store_keygen_options o = {.bits = 2048, .days = 1, .now = NOW};
        struct store_certificate_info info = {0};
        struct store_removed_object *removed = NULL;
        _cleanup_secret_ struct secret *rt = NULL;
        char **names = NULL;
        size_t n = 0;
        bool seen_key = false, seen_cert = false, seen_meta = false, seen_secret = false;
        bool seen_rt = false;

        secret_new_from("RT-for-remove", 13, &rt);
        is_int(store_put_meta(s, "full", "{\"tenant\":\"t\"}"), 0, "meta for full");
        is_int(store_write_refresh_token(s, "full", rt, NULL), 0, "refresh token for full");
        is_int(store_put_client_secret(s, "full", rt), 0, "client secret for full");
        is_int(store_keygen(s, "full", &o, &info, NULL), 0, "keygen for full");
        store_certificate_info_clear(&info);

        is_int(store_list_all_accounts(s, &names, &n), 0, "list every account");
        ok(n == 2 && strcmp(names[0], "app1") == 0 && strcmp(names[1], "full") == 0,
           "app1 (key and secret only) and full are listed");
        store_names_free(names, n);

        is_int(store_remove_account_report(s, "full", &removed, &n), 0, "remove full");
        is_int(n, 5, "five objects removed");
        for (size_t i = 0; i < n; i++) {
                const char *l = removed[i].label, *c = removed[i].class_name;

                seen_key |= strcmp(l, "full/assertion-key") == 0 && strcmp(c, "private key") == 0;
                seen_cert |= strcmp(l, "full/assertion-cert") == 0 && strcmp(c, "certificate") == 0;
                seen_meta |= strcmp(l, "full/meta") == 0 && strcmp(c, "data") == 0;
                seen_secret |= strcmp(l, "full/client_secret") == 0 && strcmp(c, "data") == 0;
                seen_rt |= strcmp(l, "full/refresh_token/1") == 0 && strcmp(c, "data") == 0;
        }
        ok(seen_key && seen_cert && seen_meta && seen_secret && seen_rt,
           "the report names key, certificate, meta, client secret and refresh token");
        ok(n == 5 && strcmp(removed[4].label, "full/meta") == 0, "meta is removed last");
        store_removed_free(removed, n);
        is_int(raw_count(s, (CK_ULONG)-1, "full/assertion-key") +
                   raw_count(s, (CK_ULONG)-1, "full/assertion-cert") +
                   raw_count(s, (CK_ULONG)-1, "full/meta") +
                   raw_count(s, (CK_ULONG)-1, "full/client_secret") +
                   raw_count(s, (CK_ULONG)-1, "full/refresh_token/1"),
               0, "nothing of full is left");
        is_int(raw_count(s, CKO_PRIVATE_KEY, "app1/assertion-key"), 1, "app1 is untouched");

        removed = (struct store_removed_object *)0x1;
        is_int(store_remove_account_report(s, "full", &removed, &n), 0, "remove again");
        is_int(n, 0, "nothing to remove the second time");
        store_removed_free(removed, n);
}

int main(void)
{
        struct store *s = NULL;

        setup();
        is_int(test_token_open(&softhsm, &s), 0, "open the test token");
        if (s) {
                test_keygen(s);
                test_interrupted_replace(&s);
        }
        if (s) {
                test_assertion(s);
                test_import_certificate(s);
                test_client_secret(s);
                test_remove(s);
                store_close(s);
        }
        test_token_cleanup(&softhsm);
        return done_testing();
}
