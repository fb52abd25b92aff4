/* Unit tests for the audit key of pkcs11/store (store-audit-key.c) against a private SoftHSM2
 * token: generated once and found again (after a crash too), never extractable, its signatures
 * verify with GnuTLS as the spec's Ed25519 note signatures, and its key hash is the spec's. */
#include "build-config.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <p11-kit/pkcs11.h>

#include "signed-note.h"
#include "softhsm-token.h"
#include "store-private.h"
#include "store.h"
#include "tap.h"

#define TOKEN_LABEL "credbroker-audit-key-test"
#define USER_PIN    "1234"
#define SO_PIN      "5678"
#define LABEL       "credbroker/audit-key"
#define BODY                                                                                       \
        "credbroker/0123456789abcdef0123456789abcdef\n"                                            \
        "42\n"                                                                                     \
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"                                           \
        "time 2026-12-04T21:00:00.123Z\n"

static struct test_token softhsm;

static size_t raw_find(struct store *s, CK_OBJECT_CLASS class, CK_OBJECT_HANDLE *handles,
                       size_t max)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_ATTRIBUTE template[] = {
            {CKA_LABEL, (void *)LABEL, strlen(LABEL)},
            {CKA_CLASS, &class, sizeof(class)},
        };
        CK_ULONG n = 0;

        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, template, 2) != CKR_OK)
                return 0;
        if (m->C_FindObjects(session, handles, max, &n) != CKR_OK)
                n = 0;
        m->C_FindObjectsFinal(session);
        return n;
}

static size_t raw_count(struct store *s, CK_OBJECT_CLASS class)
{
        CK_OBJECT_HANDLE handles[16];

        return raw_find(s, class, handles, 16);
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

static bool verifies(const struct note_key *k, const char *body, const uint8_t *sig, size_t sig_len)
{
        gnutls_pubkey_t key;
        gnutls_datum_t x = {(unsigned char *)k->pub, (unsigned)k->pub_len};
        gnutls_datum_t data = {(unsigned char *)body, (unsigned)strlen(body)};
        gnutls_datum_t signature = {(unsigned char *)sig, (unsigned)sig_len};
        int e;

        if (gnutls_pubkey_init(&key) < 0)
                abort();
        e = gnutls_pubkey_import_ecc_raw(key, GNUTLS_ECC_CURVE_ED25519, &x, NULL);
        if (e >= 0)
                e = gnutls_pubkey_verify_data2(key, GNUTLS_SIGN_EDDSA_ED25519, 0, &data,
                                               &signature);
        gnutls_pubkey_deinit(key);
        return e >= 0;
}

#if ENABLE_FAULT_POINTS
/* store_audit_key() in a child that the fault point kills right after the generation. */
static void generate_killed(void)
{
        pid_t pid = fork();
        int status;

        if (pid < 0)
                test_die("fork");
        if (pid == 0) {
                struct store *child = NULL;
                struct note_key k;

                setenv("CREDBROKER_FAULT", "audit-key-after-generate", 1);
                if (test_token_open(&softhsm, &child) < 0)
                        _exit(2);
                (void)store_audit_key(child, &k);
                _exit(3);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        test_die("waitpid");
        ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
           "killed between generating the audit key and using it");
        unsetenv("CREDBROKER_FAULT");
}
#endif

static void test_generate_once(struct store **s, struct note_key *ret)
{
        struct note_key first = {0}, again = {0};
        uint8_t sig[64];
        size_t sig_len = 0;

        is_int(store_audit_sign(*s, BODY, strlen(BODY), sig, &sig_len, NULL), -ENOKEY,
               "no audit key yet: signing is refused, no key is made");
        is_int(raw_count(*s, CKO_PRIVATE_KEY), 0, "signing made no key");

#if ENABLE_FAULT_POINTS
        store_close(*s);
        *s = NULL;
        generate_killed();
        if (test_token_open(&softhsm, s) < 0)
                return;
        is_int(raw_count(*s, CKO_PRIVATE_KEY), 1, "the crashed run left its private key");
#else
        ok(1, "# SKIP fault points are not compiled in (-Dfault_points=true)");
#endif

        is_int(store_audit_key(*s, &first), 0, "store_audit_key");
        is_int(first.type, NOTE_KEY_ED25519, "SoftHSM2 gets an Ed25519 key");
        is_int(first.pub_len, 32, "a 32-byte public key");
        is_int(raw_count(*s, CKO_PRIVATE_KEY), 1, "one private key");
        is_int(raw_count(*s, CKO_PUBLIC_KEY), 1, "one public key");

        is_int(store_audit_key(*s, &again), 0, "store_audit_key again");
        ok(memcmp(&first, &again, sizeof(first)) == 0, "the same key both times");
        store_close(*s);
        *s = NULL;
        if (test_token_open(&softhsm, s) < 0)
                return;
        memset(&again, 0, sizeof(again));
        is_int(store_audit_key(*s, &again), 0, "store_audit_key after reopening");
        ok(memcmp(&first, &again, sizeof(first)) == 0, "the same key after reopening");
        is_int(raw_count(*s, CKO_PRIVATE_KEY), 1, "still one private key");
        is_int(raw_count(*s, CKO_PUBLIC_KEY), 1, "still one public key");
        *ret = first;
}

static void test_attributes(struct store *s)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_HANDLE keys[4];
        uint8_t value[256];
        CK_ATTRIBUTE secret = {CKA_VALUE, value, sizeof(value)};

        if (raw_find(s, CKO_PRIVATE_KEY, keys, 4) != 1) {
                ok(0, "find the private key");
                return;
        }
        is_int(bool_attribute(s, keys[0], CKA_TOKEN), CK_TRUE, "CKA_TOKEN");
        is_int(bool_attribute(s, keys[0], CKA_PRIVATE), CK_TRUE, "CKA_PRIVATE");
        is_int(bool_attribute(s, keys[0], CKA_SENSITIVE), CK_TRUE, "CKA_SENSITIVE");
        is_int(bool_attribute(s, keys[0], CKA_EXTRACTABLE), CK_FALSE, "not CKA_EXTRACTABLE");
        is_int(bool_attribute(s, keys[0], CKA_ALWAYS_SENSITIVE), CK_TRUE, "CKA_ALWAYS_SENSITIVE");
        is_int(bool_attribute(s, keys[0], CKA_NEVER_EXTRACTABLE), CK_TRUE, "CKA_NEVER_EXTRACTABLE");
        is_int(bool_attribute(s, keys[0], CKA_SIGN), CK_TRUE, "CKA_SIGN");

        store_private_session(s, &m, &session);
        is_int(m->C_GetAttributeValue(session, keys[0], &secret, 1), CKR_ATTRIBUTE_SENSITIVE,
               "the private value cannot be read");
        ok(secret.ulValueLen == CK_UNAVAILABLE_INFORMATION, "and nothing of it is returned");

        if (raw_find(s, CKO_PUBLIC_KEY, keys, 4) == 1) {
                static const uint8_t oid[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
                uint8_t params[64];
                CK_ATTRIBUTE a = {CKA_EC_PARAMS, params, sizeof(params)};

                if (m->C_GetAttributeValue(session, keys[0], &a, 1) == CKR_OK)
                        printf("# CKA_EC_PARAMS: %s\n",
                               a.ulValueLen == sizeof(oid) && memcmp(params, oid, sizeof(oid)) == 0
                                   ? "the OID 1.3.101.112"
                                   : "not the OID (the printable string form)");
        }
}

static void test_sign(struct store *s, const struct note_key *k)
{
        char changed[] = BODY;
        uint8_t sig[64];
        size_t sig_len = 0;
        bool looked_up = false;

        is_int(store_audit_sign(s, BODY, strlen(BODY), sig, &sig_len, &looked_up), 0,
               "store_audit_sign");
        is_int(sig_len, 64, "a 64-byte signature");
        is_int(looked_up, true, "the first signature looks the key up");
        is_int(store_audit_sign(s, BODY, strlen(BODY), sig, &sig_len, &looked_up), 0,
               "store_audit_sign again");
        is_int(looked_up, false, "the next one signs with the handle found then");
        ok(verifies(k, BODY, sig, sig_len), "it verifies with GnuTLS (Ed25519) over the body");
        changed[strlen("credbroker/0123456789abcdef0123456789abcdef\n")] = '3';
        ok(!verifies(k, changed, sig, sig_len), "and not over a changed body");
        sig[10] ^= 1;
        ok(!verifies(k, BODY, sig, sig_len), "nor with a changed signature");
}

static void test_key_hash(const struct note_key *k)
{
        uint8_t input[64], digest[32];
        size_t n = 0;

        memcpy(input, "credbroker-audit\n", 17);
        n = 17;
        input[n++] = 0x01;
        memcpy(input + n, k->pub, 32);
        n += 32;
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, input, n, digest) < 0)
                abort();
        ok(memcmp(k->hash, digest, 4) == 0,
           "key hash = first 4 bytes of SHA-256(\"credbroker-audit\\n\" 0x01 pub)");
}

int main(void)
{
        struct store *s = NULL;
        struct note_key k = {0};

        test_token_init(&softhsm, TOKEN_LABEL, USER_PIN, SO_PIN);
        unsetenv("CREDENTIALS_DIRECTORY");
        unsetenv("CREDBROKER_FAULT");
        is_int(test_token_open(&softhsm, &s), 0, "open the test token");
        if (s)
                test_generate_once(&s, &k);
        if (s) {
                test_attributes(s);
                test_sign(s, &k);
                test_key_hash(&k);
                store_close(s);
        }
        test_token_cleanup(&softhsm);
        return done_testing();
}
