/* Writing and checking addresses; see address.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "rfc2047.h"

/* A display name: encoded words already in it (all ASCII) are kept as they are. */
static int put_phrase(struct strbuf *out, const char *name)
{
        _cleanup_free_ char *utf8 = NULL;
        bool ascii = true;

        for (const char *p = name; *p; p++)
                ascii = ascii && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f;
        if (ascii && strstr(name, "=?") && strcspn(name, "()<>[]:;@\\,\"") == strlen(name))
                return strbuf_puts(out, name);
        utf8 = text_to_utf8(name);
        return utf8 ? rfc2047_encode_phrase(out, utf8) : -ENOMEM;
}

int address_format_mailbox(struct strbuf *out, const char *name, const char *addr)
{
        int r;

        if (!name || !*name)
                return strbuf_puts(out, addr);
        r = put_phrase(out, name);
        return r < 0 ? r : strbuf_printf(out, " <%s>", addr);
}

int address_list_format(const struct mail_addr_list *l, struct strbuf *out)
{
        bool first = true;
        int r = 0;

        for (size_t i = 0; i < l->n && r >= 0; i++) {
                const struct mail_addr *a = &l->v[i];

                if (a->kind == MAIL_ADDR_GROUP_END) {
                        r = strbuf_putc(out, ';');
                        first = false;
                        continue;
                }
                if (!first)
                        r = strbuf_puts(out, ", ");
                first = a->kind == MAIL_ADDR_GROUP_START;
                if (r >= 0 && a->kind == MAIL_ADDR_GROUP_START) {
                        r = put_phrase(out, a->name ? a->name : "");
                        r = r < 0 ? r : strbuf_putc(out, ':');
                        if (r >= 0 && i + 1 < l->n && l->v[i + 1].kind != MAIL_ADDR_GROUP_END)
                                r = strbuf_putc(out, ' ');
                } else if (r >= 0)
                        r = address_format_mailbox(out, a->name, a->addr);
        }
        return r;
}

static bool dot_atom_ok(const char *s, size_t n)
{
        if (n == 0 || s[0] == '.' || s[n - 1] == '.')
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));

                if (c == '.' ? s[i + 1] == '.' : !atext)
                        return false;
        }
        return true;
}

static bool label_ok(const char *s, size_t n)
{
        if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

bool address_is_valid(const char *addr)
{
        const char *at = strrchr(addr, '@'), *d, *last = NULL;
        size_t labels = 0;

        if (!at || strlen(addr) > ADDRESS_MAX || at - addr > 64 ||
            !dot_atom_ok(addr, (size_t)(at - addr)) || strlen(at + 1) > 255)
                return false;
        for (d = at + 1;; d += strcspn(d, ".") + 1) {
                size_t n = strcspn(d, ".");

                if (!label_ok(d, n))
                        return false;
                labels++;
                last = d;
                if (!d[n])
                        break;
        }
        /* The top-level label starts with a letter (Graph resolves nothing else). */
        return labels >= 2 && ((*last >= 'a' && *last <= 'z') || (*last >= 'A' && *last <= 'Z'));
}

int address_parse_one(const char *text, char **ret_name, char **ret_addr)
{
        struct mail_addr_list l = {0};
        int r = address_list_parse(text, &l);

        if (r >= 0 && (l.n != 1 || l.v[0].kind != MAIL_ADDR_MAILBOX))
                r = -EBADMSG;
        if (r >= 0) {
                *ret_name = l.v[0].name;
                *ret_addr = l.v[0].addr;
                l.v[0].name = l.v[0].addr = NULL;
        }
        address_list_done(&l);
        return r;
}
