/* mail_prepare(): the From field. Built from -f / -F, the mailbox and the aliases when the
 * message has none or one without a domain (cron's "root"); when it is not the mailbox the
 * from_policy decides: rewrite (the mailbox with the original display name, the original
 * address in Reply-To, or X-Original-From when there is a Reply-To), keep or reject. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "message-internal.h"

struct from {
        char *name;
        char *addr; /* as written: may be a bare local name, may be NULL */
};

static int read_header_from(struct prepare *p, struct from *f)
{
        long i = header_block_find(&p->headers, "From", 0);
        struct mail_addr_list l = {0};
        int r;

        if (i < 0)
                return 0;
        r = address_list_parse(p->headers.fields[i].value, &l);
        if (r >= 0 && l.n == 0)
                r = 0; /* an empty From: as if there were none */
        else if (r >= 0 && (l.n != 1 || l.v[0].kind != MAIL_ADDR_MAILBOX))
                r = prepare_fail(p, -EBADMSG, "The From header field must hold one address.");
        else if (r < 0)
                r = prepare_fail(p, -EBADMSG, "The From header field is not an address.");
        if (r >= 0 && l.n == 1) {
                f->name = TAKE_PTR(l.v[0].name);
                f->addr = TAKE_PTR(l.v[0].addr);
        }
        address_list_done(&l);
        return r;
}

/* The address a bare local name (or -f) stands for, or NULL when nothing says. */
static int resolve_local(struct prepare *p, const char *local, char **ret)
{
        struct mail_addr_list l = {0};
        _cleanup_free_ char *saved = p->error;
        int r;

        p->error = NULL;
        r = prepare_expand(p, NULL, local, &l, 0);
        if (r >= 0 && l.n > 0) {
                *ret = TAKE_PTR(l.v[0].addr);
        } else if (r == -EBADMSG && strchr(local, '@') == NULL) {
                /* A local name nothing resolves: the mailbox will do. */
                free(p->error);
                p->error = NULL;
                r = 0;
        }
        if (!p->error)
                p->error = TAKE_PTR(saved);
        address_list_done(&l);
        return r;
}

/* Where the original address goes when From is rewritten to the mailbox. */
static int keep_original(struct prepare *p, const char *name, const char *addr)
{
        struct strbuf v = STRBUF_INIT(4096);
        bool reply_to = header_block_find(&p->headers, "Reply-To", 0) < 0;
        int r = address_format_mailbox(&v, name, addr);

        if (r >= 0)
                r = header_block_add(&p->headers, reply_to ? "Reply-To" : "X-Original-From",
                                     (char *)v.data);
        strbuf_done(&v);
        return r;
}

static int apply_policy(struct prepare *p, const char *name, const char *addr)
{
        const char *mailbox = p->o->mailbox;

        if (!mailbox || strcasecmp(addr, mailbox) == 0) {
                p->from = strdup(addr);
                return p->from ? 0 : -ENOMEM;
        }
        switch (p->o->from_policy) {
        case MAIL_FROM_REJECT:
                return prepare_fail(p, -EPERM,
                                    "The From address %.100s is not the account's mailbox %.100s, "
                                    "and from_policy is reject.",
                                    addr, mailbox);
        case MAIL_FROM_KEEP:
                p->from = strdup(addr);
                return p->from ? 0 : -ENOMEM;
        case MAIL_FROM_REWRITE:
        default:
                p->from = strdup(mailbox);
                return p->from ? keep_original(p, name, addr) : -ENOMEM;
        }
}

static int write_from(struct prepare *p, const char *name)
{
        struct mail_addr_list l = {0};
        long i = header_block_find(&p->headers, "From", 0);
        int r = address_list_add(&l, MAIL_ADDR_MAILBOX, name, p->from);

        if (r >= 0 && i < 0) {
                r = header_block_add(&p->headers, "From", "");
                i = (long)p->headers.n - 1;
        }
        if (r >= 0)
                r = prepare_replace_list(p, (size_t)i, &l);
        address_list_done(&l);
        return r;
}

int prepare_from(struct prepare *p)
{
        const struct mail_prepare_options *o = p->o;
        struct from f = {0};
        _cleanup_free_ char *resolved = NULL;
        const char *candidate;
        int r = read_header_from(p, &f);

        if (r >= 0 && o->full_name && *o->full_name && !f.name)
                f.name = strdup(o->full_name);
        candidate = f.addr && strchr(f.addr, '@') ? f.addr
                    : o->envelope_from            ? o->envelope_from
                                                  : f.addr;
        if (r >= 0 && candidate) {
                r = resolve_local(p, candidate, &resolved);
                /* cron's "root" with nothing to resolve it: its name at least. */
                if (r >= 0 && !f.name && !strchr(candidate, '@'))
                        f.name = strdup(candidate);
        }
        if (r >= 0 && !resolved && !o->mailbox && o->from_optional) {
                free(f.name);
                free(f.addr);
                return 0;
        }
        if (r >= 0 && !resolved && !o->mailbox)
                r = prepare_fail(p, -EBADMSG, "The message has no From address with a domain.");
        if (r >= 0)
                r = apply_policy(p, f.name, resolved ? resolved : o->mailbox);
        if (r >= 0)
                r = write_from(p, f.name);
        free(f.name);
        free(f.addr);
        return r;
}
