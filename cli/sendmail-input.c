/* Reading the message handed to sendmail; see sendmail-input.h. */
#include "sendmail-input.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

#define READ_CHUNK (64u * 1024u)

bool sendmail_line_is_dot(const uint8_t *line, size_t len)
{
        return (len == 1 && line[0] == '.') || (len == 2 && line[0] == '.' && line[1] == '\r');
}

/* Looks for a lone-dot line among the complete lines from *scan on: true with *end at its start.
 * *scan moves to the start of the last incomplete line. */
static bool find_dot_line(const uint8_t *data, size_t len, size_t *scan, size_t *end)
{
        while (*scan < len) {
                const uint8_t *nl = memchr(data + *scan, '\n', len - *scan);
                size_t line_end;

                if (!nl)
                        return false;
                line_end = (size_t)(nl - data);
                if (sendmail_line_is_dot(data + *scan, line_end - *scan)) {
                        *end = *scan;
                        return true;
                }
                *scan = line_end + 1;
        }
        return false;
}

/* Grows *data to hold at least need bytes (need <= max + 1). */
static int grow(uint8_t **data, size_t *size, size_t need)
{
        size_t n = *size ? *size : READ_CHUNK;
        uint8_t *p;

        if (need <= *size)
                return 0;
        while (n < need)
                n = n > SIZE_MAX / 2 ? need : n * 2;
        p = realloc(*data, n);
        if (!p)
                return -ENOMEM;
        *data = p;
        *size = n;
        return 0;
}

int sendmail_read_message(int fd, bool dot_ends, size_t max, uint8_t **ret, size_t *ret_len)
{
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0, size = 0, scan = 0, end;
        int r;

        for (;;) {
                /* One byte past max tells an over-long message from one of exactly max. */
                size_t want = max + 1 - len;
                ssize_t n;

                if (want > READ_CHUNK)
                        want = READ_CHUNK;
                r = grow(&data, &size, len + want);
                if (r < 0)
                        return r;
                n = read(fd, data + len, want);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t)n;
                if (dot_ends && find_dot_line(data, len, &scan, &end)) {
                        len = end;
                        goto done;
                }
                if (len > max)
                        return -EMSGSIZE;
        }
        /* A last "." without a newline ends the message as well. */
        if (dot_ends && sendmail_line_is_dot(data + scan, len - scan))
                len = scan;
done:
        if (len > max)
                return -EMSGSIZE;
        *ret_len = len;
        *ret = TAKE_PTR(data);
        if (!*ret)
                *ret = calloc(1, 1);
        return *ret ? 0 : -ENOMEM;
}
