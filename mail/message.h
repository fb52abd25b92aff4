/* Preparing a message handed to sendmail for Graph (issue 11, item 3): bounds, mbox "From "
 * line, CRLF, Date, Message-ID, From and from_policy, RFC 2047 headers, folding, recipients. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds of what mail_prepare() accepts. */
#define MAIL_MESSAGE_MAX      (150u * 1024u * 1024u) /* Graph's largest message */
#define MAIL_HEADER_BLOCK_MAX (1024u * 1024u)
#define MAIL_HEADER_LINE_MAX  (64u * 1024u) /* one unfolded header field */
#define MAIL_BODY_LINE_MAX    (1024u * 1024u)
#define MAIL_RECIPIENTS_MAX   500u /* Graph: at most 500 recipients per message */

enum mail_from_policy {
        MAIL_FROM_REWRITE, /* default */
        MAIL_FROM_KEEP,
        MAIL_FROM_REJECT,
};

/* "root: ops@contoso.com" lines + default_domain */
struct mail_aliases;
/* ENOENT: empty table */
int mail_aliases_load(const char *path, struct mail_aliases **ret);
const char *mail_aliases_lookup(const struct mail_aliases *a, const char *local);
void mail_aliases_free(struct mail_aliases *a);

struct mail_prepare_options {
        const char *mailbox;        /* the account's mailbox */
        const char *envelope_from;  /* -f, may be NULL */
        const char *full_name;      /* -F, may be NULL */
        const char *default_domain; /* for bare local names; may be NULL */
        const struct mail_aliases *aliases;
        enum mail_from_policy from_policy;
        bool recipients_from_headers; /* -t */
        /* No mailbox is known now (the broker cannot be asked): a message without a From that
         * can be built keeps none; the spool's delivery puts the account's mailbox there. */
        bool from_optional;
        char *const *recipients; /* command-line recipients; mail_prepare expands aliases */
        size_t n_recipients;
};

struct mail_prepared {
        uint8_t *data; /* RFC 5322, CRLF, Bcc kept (Graph strips it; recipients only on the
                          command line added to Bcc) */
        size_t len;
        char *from;        /* final From addr-spec */
        char *message_id;  /* with its angle brackets: "<…@…>" */
        char **recipients; /* every envelope recipient, for audit/logs: the addresses of the
                              final To, Cc and Bcc (Graph delivers to all of them, with -t or
                              without), deduplicated, lower/upper case as written */
        size_t n_recipients;
};

/* 0, or -EBADMSG / -EMSGSIZE / -EPERM (from_policy reject) with *ret_error one sentence (also
 * for -ENOMEM: strerror's). Without recipients_from_headers the command line must name at least
 * one recipient. o->mailbox may be NULL: then From must resolve to an address by itself. */
int mail_prepare(const uint8_t *raw, size_t len, const struct mail_prepare_options *o,
                 struct mail_prepared *ret, char **ret_error);
void mail_prepared_free(struct mail_prepared *p);
