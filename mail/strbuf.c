/* A growable byte string with a maximum; see strbuf.h. */
#include "strbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int strbuf_reserve(struct strbuf *b, size_t len)
{
        size_t want, cap;
        uint8_t *p;

        if (len > b->max || b->len > b->max - len)
                return -EMSGSIZE;
        want = b->len + len + 1;
        if (want <= b->cap)
                return 0;
        cap = b->cap ? b->cap : 256;
        while (cap < want)
                cap = cap > SIZE_MAX / 2 ? want : cap * 2;
        p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

int strbuf_put(struct strbuf *b, const void *data, size_t len)
{
        int r = strbuf_reserve(b, len);

        if (r < 0)
                return r;
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = 0;
        return 0;
}

int strbuf_puts(struct strbuf *b, const char *s)
{
        return strbuf_put(b, s, strlen(s));
}

int strbuf_putc(struct strbuf *b, char c)
{
        return strbuf_put(b, &c, 1);
}

int strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
        char small[512];
        _cleanup_free_ char *big = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n < sizeof(small))
                return strbuf_put(b, small, (size_t)n);
        va_start(ap, fmt);
        n = vasprintf(&big, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        return strbuf_put(b, big, (size_t)n);
}

char *strbuf_steal(struct strbuf *b, size_t *ret_len)
{
        char *p = (char *)b->data;

        if (!p)
                p = strdup("");
        if (ret_len)
                *ret_len = b->len;
        b->data = NULL;
        b->len = b->cap = 0;
        return p;
}

void strbuf_done(struct strbuf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}
