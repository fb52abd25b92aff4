/* RFC 5322 address lists; see address.h. */
#include "address.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rfc2047.h"

/* A display name or comment (the header field is bounded at 64 KiB anyway). */
#define PHRASE_MAX (64 * 1024)

struct lexer {
        const char *p;
        char *comment; /* text of the last comment read */
};

static bool is_atext(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c >= 0x80 || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static int read_comment(struct lexer *lx)
{
        struct strbuf text = STRBUF_INIT(PHRASE_MAX);
        unsigned depth = 1;
        int r = 0;

        for (lx->p++; *lx->p && depth > 0 && r >= 0; lx->p++) {
                if (*lx->p == '\\' && lx->p[1])
                        lx->p++;
                else if (*lx->p == '(')
                        depth++;
                else if (*lx->p == ')' && --depth == 0)
                        break;
                r = strbuf_putc(&text, *lx->p);
        }
        if (r >= 0 && depth > 0)
                r = -EBADMSG;
        if (r < 0) {
                strbuf_done(&text);
                return r;
        }
        lx->p++;
        free(lx->comment);
        lx->comment = strbuf_steal(&text, NULL);
        return lx->comment ? 0 : -ENOMEM;
}

static int skip_cfws(struct lexer *lx)
{
        for (;;) {
                lx->p += strspn(lx->p, " \t\r\n");
                if (*lx->p != '(')
                        return 0;
                int r = read_comment(lx);
                if (r < 0)
                        return r == -EMSGSIZE ? -EBADMSG : r;
        }
}

/* Atoms, dots and quoted strings: raw gets them as written without spaces (a local part), display
 * the text with single spaces between words. Returns the number of words. */
static int read_words(struct lexer *lx, struct strbuf *raw, struct strbuf *display)
{
        int words = 0, r;

        for (;;) {
                const char *start;

                r = skip_cfws(lx);
                if (r < 0)
                        return r;
                start = lx->p;
                if (*lx->p == '"') {
                        if (words && (r = strbuf_putc(display, ' ')) < 0)
                                return r;
                        for (lx->p++; *lx->p && *lx->p != '"'; lx->p++) {
                                if (*lx->p == '\\' && lx->p[1])
                                        lx->p++;
                                if ((r = strbuf_putc(display, *lx->p)) < 0)
                                        return -EBADMSG;
                        }
                        if (*lx->p != '"')
                                return -EBADMSG;
                        lx->p++;
                } else if (is_atext((unsigned char)*lx->p) || *lx->p == '.') {
                        while (is_atext((unsigned char)*lx->p) || *lx->p == '.')
                                lx->p++;
                        if ((words && (r = strbuf_putc(display, ' ')) < 0) ||
                            (r = strbuf_put(display, start, (size_t)(lx->p - start))) < 0)
                                return -EBADMSG;
                } else
                        return words;
                if (strbuf_put(raw, start, (size_t)(lx->p - start)) < 0)
                        return -EBADMSG;
                words++;
        }
}

static int read_domain(struct lexer *lx, struct strbuf *addr)
{
        const char *start;
        int r = skip_cfws(lx);

        if (r < 0)
                return r;
        start = lx->p;
        if (*lx->p == '[') {
                lx->p = strchr(lx->p, ']');
                if (!lx->p)
                        return -EBADMSG;
                lx->p++;
        } else
                while (is_atext((unsigned char)*lx->p) || *lx->p == '.')
                        lx->p++;
        if (lx->p == start || strbuf_putc(addr, '@') < 0 ||
            strbuf_put(addr, start, (size_t)(lx->p - start)) < 0)
                return -EBADMSG;
        return skip_cfws(lx);
}

/* <[@route,@route:]local[@domain]> */
static int read_angle(struct lexer *lx, struct strbuf *addr)
{
        struct strbuf ignored = STRBUF_INIT(PHRASE_MAX);
        int r;

        lx->p++;
        r = skip_cfws(lx);
        if (r >= 0 && *lx->p == '@') {
                lx->p = strchr(lx->p, ':');
                if (!lx->p)
                        return -EBADMSG;
                lx->p++;
        }
        if (r >= 0)
                r = read_words(lx, addr, &ignored);
        strbuf_done(&ignored);
        if (r >= 0 && *lx->p == '@') {
                lx->p++;
                r = read_domain(lx, addr);
        }
        if (r >= 0 && *lx->p != '>')
                r = -EBADMSG;
        if (r < 0)
                return r;
        lx->p++;
        return skip_cfws(lx);
}

static char *take_name(struct strbuf *display, struct lexer *lx, bool angle)
{
        if (angle && display->len > 0)
                return strbuf_steal(display, NULL);
        /* "root (Cron Daemon)": the comment is the only name there is. */
        if (lx->comment && *lx->comment)
                return strdup(lx->comment);
        return NULL;
}

/* One mailbox, group or empty item. */
static int read_item(struct lexer *lx, struct mail_addr_list *l, bool in_group)
{
        struct strbuf raw = STRBUF_INIT(PHRASE_MAX), display = STRBUF_INIT(PHRASE_MAX);
        struct strbuf addr = STRBUF_INIT(ADDRESS_MAX);
        char *name = NULL;
        bool angle = false;
        int words, r = 0;

        free(lx->comment);
        lx->comment = NULL;
        words = read_words(lx, &raw, &display);
        if (words < 0)
                r = words;
        else if (*lx->p == '<') {
                angle = true;
                r = read_angle(lx, &addr);
        } else if (*lx->p == ':') {
                if (in_group)
                        r = -EBADMSG;
                else {
                        lx->p++;
                        r = address_list_add(l, MAIL_ADDR_GROUP_START, (char *)display.data, NULL);
                        r = r < 0 ? r : 1; /* the caller reads the members */
                }
        } else if (*lx->p == '@' && words > 0) {
                lx->p++;
                r = strbuf_put(&addr, raw.data, raw.len);
                r = r < 0 ? r : read_domain(lx, &addr);
        } else if (words == 1)
                r = strbuf_put(&addr, raw.data, raw.len); /* a bare local name */
        else if (words > 1)
                r = -EBADMSG; /* a display name without an address */
        if (r == 0 && addr.len > 0) {
                name = take_name(&display, lx, angle);
                r = address_list_add(l, MAIL_ADDR_MAILBOX, name, (char *)addr.data);
                free(name);
        }
        strbuf_done(&raw), strbuf_done(&display), strbuf_done(&addr);
        return r == -EMSGSIZE ? -EBADMSG : r;
}

static int read_group_members(struct lexer *lx, struct mail_addr_list *l)
{
        for (;;) {
                int r = skip_cfws(lx);

                if (r < 0)
                        return r;
                if (*lx->p == ';') {
                        lx->p++;
                        return address_list_add(l, MAIL_ADDR_GROUP_END, NULL, NULL);
                }
                r = read_item(lx, l, true);
                if (r < 0)
                        return r;
                r = skip_cfws(lx);
                if (r < 0)
                        return r;
                if (*lx->p == ',')
                        lx->p++;
                else if (*lx->p != ';')
                        return -EBADMSG;
        }
}

int address_list_parse(const char *value, struct mail_addr_list *ret)
{
        struct lexer lx = {.p = value};
        int r = 0;

        while (r >= 0) {
                r = read_item(&lx, ret, false);
                if (r == 1)
                        r = read_group_members(&lx, ret);
                if (r >= 0)
                        r = skip_cfws(&lx);
                if (r < 0 || !*lx.p)
                        break;
                if (*lx.p != ',')
                        r = -EBADMSG;
                else
                        lx.p++;
        }
        free(lx.comment);
        return r < 0 ? r : 0;
}

int address_list_add(struct mail_addr_list *l, enum mail_addr_kind kind, const char *name,
                     const char *addr)
{
        struct mail_addr *v;

        if (l->n >= ADDRESS_LIST_MAX)
                return -EBADMSG;
        v = realloc(l->v, (l->n + 1) * sizeof(*v));
        if (!v)
                return -ENOMEM;
        l->v = v;
        v[l->n] = (struct mail_addr){.kind = kind};
        if ((name && !(v[l->n].name = strdup(name))) || (addr && !(v[l->n].addr = strdup(addr)))) {
                free(v[l->n].name);
                return -ENOMEM;
        }
        l->n++;
        return 0;
}

void address_list_done(struct mail_addr_list *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].name);
                free(l->v[i].addr);
        }
        free(l->v);
        *l = (struct mail_addr_list){0};
}

size_t address_list_mailboxes(const struct mail_addr_list *l)
{
        size_t n = 0;

        for (size_t i = 0; i < l->n; i++)
                n += l->v[i].kind == MAIL_ADDR_MAILBOX;
        return n;
}
