/* base64 and quoted-printable; see codec.h. */
#include "codec.h"

#include <errno.h>
#include <string.h>

#include "util.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(struct strbuf *out, const uint8_t *data, size_t len, size_t line_len)
{
        size_t groups = (len + 2) / 3, chars = groups * 4, col = 0;
        size_t lines = line_len ? (chars + line_len - 1) / line_len : 0;
        uint8_t *p;
        int r;

        if (chars / 4 != groups)
                return -EMSGSIZE;
        r = strbuf_reserve(out, chars + 2 * lines);
        if (r < 0)
                return r;
        p = out->data + out->len;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)data[i] << 16;
                size_t n = len - i < 3 ? len - i : 3;

                if (n > 1)
                        v |= (uint32_t)data[i + 1] << 8;
                if (n > 2)
                        v |= data[i + 2];
                *p++ = (uint8_t)b64[(v >> 18) & 63];
                *p++ = (uint8_t)b64[(v >> 12) & 63];
                *p++ = n > 1 ? (uint8_t)b64[(v >> 6) & 63] : '=';
                *p++ = n > 2 ? (uint8_t)b64[v & 63] : '=';
                col += 4;
                if (line_len && (col == line_len || i + 3 >= len)) {
                        *p++ = '\r';
                        *p++ = '\n';
                        col = 0;
                }
        }
        out->len = (size_t)(p - out->data);
        out->data[out->len] = 0;
        return 0;
}

/* The value of each base64 character; -1 for what is skipped (line ends, blanks), -2 for '=',
 * -3 for anything else. */
static const int8_t b64_values[256] = {
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -1, -1, -3, -3, -1, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -1, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, 62, -3, -3, -3, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -3, -3, -3, -2, -3, -3, -3, 0,  1,  2,  3,  4,  5,  6,
    7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -3, -3, -3, -3, -3,
    -3, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48,
    49, 50, 51, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
    -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3, -3,
};

int base64_decode(struct strbuf *out, const uint8_t *data, size_t len)
{
        const int8_t *t = b64_values;
        uint32_t v = 0;
        size_t n = 0, pad = 0;
        uint8_t *o;
        int r = strbuf_reserve(out, len / 4 * 3 + 3);

        if (r < 0)
                return r;
        o = out->data + out->len;
        for (size_t i = 0; i < len; i++) {
                int d = t[data[i]];

                if (d >= 0 && !pad) {
                        v = v << 6 | (uint32_t)d;
                        if (++n == 4) {
                                *o++ = (uint8_t)(v >> 16);
                                *o++ = (uint8_t)(v >> 8);
                                *o++ = (uint8_t)v;
                                n = 0;
                                v = 0;
                        }
                } else if (d == -2)
                        pad++;
                else if (d != -1)
                        return -EBADMSG;
        }
        if (n == 1 || (n && pad != 4 - n) || (!n && pad))
                return -EBADMSG;
        if (n >= 2)
                *o++ = (uint8_t)(v >> (n == 2 ? 4 : 10));
        if (n == 3)
                *o++ = (uint8_t)(v >> 2);
        out->len = (size_t)(o - out->data);
        out->data[out->len] = 0;
        return 0;
}

/* One encoded character for quoted-printable, with a soft break first when the line is full. */
static int qp_put(struct strbuf *out, size_t *col, const char *s, size_t n, bool room_for_eq)
{
        int r;

        if (*col + n > (room_for_eq ? 75 : 76)) {
                r = strbuf_put(out, "=\r\n", 3);
                if (r < 0)
                        return r;
                *col = 0;
        }
        *col += n;
        return strbuf_put(out, s, n);
}

int qp_encode(struct strbuf *out, const uint8_t *data, size_t len)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t col = 0;
        int r = 0;

        for (size_t i = 0; i < len && r >= 0; i++) {
                uint8_t c = data[i];
                bool eol = i + 1 < len && c == '\r' && data[i + 1] == '\n';
                bool before_eol =
                    i + 1 == len || (data[i + 1] == '\r' && i + 2 < len && data[i + 2] == '\n');
                char e[3] = {'=', hex[c >> 4], hex[c & 15]};

                if (eol) {
                        r = strbuf_put(out, "\r\n", 2);
                        col = 0;
                        i++;
                } else if ((c >= 33 && c <= 126 && c != '=') ||
                           ((c == ' ' || c == '\t') && !before_eol))
                        r = qp_put(out, &col, (const char *)&data[i], 1, !before_eol);
                else
                        r = qp_put(out, &col, e, 3, !before_eol);
        }
        return r;
}

int qp_decode(struct strbuf *out, const uint8_t *data, size_t len)
{
        int r = strbuf_reserve(out, len);

        if (r < 0)
                return r;
        for (size_t i = 0; i < len; i++) {
                int hi, lo;

                if (data[i] != '=') {
                        out->data[out->len++] = data[i];
                        continue;
                }
                if (i + 2 < len && data[i + 1] == '\r' && data[i + 2] == '\n') {
                        i += 2;
                        continue;
                }
                if (i + 1 < len && data[i + 1] == '\n') {
                        i += 1;
                        continue;
                }
                hi = i + 2 < len ? hex_value(data[i + 1]) : -1;
                lo = i + 2 < len ? hex_value(data[i + 2]) : -1;
                if (hi < 0 || lo < 0) {
                        out->data[out->len++] = '=';
                        continue;
                }
                out->data[out->len++] = (uint8_t)(hi << 4 | lo);
                i += 2;
        }
        out->data[out->len] = 0;
        return 0;
}
