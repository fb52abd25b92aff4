/* mail_build() and mail_split() (mail/mime.h): MIME of credbroker send, round trips. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime.h"
#include "tap.h"

static char dir[] = "/tmp/test-mail-mimeXXXXXX";

static char *write_file(const char *name, const uint8_t *data, size_t len)
{
        char *path;
        int fd;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                abort();
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, data, len) != (ssize_t)len)
                abort();
        close(fd);
        return path;
}

static bool has(const uint8_t *m, size_t n, const char *needle)
{
        return memmem(m, n, needle, strlen(needle)) != NULL;
}

static uint8_t *random_bytes(size_t n)
{
        uint8_t *b = malloc(n);
        uint32_t x = 2463534242u;

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                b[i] = (uint8_t)x;
        }
        return b;
}

static const struct mail_part *find(const struct mail_split *s, const char *filename)
{
        for (size_t i = 0; i < s->n_parts; i++)
                if (s->parts[i].filename && strcmp(s->parts[i].filename, filename) == 0)
                        return &s->parts[i];
        return NULL;
}

static void test_round_trip(void)
{
        size_t big_len = 300 * 1000 + 1, small_len = 5000;
        uint8_t *big = random_bytes(big_len), *small = random_bytes(small_len), *m = NULL;
        char *big_path = write_file("data.bin", big, big_len);
        char *utf8_path = write_file("Bericht Über – 2026.pdf", small, small_len);
        char *typed_path = write_file("noext", (const uint8_t *)"a,b\n", 4);
        char *empty_path = write_file("empty.txt", (const uint8_t *)"", 0);
        struct mail_attachment_spec att[] = {
            {big_path, NULL}, {utf8_path, NULL}, {typed_path, "text/csv"}, {empty_path, NULL}};
        char *to[] = {"a@example.com", "Jörg Müller <j@example.com>"}, *bcc[] = {"h@example.com"};
        char *headers[] = {"X-Ticket: 4711", "X-Note: grüße"};
        const char *text = "Hello ✓\nline two\n";
        struct mail_build_spec spec = {.from = "Alerts <alerts@contoso.com>",
                                       .reply_to = "ops@contoso.com",
                                       .subject = "Ünïcode ✓ subject",
                                       .text = text,
                                       .html = "<p>Hi ✓</p>",
                                       .to = to,
                                       .n_to = 2,
                                       .bcc = bcc,
                                       .n_bcc = 1,
                                       .headers = headers,
                                       .n_headers = 2,
                                       .attachments = att,
                                       .n_attachments = 4};
        struct mail_split s, again;
        const struct mail_part *p;
        char *e = NULL;
        size_t len = 0;
        int r = mail_build(&spec, &m, &len, &e);

        is_int(r, 0, "build with text, html, four attachments");
        if (r < 0) {
                printf("# %s\n", e);
                return;
        }
        ok(has(m, len, "multipart/mixed") && has(m, len, "multipart/alternative"),
           "mixed around alternative");
        ok(has(m, len, "Subject: =?UTF-8?"), "UTF-8 subject encoded");
        ok(has(m, len, "=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <j@example.com>"),
           "UTF-8 display name encoded");
        ok(has(m, len, "filename*=UTF-8''Bericht%20%C3%9Cber%20%E2%80%93%202026.pdf") ||
               has(m, len, "filename*0*=UTF-8''Bericht%20%C3%9Cber%20%E2%80%93%202026"),
           "RFC 2231 file name");
        ok(has(m, len, "Content-Type: application/pdf"), "type from the extension");
        ok(has(m, len, "Content-Type: text/csv; name=\"noext\""), "type given by the caller");
        ok(has(m, len, "X-Ticket: 4711\r\n") && has(m, len, "X-Note: =?UTF-8?"), "extra headers");
        ok(has(m, len, "Bcc: h@example.com\r\n") && has(m, len, "Reply-To: ops@contoso.com\r\n"),
           "Bcc and Reply-To");
        ok(has(m, len, "MIME-Version: 1.0\r\n") && has(m, len, "Message-ID: <") &&
               has(m, len, "@contoso.com>\r\n") && has(m, len, "\r\nDate: "),
           "MIME-Version, Message-ID of the From domain, Date");
        bool lines_ok = true;
        for (const uint8_t *l = m, *end; (end = memmem(l, len - (size_t)(l - m), "\r\n", 2));
             l = end + 2)
                lines_ok = lines_ok && end - l <= 78 && !memchr(l, '\n', (size_t)(end - l));
        ok(lines_ok, "every line at most 78 characters, CRLF only");
        const uint8_t *b64 = memmem(m, len, "base64\r\n\r\n", 10);
        const uint8_t *eol = b64 ? memmem(b64 + 10, len - (size_t)(b64 + 10 - m), "\r\n", 2) : NULL;
        ok(eol && eol - (b64 + 10) == 76, "attachments in base64 lines of 76 characters");

        r = mail_split(m, len, 1000, &s);
        is_int(r, 0, "split at 1000 bytes");
        is_int(s.n_parts, 2, "two parts over 1000 bytes");
        p = find(&s, "data.bin");
        ok(p && p->len == big_len && memcmp(p->data, big, big_len) == 0, "data.bin byte-exact");
        is_str(p ? p->content_type : NULL, "application/octet-stream", "its type");
        p = find(&s, "Bericht Über – 2026.pdf");
        ok(p && p->len == small_len && memcmp(p->data, small, small_len) == 0,
           "the UTF-8 named one byte-exact, name decoded");
        ok(p && !p->is_inline && !p->content_id, "not inline, no Content-ID");
        ok(!has(s.rest, s.rest_len, "data.bin") && has(s.rest, s.rest_len, "noext"),
           "the rest lost the large parts only");
        r = mail_split(s.rest, s.rest_len, 0, &again);
        is_int(r, 0, "the rest parses again");
        is_int(again.n_parts, 3,
               "at 0 bytes: text, html and the csv (the empty file is not over 0)");
        p = find(&again, "noext");
        ok(p && p->len == 4 && memcmp(p->data, "a,b\n", 4) == 0, "the small one byte-exact");
        ok(again.n_parts >= 2 && again.parts[0].len == strlen("Hello ✓\r\nline two\r\n") &&
               memcmp(again.parts[0].data, "Hello ✓\r\nline two\r\n", again.parts[0].len) == 0,
           "the text (quoted-printable) decodes to its CRLF form");
        mail_split_free(&again);
        mail_split_free(&s);
        free(m);
        free(big), free(small);
        unlink(big_path), unlink(utf8_path), unlink(typed_path), unlink(empty_path);
        free(big_path), free(utf8_path), free(typed_path), free(empty_path);
}

static void test_refusals(void)
{
        char *to[] = {"a@example.com"}, *bad_to[] = {"not-an-address"};
        char *bad_headers[][1] = {
            {"X-A: b\r\nBcc: evil@example.com"}, {"Bad Name: x"}, {"Subject: again"}, {"no colon"}};
        struct mail_attachment_spec missing = {"/nonexistent/file", NULL};
        struct mail_attachment_spec typed = {"/etc/hostname", "multipart/mixed"};
        struct mail_build_spec spec = {.subject = "s", .text = "t", .to = to, .n_to = 1};
        uint8_t *m = NULL;
        size_t len;
        char *e = NULL;

        for (size_t i = 0; i < 4; i++) {
                spec.headers = bad_headers[i];
                spec.n_headers = 1;
                char what[80];

                snprintf(what, sizeof(what), "--header refused: %.*s",
                         (int)strcspn(bad_headers[i][0], "\r\n"), bad_headers[i][0]);
                is_int(mail_build(&spec, &m, &len, &e), -EINVAL, what);
                ok(e != NULL, "with a sentence");
                free(e), e = NULL;
        }
        spec.n_headers = 0;
        spec.to = bad_to;
        is_int(mail_build(&spec, &m, &len, &e), -EINVAL, "an invalid recipient");
        free(e), e = NULL;
        spec.to = to;
        spec.subject = "a\nBcc: x@example.com";
        is_int(mail_build(&spec, &m, &len, &e), -EINVAL, "a subject with a line end");
        free(e), e = NULL;
        spec.subject = "s";
        spec.attachments = &missing;
        spec.n_attachments = 1;
        is_int(mail_build(&spec, &m, &len, &e), -ENOENT, "a missing attachment");
        ok(e && strstr(e, "/nonexistent/file"), "named in the sentence");
        free(e), e = NULL;
        spec.attachments = &typed;
        is_int(mail_build(&spec, &m, &len, &e), -EINVAL, "multipart/ as an attachment type");
        free(e), e = NULL;
        spec.n_attachments = 0;
        spec.n_to = 0;
        is_int(mail_build(&spec, &m, &len, &e), -EINVAL, "no recipient");
        free(e), e = NULL;
}

static void test_split_foreign(void)
{
        const char *msg =
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            "preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
            "--b1\r\nContent-Type: multipart/related; boundary=b2\r\n\r\n"
            "--b2\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\n"
            "Content-Disposition: inline; filename*0*=UTF-8''a%C3%A4; filename*1=.png\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nQUJD\r\nREVG\r\n"
            "--b2--\r\n"
            "--b1\r\nContent-Type: text/plain; name=q.txt\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            "caf=C3=A9 soft=\r\nbreak=3D\r\n--b1--\r\nepilogue\r\n";
        struct mail_split s;
        int r = mail_split((const uint8_t *)msg, strlen(msg), 5, &s);

        is_int(r, 0, "a nested message from elsewhere");
        is_int(s.n_parts, 2, "two leaves over 5 bytes");
        ok(s.n_parts == 2 && s.parts[0].len == 6 && memcmp(s.parts[0].data, "ABCDEF", 6) == 0,
           "base64 over two lines decoded");
        is_str(s.n_parts ? s.parts[0].filename : NULL, "aä.png", "RFC 2231 continuation");
        is_str(s.n_parts ? s.parts[0].content_id : NULL, "img1@x", "Content-ID without brackets");
        ok(s.n_parts && s.parts[0].is_inline, "inline");
        ok(s.n_parts == 2 && s.parts[1].len == strlen("café softbreak=") &&
               memcmp(s.parts[1].data, "café softbreak=", s.parts[1].len) == 0,
           "quoted-printable decoded");
        ok(has(s.rest, s.rest_len,
               "--b2\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n\r\n--b2--"),
           "a multipart that lost every part keeps an empty one");
        ok(has(s.rest, s.rest_len, "--b1\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b1\r\n"),
           "the small part stays as it was");
        ok(has(s.rest, s.rest_len, "epilogue"), "the epilogue stays");
        mail_split_free(&s);
        msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
              "Content-Type: application/pdf; name=\"=?UTF-8?B?w5xiZXI=?= "
              "=?ISO-8859-1?Q?_M=E4rz?=.pdf\"\r\n"
              "Content-Disposition: attachment\r\n\r\n0123456789\r\n--b--\r\n";
        r = mail_split((const uint8_t *)msg, strlen(msg), 5, &s);
        is_int(r, 0, "an Outlook-style RFC 2047 file name");
        is_str(s.n_parts ? s.parts[0].filename : NULL, "Über März.pdf",
               "decoded (UTF-8 and Latin-1 words)");
        mail_split_free(&s);
        r = mail_split((const uint8_t *)"Content-Type: multipart/mixed\r\n\r\nx", 34, 0, &s);
        is_int(r, -EBADMSG, "multipart without a boundary");
}

int main(void)
{
        if (!mkdtemp(dir))
                return 1;
        test_round_trip();
        test_refusals();
        test_split_foreign();
        rmdir(dir);
        return done_testing();
}
