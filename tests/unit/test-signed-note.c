/* Unit tests for common/signed-note: the verifier key string, the note body byte for byte,
 * and verification of notes signed here with GnuTLS-generated Ed25519 and P-256 keys. */
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "signed-note.h"
#include "tap.h"

static const char LOG_ID[] = "0123456789abcdef0123456789abcdef";
static const uint64_t TIME_USEC = 1796418000123000ULL; /* 2026-12-04T21:00:00.123Z */

struct signer {
        gnutls_privkey_t priv;
        struct note_key key;
};

/* The last n bytes of d, left-padded with zeros (GnuTLS may add or drop a leading zero). */
static void fixed(const gnutls_datum_t *d, uint8_t *out, size_t n)
{
        memset(out, 0, n);
        if (d->size >= n)
                memcpy(out, d->data + d->size - n, n);
        else
                memcpy(out + n - d->size, d->data, d->size);
}

static void signer_new(uint8_t type, struct signer *s)
{
        gnutls_pubkey_t pub;
        gnutls_datum_t x = {0}, y = {0};
        gnutls_ecc_curve_t curve;
        uint8_t raw[65];

        if (gnutls_privkey_init(&s->priv) < 0 || gnutls_pubkey_init(&pub) < 0)
                abort();
        if (type == NOTE_KEY_ED25519
                ? gnutls_privkey_generate(s->priv, GNUTLS_PK_EDDSA_ED25519, 256, 0) < 0
                : gnutls_privkey_generate(s->priv, GNUTLS_PK_ECDSA,
                                          GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0)
                abort();
        if (gnutls_pubkey_import_privkey(pub, s->priv, 0, 0) < 0 ||
            gnutls_pubkey_export_ecc_raw(pub, &curve, &x, type == NOTE_KEY_ED25519 ? NULL : &y) < 0)
                abort();
        if (type == NOTE_KEY_ED25519) {
                fixed(&x, raw, 32);
                if (note_key_init(type, raw, 32, &s->key) < 0)
                        abort();
        } else {
                raw[0] = 4;
                fixed(&x, raw + 1, 32);
                fixed(&y, raw + 33, 32);
                if (note_key_init(type, raw, 65, &s->key) < 0)
                        abort();
        }
        gnutls_free(x.data);
        gnutls_free(y.data);
        gnutls_pubkey_deinit(pub);
}

static void sign(const struct signer *s, const char *body, uint8_t sig[64])
{
        gnutls_datum_t data = {(unsigned char *)body, (unsigned)strlen(body)}, out = {0};

        if (s->key.type == NOTE_KEY_ED25519) {
                if (gnutls_privkey_sign_data2(s->priv, GNUTLS_SIGN_EDDSA_ED25519, 0, &data, &out) <
                        0 ||
                    out.size != 64)
                        abort();
                memcpy(sig, out.data, 64);
        } else {
                gnutls_datum_t r = {0}, ss = {0};
                if (gnutls_privkey_sign_data2(s->priv, GNUTLS_SIGN_ECDSA_SHA256, 0, &data, &out) <
                        0 ||
                    gnutls_decode_rs_value(&out, &r, &ss) < 0)
                        abort();
                fixed(&r, sig, 32);
                fixed(&ss, sig + 32, 32);
                gnutls_free(r.data);
                gnutls_free(ss.data);
        }
        gnutls_free(out.data);
}

/* A whole note over (count, head) signed by s. */
static char *make_note(const struct signer *s, uint64_t count, const uint8_t head[32])
{
        _cleanup_free_ char *body = NULL;
        uint8_t sig[64];
        char *note = NULL;

        if (note_checkpoint_body(LOG_ID, count, head, TIME_USEC, &body) < 0)
                abort();
        sign(s, body, sig);
        if (note_assemble(body, &s->key, sig, 64, &note) < 0)
                abort();
        return note;
}

static void test_key_format(void)
{
        uint8_t pub[32];
        struct note_key k, parsed;
        _cleanup_free_ char *text = NULL;

        for (int i = 0; i < 32; i++)
                pub[i] = (uint8_t)i;
        is_int(note_key_init(NOTE_KEY_ED25519, pub, 32, &k), 0, "key init");
        is_int(note_key_format(&k, &text), 0, "key format");
        is_str(text, "credbroker-audit+814de9eb+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
               "key string: name+hash+base64(type||pub), hash from Python's hashlib");
        is_int(note_key_parse(text, &parsed), 0, "key parses");
        ok(parsed.type == 1 && parsed.pub_len == 32 && memcmp(parsed.pub, pub, 32) == 0 &&
               memcmp(parsed.hash, k.hash, 4) == 0,
           "round trip");
        static const char *bad[] = {
            "",
            "credbroker-audit+814de9eb+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4",
            "credbroker-audit+814de9ec+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
            "other-name+814de9eb+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
            "credbroker-audit+814de9eb+AwABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
            "credbroker-audit+814de9eb+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f ",
            "credbroker-audit+814de9e+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
            "credbroker-audit+814de9eb+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
                is_int(note_key_parse(bad[i], &parsed), -EINVAL, "bad key string refused");
        is_int(note_key_init(3, pub, 32, &k), -EINVAL, "unknown key type refused");
        is_int(note_key_init(NOTE_KEY_ECDSA_P256, pub, 32, &k), -EINVAL, "short P-256 refused");
}

static void test_body(void)
{
        uint8_t head[32];
        _cleanup_free_ char *body = NULL;

        for (int i = 0; i < 32; i++)
                head[i] = (uint8_t)i;
        is_int(note_checkpoint_body(LOG_ID, 1000, head, TIME_USEC, &body), 0, "body");
        is_str(body,
               "credbroker/0123456789abcdef0123456789abcdef\n1000\n"
               "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntime 2026-12-04T21:00:00.123Z\n",
               "body byte for byte");
        is_int(note_checkpoint_body("0123", 1, head, TIME_USEC, &body), -EINVAL, "bad log_id");
}

/* Replaces the first occurrence of from by to (same length) in a copy of note. */
static char *replaced(const char *note, const char *from, const char *to)
{
        char *copy = strdup(note), *at = strstr(copy, from);

        if (at)
                memcpy(at, to, strlen(to));
        return copy;
}

static void test_verify(uint8_t type, const char *what)
{
        struct signer s, other;
        struct note_checkpoint cp;
        uint8_t head[32] = {1, 2, 3};
        _cleanup_free_ char *note = NULL, *count = NULL, *h = NULL, *foreign = NULL;
        char msg[128];

        signer_new(type, &s);
        signer_new(type, &other);
        note = make_note(&s, 1000, head);
        snprintf(msg, sizeof(msg), "%s: a note verifies", what);
        is_int(note_verify(note, strlen(note), &s.key, &cp), 0, msg);
        ok(cp.count == 1000 && memcmp(cp.head, head, 32) == 0 && strcmp(cp.log_id, LOG_ID) == 0 &&
               strcmp(cp.time, "2026-12-04T21:00:00.123Z") == 0,
           "parsed fields");
        count = replaced(note, "\n1000\n", "\n1001\n");
        is_int(note_verify(count, strlen(count), &s.key, &cp), -EBADE, "changed count: -EBADE");
        h = replaced(note, "\nAQID", "\nAQIE");
        is_int(note_verify(h, strlen(h), &s.key, &cp), -EBADE, "changed head: -EBADE");
        foreign = make_note(&other, 1000, head);
        is_int(note_verify(foreign, strlen(foreign), &s.key, &cp), -EKEYREJECTED,
               "another key's signature: -EKEYREJECTED");
        uint8_t signer[4];
        ok(note_signer_hash(note, signer) == 0 && memcmp(signer, s.key.hash, 4) == 0,
           "note_signer_hash: the signing key's hash");
        ok(note_signer_hash(foreign, signer) == 0 && memcmp(signer, other.key.hash, 4) == 0,
           "note_signer_hash of another key's note: that key's hash");
        _cleanup_free_ char *body_only = strdup(note);
        *strstr(body_only, "\n\xe2\x80\x94 ") = 0;
        is_int(note_signer_hash(body_only, signer), -EBADMSG,
               "note_signer_hash of a body: -EBADMSG");
        /* The signature bytes themselves changed (not the key hash). */
        _cleanup_free_ char *badsig = strdup(note);
        char *last = badsig + strlen(badsig) - 10;
        *last = *last == 'A' ? 'B' : 'A';
        is_int(note_verify(badsig, strlen(badsig), &s.key, &cp), -EBADE, "changed signature");
        gnutls_privkey_deinit(s.priv);
        gnutls_privkey_deinit(other.priv);
}

static void test_malformed(void)
{
        struct signer s;
        struct note_checkpoint cp;
        uint8_t head[32] = {0};
        _cleanup_free_ char *note = NULL;

        signer_new(NOTE_KEY_ED25519, &s);
        note = make_note(&s, 5, head);
        size_t len = strlen(note);
        for (size_t cut = 0; cut < len; cut++)
                if (note_verify(note, cut, &s.key, &cp) != -EBADMSG) {
                        ok(0, "every truncation is -EBADMSG");
                        printf("#   at %zu\n", cut);
                        goto next;
                }
        ok(1, "every truncation is -EBADMSG");
next:;
        static const char *bad[][2] = {
            {"credbroker/", "credbrokeR/"}, {"\n5\n", "\n05"},      {"time 2026", "Time 2026"},
            {".123Z\n\n", ".123Z\n "},      {"\xe2\x80\x94", "--"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                _cleanup_free_ char *b = replaced(note, bad[i][0], bad[i][1]);
                is_int(note_verify(b, strlen(b), &s.key, &cp), -EBADMSG, "malformed: -EBADMSG");
        }
        /* Two signature lines with our key: refused; another verifier's line: ignored. */
        _cleanup_free_ char *sigline = strdup(strstr(note, "\n\n") + 2), *two = NULL, *three = NULL;
        if (asprintf(&two, "%s%s", note, sigline) < 0 ||
            asprintf(&three, "%s\xe2\x80\x94 other-log AAAAAAAA\n", note) < 0)
                abort();
        is_int(note_verify(two, strlen(two), &s.key, &cp), -EBADMSG, "two of our lines");
        is_int(note_verify(three, strlen(three), &s.key, &cp), 0, "another verifier's line");
        char big[NOTE_MAX_LEN + 2];
        memset(big, 'a', sizeof(big));
        is_int(note_verify(big, sizeof(big), &s.key, &cp), -EBADMSG, "over 1024 bytes");
        gnutls_privkey_deinit(s.priv);
}

int main(void)
{
        test_key_format();
        test_body();
        test_verify(NOTE_KEY_ED25519, "Ed25519");
        test_verify(NOTE_KEY_ECDSA_P256, "ECDSA P-256");
        test_malformed();
        return done_testing();
}
