/* Length-checked byte buffer; see buf.h. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct buf {
        uint8_t *data;
        size_t off; /* start of unconsumed bytes */
        size_t len; /* end of unconsumed bytes */
        size_t cap;
        size_t max;
};

#define BUF_INITIAL  256
#define BUF_READ_MAX 4096

int buf_new(size_t max, struct buf **ret)
{
        struct buf *b;

        if (max == 0)
                return -EINVAL;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->max = max;
        *ret = b;
        return 0;
}

void buf_free(struct buf *b)
{
        if (!b)
                return;
        if (b->data) {
                explicit_bzero(b->data, b->cap);
                free(b->data);
        }
        free(b);
}

const uint8_t *buf_data(const struct buf *b)
{
        return b->data ? b->data + b->off : (const uint8_t *)"";
}

size_t buf_len(const struct buf *b)
{
        return b->len - b->off;
}

size_t buf_max(const struct buf *b)
{
        return b->max;
}

/* Makes room for `need` more bytes at the end. Growth copies and wipes instead of realloc(), so
 * no stale copy of the contents is left in freed memory. */
static int buf_ensure(struct buf *b, size_t need)
{
        size_t used = b->len - b->off;

        if (need > b->max - used)
                return -EMSGSIZE;
        if (need <= b->cap - b->len)
                return 0;
        if (b->off > 0 && need <= b->cap - used) {
                memmove(b->data, b->data + b->off, used);
                explicit_bzero(b->data + used, b->cap - used);
                b->off = 0;
                b->len = used;
                return 0;
        }

        size_t cap = b->cap ? b->cap : BUF_INITIAL;
        while (cap < used + need)
                cap = cap > b->max / 2 ? b->max : cap * 2;
        if (cap > b->max)
                cap = b->max;

        uint8_t *data = malloc(cap);
        if (!data)
                return -ENOMEM;
        if (b->data) {
                memcpy(data, b->data + b->off, used);
                explicit_bzero(b->data, b->cap);
                free(b->data);
        }
        b->data = data;
        b->cap = cap;
        b->off = 0;
        b->len = used;
        return 0;
}

int buf_put(struct buf *b, const void *data, size_t len)
{
        int r;

        if (len == 0)
                return 0;
        r = buf_ensure(b, len);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, data, len);
        b->len += len;
        return 0;
}

int buf_put_u32be(struct buf *b, uint32_t v)
{
        uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

        return buf_put(b, be, sizeof(be));
}

int buf_read_fd(struct buf *b, int fd)
{
        size_t used = b->len - b->off;
        size_t want = b->max - used;
        ssize_t n;
        int r;

        if (want == 0)
                return -EMSGSIZE;
        /* Small reads: requests are small, and a peer that sends much and reads nothing should
         * not make every connection's buffer large. */
        if (want > BUF_READ_MAX)
                want = BUF_READ_MAX;
        r = buf_ensure(b, want);
        if (r < 0)
                return r;
        n = read(fd, b->data + b->len, want);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        b->len += (size_t)n;
        return (int)n;
}

int buf_write_fd(struct buf *b, int fd)
{
        ssize_t n;

        if (buf_len(b) == 0)
                return 0;
        n = send(fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        buf_consume(b, (size_t)n);
        return (int)n;
}

int buf_peek_u32be(const struct buf *b, uint32_t *ret)
{
        const uint8_t *p = buf_data(b);

        if (buf_len(b) < 4)
                return -EBADMSG;
        *ret = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
        return 0;
}

int buf_consume(struct buf *b, size_t len)
{
        if (len > b->len - b->off)
                return -EBADMSG;
        if (len == 0)
                return 0; /* data may still be NULL: no pointer arithmetic on it */
        explicit_bzero(b->data + b->off, len);
        b->off += len;
        if (b->off == b->len)
                b->off = b->len = 0;
        return 0;
}

/* Above this, an empty buffer gives its storage back: a burst of replies or one large frame
 * must not keep a connection's memory grown for its whole life. A couple of reads' worth
 * stays, or every request would allocate, wipe and free a buffer again. */
#define BUF_KEEP (4 * BUF_READ_MAX)

void buf_shrink(struct buf *b)
{
        if (b->len != b->off || b->cap <= BUF_KEEP)
                return;
        /* buf_consume() wiped what it consumed; this is belt and braces for replies that
         * carried tokens. */
        explicit_bzero(b->data, b->cap);
        free(b->data);
        b->data = NULL;
        b->cap = b->off = b->len = 0;
}

void buf_reset(struct buf *b)
{
        /* Only the unconsumed bytes can hold data: consumed ones were wiped by buf_consume(). */
        if (b->data)
                explicit_bzero(b->data + b->off, b->len - b->off);
        b->off = b->len = 0;
}
