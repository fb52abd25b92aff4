/* The audit log (design.md §8): one JSON line per decision and per account event, written
 * before the reply it records. This first version has no hash chain yet. */
#pragma once

#include <stdint.h>

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

/* Opens (creating 0600) the log for appending; the sequence number continues from its last
 * line. key fingerprints tokens and is copied. */
int audit_open(const char *path, const struct secret *key, struct audit **ret);
void audit_close(struct audit *a);

/* Appends one record with a single write(). A failure means the caller must not send what the
 * record describes. */
int audit_write(struct audit *a, const struct audit_record *r);

/* audit_write() in two steps, for records that repeat: audit_prepare() prints everything but
 * "time" and "seq" (a malloc()ed JSON object, free with json_free_string()), and
 * audit_write_prepared() stamps and writes it. A connection asking again for the same cached
 * token under the same rule reuses its prepared record instead of building it again. */
int audit_prepare(const struct audit_record *r, char **ret_body, size_t *ret_len);
int audit_write_prepared(struct audit *a, const char *body, size_t len);

/* First 16 hex characters of HMAC-SHA-256(per-install key, token): lets an auditor match a token
 * seen elsewhere without the log ever holding one. */
void audit_fingerprint(const struct audit *a, const struct secret *token, char out[static 17]);
