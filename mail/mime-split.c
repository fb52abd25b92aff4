/* mail_split(): the parts of a MIME message whose decoded size is over a threshold taken out
 * (decoded, with file name, type, Content-ID and inline flag) for Graph's upload sessions, and
 * the rest, still a valid message. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "header.h"
#include "message.h"
#include "mime.h"
#include "rfc2047.h"
#include "util.h"

#define SPLIT_DEPTH_MAX 8
#define SPLIT_PARTS_MAX 1000

struct cut {
        size_t start, end; /* removed from the message */
        char *insert;      /* written instead (an empty part when a multipart lost them all) */
};

struct splitter {
        const uint8_t *msg;
        size_t len, threshold, n_leaves;
        struct cut *cuts;
        size_t n_cuts;
        struct mail_split *ret;
};

static const char empty_part[] = "Content-Type: text/plain; charset=UTF-8\r\n\r\n\r\n";

/* Whether line is the delimiter "--boundary" or the close "--boundary--" (padding allowed). */
static int delimiter(const struct mail_line *l, const char *boundary)
{
        size_t bl = strlen(boundary), i;

        if (l->len < bl + 2 || memcmp(l->p, "--", 2) != 0 || memcmp(l->p + 2, boundary, bl) != 0)
                return 0;
        i = bl + 2;
        bool close = l->len >= i + 2 && l->p[i] == '-' && l->p[i + 1] == '-';
        for (i += close ? 2 : 0; i < l->len; i++)
                if (l->p[i] != ' ' && l->p[i] != '\t')
                        return 0;
        return close ? 2 : 1;
}

static int add_cut(struct splitter *s, size_t start, size_t end, char *insert)
{
        struct cut *c = realloc(s->cuts, (s->n_cuts + 1) * sizeof(*c));

        if (!c)
                return -ENOMEM;
        s->cuts = c;
        c[s->n_cuts++] = (struct cut){start, end, insert};
        return 0;
}

static int decode(const struct header_block *h, const uint8_t *p, size_t n, struct strbuf *out)
{
        long i = header_block_find(h, "Content-Transfer-Encoding", 0);
        const char *cte = i >= 0 ? h->fields[i].value + strspn(h->fields[i].value, " \t") : "7bit";

        if (strncasecmp(cte, "base64", 6) == 0)
                return base64_decode(out, p, n);
        if (strncasecmp(cte, "quoted-printable", 16) == 0)
                return qp_decode(out, p, n);
        return strbuf_put(out, p, n);
}

static char *field_value(const struct header_block *h, const char *name)
{
        long i = header_block_find(h, name, 0);

        return i >= 0 ? h->fields[i].value + strspn(h->fields[i].value, " \t") : NULL;
}

static int describe(const struct header_block *h, struct mail_part *part)
{
        const char *ct = field_value(h, "Content-Type"),
                   *cd = field_value(h, "Content-Disposition");
        const char *cid = field_value(h, "Content-ID");
        int r = header_mime_type(ct ? ct : "", &part->content_type);

        if (r >= 0 && cd && header_param(cd, "filename", &part->filename) == -ENOMEM)
                r = -ENOMEM;
        if (r >= 0 && !part->filename && ct && header_param(ct, "name", &part->filename) == -ENOMEM)
                r = -ENOMEM;
        if (r >= 0 && part->filename && strstr(part->filename, "=?")) {
                char *decoded = NULL;

                r = rfc2047_decode(part->filename, &decoded);
                if (r >= 0) {
                        free(part->filename);
                        part->filename = decoded;
                }
        }
        part->is_inline = cd && strncasecmp(cd, "inline", 6) == 0;
        if (r >= 0 && cid) {
                size_t n = strcspn(cid, " \t");
                if (*cid == '<' && n >= 2 && cid[n - 1] == '>')
                        cid++, n -= 2;
                part->content_id = bytes_to_string(cid, n);
                r = part->content_id ? 0 : -ENOMEM;
        }
        return r;
}

/* A leaf [start, end) with its header block h and body at body: taken out when large. */
static int leaf(struct splitter *s, const struct header_block *h, size_t body, size_t end,
                size_t cut_start, size_t cut_end, bool *taken)
{
        struct strbuf data = STRBUF_INIT(MAIL_MESSAGE_MAX);
        struct mail_part *parts, part = {0};
        int r;

        *taken = false;
        if (++s->n_leaves > SPLIT_PARTS_MAX)
                return -EBADMSG;
        /* Decoding never makes a body larger: small ones need no decoding. */
        if (end - body <= s->threshold)
                return 0;
        r = decode(h, s->msg + body, end - body, &data);
        if (r >= 0 && data.len > s->threshold) {
                r = describe(h, &part);
                parts =
                    r >= 0 ? realloc(s->ret->parts, (s->ret->n_parts + 1) * sizeof(*parts)) : NULL;
                if (r >= 0 && !parts)
                        r = -ENOMEM;
                if (r >= 0) {
                        part.data = (uint8_t *)strbuf_steal(&data, &part.len);
                        s->ret->parts = parts;
                        parts[s->ret->n_parts++] = part;
                        part = (struct mail_part){0};
                        r = add_cut(s, cut_start, cut_end, NULL);
                        *taken = r >= 0;
                }
                free(part.filename), free(part.content_type), free(part.content_id);
        }
        strbuf_done(&data);
        return r;
}

static int entity(struct splitter *s, size_t start, size_t end, unsigned depth, size_t cut_start,
                  size_t cut_end, bool *taken);

/* The end of a part: the line end before the next delimiter belongs to the delimiter. */
static size_t part_end(const uint8_t *msg, size_t start, size_t line_start)
{
        if (line_start >= start + 2 && msg[line_start - 2] == '\r' && msg[line_start - 1] == '\n')
                return line_start - 2;
        if (line_start >= start + 1 && (msg[line_start - 1] == '\n' || msg[line_start - 1] == '\r'))
                return line_start - 1;
        return line_start;
}

/* When every part of a multipart went, one empty text part keeps it valid. */
static int keep_one_part(struct splitter *s, const char *boundary)
{
        struct cut *last = &s->cuts[s->n_cuts - 1];

        if (asprintf(&last->insert, "--%s\r\n%s", boundary, empty_part) < 0) {
                last->insert = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int multipart(struct splitter *s, size_t body, size_t end, const char *boundary,
                     unsigned depth)
{
        size_t pos = body, line_start = body, delim = 0, start = 0, n = 0, n_taken = 0;
        bool in_part = false;
        struct mail_line l;
        int r = 0;

        while (r >= 0 && mail_next_line(s->msg, end, &pos, &l)) {
                int d = delimiter(&l, boundary);

                if (d && in_part) {
                        bool taken = false;

                        r = entity(s, start, part_end(s->msg, start, line_start), depth + 1, delim,
                                   line_start, &taken);
                        n++;
                        n_taken += taken;
                }
                if (d) {
                        in_part = d == 1;
                        delim = line_start;
                        start = pos;
                        if (d == 2)
                                break;
                }
                line_start = pos;
        }
        if (r >= 0 && n > 0 && n_taken == n)
                r = keep_one_part(s, boundary);
        return r;
}

static int entity(struct splitter *s, size_t start, size_t end, unsigned depth, size_t cut_start,
                  size_t cut_end, bool *taken)
{
        struct header_block h = {0};
        _cleanup_free_ char *type = NULL, *boundary = NULL;
        size_t body = start;
        const char *ct;
        int r;

        *taken = false;
        if (depth > SPLIT_DEPTH_MAX)
                return -EBADMSG;
        r = header_block_parse(s->msg, end, MAIL_HEADER_BLOCK_MAX, &body, &h);
        ct = r >= 0 ? field_value(&h, "Content-Type") : NULL;
        if (r >= 0)
                r = header_mime_type(ct ? ct : "", &type);
        if (r >= 0 && strncmp(type, "multipart/", 10) == 0) {
                r = header_param(ct, "boundary", &boundary);
                if (r == -ENOENT || (r >= 0 && (!*boundary || strlen(boundary) > 70)))
                        r = -EBADMSG;
                if (r >= 0)
                        r = multipart(s, body, end, boundary, depth);
        } else if (r >= 0 && depth > 0)
                r = leaf(s, &h, body, end, cut_start, cut_end, taken);
        header_block_done(&h);
        return r;
}

static int write_rest(struct splitter *s)
{
        struct strbuf out = STRBUF_INIT(MAIL_MESSAGE_MAX * 2);
        size_t pos = 0;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < s->n_cuts; i++) {
                r = strbuf_put(&out, s->msg + pos, s->cuts[i].start - pos);
                if (r >= 0 && s->cuts[i].insert)
                        r = strbuf_puts(&out, s->cuts[i].insert);
                pos = s->cuts[i].end;
        }
        if (r >= 0)
                r = strbuf_put(&out, s->msg + pos, s->len - pos);
        if (r >= 0)
                s->ret->rest = (uint8_t *)strbuf_steal(&out, &s->ret->rest_len);
        strbuf_done(&out);
        return r < 0 ? r : s->ret->rest ? 0 : -ENOMEM;
}

int mail_split(const uint8_t *message, size_t len, size_t threshold, struct mail_split *ret)
{
        struct splitter s = {.msg = message, .len = len, .threshold = threshold, .ret = ret};
        bool taken;
        int r = 0;

        *ret = (struct mail_split){0};
        if (len > MAIL_MESSAGE_MAX)
                r = -EMSGSIZE;
        if (r >= 0)
                r = entity(&s, 0, len, 0, 0, 0, &taken);
        if (r >= 0)
                r = write_rest(&s);
        for (size_t i = 0; i < s.n_cuts; i++)
                free(s.cuts[i].insert);
        free(s.cuts);
        if (r < 0)
                mail_split_free(ret);
        return r == -EMSGSIZE && len <= MAIL_MESSAGE_MAX ? -EBADMSG : r;
}

void mail_split_free(struct mail_split *s)
{
        for (size_t i = 0; i < s->n_parts; i++) {
                free(s->parts[i].filename);
                free(s->parts[i].content_type);
                free(s->parts[i].content_id);
                free(s->parts[i].data);
        }
        free(s->parts);
        free(s->rest);
        *s = (struct mail_split){0};
}
