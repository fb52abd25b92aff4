/* MIME parameters (RFC 2045 and RFC 2231) of Content-Type and Content-Disposition values. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "header.h"
#include "util.h"

#define PARAM_SECTIONS_MAX 64

/* Reads one token or quoted string at *s into out (unquoted). */
static int read_value(const char **s, struct strbuf *out)
{
        const char *p = *s;
        int r = 0;

        if (*p == '"') {
                for (p++; *p && *p != '"' && r >= 0; p++) {
                        if (*p == '\\' && p[1])
                                p++;
                        r = strbuf_putc(out, *p);
                }
                if (*p == '"')
                        p++;
        } else {
                size_t n = strcspn(p, "; \t()<>@,:\\\"/[]?=");
                r = strbuf_put(out, p, n);
                p += n;
        }
        *s = p;
        return r;
}

/* %XX-decodes an RFC 2231 extended value; the charset'language' prefix when first. */
static int decode_extended(const char *v, bool first, struct strbuf *out)
{
        int r = 0;

        if (first) {
                const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
                if (q2)
                        v = q2 + 1;
        }
        for (; *v && r >= 0; v++) {
                int hi = v[0] == '%' ? hex_value(v[1]) : -1, lo = hi >= 0 ? hex_value(v[2]) : -1;

                if (hi >= 0 && lo >= 0) {
                        r = strbuf_putc(out, (char)(hi << 4 | lo));
                        v += 2;
                } else
                        r = strbuf_putc(out, *v);
        }
        return r;
}

struct section {
        char *text;
        bool extended;
};

/* Matches "name", "name*", "name*N", "name*N*" at p (length n): section number or -1. */
static long match_name(const char *p, size_t n, const char *name, bool *extended)
{
        size_t l = strlen(name);
        char *end;
        long k;

        if (n < l || strncasecmp(p, name, l) != 0)
                return -1;
        *extended = n > l && p[n - 1] == '*';
        if (n == l || (n == l + 1 && *extended))
                return 0;
        if (p[l] != '*' || !isdigit((unsigned char)p[l + 1]))
                return -1;
        k = strtol(p + l + 1, &end, 10);
        if (k < 0 || k >= PARAM_SECTIONS_MAX ||
            (end != p + n && !(end + 1 == p + n && *end == '*')))
                return -1;
        return k;
}

int header_param(const char *value, const char *name, char **ret)
{
        struct section sec[PARAM_SECTIONS_MAX] = {{0}};
        struct strbuf out = STRBUF_INIT(64 * 1024);
        const char *p = strchr(value, ';');
        int r = 0;

        while (p && *p == ';' && r >= 0) {
                struct strbuf v = STRBUF_INIT(16 * 1024);
                size_t n;
                bool ext = false;
                long k;

                p += 1 + strspn(p + 1, " \t");
                n = strcspn(p, "= \t;");
                k = match_name(p, n, name, &ext);
                p += n;
                p += strspn(p, " \t");
                if (*p == '=') {
                        p++;
                        p += strspn(p, " \t");
                        r = read_value(&p, &v);
                }
                if (r >= 0 && k >= 0 && !sec[k].text) {
                        sec[k].text = strbuf_steal(&v, NULL);
                        sec[k].extended = ext;
                }
                strbuf_done(&v);
                p = strchr(p, ';');
        }
        for (size_t k = 0; k < PARAM_SECTIONS_MAX && sec[k].text && r >= 0; k++)
                r = sec[k].extended ? decode_extended(sec[k].text, k == 0, &out)
                                    : strbuf_puts(&out, sec[k].text);
        for (size_t k = 0; k < PARAM_SECTIONS_MAX; k++)
                free(sec[k].text);
        if (r >= 0 && !out.data)
                r = -ENOENT;
        if (r < 0) {
                strbuf_done(&out);
                return r;
        }
        *ret = strbuf_steal(&out, NULL);
        return 0;
}

int header_mime_type(const char *value, char **ret)
{
        size_t n;
        char *t;

        value += strspn(value, " \t");
        n = strcspn(value, "; \t(");
        t = n ? bytes_to_string(value, n) : strdup("text/plain");
        if (!t)
                return -ENOMEM;
        for (char *c = t; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        *ret = t;
        return 0;
}
