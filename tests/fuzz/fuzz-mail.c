/* Fuzz target for the mail parsers of libmail (style.md rule 10): the input is a message handed
 * to sendmail (mail_prepare with -t and with command-line recipients) and a MIME message to split
 * (mail_split). Built with -DFUZZING_ENGINE it is a libFuzzer target; otherwise the plain driver
 * replays the corpus in `meson test --suite fuzz`. Any broken invariant abort()s. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "message.h"
#include "mime.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-mail: invariant broken: %s\n", what);
                abort();
        }
}

/* What Graph gets: CRLF only, a header block of UTF-8 without control characters (8-bit only in
 * Content-* fields) in lines of at most 998 characters, valid recipients within Graph's limit. */
static void check_prepared(const struct mail_prepared *m)
{
        const uint8_t *end = memmem(m->data, m->len, "\r\n\r\n", 4);
        bool in_header = true;
        size_t line = 0;

        check(end != NULL, "a header block ends with an empty line");
        check(utf8_is_valid(m->data, (size_t)(end - m->data)), "the header block is UTF-8");
        for (size_t i = 0; i < m->len; i++) {
                if (m->data[i] == '\n')
                        check(i > 0 && m->data[i - 1] == '\r', "no bare LF");
                if (m->data[i] == '\r')
                        check(i + 1 < m->len && m->data[i + 1] == '\n', "no lone CR");
                if (&m->data[i] == end)
                        in_header = false;
                if (in_header) {
                        check(m->data[i] >= 0x20 || m->data[i] == '\t' || m->data[i] == '\r' ||
                                  m->data[i] == '\n',
                              "no control character in the header block");
                        line = m->data[i] == '\n' ? 0 : line + 1;
                        check(line <= 999, "header lines within 998 characters");
                }
        }
        check(m->n_recipients >= 1 && m->n_recipients <= MAIL_RECIPIENTS_MAX, "recipients counted");
        for (size_t i = 0; i < m->n_recipients; i++)
                check(address_is_valid(m->recipients[i]), "every recipient is valid");
        check(m->from && address_is_valid(m->from), "From is valid");
        check(m->message_id && *m->message_id, "a Message-ID");
}

static void prepare(const uint8_t *data, size_t size, bool t)
{
        char *rcpt[] = {"cmdline@example.com", "root"};
        struct mail_prepare_options o = {
            .mailbox = "alerts@contoso.com",
            .default_domain = "host.example.org",
            .recipients_from_headers = t,
            .recipients = rcpt,
            .n_recipients = t ? 0 : 2,
            .envelope_from = t ? "root" : NULL,
        };
        struct mail_prepared m, again;
        char *error = NULL;
        int r = mail_prepare(data, size, &o, &m, &error);

        if (r < 0) {
                check(error && *error, "a refusal says why");
                free(error);
                return;
        }
        check_prepared(&m);
        /* Prepared once, a message prepares again, unchanged in its recipients. */
        o.recipients_from_headers = true;
        o.n_recipients = 0;
        r = mail_prepare(m.data, m.len, &o, &again, &error);
        if (r != 0)
                fprintf(stderr, "fuzz-mail: %s\n", error ? error : "?");
        check(r == 0, "a prepared message prepares again");
        check(again.n_recipients == m.n_recipients, "with the same recipients");
        mail_prepared_free(&again);
        mail_prepared_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct mail_split s;

        if (size > 1024 * 1024)
                return 0;
        prepare(data, size, true);
        prepare(data, size, false);
        if (mail_split(data, size, 8, &s) == 0) {
                size_t taken = 0;

                for (size_t i = 0; i < s.n_parts; i++) {
                        check(s.parts[i].len > 8, "only parts over the threshold");
                        check(s.parts[i].content_type != NULL, "every part has a type");
                        taken += s.parts[i].len;
                }
                check(s.rest != NULL, "a rest");
                mail_split_free(&s);
        }
        return 0;
}
