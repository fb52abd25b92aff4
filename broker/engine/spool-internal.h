/* The spool's state, shared by its files (spool.c: directories, the queue in memory, the
 * administrator's view; spool-file.c: the file format and moves between directories;
 * spool-submit.c: mail.submit; spool-deliver.c: delivery attempts; spool-maildrop.c: the
 * maildrop). Not for use outside engine/spool*.c. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "secret.h"
#include "spool-schedule.h"
#include "spool.h"
#include "util.h"

#define SPOOL_HEADER_MAX 4096 /* the first line of a spool file: its JSON header */
#define SPOOL_REASON_MAX 256

/* The directories under [mail] spool_dir, as descriptors of struct spool. */
enum spool_dir {
        SPOOL_DIR_TMP,
        SPOOL_DIR_QUEUE,
        SPOOL_DIR_INFLIGHT,
        SPOOL_DIR_FAILED,
        _SPOOL_DIR_MAX
};

struct spool_delivery;

struct spool_entry {
        char id[SPOOL_ID_LEN + 1];
        char profile[NAME_MAX_LEN + 1];
        char *message_id;
        uid_t uid;
        uint64_t size, n_recipients;
        uint64_t queued_at;   /* unix seconds */
        uint64_t body_offset; /* where the message starts in the file */
        enum spool_state state;
        unsigned attempts;
        uint64_t next_usec; /* boottime of the next attempt */
        bool token_retried; /* the one immediate retry after a rejected token was used */
        bool moving;        /* a file move is on the disk thread */
        bool deleted;       /* queue.delete while moving: drop it when the move is done */
        char reason[SPOOL_REASON_MAX];
        struct spool_delivery *delivery; /* while SPOOL_RUNNING */
        struct spool_entry *next;
};

/* Per account (one mailbox): Graph's limits, and whether a token is being fetched. */
struct spool_mailbox {
        char account[NAME_MAX_LEN + 1];
        struct spool_gate gate;
        bool token_wait;         /* a waiter for a token is on the account */
        uint64_t no_token_until; /* boottime: the last fetch failed; wait until then */
        struct spool_mailbox *next;
};

struct spool {
        struct broker *b;
        int dirs[_SPOOL_DIR_MAX];
        struct spool_sync *sync;
        struct spool_entry *entries; /* queued, running, held: in queue order */
        struct spool_entry *failed;
        struct spool_mailbox *mailboxes;
        struct spool_submission *submissions;
        /* Of the entries, the failed ones (until deleted) and the submissions being received:
         * what the limits ([mail] max_spool_mb, max_uid_mb, max_messages) bound. */
        uint64_t bytes;
        uint64_t count;
        uint64_t last_scan_usec;
        unsigned maildrop_busy; /* drop files being committed: no rescan until done */
};

/* spool-file.c */
struct spool_header {
        char profile[NAME_MAX_LEN + 1];
        char *message_id; /* owned; may be NULL */
        uid_t uid;
        uint64_t size, n_recipients, queued_at;
};
/* The header line (with its newline) for h: a malloc()ed string. */
int spool_header_format(const struct spool_header *h, char **ret, size_t *ret_len);
/* Reads the header of an open spool file: *ret_offset is where the message starts. */
int spool_header_read(int fd, struct spool_header *ret, uint64_t *ret_offset);
void spool_header_clear(struct spool_header *h);
/* A fresh queue id: SPOOL_ID_LEN hex characters, the time first so that ids sort by age. */
void spool_id_new(char out[static SPOOL_ID_LEN + 1]);
bool spool_id_is_valid(const char *id);

/* Moves the entry's file from one directory to another (to == _SPOOL_DIR_MAX: deletes it, with
 * the reason file in failed/ when from is failed/) on the disk thread, both directories fsynced;
 * then done(s, e, result) on the loop. reason: written as failed/ID.reason when to is failed/. */
typedef void spool_move_fn(struct spool *s, struct spool_entry *e, int result);
int spool_move(struct spool *s, struct spool_entry *e, enum spool_dir from, enum spool_dir to,
               spool_move_fn *done);

/* spool.c */
struct spool_entry *spool_entry_new_from(const struct spool_header *h, const char *id,
                                         uint64_t body_offset);
void spool_entry_free(struct spool_entry *e);
void spool_append(struct spool *s, struct spool_entry *e);
void spool_unlink_entry(struct spool *s, struct spool_entry *e); /* from s->entries */
struct spool_mailbox *spool_mailbox_get(struct spool *s, const char *account);
/* Into failed/ with the reason (audited mail.failed) / back into the queue after backoff
 * (audited mail.deferred) / gone after Graph took it (audited mail.sent). */
void spool_fail(struct spool *s, struct spool_entry *e, enum spool_dir from, const char *reason);
void spool_defer(struct spool *s, struct spool_entry *e, uint32_t retry_after, const char *reason);
void spool_audit(struct spool *s, const struct spool_entry *e, const char *event,
                 const char *reason);

/* spool-deliver.c */
void spool_deliver_due(struct spool *s);
void spool_deliver_kill_all(struct spool *s);
void spool_deliver_timeouts(struct spool *s);

/* spool-maildrop.c */
void spool_maildrop_scan(struct spool *s);
