/* Checkpoint notes of the audit log in the C2SP signed-note form (docs/audit.md): the verifier
 * key string, the note body, assembling and verifying a note. Pure code (GnuTLS for SHA-256,
 * base64 and signature verification); the signing key lives in the PKCS#11 token. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define NOTE_KEY_NAME "credbroker-audit"
#define NOTE_MAX_LEN  1024

/* What the broker guarantees about its checkpoints and the verifier checks (docs/audit.md), with
 * n = [broker] audit_checkpoint_records:
 * - the counts of consecutive checkpoints of a chain (from 0 at its genesis) are at most n
 *   apart: one is asked for every n records, whether or not earlier signatures are back (the
 *   verifier allows n + 1);
 * - at most NOTE_PENDING_MAX signatures are outstanding (beyond that, one that is due is skipped
 *   and the gap is reported);
 * - a checkpoint record comes at most NOTE_MAX_LAG(n) records after the count its note covers
 *   (a later signature is dropped), so the verifier keeps that many records' hashes. */
#define NOTE_PENDING_MAX 8
#define NOTE_MAX_LAG(n)  ((NOTE_PENDING_MAX + 2) * (uint64_t)(n) + 64)

enum note_key_type { NOTE_KEY_ED25519 = 0x01, NOTE_KEY_ECDSA_P256 = 0x02 };

struct note_key {
        uint8_t type;
        uint8_t pub[65];
        size_t pub_len;
        uint8_t hash[4];
};

/* From a type and raw public key: fills hash. */
int note_key_init(uint8_t type, const uint8_t *pub, size_t pub_len, struct note_key *ret);
/* "credbroker-audit+<hex8>+<base64>", malloc()ed. */
int note_key_format(const struct note_key *k, char **ret);
int note_key_parse(const char *text, struct note_key *ret); /* -EINVAL on anything else */
/* The body text of a checkpoint note (4 lines, each ending "\n"), malloc()ed. */
int note_checkpoint_body(const char *log_id, uint64_t count, const uint8_t head[32],
                         uint64_t time_usec, char **ret);
/* body + "\n" + "— credbroker-audit <base64(hash||sig)>\n", malloc()ed. */
int note_assemble(const char *body, const struct note_key *k, const uint8_t *sig, size_t sig_len,
                  char **ret);

struct note_checkpoint {
        char log_id[33];
        uint64_t count;
        uint8_t head[32];
        char time[32];
};
/* Parses a whole note (bounded: at most 1024 bytes), checks that exactly one signature
 * line names NOTE_KEY_NAME with k's key hash and that it verifies over the body.
 * -EBADMSG malformed, -EKEYREJECTED another key's signature, -EBADE bad signature. */
int note_verify(const char *note, size_t len, const struct note_key *k,
                struct note_checkpoint *ret);

/* The key hash of a note's NOTE_KEY_NAME signature (the first one), without verifying it: which
 * key signed the log's latest checkpoint. -EBADMSG when there is none. */
int note_signer_hash(const char *note, uint8_t ret[4]);

/* The SHA-256 helper the chain needs (hex: hex_decode() in util.h). */
void note_sha256(const void *data, size_t len, uint8_t out[32]);
/* Strict standard base64 of exactly len bytes (padded) → bytes; -EINVAL otherwise. */
int note_unbase64(const char *text, size_t text_len, uint8_t *out, size_t len);
