/* The CLI's one delivery flow, shared by credbroker send and credbroker sendmail (issue 11,
 * mail-plan.md): prepare → token → Graph; a rejected token is dropped and replaced once; a
 * temporary failure hands the message to the broker's spool (or, with the broker down, to the
 * maildrop directory) so that nothing is lost. Returns the sysexits code the caller exits with. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph-send.h"
#include "message.h"

/* sysexits.h codes client.h does not name. */
#ifndef EXIT_IOERR
#define EXIT_IOERR 74
#endif
#ifndef EXIT_NOUSER
#define EXIT_NOUSER 67
#endif

#define MAIL_DELIVER_MIN_TTL       300 /* seconds a token must still be valid for: a large upload */
#define MAIL_MAILDROP_DIR          "/var/spool/credbroker/maildrop"
#define MAIL_DELIVER_SPOOL_WAIT_MS 30000 /* how long a busy spool is asked again */

struct mail_deliver_request {
        const char *socket;  /* the broker's client socket */
        const char *profile; /* the policy profile to ask under */
        const uint8_t *raw;  /* the message as handed over (sendmail's input, send's MIME) */
        size_t len;
        /* What mail_prepare() needs besides the account's mailbox (the token reply's). */
        const char *envelope_from; /* -f, may be NULL */
        const char *full_name;     /* -F, may be NULL */
        bool recipients_from_headers;
        char *const *recipients;
        size_t n_recipients;
        const char *default_domain;
        const struct mail_aliases *aliases;
        enum mail_from_policy from_policy;
        /* The profile's mailbox when the broker cannot be asked (mail.conf), may be NULL. */
        const char *fallback_mailbox;
        /* The mailbox to send as instead of the account's (credbroker send --mailbox), may be
         * NULL. A message that goes to the spool is sent later as the account's mailbox. */
        const char *mailbox;
        const char *maildrop_dir; /* NULL: MAIL_MAILDROP_DIR */
        unsigned spool_wait_ms;   /* 0: MAIL_DELIVER_SPOOL_WAIT_MS */
        bool save_to_sent_items;
        graph_mail_progress_fn *progress; /* may be NULL */
        void *userdata;
};

/* What happened, for sendmail -bs's reply and for logs. */
struct mail_deliver_result {
        int exit_code;      /* 0 sent or queued; a sysexits.h code otherwise */
        bool queued;        /* in the broker's spool or the maildrop, not sent yet */
        char reason[512];   /* one sentence when exit_code != 0 (or why it was queued) */
        char queue_id[128]; /* the spool's id when queued through the broker */
};

/* Runs the flow. Prints nothing: the caller says what reason holds. Returns ret->exit_code. */
int mail_deliver(const struct mail_deliver_request *r, struct mail_deliver_result *ret);

/* The exit code of Graph's final answer (SENT 0, DENIED 77, PERMANENT 65 for the message
 * itself, 69 for a refusal that is not about the message); -1 for the outcomes the flow retries
 * or spools (TEMPORARY, TOKEN_REJECTED). */
int mail_deliver_graph_exit(const struct graph_mail_outcome *o);
