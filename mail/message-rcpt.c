/* mail_prepare(): recipients. With -t they come from To, Cc and Bcc plus the command line;
 * bare local names are expanded through the aliases file and default_domain in the header
 * fields themselves (Graph delivers to the message's To/Cc/Bcc only), and recipients given
 * only on the command line are added to Bcc, which Graph strips. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "message-internal.h"

#define ALIAS_DEPTH_MAX 8

static int expand_alias(struct prepare *p, const char *name, const char *local, const char *target,
                        struct mail_addr_list *out, unsigned depth)
{
        struct mail_addr_list l = {0};
        size_t before = out->n;
        int r;

        if (depth >= ALIAS_DEPTH_MAX)
                return prepare_fail(p, -EBADMSG, "The alias \"%.64s\" loops.", local);
        r = address_list_parse(target, &l);
        if (r < 0)
                r = prepare_fail(p, r, "The alias \"%.64s\" is not a list of addresses.", local);
        for (size_t i = 0; r >= 0 && i < l.n; i++)
                if (l.v[i].kind == MAIL_ADDR_MAILBOX)
                        r = prepare_expand(p, l.v[i].name, l.v[i].addr, out, depth + 1);
        /* One address: the display name written with the local name stays. */
        if (r >= 0 && out->n == before + 1 && name && !out->v[before].name)
                out->v[before].name = strdup(name);
        address_list_done(&l);
        return r;
}

int prepare_expand(struct prepare *p, const char *name, const char *addr,
                   struct mail_addr_list *out, unsigned depth)
{
        const struct mail_prepare_options *o = p->o;
        const char *target;
        _cleanup_free_ char *full = NULL;

        if (strchr(addr, '@')) {
                if (!address_is_valid(addr))
                        return prepare_fail(p, -EBADMSG,
                                            "\"%.100s\" is not an address Microsoft Graph accepts.",
                                            addr);
                return address_list_add(out, MAIL_ADDR_MAILBOX, name, addr);
        }
        target = mail_aliases_lookup(o->aliases, addr);
        if (target)
                return expand_alias(p, name, addr, target, out, depth);
        if (!o->default_domain)
                return prepare_fail(
                    p, -EBADMSG,
                    "The local name \"%.64s\" has no domain, and neither the aliases "
                    "file nor default_domain says where it goes.",
                    addr);
        if (asprintf(&full, "%s@%s", addr, o->default_domain) < 0)
                return -ENOMEM;
        return prepare_expand(p, name, full, out, depth + 1);
}

static bool list_has(const struct mail_addr_list *l, const char *addr)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].kind == MAIL_ADDR_MAILBOX && strcasecmp(l->v[i].addr, addr) == 0)
                        return true;
        return false;
}

static int envelope_add(struct prepare *p, const struct mail_addr_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                int r;

                if (l->v[i].kind != MAIL_ADDR_MAILBOX || list_has(&p->envelope, l->v[i].addr))
                        continue;
                if (address_list_mailboxes(&p->envelope) >= MAIL_RECIPIENTS_MAX)
                        return prepare_fail(p, -EBADMSG,
                                            "The message has more than %u recipients, Microsoft "
                                            "Graph's limit.",
                                            MAIL_RECIPIENTS_MAX);
                r = address_list_add(&p->envelope, MAIL_ADDR_MAILBOX, NULL, l->v[i].addr);
                if (r < 0)
                        return r;
        }
        return 0;
}

int prepare_field_list(struct prepare *p, size_t i, struct mail_addr_list *ret)
{
        struct header_field *f = &p->headers.fields[i];
        struct mail_addr_list l = {0};
        bool changed = text_has_8bit(f->value);
        int r = address_list_parse(f->value, &l);

        if (r < 0)
                r = prepare_fail(p, -EBADMSG, "The %.40s header field is not a list of addresses.",
                                 f->name);
        for (size_t k = 0; r >= 0 && k < l.n; k++) {
                const struct mail_addr *a = &l.v[k];

                if (a->kind != MAIL_ADDR_MAILBOX)
                        r = address_list_add(ret, a->kind, a->name, NULL);
                else {
                        changed = changed || !strchr(a->addr, '@');
                        r = prepare_expand(p, a->name, a->addr, ret, 0);
                }
        }
        if (r >= 0 && changed)
                r = prepare_replace_list(p, i, ret);
        address_list_done(&l);
        return r;
}

/* The command line's recipients, expanded. */
static int command_line(struct prepare *p, struct mail_addr_list *ret)
{
        int r = 0;

        for (size_t i = 0; r >= 0 && i < p->o->n_recipients; i++) {
                struct mail_addr_list l = {0};

                r = address_list_parse(p->o->recipients[i], &l);
                if (r < 0)
                        r = prepare_fail(p, -EBADMSG, "\"%.100s\" is not an address.",
                                         p->o->recipients[i]);
                for (size_t k = 0; r >= 0 && k < l.n; k++)
                        if (l.v[k].kind == MAIL_ADDR_MAILBOX)
                                r = prepare_expand(p, l.v[k].name, l.v[k].addr, ret, 0);
                address_list_done(&l);
        }
        return r;
}

/* Recipients only on the command line go to Bcc: Graph delivers to the header fields only. */
static int add_to_bcc(struct prepare *p, struct mail_addr_list *bcc,
                      const struct mail_addr_list *extra)
{
        long i = header_block_find(&p->headers, "Bcc", 0);
        bool added = false;
        int r = 0;

        for (size_t k = 0; r >= 0 && k < extra->n; k++)
                if (!list_has(&p->envelope, extra->v[k].addr) && !list_has(bcc, extra->v[k].addr)) {
                        r = address_list_add(bcc, MAIL_ADDR_MAILBOX, extra->v[k].name,
                                             extra->v[k].addr);
                        added = true;
                }
        if (r < 0 || !added)
                return r;
        if (i < 0) {
                r = header_block_add(&p->headers, "Bcc", "");
                i = (long)p->headers.n - 1;
        }
        return r < 0 ? r : prepare_replace_list(p, (size_t)i, bcc);
}

int prepare_recipients(struct prepare *p)
{
        static const char *const fields[] = {"To", "Cc", "Bcc"};
        struct mail_addr_list lists[3] = {{0}}, extra = {0};
        int r = 0;

        if (!p->o->recipients_from_headers && p->o->n_recipients == 0)
                return prepare_fail(p, -EBADMSG,
                                    "No recipients: give them on the command line, or use -t to "
                                    "take them from the message.");

        for (size_t k = 0; r >= 0 && k < 3; k++) {
                long i = header_block_find(&p->headers, fields[k], 0);
                if (i >= 0)
                        r = prepare_field_list(p, (size_t)i, &lists[k]);
                if (r >= 0 && p->o->recipients_from_headers)
                        r = envelope_add(p, &lists[k]);
        }
        if (r >= 0)
                r = command_line(p, &extra);
        if (r >= 0 && !p->o->recipients_from_headers) {
                /* Graph delivers to every header recipient anyway: they are envelope ones too. */
                for (size_t k = 0; r >= 0 && k < 3; k++)
                        r = envelope_add(p, &lists[k]);
        }
        if (r >= 0)
                r = add_to_bcc(p, &lists[2], &extra);
        if (r >= 0)
                r = envelope_add(p, &extra);
        if (r >= 0 && address_list_mailboxes(&p->envelope) == 0)
                r = prepare_fail(p, -EBADMSG,
                                 "The message has no recipients in To, Cc or Bcc nor on the "
                                 "command line.");
        for (size_t k = 0; k < 3; k++)
                address_list_done(&lists[k]);
        address_list_done(&extra);
        return r;
}
