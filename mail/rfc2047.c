/* RFC 2047 encoded words; see rfc2047.h. */
#include "rfc2047.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "util.h"

#define WORD_DATA_MAX 63 /* 75 - strlen("=?UTF-8?Q?") - strlen("?=") */

static bool byte_needs(unsigned char c)
{
        return c > 0x7e || (c < 0x20 && c != '\t');
}

static bool word_needs(const char *w, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (byte_needs((unsigned char)w[i]) ||
                    (w[i] == '=' && i + 1 < n && w[i + 1] == '?'))
                        return true;
        return false;
}

bool rfc2047_needed(const char *text)
{
        return word_needs(text, strlen(text));
}

/* Length of the UTF-8 sequence starting with c (1 for a stray byte). */
static size_t utf8_len(unsigned char c)
{
        return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* Characters Q leaves as they are (the set allowed in a phrase, RFC 2047 5(3)). */
static bool q_plain(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!*+-/", c));
}

static size_t q_cost(unsigned char c)
{
        return q_plain(c) || c == ' ' ? 1 : 3;
}

static void q_put(char *data, size_t *dl, unsigned char c)
{
        static const char hex[] = "0123456789ABCDEF";

        if (c == ' ')
                data[(*dl)++] = '_';
        else if (q_plain(c))
                data[(*dl)++] = (char)c;
        else {
                data[(*dl)++] = '=';
                data[(*dl)++] = hex[c >> 4];
                data[(*dl)++] = hex[c & 15];
        }
}

/* How many bytes of s[i..n) the next word takes without cutting a UTF-8 character. */
static size_t word_span(const char *s, size_t i, size_t n, bool b)
{
        size_t start = i, cost = 0;

        while (i < n) {
                size_t cl = utf8_len((unsigned char)s[i]), c = 0;

                cl = cl > n - i ? n - i : cl;
                for (size_t k = 0; k < cl; k++)
                        c += q_cost((unsigned char)s[i + k]);
                if (b ? (i + cl - start + 2) / 3 * 4 > WORD_DATA_MAX : cost + c > WORD_DATA_MAX)
                        break;
                cost += c;
                i += cl;
        }
        return i > start ? i - start : 1;
}

/* Encodes s[0..n) as encoded words separated by spaces: Q when mostly ASCII, else B. */
static int encode_words(struct strbuf *out, const char *s, size_t n)
{
        size_t high = 0;
        bool b;
        int r = 0;

        for (size_t k = 0; k < n; k++)
                high += (unsigned char)s[k] > 0x7f;
        b = high * 3 > n;
        for (size_t i = 0; i < n && r >= 0;) {
                size_t span = word_span(s, i, n, b);

                if (i > 0)
                        r = strbuf_putc(out, ' ');
                if (r >= 0)
                        r = strbuf_puts(out, b ? "=?UTF-8?B?" : "=?UTF-8?Q?");
                if (r >= 0 && b)
                        r = base64_encode(out, (const uint8_t *)s + i, span, 0);
                else if (r >= 0) {
                        char data[WORD_DATA_MAX + 3];
                        size_t dl = 0;

                        for (size_t k = 0; k < span; k++)
                                q_put(data, &dl, (unsigned char)s[i + k]);
                        r = strbuf_put(out, data, dl);
                }
                if (r >= 0)
                        r = strbuf_puts(out, "?=");
                i += span;
        }
        return r;
}

int rfc2047_encode_text(struct strbuf *out, const char *text)
{
        const char *p = text;
        int r = 0;

        while (*p && r >= 0) {
                size_t ws = strspn(p, " \t"), wl;
                const char *end;

                r = strbuf_put(out, p, ws);
                p += ws;
                wl = strcspn(p, " \t");
                if (r < 0 || wl == 0)
                        break;
                if (!word_needs(p, wl)) {
                        r = strbuf_put(out, p, wl);
                        p += wl;
                        continue;
                }
                /* The run of words that need encoding, with the spaces between them. */
                end = p + wl;
                for (;;) {
                        const char *q = end + strspn(end, " \t");
                        size_t ql = strcspn(q, " \t");

                        if (ql == 0 || !word_needs(q, ql))
                                break;
                        end = q + ql;
                }
                r = encode_words(out, p, (size_t)(end - p));
                p = end;
        }
        return r;
}

int rfc2047_encode_phrase(struct strbuf *out, const char *name)
{
        size_t n = strlen(name);
        int r;

        if (word_needs(name, n))
                return encode_words(out, name, n);
        if (strcspn(name, "()<>[]:;@\\,.\"") == n)
                return strbuf_put(out, name, n);
        r = strbuf_putc(out, '"');
        for (const char *p = name; *p && r >= 0; p++) {
                if (*p == '"' || *p == '\\')
                        r = strbuf_putc(out, '\\');
                if (r >= 0)
                        r = strbuf_putc(out, *p);
        }
        return r < 0 ? r : strbuf_putc(out, '"');
}

char *text_to_utf8(const char *s)
{
        size_t n = strlen(s);
        char *t, *q;

        if (utf8_is_valid((const uint8_t *)s, n))
                return strdup(s);
        t = malloc(2 * n + 1);
        if (!t)
                return NULL;
        q = t;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p < 0x80)
                        *q++ = (char)*p;
                else {
                        *q++ = (char)(0xc0 | *p >> 6);
                        *q++ = (char)(0x80 | (*p & 0x3f));
                }
        }
        *q = 0;
        return t;
}
