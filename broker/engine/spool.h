/* The mail spool (docs/mail-spool.md): messages handed over by mail.submit or found in the
 * maildrop, kept in files the broker alone can read until Graph has accepted them, delivered by
 * a credbroker-deliver child per attempt with the broker's own tokens, retried with backoff
 * within Graph's per-mailbox limits, and moved to failed/ with the reason when they never can
 * go. Every outcome is logged and audited. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct broker;
struct spool;

#define SPOOL_ID_LEN 24 /* hex characters of a queue id */

/* Creates the spool's directories when missing, takes the queue on disk into memory (a message
 * left in inflight/ by a crash is held, see docs/mail-spool.md) and starts the thread that does
 * its fsyncs. Sets b->spool. */
int spool_open(struct broker *b);
/* Kills running deliveries (their messages stay queued), stops the thread. */
void spool_close(struct broker *b);
/* Once a second from the loop: starts due deliveries, kills overdue ones, scans the maildrop. */
void spool_tick(struct broker *b);

/* ---- submissions (mail.submit, spool-submit.c) ---- */

struct spool_submission;
struct spool_submit_request {
        uid_t uid;
        const char *profile;
        const char *message_id; /* may be NULL */
        uint64_t size;
        uint64_t n_recipients;
};
/* Starts receiving a message. -ENOSPC when the spool or the uid's share of it is full or too
 * many submissions of the uid are open (*ret_refusal says which, one sentence for the peer),
 * -EFBIG for a message over [mail] max_message_mb, else a negative errno. */
int spool_submit_begin(struct spool *s, const struct spool_submit_request *req,
                       struct spool_submission **ret, const char **ret_refusal);
/* -EFBIG when the data passes the size announced. */
int spool_submit_append(struct spool_submission *sub, const uint8_t *data, size_t len);
/* done runs on the loop once the message is durably queued (tmp -> fsync -> rename ->
 * fsync(dir), off the loop) with 0, or with a negative errno; sub is freed after done returns.
 * -EBADMSG when fewer bytes came than announced (sub still the caller's then). */
typedef void spool_commit_fn(struct spool_submission *sub, int result, void *userdata);
int spool_submit_commit(struct spool_submission *sub, spool_commit_fn *done, void *userdata);
const char *spool_submission_id(const struct spool_submission *sub);
const char *spool_submission_profile(const struct spool_submission *sub);
const char *spool_submission_message_id(const struct spool_submission *sub); /* may be NULL */
uint64_t spool_submission_size(const struct spool_submission *sub);
uint64_t spool_submission_recipients(const struct spool_submission *sub);
/* Abandons it (the peer went away): the temporary file goes; a commit in progress finishes but
 * calls no one. */
void spool_submission_abort(struct spool_submission *sub);

/* ---- administration (admin-queue.c) ---- */

enum spool_state {
        SPOOL_QUEUED,  /* waiting for its next attempt */
        SPOOL_RUNNING, /* a delivery child runs */
        SPOOL_HELD,    /* interrupted during delivery by a crash: may have been sent */
        SPOOL_FAILED,  /* in failed/: will not be tried again */
};
const char *spool_state_to_string(enum spool_state s);

struct spool_entry_view {
        const char *id;
        const char *profile;
        const char *message_id;
        enum spool_state state;
        uid_t uid;
        uint64_t size;
        uint64_t n_recipients;
        uint64_t queued_at; /* unix seconds */
        uint64_t next_at;   /* unix seconds of the next attempt, 0: none planned */
        unsigned attempts;
        const char *reason; /* the last failure, "" when none */
};
/* Calls fn for each message, queued ones first in queue order, then the failed ones. */
void spool_foreach(struct spool *s, void (*fn)(const struct spool_entry_view *v, void *userdata),
                   void *userdata);
/* Fills *ret for id: -ENOENT when there is no such message. */
int spool_lookup(struct spool *s, const char *id, struct spool_entry_view *ret);
/* Makes the message (NULL: every queued or held one) due now; returns how many. */
int spool_flush(struct spool *s, const char *id);
/* Deletes a message that is not being delivered right now (-EBUSY then, -ENOENT unknown). */
int spool_delete(struct spool *s, const char *id);

struct spool_figures {
        uint64_t queued, deferred, failed, held, running;
        uint64_t bytes;
        uint64_t oldest_age_sec; /* of the queued ones, 0 when none */
};
void spool_figures(struct spool *s, struct spool_figures *ret);
