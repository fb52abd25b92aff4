/* The audit log (design.md §8, docs/audit.md): one JSON line per decision and per account
 * event, written before the reply it records, in the v1 format: every line carries v, seq, time,
 * boot_id and prev (the SHA-256 of the previous line), so the lines form a hash chain that
 * signed checkpoints (audit-checkpoint.c) seal. */
#pragma once

#include <nettle/sha2.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "json.h"
#include "peer.h"
#include "secret.h"

struct audit;

struct audit_record {
        const char *event;       /* issue, deny, refresh, refresh_failed, reauth_required, ... */
        const struct peer *peer; /* NULL for account events */
        const char *profile;
        const char *account;
        const char *scope_key; /* space separated; logged as an array */
        char *const *scopes;   /* or the scopes themselves (preferred: no copies) */
        size_t n_scopes;
        const char *decision; /* allow, deny or rate_limited */
        const char *rule;     /* file:line that decided */
        const char *reason;
        const char *rate_key;    /* the rate bucket that ran dry, NULL or "" if none */
        uint32_t retry_after;    /* seconds, with a rate_limited decision; 0 if none */
        const char *fingerprint; /* of the token issued */
        uint64_t expires_at;     /* unix seconds, 0 if none */
        uint64_t generation;     /* refresh-token generation after a rotation, 0 if none */
        const char *error;       /* upstream failure, one sentence */
        /* Mail (mail.queued, mail.sent, mail.deferred, mail.failed): the spool's id, the
         * message's Message-ID, its size and number of envelope recipients. */
        const char *queue_id;
        const char *message_id;
        uint64_t size;
        uint64_t n_recipients;
        /* An aggregated record (audit-aggregate.h) stands for count events of this kind
         * between first and last (unix µs), none of which has a line of its own. */
        uint64_t count;
        uint64_t first_usec, last_usec;
};

struct audit_options {
        const char *verifier_key; /* the genesis record's "key" (copied), NULL: none */
        gid_t group;              /* (gid_t)-1: the broker's own */
        /* Called after a record was written, with the line (without "\n"), its seq and the
         * hex SHA-256 of the line (the journald mirror). Must not write to the log. */
        void (*mirror)(void *userdata, const char *line, size_t len, uint64_t seq,
                       const char *hash_hex);
        void *mirror_userdata;
};

/* Opens (creating 0640) the log for appending. The chain continues from its last line: a new
 * or empty log, or one whose last record is not v1, starts a chain with a genesis record; a
 * last line torn by a crash gets an audit.alarm (torn_line) record. key fingerprints tokens
 * and is copied. o may be NULL. */
int audit_open_with(const char *path, const struct secret *key, const struct audit_options *o,
                    struct audit **ret);
static inline int audit_open(const char *path, const struct secret *key, struct audit **ret)
{
        return audit_open_with(path, key, NULL, ret);
}
void audit_close(struct audit *a);

/* The chain as it is now, for a checkpoint being asked for: count = seq of the next record,
 * head = SHA-256 of the last line. Unsealed records start again from 0, and the hook's count
 * from count. */
void audit_chain_mark(struct audit *a, uint64_t *ret_count, uint8_t head[static 32]);
/* A checkpoint that fell due was not asked for (too many outstanding): the hook's count starts
 * again from here, and the records stay unsealed for the next one. */
void audit_checkpoint_skipped(struct audit *a);
/* A checkpoint asked for was not written (the token refused, or it came back too late): what
 * it would have sealed waits for the next one. */
void audit_mark_unsealed(struct audit *a);
/* The seq the next record gets. */
uint64_t audit_next_seq(const struct audit *a);
const char *audit_log_id(const struct audit *a);
/* Records (other than checkpoints) written since the last checkpoint was asked for (0: the
 * chain is sealed, or will be once the signatures asked for are back). */
uint64_t audit_unsealed(const struct audit *a);
/* The latest checkpoint record's seq and count (this run's, or the log's last line at start);
 * false when none is known. */
bool audit_last_checkpoint(const struct audit *a, uint64_t *ret_seq, uint64_t *ret_count);
/* Called (on the loop, after the write) each time n records (any, checkpoints included) were
 * written since the last audit_chain_mark(), until the hook marks the chain. */
void audit_set_checkpoint_hook(struct audit *a, uint64_t n, void (*fn)(void *userdata),
                               void *userdata);
/* The latest checkpoint's note in the log (read back at open, or written since), NULL if none. */
const char *audit_last_note(const struct audit *a);
/* Appends a checkpoint record for a note signed over count and head; the note is kept for the
 * next file.start. */
int audit_write_checkpoint(struct audit *a, uint64_t count, const uint8_t head[static 32],
                           const char *note);
struct audit_head {
        uint64_t count;
        uint8_t head[32];
};
struct audit_catch_up {
        struct audit_head *heads; /* malloc()ed, oldest first */
        size_t n;
        bool unsealed; /* records after the latest checkpoint's count need a seal */
};
/* At start: the checkpoints a previous run asked for but did not write (it stopped before their
 * signatures were back). Going back from the end of the file to the latest checkpoint, file.start
 * or genesis (at most max_back lines: otherwise none, and unsealed), the count and head of every
 * n-th record after the count it sets. */
int audit_catch_up(struct audit *a, uint64_t n, uint64_t max_back, struct audit_catch_up *ret);
/* Rotation: when the path no longer names the open file (renamed by logrotate), opens a new file
 * (O_EXCL) at the path and starts it with a file.start record. *ret_reopened says which. */
int audit_reopen(struct audit *a, bool *ret_reopened);
/* A file shorter than the broker wrote (truncated behind its back): an audit.alarm record and
 * a critical log line; returns 1 then, 0 when the size is as expected. */
int audit_check_truncation(struct audit *a);

/* Appends one record with a single write(). A failure means the caller must not send what the
 * record describes. */
int audit_write(struct audit *a, const struct audit_record *r);

/* audit_write() in two steps, for records that repeat: audit_prepare() prints everything but
 * the record's own seq, time and prev, and hashes the line's start once; audit_write_prepared()
 * stamps, writes and finishes the hash. A connection asking again for the same cached token
 * under the same rule reuses its prepared record instead of building and hashing it again. */
struct audit_prepared {
        char *body; /* the record as a JSON object without the chain's members */
        size_t len;
        struct sha256_ctx start; /* SHA-256 state after the line's constant start */
        const struct audit *log; /* the log start was computed for */
};
int audit_prepare(const struct audit *a, const struct audit_record *r, struct audit_prepared *ret);
int audit_write_prepared(struct audit *a, const struct audit_prepared *p);
void audit_prepared_clear(struct audit_prepared *p);
/* An "issue" record from two parts printed once each, for a connection that asks for another
 * token each time: the peer's (its "event" and "peer", fixed for a connection) and the token's
 * ("profile" to "token_fingerprint", fixed for a cached token under one profile and rule), as
 * members without braces (free()). audit_prepare_issue() gives the same bytes audit_prepare()
 * gives for the whole record with that expires_at (test-audit checks it). */
struct audit_part {
        char *text;
        size_t len;
};
int audit_issue_peer_part(const struct audit_record *r, struct audit_part *ret);
int audit_issue_token_part(const struct audit_record *r, struct audit_part *ret);
/* Inline: the token cache frees its entries' parts without linking the audit log. */
static inline void audit_part_clear(struct audit_part *p)
{
        json_free_string(p->text);
        *p = (struct audit_part){0};
}
int audit_prepare_issue(const struct audit *a, const struct audit_part *peer,
                        const struct audit_part *token, uint64_t expires_at,
                        struct audit_prepared *ret);

/* First 16 hex characters of HMAC-SHA-256(per-install key, token): lets an auditor match a token
 * seen elsewhere without the log ever holding one. */
void audit_fingerprint(const struct audit *a, const struct secret *token, char out[static 17]);
