/* RFC 5322 address lists (internal to libmail): display names, quoted strings, comments,
 * groups ("undisclosed-recipients:;"), angle addresses, and bare local names such as cron's
 * "root". */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

#define ADDRESS_MAX      320
#define ADDRESS_LIST_MAX 2000 /* entries in one parsed list */

enum mail_addr_kind {
        MAIL_ADDR_MAILBOX,
        MAIL_ADDR_GROUP_START, /* name: the group's */
        MAIL_ADDR_GROUP_END,
};

struct mail_addr {
        enum mail_addr_kind kind;
        char *name; /* display name as text (quoted strings unquoted), or NULL */
        char *addr; /* addr-spec; a bare local name has no '@' */
};

struct mail_addr_list {
        struct mail_addr *v;
        size_t n;
};

/* -EBADMSG when value is not an address list. */
int address_list_parse(const char *value, struct mail_addr_list *ret);
int address_list_add(struct mail_addr_list *l, enum mail_addr_kind kind, const char *name,
                     const char *addr);
void address_list_done(struct mail_addr_list *l);
size_t address_list_mailboxes(const struct mail_addr_list *l);
/* "Name <a@b>, c@d, group: e@f;" with display names RFC 2047 encoded when 8-bit. */
int address_list_format(const struct mail_addr_list *l, struct strbuf *out);
int address_format_mailbox(struct strbuf *out, const char *name, const char *addr);

/* What Graph takes: an ASCII dot-atom local part, '@', a DNS name of at least two labels. */
bool address_is_valid(const char *addr);
/* Exactly one mailbox (with or without display name) in text: 0, else -EBADMSG. */
int address_parse_one(const char *text, char **ret_name, char **ret_addr);
