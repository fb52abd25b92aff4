/* RFC 2047 encoded words read back (file names of attachments that mail_split() takes out:
 * Outlook writes name="=?UTF-8?B?…?="). UTF-8, US-ASCII and ISO-8859-1 words are decoded; a word
 * in another charset stays as written. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "rfc2047.h"
#include "util.h"

/* One encoded word at s ("=?charset?B|Q?text?="): its length, or 0 when it is none. */
static size_t word_at(const char *s, const char **charset, size_t *charset_len, char *enc,
                      const char **text, size_t *text_len)
{
        const char *q1, *q2, *end;

        if (strncmp(s, "=?", 2) != 0)
                return 0;
        q1 = strchr(s + 2, '?');
        if (!q1 || !q1[1] || q1[2] != '?')
                return 0;
        q2 = q1 + 2;
        end = strstr(q2 + 1, "?=");
        if (!end || memchr(s, ' ', (size_t)(end - s)))
                return 0;
        *charset = s + 2;
        *charset_len = (size_t)(q1 - (s + 2));
        *enc = (char)(q1[1] & ~0x20);
        *text = q2 + 1;
        *text_len = (size_t)(end - (q2 + 1));
        return (size_t)(end + 2 - s);
}

static int decode_word(struct strbuf *out, const char *charset, size_t cl, char enc,
                       const char *text, size_t n)
{
        struct strbuf raw = STRBUF_INIT(4096);
        bool latin1 = (cl == 10 && strncasecmp(charset, "ISO-8859-1", 10) == 0);
        bool utf8 = (cl == 5 && strncasecmp(charset, "UTF-8", 5) == 0) ||
                    (cl == 8 && strncasecmp(charset, "US-ASCII", 8) == 0);
        int r;

        if (!latin1 && !utf8)
                return -EOPNOTSUPP;
        if (enc == 'B')
                r = base64_decode(&raw, (const uint8_t *)text, n);
        else if (enc == 'Q') {
                _cleanup_free_ char *t = bytes_to_string(text, n);
                for (char *c = t; c && *c; c++)
                        if (*c == '_')
                                *c = ' ';
                r = t ? qp_decode(&raw, (const uint8_t *)t, n) : -ENOMEM;
        } else
                r = -EBADMSG;
        for (size_t i = 0; r >= 0 && i < raw.len; i++) {
                uint8_t c = raw.data[i];
                r = !latin1 || c < 0x80
                        ? strbuf_putc(out, (char)c)
                        : strbuf_put(out,
                                     (char[]){(char)(0xc0 | c >> 6), (char)(0x80 | (c & 0x3f))}, 2);
        }
        strbuf_done(&raw);
        return r;
}

int rfc2047_decode(const char *in, char **ret)
{
        struct strbuf out = STRBUF_INIT(64 * 1024);
        const char *p = in, *pending = NULL; /* blanks after an encoded word */
        int r = 0;

        while (*p && r >= 0) {
                const char *cs, *text;
                size_t cl, tl, wl;
                char enc;

                wl = word_at(p, &cs, &cl, &enc, &text, &tl);
                if (wl && decode_word(&out, cs, cl, enc, text, tl) >= 0) {
                        pending = NULL; /* blanks between two encoded words vanish */
                        p += wl;
                        size_t ws = strspn(p, " \t");
                        if (ws) {
                                pending = p;
                                p += ws;
                        }
                        continue;
                }
                if (pending)
                        r = strbuf_put(&out, pending, (size_t)(p - pending));
                pending = NULL;
                if (r >= 0)
                        r = strbuf_putc(&out, *p++);
        }
        if (r >= 0 && pending)
                r = strbuf_puts(&out, pending);
        if (r >= 0 && out.data && utf8_is_valid(out.data, out.len))
                *ret = strbuf_steal(&out, NULL);
        else
                *ret = r >= 0 || r == -EMSGSIZE ? strdup(in) : NULL;
        strbuf_done(&out);
        return *ret ? 0 : -ENOMEM;
}
