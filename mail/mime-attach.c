/* One attachment part of mail_build(): its headers (RFC 2231 file names) and its base64 body,
 * read and encoded in pieces so that a large file is never held twice. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "header.h"
#include "mime-internal.h"
#include "rfc2047.h"

#define CHUNK (57 * 1024) /* a multiple of 57 bytes: one 76-column base64 line each */

static bool plain_name(const char *n)
{
        if (strlen(n) > 150)
                return false;
        for (; *n; n++)
                if ((unsigned char)*n < 0x20 || (unsigned char)*n > 0x7e || *n == '"' || *n == '\\')
                        return false;
        return true;
}

#define PIECE_MAX 60 /* characters of a parameter value per line */

static bool attr_char(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$&+-.^_`|~", c));
}

/* name="…" or name*=UTF-8''%XX…, in RFC 2231 sections (name*0*=…; name*1*=…) when long, so
 * that every line stays within 78 columns. */
static int put_name_param(struct strbuf *v, const char *param, const char *name)
{
        struct strbuf value = STRBUF_INIT(4096);
        bool plain = plain_name(name);
        size_t k = 0, sections;
        int r = 0;

        for (const unsigned char *p = (const unsigned char *)name; *p && r >= 0; p++)
                r = plain || attr_char(*p) ? strbuf_putc(&value, (char)*p)
                                           : strbuf_printf(&value, "%%%02X", *p);
        sections = (value.len + PIECE_MAX - 1) / PIECE_MAX;
        for (size_t i = 0; r >= 0 && k < value.len; i++) {
                size_t n = value.len - k < PIECE_MAX ? value.len - k : PIECE_MAX;
                char index[24] = "";

                /* Never cut a %XX. */
                if (!plain && k + n < value.len) {
                        if (value.data[k + n - 1] == '%')
                                n -= 1;
                        else if (n >= 2 && value.data[k + n - 2] == '%')
                                n -= 2;
                }
                if (sections > 1)
                        snprintf(index, sizeof(index), "*%zu", i);
                r = plain
                        ? strbuf_printf(v, "; %s%s=\"%.*s\"", param, index, (int)n,
                                        (const char *)value.data + k)
                        : strbuf_printf(v, "; %s%s*=%s%.*s", param, index, i == 0 ? "UTF-8''" : "",
                                        (int)n, (const char *)value.data + k);
                k += n;
        }
        strbuf_done(&value);
        return r;
}

static int write_part_headers(struct strbuf *out, const char *type, const char *filename)
{
        struct strbuf v = STRBUF_INIT(4096);
        int r = strbuf_puts(&v, type);

        if (r >= 0)
                r = put_name_param(&v, "name", filename);
        if (r >= 0)
                r = header_fold(out, "Content-Type", (char *)v.data);
        strbuf_done(&v);
        v = STRBUF_INIT(4096);
        r = r < 0 ? r : strbuf_puts(&v, "attachment");
        if (r >= 0)
                r = put_name_param(&v, "filename", filename);
        if (r >= 0)
                r = header_fold(out, "Content-Disposition", (char *)v.data);
        strbuf_done(&v);
        return r < 0 ? r : strbuf_puts(out, "Content-Transfer-Encoding: base64\r\n\r\n");
}

/* Fills buf with up to n bytes: fewer only at the end of the file. */
static ssize_t read_full(int fd, uint8_t *buf, size_t n)
{
        size_t got = 0;

        while (got < n) {
                ssize_t k = read(fd, buf + got, n - got);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t)k;
        }
        return (ssize_t)got;
}

static int encode_file(struct strbuf *out, int fd)
{
        _cleanup_free_ uint8_t *chunk = malloc(CHUNK);
        ssize_t n;
        int r = 0;

        if (!chunk)
                return -ENOMEM;
        while (r >= 0 && (n = read_full(fd, chunk, CHUNK)) > 0)
                r = base64_encode(out, chunk, (size_t)n, 76);
        return r < 0 ? r : n < 0 ? (int)n : 0;
}

/* "Cannot attach PATH: WHY." (why: the errno's text when NULL). */
static int fail(char **ret_error, int r, const char *path, const char *why)
{
        if (ret_error && !*ret_error &&
            asprintf(ret_error, "Cannot attach %s: %s.", path, why ? why : strerror(-r)) < 0)
                *ret_error = NULL;
        return r;
}

int mime_write_attachment(struct strbuf *out, const struct mail_attachment_spec *a,
                          char **ret_error)
{
        _cleanup_close_ int fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ char *copy = strdup(a->path), *name = NULL;
        const char *type;
        struct stat st;
        int r;

        if (fd < 0)
                return fail(ret_error, -errno, a->path, NULL);
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return fail(ret_error, -EINVAL, a->path, "not a regular file");
        if (!copy)
                return -ENOMEM;
        /* Checked before reading: the encoded file would not fit. */
        if ((uint64_t)st.st_size / 3 * 4 > out->max - out->len)
                return fail(ret_error, -EMSGSIZE, a->path,
                            "the message would be larger than 150 MiB");
        name = text_to_utf8(basename(copy));
        type = a->content_type ? a->content_type : mime_type_for(name ? name : "");
        if (!name)
                return -ENOMEM;
        if (a->content_type && !mime_type_is_valid(a->content_type))
                return fail(ret_error, -EINVAL, a->path,
                            "the type is not type/subtype, or is multipart/ or message/");
        r = write_part_headers(out, type, name);
        if (r >= 0)
                r = encode_file(out, fd);
        if (r < 0)
                return fail(ret_error, r, a->path, NULL);
        return 0;
}
