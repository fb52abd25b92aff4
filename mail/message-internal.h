/* What the files of mail_prepare() share (internal to libmail). */
#pragma once

#include "address.h"
#include "header.h"
#include "message.h"

struct prepare {
        const struct mail_prepare_options *o;
        struct header_block headers;
        char *error;                    /* the sentence for the caller */
        char *from;                     /* final From addr-spec */
        struct mail_addr_list envelope; /* every recipient, deduplicated */
};

/* Records the first error sentence and returns r. */
int prepare_fail(struct prepare *p, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Resolves a bare local name through the aliases and default_domain, appending the mailboxes
 * it stands for to out (name kept for a single result). */
int prepare_expand(struct prepare *p, const char *name, const char *addr,
                   struct mail_addr_list *out, unsigned depth);
/* Replaces field i with "Name: " and the list formatted. */
int prepare_replace_list(struct prepare *p, size_t i, const struct mail_addr_list *l);
bool text_has_8bit(const char *s);

/* Expands the bare local names of address field i (To, Cc, Bcc, Reply-To) into *ret, checking
 * every address and rewriting the field when it changed or had 8-bit display names. */
int prepare_field_list(struct prepare *p, size_t i, struct mail_addr_list *ret);
int prepare_recipients(struct prepare *p);
int prepare_from(struct prepare *p);
