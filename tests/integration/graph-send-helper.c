/* Drives graph_mail_send() for graph-send.test.js: the access token comes on stdin (never in argv),
 * the message from a file; prints one JSON line with the outcome and the progress seen.
 *
 *   graph-send-helper --graph URL --ca FILE [--mailbox M] [--delegated] [--from ADDR] \
 *                     [--path-only] MESSAGE-FILE < token
 *
 * It carries a minimal mail_split() as a weak test double for as long as mail/mime.h (mail-lib)
 * is not on this branch: top-level multipart/mixed only, base64 parts over the threshold split
 * out. Once mime.h exists the double is compiled out and the real one is tested. */
#include "build-config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "graph-send.h"

#if __has_include("mime.h")
/* mail-lib's mail_split() is built: the test uses the real one. */
#include "mime.h"
#else
struct mail_part {
        char *filename;
        char *content_type;
        char *content_id;
        bool is_inline;
        uint8_t *data;
        size_t len;
};
struct mail_split {
        uint8_t *rest;
        size_t rest_len;
        struct mail_part *parts;
        size_t n_parts;
};
int mail_split(const uint8_t *message, size_t len, size_t threshold, struct mail_split *ret);
void mail_split_free(struct mail_split *s);

/* --- the test double ------------------------------------------------------------------------ */

static const char *find(const char *hay, const char *end, const char *needle)
{
        size_t n = strlen(needle);

        for (const char *p = hay; p + n <= end; p++)
                if (memcmp(p, needle, n) == 0)
                        return p;
        return NULL;
}

/* The value of a header (case-insensitive name) within [start, end), up to the line end. */
static char *header_value(const char *start, const char *end, const char *name)
{
        size_t n = strlen(name);

        for (const char *p = start; p && p < end; p = find(p, end, "\n"), p = p ? p + 1 : NULL) {
                if ((size_t)(end - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
                        const char *v = p + n + 1, *e = find(v, end, "\r\n");
                        while (*v == ' ')
                                v++;
                        return strndup(v, (size_t)((e ? e : end) - v));
                }
        }
        return NULL;
}

static char *quoted_param(const char *value, const char *name)
{
        const char *p = value ? strstr(value, name) : NULL;
        const char *e;

        if (!p || p[strlen(name)] != '=')
                return NULL;
        p += strlen(name) + 1;
        if (*p == '"') {
                e = strchr(++p, '"');
                return e ? strndup(p, (size_t)(e - p)) : NULL;
        }
        e = p + strcspn(p, "; \r\n");
        return strndup(p, (size_t)(e - p));
}

static int b64_value(int c)
{
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = c ? strchr(a, c) : NULL;
        return p ? (int)(p - a) : -1;
}

static uint8_t *b64_decode(const char *s, const char *end, size_t *ret_len)
{
        uint8_t *out = malloc((size_t)(end - s) / 4 * 3 + 3);
        uint32_t acc = 0;
        int bits = 0;
        size_t o = 0;

        if (!out)
                return NULL;
        for (; s < end; s++) {
                int v = b64_value(*s);
                if (v < 0)
                        continue;
                acc = acc << 6 | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t)(acc >> bits);
                }
        }
        *ret_len = o;
        return out;
}

static int append(struct mail_split *s, const char *data, size_t n)
{
        uint8_t *p = realloc(s->rest, s->rest_len + n + 1);

        if (!p)
                return -ENOMEM;
        memcpy(p + s->rest_len, data, n);
        s->rest = p;
        s->rest_len += n;
        return 0;
}

/* One part [p, e): split out, or copied into rest with its delimiter line. */
static int take_part(struct mail_split *s, const char *delim_line, size_t delim_len, const char *p,
                     const char *e, size_t threshold)
{
        const char *body = find(p, e, "\r\n\r\n");
        char *cte = body ? header_value(p, body, "Content-Transfer-Encoding") : NULL;
        struct mail_part part = {0};

        if (body && cte && strcasecmp(cte, "base64") == 0 &&
            (size_t)(e - body) / 4 * 3 > threshold) {
                char *ct = header_value(p, body, "Content-Type");
                char *cd = header_value(p, body, "Content-Disposition");
                char *cid = header_value(p, body, "Content-ID");
                part.data = b64_decode(body + 4, e, &part.len);
                part.filename = quoted_param(cd, "filename");
                if (!part.filename)
                        part.filename = quoted_param(ct, "name");
                part.content_type = ct ? strndup(ct, strcspn(ct, ";")) : NULL;
                part.is_inline = cd && strncasecmp(cd, "inline", 6) == 0;
                if (cid)
                        part.content_id =
                            strndup(cid + (*cid == '<'), strcspn(cid, ">") - (*cid == '<'));
                free(ct);
                free(cd);
                free(cid);
                free(cte);
                struct mail_part *parts = realloc(s->parts, (s->n_parts + 1) * sizeof(*parts));
                if (!parts)
                        return -ENOMEM;
                s->parts = parts;
                s->parts[s->n_parts++] = part;
                return 0;
        }
        free(cte);
        return append(s, delim_line, delim_len) < 0 || append(s, p, (size_t)(e - p)) < 0 ? -ENOMEM
                                                                                         : 0;
}

__attribute__((weak)) int mail_split(const uint8_t *message, size_t len, size_t threshold,
                                     struct mail_split *ret)
{
        const char *m = (const char *)message, *end = m + len;
        const char *head_end = find(m, end, "\r\n\r\n");
        char *ct = head_end ? header_value(m, head_end, "Content-Type") : NULL;
        char *boundary = quoted_param(ct, "boundary");
        char delim[256];
        const char *p;
        size_t dl;

        *ret = (struct mail_split){0};
        free(ct);
        if (!boundary)
                return -EBADMSG;
        dl = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
        free(boundary);
        p = find(head_end, end, delim + 2);
        if (!p || append(ret, m, (size_t)(p - m)) < 0)
                return -EBADMSG;
        /* Each kept part goes with the delimiter before it (CRLF "--boundary", no CRLF for the
         * first), so the rest stays well formed whatever is taken out. */
        for (bool first = true;; first = false) {
                const char *start = find(p, end, "\r\n");
                const char *next = start ? find(start, end, delim) : NULL;
                if (!start || !next)
                        return -EBADMSG;
                if (take_part(ret, first ? delim + 2 : delim, first ? dl - 2 : dl, start, next,
                              threshold) < 0)
                        return -ENOMEM;
                p = next + 2;
                if (strncmp(next + dl, "--", 2) == 0)
                        return append(ret, next, (size_t)(end - next));
        }
}

__attribute__((weak)) void mail_split_free(struct mail_split *s)
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
#endif

/* --- the driver ------------------------------------------------------------------------------ */

struct progress_seen {
        unsigned calls;
        uint64_t done, total;
        bool monotonic;
};

static void on_progress(uint64_t done, uint64_t total, void *userdata)
{
        struct progress_seen *p = userdata;

        if (done < p->done || done > total)
                p->monotonic = false;
        p->calls++;
        p->done = done;
        p->total = total;
}

static uint8_t *read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        uint8_t *data = NULL;
        long n;

        if (!f)
                return NULL;
        if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
            (data = malloc((size_t)n)) && fread(data, 1, (size_t)n, f) == (size_t)n)
                *ret_len = (size_t)n;
        else {
                free(data);
                data = NULL;
        }
        fclose(f);
        return data;
}

static void print_json_string(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        printf("\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        printf("\\u%04x", *s);
                else
                        putchar(*s);
        }
        putchar('"');
}

int main(int argc, char **argv)
{
        static const char *const results[] = {"sent", "temporary", "token_rejected", "denied",
                                              "permanent"};
        struct graph_mail_target t = {.save_to_sent_items = true};
        struct progress_seen seen = {.monotonic = true};
        struct graph_mail_outcome o = {0};
        char token[16384 + 2];
        const char *file = NULL;
        bool path_only = false;
        uint8_t *message;
        size_t len = 0;
        char *path = NULL;
        int r;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(a, "--graph") == 0 && v)
                        t.graph_url = argv[++i];
                else if (strcmp(a, "--ca") == 0 && v)
                        t.ca_file = argv[++i];
                else if (strcmp(a, "--mailbox") == 0 && v)
                        t.mailbox = argv[++i];
                else if (strcmp(a, "--from") == 0 && v)
                        t.from = argv[++i];
                else if (strcmp(a, "--delegated") == 0)
                        t.delegated = true;
                else if (strcmp(a, "--path-only") == 0)
                        path_only = true;
                else
                        file = a;
        }
        r = graph_mail_send_path(&t, &path);
        if (path_only) {
                printf("%s\n", r < 0 ? "error" : path);
                return r < 0;
        }
        if (!file || !fgets(token, sizeof(token), stdin)) {
                fprintf(stderr, "usage: see the head of graph-send-helper.c\n");
                return 2;
        }
        token[strcspn(token, "\r\n")] = '\0';
        message = read_file(file, &len);
        if (!message) {
                fprintf(stderr, "cannot read %s\n", file);
                return 2;
        }
        r = graph_mail_send(&t, token, message, len, on_progress, &seen, &o);
        explicit_bzero(token, sizeof(token));
        if (r < 0) {
                printf("{\"error\":%d}\n", r);
                return 1;
        }
        printf("{\"result\":\"%s\",\"retry_after\":%u,\"http_status\":%ld,\"path\":",
               results[o.result], o.retry_after, o.http_status);
        print_json_string(path ? path : "");
        printf(",\"progress_calls\":%u,\"progress_done\":%llu,\"progress_total\":%llu,"
               "\"progress_monotonic\":%s,\"reason\":",
               seen.calls, (unsigned long long)seen.done, (unsigned long long)seen.total,
               seen.monotonic ? "true" : "false");
        print_json_string(o.reason);
        printf("}\n");
        free(path);
        free(message);
        return 0;
}
