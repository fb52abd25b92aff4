/* mail_prepare(): a message handed to sendmail made into one Graph takes. This file: bounds,
 * the mbox "From " line, header checks and RFC 2047, Date, Message-ID, CRLF; recipients in
 * message-rcpt.c, From in message-from.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail-util.h"
#include "message-internal.h"
#include "rfc2047.h"
#include "util.h"

int prepare_fail(struct prepare *p, int r, const char *fmt, ...)
{
        va_list ap;

        if (p->error || r == -ENOMEM)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&p->error, fmt, ap) < 0)
                p->error = NULL;
        va_end(ap);
        return r;
}

bool text_has_8bit(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s >= 0x7f || ((unsigned char)*s < 0x20 && *s != '\t'))
                        return true;
        return false;
}

int prepare_replace_list(struct prepare *p, size_t i, const struct mail_addr_list *l)
{
        struct header_field *f = &p->headers.fields[i];
        struct strbuf v = STRBUF_INIT(MAIL_HEADER_LINE_MAX);
        int r = strbuf_printf(&v, "%s: ", f->name);

        if (r >= 0)
                r = address_list_format(l, &v);
        if (r == -EMSGSIZE)
                r = prepare_fail(p, -EBADMSG, "The %.40s header field is too long.", f->name);
        if (r >= 0) {
                free(f->replacement);
                f->replacement = strbuf_steal(&v, NULL);
        }
        strbuf_done(&v);
        return r;
}

/* Fields holding addresses are rewritten by the recipient and From steps; these hold tokens
 * that must not be encoded. Everything else is unstructured text. */
static bool structured(const char *name)
{
        static const char *const names[] = {
            "From",         "To",          "Cc",         "Bcc",       "Reply-To",   "Sender",
            "Message-ID",   "In-Reply-To", "References", "Date",      "Received",   "Return-Path",
            "MIME-Version", "Resent-From", "Resent-To",  "Resent-Cc", "Resent-Bcc", "Resent-Sender",
        };

        if (strncasecmp(name, "Content-", 8) == 0 || strncasecmp(name, "DKIM-", 5) == 0 ||
            strncasecmp(name, "ARC-", 4) == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcasecmp(name, names[i]) == 0)
                        return true;
        return false;
}

static bool has_control(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s == 0x7f || ((unsigned char)*s < 0x20 && *s != '\t'))
                        return true;
        return false;
}

/* One field with 8-bit or control characters: encoded words for text, UTF-8 kept in MIME
 * fields, refused elsewhere. */
static int encode_field(struct prepare *p, size_t i)
{
        struct header_field *f = &p->headers.fields[i];
        struct strbuf v = STRBUF_INIT(MAIL_HEADER_LINE_MAX * 2);
        _cleanup_free_ char *utf8 = NULL;
        int r;

        if (structured(f->name)) {
                if (strncasecmp(f->name, "Content-", 8) == 0 && !has_control(f->value) &&
                    utf8_is_valid((const uint8_t *)f->value, strlen(f->value)))
                        return 0;
                return prepare_fail(p, -EBADMSG,
                                    "The %.40s header field holds 8-bit or control characters.",
                                    f->name);
        }
        /* Raw 8-bit text: UTF-8 (or ISO-8859-1 read as such) in encoded words. */
        utf8 = text_to_utf8(f->value + strspn(f->value, " \t"));
        r = utf8 ? strbuf_printf(&v, "%s: ", f->name) : -ENOMEM;
        if (r >= 0)
                r = rfc2047_encode_text(&v, utf8);
        if (r >= 0) {
                free(f->replacement);
                f->replacement = strbuf_steal(&v, NULL);
        }
        strbuf_done(&v);
        return r;
}

static int check_headers(struct prepare *p)
{
        static const char *const once[] = {"From", "Sender",  "Reply-To", "To",        "Cc",
                                           "Bcc",  "Subject", "Date",     "Message-ID"};
        static const char *const rewritten[] = {"From", "To", "Cc", "Bcc", "Reply-To"};
        int r = 0;

        for (size_t i = 0; i < ELEMENTSOF(once); i++)
                if (header_block_count(&p->headers, once[i]) > 1)
                        return prepare_fail(p, -EBADMSG, "The message has more than one %s field.",
                                            once[i]);
        for (size_t i = 0; r >= 0 && i < p->headers.n; i++) {
                struct header_field *f = &p->headers.fields[i];
                bool later = false;

                if (strlen(f->value) > MAIL_HEADER_LINE_MAX)
                        return prepare_fail(p, -EMSGSIZE,
                                            "The %.40s header field is longer than %u bytes.",
                                            f->name, MAIL_HEADER_LINE_MAX);
                for (size_t k = 0; k < ELEMENTSOF(rewritten); k++)
                        later = later || strcasecmp(f->name, rewritten[k]) == 0;
                if (!later && text_has_8bit(f->value))
                        r = encode_field(p, i);
        }
        return r;
}

/* Reply-To: checked, bare local names expanded, 8-bit names encoded. */
static int prepare_reply_to(struct prepare *p)
{
        long i = header_block_find(&p->headers, "Reply-To", 0);
        struct mail_addr_list l = {0};
        int r;

        if (i < 0)
                return 0;
        r = prepare_field_list(p, (size_t)i, &l);
        address_list_done(&l);
        return r;
}

static int add_date(struct prepare *p)
{
        char date[64];

        if (header_block_find(&p->headers, "Date", 0) >= 0)
                return 0;
        mail_format_date(date);
        return header_block_add(&p->headers, "Date", date);
}

/* The Message-ID, made when missing: <random@the mailbox's domain>. */
/* <left@right>, printable ASCII without spaces or more brackets. */
static bool message_id_is_valid(const char *v, size_t n)
{
        const char *at = n > 2 ? memchr(v, '@', n) : NULL;

        if (!at || v[0] != '<' || v[n - 1] != '>' || at == v + 1 || at == v + n - 2)
                return false;
        for (size_t i = 1; i + 1 < n; i++)
                if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f || v[i] == '<' ||
                    v[i] == '>')
                        return false;
        return true;
}

/* The Message-ID; made when missing or not one: <random@the mailbox's domain>. */
static int message_id(struct prepare *p, char **ret)
{
        long i = header_block_find(&p->headers, "Message-ID", 0);
        int r;

        if (i >= 0) {
                const char *v = p->headers.fields[i].value;
                size_t n;

                v += strspn(v, " \t");
                n = strlen(v);
                while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
                        n--;
                if (message_id_is_valid(v, n)) {
                        *ret = bytes_to_string(v, n);
                        return *ret ? 0 : -ENOMEM;
                }
                p->headers.fields[i].removed = true;
        }
        r = mail_new_message_id(p->o->mailbox ? p->o->mailbox : p->from, ret);
        return r < 0 ? r : header_block_add(&p->headers, "Message-ID", *ret);
}

/* An 8-bit body without MIME headers: say what it is, as Postfix's 8BITMIME upgrade does. */
static int add_mime(struct prepare *p, const uint8_t *body, size_t n)
{
        bool high = false;
        int r;

        if (header_block_find(&p->headers, "MIME-Version", 0) >= 0 ||
            header_block_find(&p->headers, "Content-Type", 0) >= 0)
                return 0;
        for (size_t i = 0; i < n && !high; i++)
                high = body[i] >= 0x80;
        if (!high)
                return 0;
        r = header_block_add(&p->headers, "MIME-Version", "1.0");
        if (r >= 0)
                r = header_block_add(&p->headers, "Content-Type",
                                     utf8_is_valid(body, n) ? "text/plain; charset=UTF-8"
                                                            : "text/plain; charset=ISO-8859-1");
        return r < 0 ? r : header_block_add(&p->headers, "Content-Transfer-Encoding", "8bit");
}

/* The body with every line ending made CRLF (bare LF and lone CR included). */
static int write_body(struct prepare *p, const uint8_t *raw, size_t len, size_t pos,
                      struct strbuf *out)
{
        struct mail_line l;
        int r = strbuf_reserve(out, len - pos + (len - pos) / 16);

        while (r >= 0 && mail_next_line(raw, len, &pos, &l)) {
                if (l.len > MAIL_BODY_LINE_MAX)
                        return prepare_fail(p, -EMSGSIZE,
                                            "A line of the body is longer than %u bytes.",
                                            MAIL_BODY_LINE_MAX);
                if (memchr(l.p, 0, l.len))
                        return prepare_fail(p, -EBADMSG, "The body contains a NUL byte.");
                r = strbuf_put(out, l.p, l.len);
                if (r >= 0)
                        r = strbuf_put(out, "\r\n", 2);
        }
        return r;
}

static int parse_headers(struct prepare *p, const uint8_t *raw, size_t len, size_t *pos)
{
        struct mail_line l;
        size_t first = 0;
        int r;

        /* An mbox "From " line is no header field. */
        if (len >= 5 && memcmp(raw, "From ", 5) == 0)
                mail_next_line(raw, len, &first, &l);
        *pos = first;
        r = header_block_parse(raw, len, MAIL_HEADER_BLOCK_MAX, pos, &p->headers);
        if (r == -EMSGSIZE)
                return prepare_fail(p, r, "The header block is larger than %u bytes.",
                                    MAIL_HEADER_BLOCK_MAX);
        if (r == -EBADMSG)
                return prepare_fail(p, r, "The header block contains a NUL byte.");
        return r;
}

static int take_result(struct prepare *p, struct strbuf *out, struct mail_prepared *ret)
{
        size_t n = address_list_mailboxes(&p->envelope), k = 0;

        ret->recipients = calloc(n ? n : 1, sizeof(char *));
        if (!ret->recipients)
                return -ENOMEM;
        for (size_t i = 0; i < p->envelope.n; i++)
                if (p->envelope.v[i].kind == MAIL_ADDR_MAILBOX)
                        ret->recipients[k++] = TAKE_PTR(p->envelope.v[i].addr);
        ret->n_recipients = k;
        ret->from = TAKE_PTR(p->from);
        ret->data = (uint8_t *)strbuf_steal(out, &ret->len);
        return ret->data ? 0 : -ENOMEM;
}

int mail_prepare(const uint8_t *raw, size_t len, const struct mail_prepare_options *o,
                 struct mail_prepared *ret, char **ret_error)
{
        struct prepare p = {.o = o};
        struct strbuf out = STRBUF_INIT(2 * (size_t)MAIL_MESSAGE_MAX);
        size_t pos = 0;
        int r = 0;

        *ret = (struct mail_prepared){0};
        if (len > MAIL_MESSAGE_MAX)
                r = prepare_fail(&p, -EMSGSIZE, "The message is larger than %u MiB.",
                                 MAIL_MESSAGE_MAX >> 20);
        if (r >= 0)
                r = parse_headers(&p, raw, len, &pos);
        if (r >= 0)
                r = check_headers(&p);
        if (r >= 0)
                r = prepare_reply_to(&p);
        if (r >= 0)
                r = prepare_recipients(&p);
        if (r >= 0)
                r = prepare_from(&p);
        if (r >= 0)
                r = add_date(&p);
        if (r >= 0)
                r = message_id(&p, &ret->message_id);
        if (r >= 0)
                r = add_mime(&p, raw + pos, len - pos);
        if (r >= 0) {
                r = header_block_write(&p.headers, &out);
                if (r == -EBADMSG)
                        r = prepare_fail(&p, r,
                                         "A header line is longer than 998 characters "
                                         "and cannot be folded.");
        }
        if (r >= 0)
                r = write_body(&p, raw, len, pos, &out);
        if (r >= 0 && out.len > MAIL_MESSAGE_MAX)
                r = prepare_fail(&p, -EMSGSIZE, "The message is larger than %u MiB.",
                                 MAIL_MESSAGE_MAX >> 20);
        if (r >= 0)
                r = take_result(&p, &out, ret);
        if (r < 0) {
                mail_prepared_free(ret);
                if (ret_error)
                        *ret_error = p.error ? TAKE_PTR(p.error) : strdup(strerror(-r));
        }
        strbuf_done(&out);
        header_block_done(&p.headers);
        address_list_done(&p.envelope);
        free(p.from);
        free(p.error);
        return r;
}

void mail_prepared_free(struct mail_prepared *p)
{
        free(p->data);
        free(p->from);
        free(p->message_id);
        for (size_t i = 0; p->recipients && i < p->n_recipients; i++)
                free(p->recipients[i]);
        free(p->recipients);
        *p = (struct mail_prepared){0};
}
