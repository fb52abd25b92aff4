/* Header blocks, folding and MIME parameters; see header.h. */
#include "header.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "util.h"

bool mail_next_line(const uint8_t *data, size_t len, size_t *pos, struct mail_line *ret)
{
        size_t i = *pos;
        const uint8_t *end;

        if (i >= len)
                return false;
        end = memchr(data + i, '\n', len - i);
        /* A lone CR ends a line too: look for one before the LF. */
        const uint8_t *cr = memchr(data + i, '\r', (size_t)((end ? end : data + len) - (data + i)));
        if (cr && (cr + 1 == data + len || cr[1] != '\n')) {
                *ret = (struct mail_line){data + i, (size_t)(cr - (data + i)), true};
                *pos = (size_t)(cr - data) + 1;
                return true;
        }
        if (!end) {
                *ret = (struct mail_line){data + i, len - i, false};
                *pos = len;
                return true;
        }
        size_t n = (size_t)(end - (data + i));
        if (n > 0 && data[i + n - 1] == '\r')
                n--;
        *ret = (struct mail_line){data + i, n, true};
        *pos = (size_t)(end - data) + 1;
        return true;
}

bool header_name_is_valid(const char *s, size_t n)
{
        if (n == 0 || n > 76)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
                        return false;
        return true;
}

static int field_start(struct header_block *b, const struct mail_line *l, const uint8_t *colon)
{
        struct header_field *f, *fields;
        size_t name_len = (size_t)(colon - l->p);

        if (b->n >= HEADER_FIELDS_MAX)
                return -EMSGSIZE;
        fields = realloc(b->fields, (b->n + 1) * sizeof(*fields));
        if (!fields)
                return -ENOMEM;
        b->fields = fields;
        f = &fields[b->n];
        *f = (struct header_field){.longest = l->len};
        f->name = bytes_to_string((const char *)l->p, name_len);
        f->value = bytes_to_string((const char *)colon + 1, l->len - name_len - 1);
        f->raw = bytes_to_string((const char *)l->p, l->len);
        if (!f->name || !f->value || !f->raw) {
                free(f->name), free(f->value), free(f->raw);
                return -ENOMEM;
        }
        b->n++;
        return 0;
}

static int append(char **s, const char *sep, const uint8_t *p, size_t n)
{
        size_t old = strlen(*s), sl = strlen(sep);
        char *t = realloc(*s, old + sl + n + 1);

        if (!t)
                return -ENOMEM;
        memcpy(t + old, sep, sl);
        memcpy(t + old + sl, p, n);
        t[old + sl + n] = 0;
        *s = t;
        return 0;
}

static int field_continue(struct header_block *b, const struct mail_line *l)
{
        struct header_field *f = &b->fields[b->n - 1];
        int r;

        if (l->len > f->longest)
                f->longest = l->len;
        r = append(&f->value, "", l->p, l->len);
        return r < 0 ? r : append(&f->raw, "\r\n", l->p, l->len);
}

int header_block_parse(const uint8_t *data, size_t len, size_t max, size_t *pos,
                       struct header_block *ret)
{
        struct mail_line l;
        size_t p = *pos, line_start = p;
        int r;

        while (mail_next_line(data, len, &p, &l)) {
                const uint8_t *colon;

                if (p - *pos > max)
                        return -EMSGSIZE;
                if (memchr(l.p, 0, l.len))
                        return -EBADMSG;
                if (l.len == 0) {
                        *pos = p;
                        return 0;
                }
                if ((l.p[0] == ' ' || l.p[0] == '\t') && ret->n > 0) {
                        r = field_continue(ret, &l);
                } else {
                        colon = memchr(l.p, ':', l.len);
                        /* Not a field: the body starts here (sendmail and Postfix do the same). */
                        if (!colon ||
                            !header_name_is_valid((const char *)l.p, (size_t)(colon - l.p))) {
                                *pos = line_start;
                                return 0;
                        }
                        r = field_start(ret, &l, colon);
                }
                if (r < 0)
                        return r;
                line_start = p;
        }
        *pos = p;
        return 0;
}

void header_block_done(struct header_block *b)
{
        for (size_t i = 0; i < b->n; i++) {
                free(b->fields[i].name);
                free(b->fields[i].value);
                free(b->fields[i].raw);
                free(b->fields[i].replacement);
        }
        free(b->fields);
        *b = (struct header_block){0};
}

long header_block_find(const struct header_block *b, const char *name, size_t from)
{
        for (size_t i = from; i < b->n; i++)
                if (!b->fields[i].removed && strcasecmp(b->fields[i].name, name) == 0)
                        return (long)i;
        return -1;
}

size_t header_block_count(const struct header_block *b, const char *name)
{
        size_t n = 0;

        for (long i = header_block_find(b, name, 0); i >= 0;
             i = header_block_find(b, name, (size_t)i + 1))
                n++;
        return n;
}

int header_block_add(struct header_block *b, const char *name, const char *value)
{
        struct header_field *fields;

        if (b->n >= HEADER_FIELDS_MAX)
                return -EMSGSIZE;
        fields = realloc(b->fields, (b->n + 1) * sizeof(*fields));
        if (!fields)
                return -ENOMEM;
        b->fields = fields;
        fields[b->n] = (struct header_field){0};
        if (asprintf(&fields[b->n].replacement, "%s: %s", name, value) < 0) {
                fields[b->n].replacement = NULL;
                return -ENOMEM;
        }
        fields[b->n].name = strdup(name);
        fields[b->n].value = strdup(value);
        fields[b->n].raw = strdup("");
        b->n++;
        if (!fields[b->n - 1].name || !fields[b->n - 1].value || !fields[b->n - 1].raw)
                return -ENOMEM;
        return 0;
}

/* Folds one unfolded field "Name: value" (no line ends in it). */
static int fold_line(struct strbuf *out, const char *s, size_t n, size_t name_len)
{
        size_t start = 0;
        int r;

        while (n - start > HEADER_FOLD_AT) {
                size_t brk = 0;

                /* The last whitespace that keeps the line within 78, else the first after. */
                for (size_t i = start + 1; i < n; i++) {
                        if (s[i] != ' ' && s[i] != '\t')
                                continue;
                        if (i <= name_len + 1 ||
                            (i > start + 1 && (s[i - 1] == ' ' || s[i - 1] == '\t')))
                                continue;
                        if (i - start > HEADER_FOLD_AT && brk)
                                break;
                        brk = i;
                        if (i - start > HEADER_FOLD_AT)
                                break;
                }
                if (!brk)
                        break;
                if (brk - start > HEADER_LINE_HARD)
                        return -EBADMSG;
                r = strbuf_put(out, s + start, brk - start);
                if (r >= 0)
                        r = strbuf_put(out, "\r\n", 2);
                if (r < 0)
                        return r;
                start = brk;
        }
        if (n - start > HEADER_LINE_HARD)
                return -EBADMSG;
        r = strbuf_put(out, s + start, n - start);
        return r < 0 ? r : strbuf_put(out, "\r\n", 2);
}

int header_fold(struct strbuf *out, const char *name, const char *value)
{
        _cleanup_free_ char *line = NULL;
        int n;

        while (*value == ' ' || *value == '\t')
                value++;
        n = asprintf(&line, "%s: %s", name, value);
        if (n < 0)
                return -ENOMEM;
        return fold_line(out, line, (size_t)n, strlen(name) + 1);
}

int header_block_write(const struct header_block *b, struct strbuf *out)
{
        int r = 0;

        for (size_t i = 0; i < b->n && r >= 0; i++) {
                const struct header_field *f = &b->fields[i];

                if (f->removed)
                        continue;
                if (f->replacement)
                        r = fold_line(out, f->replacement, strlen(f->replacement),
                                      strlen(f->name) + 1);
                else if (f->longest <= HEADER_FOLD_AT) {
                        r = strbuf_puts(out, f->raw);
                        if (r >= 0)
                                r = strbuf_put(out, "\r\n", 2);
                } else
                        r = header_fold(out, f->name, f->value);
        }
        return r < 0 ? r : strbuf_put(out, "\r\n", 2);
}
