/* mail_build(): the MIME message of credbroker send — text and HTML (multipart/alternative),
 * attachments (multipart/mixed), UTF-8 header text in encoded words, extra header fields. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "codec.h"
#include "header.h"
#include "mail-util.h"
#include "message.h"
#include "mime-internal.h"
#include "rfc2047.h"
#include "util.h"

struct build {
        const struct mail_build_spec *s;
        struct strbuf out;
        char *error;
        char *from_addr;
        char outer[40], inner[40]; /* boundaries */
        struct strbuf text, html;  /* CRLF */
};

static int build_fail(struct build *b, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int build_fail(struct build *b, int r, const char *fmt, ...)
{
        va_list ap;

        if (b->error)
                return r;
        va_start(ap, fmt);
        if (vasprintf(&b->error, fmt, ap) < 0)
                b->error = NULL;
        va_end(ap);
        return r;
}

/* One header field holding the addresses of list (plain or "Name <addr>" each). */
static int put_addresses(struct build *b, const char *field, char *const *list, size_t n)
{
        struct mail_addr_list l = {0};
        struct strbuf v = STRBUF_INIT(MAIL_HEADER_LINE_MAX);
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                _cleanup_free_ char *name = NULL, *addr = NULL;

                r = address_parse_one(list[i], &name, &addr);
                if (r >= 0 && !address_is_valid(addr))
                        r = -EINVAL;
                if (r >= 0 && name && !utf8_is_valid((const uint8_t *)name, strlen(name)))
                        r = -EINVAL;
                if (r < 0)
                        r = build_fail(b, -EINVAL, "%s: \"%.100s\" is not a mail address.", field,
                                       list[i]);
                else
                        r = address_list_add(&l, MAIL_ADDR_MAILBOX, name, addr);
                if (r >= 0 && strcmp(field, "From") == 0 && !b->from_addr)
                        b->from_addr = strdup(addr);
        }
        if (r >= 0 && n > 0)
                r = address_list_format(&l, &v);
        if (r >= 0 && n > 0)
                r = header_fold(&b->out, field, (char *)v.data);
        address_list_done(&l);
        strbuf_done(&v);
        return r;
}

static bool reserved_field(const char *name, size_t n)
{
        static const char *const names[] = {"From",         "To",      "Cc",   "Bcc",
                                            "Reply-To",     "Subject", "Date", "Message-ID",
                                            "MIME-Version", "Sender"};

        if (n >= 8 && strncasecmp(name, "Content-", 8) == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0)
                        return true;
        return false;
}

/* "Name: value": a valid name that the options do not set, a UTF-8 value without line ends. */
static int put_extra_header(struct build *b, const char *h)
{
        const char *colon = strchr(h, ':'), *value;
        struct strbuf v = STRBUF_INIT(MAIL_HEADER_LINE_MAX);
        _cleanup_free_ char *name = NULL;
        int r;

        if (!colon || !header_name_is_valid(h, (size_t)(colon - h)) || strpbrk(h, "\r\n") ||
            !utf8_is_valid((const uint8_t *)h, strlen(h)) || strlen(h) > MAIL_HEADER_LINE_MAX)
                return build_fail(b, -EINVAL,
                                  "\"%.60s\" is not a header field (Name: value, one line, UTF-8).",
                                  h);
        if (reserved_field(h, (size_t)(colon - h)))
                return build_fail(b, -EINVAL,
                                  "The %.*s field is set by the message itself, not by --header.",
                                  (int)(colon - h), h);
        name = bytes_to_string(h, (size_t)(colon - h));
        value = colon + 1 + strspn(colon + 1, " \t");
        r = name ? rfc2047_encode_text(&v, value) : -ENOMEM;
        if (r >= 0)
                r = header_fold(&b->out, name, v.data ? (char *)v.data : "");
        strbuf_done(&v);
        return r == -EBADMSG ? build_fail(b, -EINVAL, "The %s field is too long.", name) : r;
}

static int put_headers(struct build *b)
{
        const struct mail_build_spec *s = b->s;
        struct strbuf subject = STRBUF_INIT(MAIL_HEADER_LINE_MAX);
        _cleanup_free_ char *id = NULL;
        char date[64];
        int r = 0;

        if (s->from)
                r = put_addresses(b, "From", (char *const *)&s->from, 1);
        if (r >= 0 && s->reply_to)
                r = put_addresses(b, "Reply-To", (char *const *)&s->reply_to, 1);
        if (r >= 0)
                r = put_addresses(b, "To", s->to, s->n_to);
        if (r >= 0)
                r = put_addresses(b, "Cc", s->cc, s->n_cc);
        if (r >= 0)
                r = put_addresses(b, "Bcc", s->bcc, s->n_bcc);
        if (r >= 0 && s->subject && *s->subject) {
                if (strpbrk(s->subject, "\r\n") ||
                    !utf8_is_valid((const uint8_t *)s->subject, strlen(s->subject)))
                        return build_fail(b, -EINVAL,
                                          "The subject must be one line of UTF-8 text.");
                r = rfc2047_encode_text(&subject, s->subject);
                if (r >= 0)
                        r = header_fold(&b->out, "Subject", (char *)subject.data);
                strbuf_done(&subject);
        }
        mail_format_date(date);
        if (r >= 0)
                r = strbuf_printf(&b->out, "Date: %s\r\n", date);
        /* Without a From its domain is unknown: mail_prepare() or Graph adds the Message-ID. */
        if (r >= 0 && b->from_addr)
                r = mail_new_message_id(b->from_addr, &id);
        if (r >= 0 && id)
                r = strbuf_printf(&b->out, "Message-ID: %s\r\n", id);
        if (r >= 0)
                r = strbuf_puts(&b->out, "MIME-Version: 1.0\r\n");
        for (size_t i = 0; r >= 0 && i < s->n_headers; i++)
                r = put_extra_header(b, s->headers[i]);
        return r;
}

/* text with every line end CRLF; -EINVAL when it is not UTF-8. */
static int canonical_text(const char *in, struct strbuf *out)
{
        size_t n = strlen(in), pos = 0;
        struct mail_line l;
        int r = 0;

        if (!utf8_is_valid((const uint8_t *)in, n))
                return -EINVAL;
        while (r >= 0 && mail_next_line((const uint8_t *)in, n, &pos, &l)) {
                r = strbuf_put(out, l.p, l.len);
                if (r >= 0 && l.terminated)
                        r = strbuf_put(out, "\r\n", 2);
        }
        return r >= 0 && !out->data ? strbuf_puts(out, "") : r;
}

static bool seven_bit(const struct strbuf *t)
{
        size_t line = 0;

        for (size_t i = 0; i < t->len; i++) {
                if (t->data[i] >= 0x80)
                        return false;
                line = t->data[i] == '\n' ? 0 : line + 1;
                if (line > 998)
                        return false;
        }
        return true;
}

static int put_text_part(struct build *b, const char *subtype, const struct strbuf *t)
{
        bool seven = seven_bit(t);
        int r = strbuf_printf(&b->out,
                              "Content-Type: text/%s; charset=UTF-8\r\n"
                              "Content-Transfer-Encoding: %s\r\n\r\n",
                              subtype, seven ? "7bit" : "quoted-printable");

        if (r < 0)
                return r;
        return seven ? strbuf_put(&b->out, t->data, t->len) : qp_encode(&b->out, t->data, t->len);
}

/* The Content-Type of a multipart, the empty line, a preamble and the first delimiter. */
static int put_multipart_type(struct build *b, const char *subtype, const char *boundary)
{
        char value[128];
        int r;

        snprintf(value, sizeof(value), "multipart/%s; boundary=\"%s\"", subtype, boundary);
        r = header_fold(&b->out, "Content-Type", value);
        return r < 0 ? r
                     : strbuf_printf(&b->out,
                                     "\r\nThis is a multi-part message in MIME format.\r\n--%s\r\n",
                                     boundary);
}

/* The text, the HTML, or both as multipart/alternative. */
static int put_body(struct build *b)
{
        const struct mail_build_spec *s = b->s;
        int r;

        if (!(s->text && s->html))
                return s->html ? put_text_part(b, "html", &b->html)
                               : put_text_part(b, "plain", &b->text);
        r = put_multipart_type(b, "alternative", b->inner);
        if (r >= 0)
                r = put_text_part(b, "plain", &b->text);
        if (r >= 0)
                r = strbuf_printf(&b->out, "\r\n--%s\r\n", b->inner);
        if (r >= 0)
                r = put_text_part(b, "html", &b->html);
        return r < 0 ? r : strbuf_printf(&b->out, "\r\n--%s--\r\n", b->inner);
}

/* Random boundaries that occur in no text (base64 and quoted-printable never hold "=_"). */
static int make_boundaries(struct build *b)
{
        for (unsigned attempt = 0; attempt < 16; attempt++) {
                char hex[25];
                int r = mail_random_hex(hex, 24);

                if (r < 0)
                        return r;
                snprintf(b->outer, sizeof(b->outer), "=_cb_m_%s", hex);
                snprintf(b->inner, sizeof(b->inner), "=_cb_a_%s", hex);
                if (!memmem(b->text.data, b->text.len, hex, 24) &&
                    !memmem(b->html.data, b->html.len, hex, 24))
                        return 0;
        }
        return -EIO;
}

static int put_mixed(struct build *b)
{
        const struct mail_build_spec *s = b->s;
        int r = put_multipart_type(b, "mixed", b->outer);

        if (r >= 0)
                r = put_body(b);
        for (size_t i = 0; r >= 0 && i < s->n_attachments; i++) {
                r = strbuf_printf(&b->out, "\r\n--%s\r\n", b->outer);
                if (r >= 0)
                        r = mime_write_attachment(&b->out, &s->attachments[i], &b->error);
        }
        return r < 0 ? r : strbuf_printf(&b->out, "\r\n--%s--\r\n", b->outer);
}

static int check_spec(struct build *b)
{
        const struct mail_build_spec *s = b->s;
        size_t n = s->n_to + s->n_cc + s->n_bcc;

        if (n == 0)
                return build_fail(b, -EINVAL, "The message has no recipient.");
        if (n > MAIL_RECIPIENTS_MAX)
                return build_fail(b, -EINVAL, "The message has more than %u recipients.",
                                  MAIL_RECIPIENTS_MAX);
        if (canonical_text(s->text ? s->text : "", &b->text) < 0 ||
            canonical_text(s->html ? s->html : "", &b->html) < 0)
                return build_fail(b, -EINVAL, "The text and the HTML must be UTF-8.");
        return make_boundaries(b);
}

int mail_build(const struct mail_build_spec *s, uint8_t **ret, size_t *ret_len, char **ret_error)
{
        struct build b = {.s = s,
                          .out = STRBUF_INIT(MAIL_MESSAGE_MAX),
                          .text = STRBUF_INIT(MAIL_MESSAGE_MAX),
                          .html = STRBUF_INIT(MAIL_MESSAGE_MAX)};
        int r = check_spec(&b);

        if (r >= 0)
                r = put_headers(&b);
        if (r >= 0)
                r = s->n_attachments > 0 ? put_mixed(&b) : put_body(&b);
        if (r == -EMSGSIZE)
                r = build_fail(&b, r, "The message would be larger than %u MiB.",
                               MAIL_MESSAGE_MAX >> 20);
        if (r >= 0) {
                *ret = (uint8_t *)strbuf_steal(&b.out, ret_len);
                r = *ret ? 0 : -ENOMEM;
        }
        if (r < 0 && ret_error)
                *ret_error = b.error ? TAKE_PTR(b.error) : strdup(strerror(-r));
        strbuf_done(&b.out);
        strbuf_done(&b.text);
        strbuf_done(&b.html);
        free(b.error);
        free(b.from_addr);
        return r;
}
