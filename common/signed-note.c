/* Checkpoint notes in the C2SP signed-note form: key strings, bodies, assembly and
 * verification with GnuTLS. Every input is bounded; anything unexpected is refused. */
#include "signed-note.h"

#include <errno.h>
#include <inttypes.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "util.h"

#define SIG_PREFIX    "\xe2\x80\x94 " NOTE_KEY_NAME " "
#define ORIGIN_PREFIX "credbroker/"

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void note_sha256(const void *data, size_t len, uint8_t out[32])
{
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0)
                abort(); /* SHA-256 cannot fail short of a broken library */
}

/* Standard base64 with padding, malloc()ed and NUL-terminated. */
static int base64_encode(const uint8_t *data, size_t len, char **ret)
{
        gnutls_datum_t in = {(unsigned char *)data, (unsigned)len}, out = {NULL, 0};
        char *s;

        if (gnutls_base64_encode2(&in, &out) < 0)
                return -ENOMEM;
        s = malloc(out.size + 1);
        if (s) {
                memcpy(s, out.data, out.size);
                s[out.size] = 0;
        }
        gnutls_free(out.data);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int note_unbase64(const char *text, size_t text_len, uint8_t *out, size_t len)
{
        size_t want = (len + 2) / 3 * 4, pad = (3 - len % 3) % 3;
        gnutls_datum_t in = {(unsigned char *)text, (unsigned)text_len}, dec = {NULL, 0};
        int r = -EINVAL;

        if (text_len != want)
                return -EINVAL;
        for (size_t i = 0; i < want - pad; i++)
                if (!text[i] || !strchr(base64_alphabet, text[i]))
                        return -EINVAL;
        for (size_t i = want - pad; i < want; i++)
                if (text[i] != '=')
                        return -EINVAL;
        if (gnutls_base64_decode2(&in, &dec) < 0)
                return -EINVAL;
        if (dec.size == len) {
                memcpy(out, dec.data, len);
                r = 0;
        }
        gnutls_free(dec.data);
        return r;
}

static size_t key_pub_len(uint8_t type)
{
        return type == NOTE_KEY_ED25519 ? 32 : type == NOTE_KEY_ECDSA_P256 ? 65 : 0;
}

int note_key_init(uint8_t type, const uint8_t *pub, size_t pub_len, struct note_key *ret)
{
        uint8_t buf[sizeof(NOTE_KEY_NAME) + 1 + 65], digest[32];
        size_t n = sizeof(NOTE_KEY_NAME) - 1;

        if (key_pub_len(type) == 0 || pub_len != key_pub_len(type))
                return -EINVAL;
        if (type == NOTE_KEY_ECDSA_P256 && pub[0] != 0x04)
                return -EINVAL; /* uncompressed point only */
        memcpy(buf, NOTE_KEY_NAME, n);
        buf[n++] = '\n';
        buf[n++] = type;
        memcpy(buf + n, pub, pub_len);
        note_sha256(buf, n + pub_len, digest);
        *ret = (struct note_key){.type = type, .pub_len = pub_len};
        memcpy(ret->pub, pub, pub_len);
        memcpy(ret->hash, digest, 4);
        return 0;
}

int note_key_format(const struct note_key *k, char **ret)
{
        uint8_t raw[1 + 65];
        _cleanup_free_ char *b64 = NULL;
        char hex[9], *s;
        int r;

        if (key_pub_len(k->type) == 0 || k->pub_len != key_pub_len(k->type))
                return -EINVAL;
        raw[0] = k->type;
        memcpy(raw + 1, k->pub, k->pub_len);
        r = base64_encode(raw, 1 + k->pub_len, &b64);
        if (r < 0)
                return r;
        hex_encode(k->hash, 4, hex);
        if (asprintf(&s, "%s+%s+%s", NOTE_KEY_NAME, hex, b64) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int note_key_parse(const char *text, struct note_key *ret)
{
        const size_t name_len = sizeof(NOTE_KEY_NAME) - 1;
        uint8_t hash[4], raw[1 + 65];
        struct note_key k;
        size_t b64_len;

        if (strncmp(text, NOTE_KEY_NAME "+", name_len + 1) != 0)
                return -EINVAL;
        text += name_len + 1;
        if (strlen(text) < 9 || text[8] != '+' || hex_decode(text, 8, hash, 4) < 0)
                return -EINVAL;
        text += 9;
        b64_len = strlen(text);
        if (b64_len == 44 && note_unbase64(text, 44, raw, 33) == 0) {
                if (note_key_init(raw[0], raw + 1, 32, &k) < 0)
                        return -EINVAL;
        } else if (b64_len == 88 && note_unbase64(text, 88, raw, 66) == 0) {
                if (note_key_init(raw[0], raw + 1, 65, &k) < 0)
                        return -EINVAL;
        } else
                return -EINVAL;
        if (memcmp(k.hash, hash, 4) != 0)
                return -EINVAL;
        *ret = k;
        return 0;
}

static bool is_log_id(const char *s)
{
        if (strlen(s) != 32)
                return false;
        for (size_t i = 0; i < 32; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

int note_checkpoint_body(const char *log_id, uint64_t count, const uint8_t head[32],
                         uint64_t time_usec, char **ret)
{
        _cleanup_free_ char *b64 = NULL;
        char time[25], *s;
        int r;

        if (!is_log_id(log_id))
                return -EINVAL;
        r = base64_encode(head, 32, &b64);
        if (r < 0)
                return r;
        format_rfc3339_ms(time_usec, time);
        if (asprintf(&s, ORIGIN_PREFIX "%s\n%" PRIu64 "\n%s\ntime %s\n", log_id, count, b64, time) <
            0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int note_assemble(const char *body, const struct note_key *k, const uint8_t *sig, size_t sig_len,
                  char **ret)
{
        uint8_t raw[4 + 64];
        _cleanup_free_ char *b64 = NULL;
        char *s;
        int r;

        if (sig_len != 64)
                return -EINVAL;
        memcpy(raw, k->hash, 4);
        memcpy(raw + 4, sig, 64);
        r = base64_encode(raw, sizeof(raw), &b64);
        if (r < 0)
                return r;
        if (asprintf(&s, "%s\n" SIG_PREFIX "%s\n", body, b64) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* GnuTLS verification boundary: 0, -EBADE on a bad signature, -EINVAL on an unusable key. */
static int verify_signature(const struct note_key *k, const char *body, size_t body_len,
                            const uint8_t sig[64])
{
        gnutls_pubkey_t pub = NULL;
        gnutls_datum_t data = {(unsigned char *)body, (unsigned)body_len};
        gnutls_datum_t x, y, der = {NULL, 0};
        gnutls_datum_t rr = {(unsigned char *)sig, 32}, ss = {(unsigned char *)sig + 32, 32};
        int r;

        if (gnutls_pubkey_init(&pub) < 0)
                return -ENOMEM;
        if (k->type == NOTE_KEY_ED25519) {
                x = (gnutls_datum_t){(unsigned char *)k->pub, 32};
                r = gnutls_pubkey_import_ecc_raw(pub, GNUTLS_ECC_CURVE_ED25519, &x, NULL);
                if (r >= 0) {
                        gnutls_datum_t s = {(unsigned char *)sig, 64};
                        r = gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_EDDSA_ED25519, 0, &data,
                                                       &s);
                        r = r >= 0 ? 0 : -EBADE;
                } else
                        r = -EINVAL;
        } else {
                x = (gnutls_datum_t){(unsigned char *)k->pub + 1, 32};
                y = (gnutls_datum_t){(unsigned char *)k->pub + 33, 32};
                r = gnutls_pubkey_import_ecc_raw(pub, GNUTLS_ECC_CURVE_SECP256R1, &x, &y);
                if (r >= 0 && gnutls_encode_rs_value(&der, &rr, &ss) >= 0) {
                        r = gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_ECDSA_SHA256, 0, &data,
                                                       &der);
                        r = r >= 0 ? 0 : -EBADE;
                } else
                        r = -EINVAL;
        }
        gnutls_free(der.data);
        gnutls_pubkey_deinit(pub);
        return r;
}

/* The line starting at *p (before end), without its "\n"; advances *p past it. */
static int next_line(const char **p, const char *end, const char **ret, size_t *ret_len)
{
        const char *nl = memchr(*p, '\n', (size_t)(end - *p));

        if (!nl)
                return -EBADMSG;
        *ret = *p;
        *ret_len = (size_t)(nl - *p);
        *p = nl + 1;
        return 0;
}

static bool time_ok(const char *s, size_t len)
{
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

        if (len != sizeof(shape) - 1)
                return false;
        for (size_t i = 0; i < len; i++)
                if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
                        return false;
        return true;
}

static int parse_count(const char *s, size_t len, uint64_t *ret)
{
        char buf[21];

        if (len == 0 || len > 20 || (s[0] == '0' && len > 1))
                return -EBADMSG;
        for (size_t i = 0; i < len; i++)
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
        memcpy(buf, s, len);
        buf[len] = 0;
        return parse_u64(buf, ret) < 0 ? -EBADMSG : 0;
}

/* The four body lines: origin, count, head, time. */
static int parse_body(const char **p, const char *end, struct note_checkpoint *ret)
{
        const char *l;
        size_t n;

        if (next_line(p, end, &l, &n) < 0 || n != sizeof(ORIGIN_PREFIX) - 1 + 32 ||
            memcmp(l, ORIGIN_PREFIX, sizeof(ORIGIN_PREFIX) - 1) != 0)
                return -EBADMSG;
        memcpy(ret->log_id, l + sizeof(ORIGIN_PREFIX) - 1, 32);
        ret->log_id[32] = 0;
        if (!is_log_id(ret->log_id))
                return -EBADMSG;
        if (next_line(p, end, &l, &n) < 0 || parse_count(l, n, &ret->count) < 0)
                return -EBADMSG;
        if (next_line(p, end, &l, &n) < 0 || note_unbase64(l, n, ret->head, 32) < 0)
                return -EBADMSG;
        if (next_line(p, end, &l, &n) < 0 || n < 5 || memcmp(l, "time ", 5) != 0 ||
            !time_ok(l + 5, n - 5))
                return -EBADMSG;
        memcpy(ret->time, l + 5, n - 5);
        ret->time[n - 5] = 0;
        return 0;
}

/* One signature line "— NAME BASE64": counts ours (matching k) and foreign ones. */
static int parse_signature_line(const char *l, size_t n, const struct note_key *k, uint8_t sig[64],
                                unsigned *mine, unsigned *foreign)
{
        const char *name, *space, *b64;
        uint8_t raw[4 + 64];

        if (n < 4 || memcmp(l, "\xe2\x80\x94 ", 4) != 0)
                return -EBADMSG;
        name = l + 4;
        space = memchr(name, ' ', n - 4);
        if (!space || space == name || memchr(name, '+', (size_t)(space - name)))
                return -EBADMSG;
        b64 = space + 1;
        if ((size_t)(space - name) != sizeof(NOTE_KEY_NAME) - 1 ||
            memcmp(name, NOTE_KEY_NAME, sizeof(NOTE_KEY_NAME) - 1) != 0)
                return 0; /* another verifier's line: C2SP allows several */
        if (note_unbase64(b64, (size_t)(l + n - b64), raw, sizeof(raw)) < 0)
                return -EBADMSG;
        if (memcmp(raw, k->hash, 4) != 0) {
                (*foreign)++;
                return 0;
        }
        memcpy(sig, raw + 4, 64);
        (*mine)++;
        return 0;
}

int note_signer_hash(const char *note, uint8_t ret[4])
{
        static const char line_start[] = "\n\xe2\x80\x94 " NOTE_KEY_NAME " ";
        const char *b64 = note ? strstr(note, line_start) : NULL, *end;
        uint8_t raw[4 + 64];

        if (!b64)
                return -EBADMSG;
        b64 += sizeof(line_start) - 1;
        end = strchr(b64, '\n');
        if (!end || note_unbase64(b64, (size_t)(end - b64), raw, sizeof(raw)) < 0)
                return -EBADMSG;
        memcpy(ret, raw, 4);
        return 0;
}

int note_verify(const char *note, size_t len, const struct note_key *k, struct note_checkpoint *ret)
{
        const char *p = note, *end = note + len, *l;
        struct note_checkpoint cp = {0};
        unsigned mine = 0, foreign = 0;
        size_t body_len, n;
        uint8_t sig[64];
        int r;

        if (len > NOTE_MAX_LEN || memchr(note, 0, len))
                return -EBADMSG;
        r = parse_body(&p, end, &cp);
        if (r < 0)
                return r;
        body_len = (size_t)(p - note);
        if (next_line(&p, end, &l, &n) < 0 || n != 0 || p == end)
                return -EBADMSG;
        while (p < end) {
                if (next_line(&p, end, &l, &n) < 0)
                        return -EBADMSG;
                r = parse_signature_line(l, n, k, sig, &mine, &foreign);
                if (r < 0)
                        return r;
        }
        if (mine > 1)
                return -EBADMSG;
        if (mine == 0)
                return -EKEYREJECTED;
        r = verify_signature(k, note, body_len, sig);
        if (r == -EINVAL)
                return -EKEYREJECTED;
        if (r < 0)
                return r;
        if (ret)
                *ret = cp;
        return 0;
}
