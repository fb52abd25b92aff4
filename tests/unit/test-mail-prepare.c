/* mail_prepare() (mail/message.h): issue 11 item 3, one case per rule. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "message.h"
#include "tap.h"

static struct mail_prepare_options base(void)
{
        return (struct mail_prepare_options){
            .mailbox = "alerts@contoso.com",
            .from_policy = MAIL_FROM_REWRITE,
            .recipients_from_headers = true,
        };
}

/* Prepares text; returns the result code and leaves the message (or the error) in *out. */
static int prep(const char *text, const struct mail_prepare_options *o, struct mail_prepared *out,
                char **error)
{
        *error = NULL;
        return mail_prepare((const uint8_t *)text, strlen(text), o, out, error);
}

static bool has(const struct mail_prepared *m, const char *needle)
{
        return m->data && memmem(m->data, m->len, needle, strlen(needle)) != NULL;
}

/* The header block only (up to the empty line). */
static bool header_has(const struct mail_prepared *m, const char *needle)
{
        const uint8_t *end = m->data ? memmem(m->data, m->len, "\r\n\r\n", 4) : NULL;
        return end && memmem(m->data, (size_t)(end - m->data) + 2, needle, strlen(needle));
}

static bool rcpt(const struct mail_prepared *m, const char *a)
{
        for (size_t i = 0; i < m->n_recipients; i++)
                if (strcmp(m->recipients[i], a) == 0)
                        return true;
        return false;
}

static void test_mbox_crlf_date_id(void)
{
        struct mail_prepare_options o = base();
        struct mail_prepared m;
        char *e;
        int r = prep("From root@host Sat Dec  5 01:00:00 2026\nFrom: alerts@contoso.com\n"
                     "To: a@example.com\nSubject: hi\n\nline1\nline2\rline3\r\n",
                     &o, &m, &e);

        is_int(r, 0, "a plain message is prepared");
        ok(m.data && memcmp(m.data, "From: ", 6) == 0, "the mbox From_ line is stripped");
        ok(has(&m, "line1\r\nline2\r\nline3\r\n"), "bare LF and lone CR become CRLF");
        ok(!has(&m, "\n\n") && !has(&m, "\r\r"), "no line ending is left alone");
        ok(header_has(&m, "\r\nDate: "), "Date is added when missing");
        ok(m.message_id && strncmp(m.message_id, "<", 1) == 0 &&
               strstr(m.message_id, "@contoso.com>"),
           "Message-ID is <random@domain of the mailbox>");
        ok(header_has(&m, "Message-ID: <"), "and written");
        is_str(m.from, "alerts@contoso.com", "From is the mailbox");
        ok(m.n_recipients == 1 && rcpt(&m, "a@example.com"), "-t takes To");
        mail_prepared_free(&m);

        r = prep(
            "Date: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@y.org>\nTo: a@example.com\n\nb\n",
            &o, &m, &e);
        is_int(r, 0, "Date and Message-ID present");
        ok(!header_has(&m, "\r\nDate: ") || !strstr((char *)m.data + 5, "\r\nDate: "),
           "no second Date");
        is_str(m.message_id, "<x@y.org>", "the existing Message-ID is kept");
        mail_prepared_free(&m);

        r = prep("Message-ID:\nTo: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, 0, "an empty Message-ID");
        ok(m.message_id && strstr(m.message_id, "@contoso.com>") && header_has(&m, m.message_id),
           "is replaced by a new one");
        mail_prepared_free(&m);
}

static void test_from(void)
{
        struct mail_aliases *aliases = NULL;
        struct mail_prepare_options o = base();
        struct mail_prepared m;
        char path[] = "/tmp/test-mail-aliasesXXXXXX";
        int fd = mkstemp(path);
        char *e;
        int r;

        ok(fd >= 0 &&
               write(fd, "# comment\nroot: ops@contoso.com\nteam: a@example.com, b@example.com\n",
                     66) == 66,
           "aliases file written");
        close(fd);
        is_int(mail_aliases_load(path, &aliases), 0, "aliases load");
        unlink(path);
        is_str(mail_aliases_lookup(aliases, "ROOT"), "ops@contoso.com", "lookup ignores case");
        o.aliases = aliases;

        /* cron: From: root (Cron Daemon), -f root */
        o.envelope_from = "root";
        r = prep("From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@h> x\n\nout\n", &o, &m,
                 &e);
        is_int(r, 0, "cron's From: root is accepted");
        is_str(m.from, "alerts@contoso.com", "rewrite: From becomes the mailbox");
        ok(header_has(&m, "From: Cron Daemon <alerts@contoso.com>\r\n"), "with the display name");
        ok(header_has(&m, "Reply-To: Cron Daemon <ops@contoso.com>\r\n"),
           "the alias of root goes to Reply-To");
        ok(header_has(&m, "To: ops@contoso.com\r\n") ||
               header_has(&m, "To: root <ops@contoso.com>\r\n"),
           "To: root is expanded through the aliases");
        ok(rcpt(&m, "ops@contoso.com") && m.n_recipients == 1, "recipient expanded");
        mail_prepared_free(&m);
        o.envelope_from = NULL;

        r = prep("From: Bob <bob@example.com>\nReply-To: x@example.com\nTo: a@example.com\n\nb\n",
                 &o, &m, &e);
        is_int(r, 0, "a foreign From with Reply-To");
        ok(header_has(&m, "X-Original-From: Bob <bob@example.com>\r\n"), "goes to X-Original-From");
        ok(header_has(&m, "From: Bob <alerts@contoso.com>\r\n"), "From keeps the display name");
        mail_prepared_free(&m);

        o.from_policy = MAIL_FROM_KEEP;
        r = prep("From: Bob <bob@example.com>\nTo: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, 0, "keep");
        is_str(m.from, "bob@example.com", "keep: From stays");
        ok(!header_has(&m, "Reply-To"), "keep: no Reply-To added");
        mail_prepared_free(&m);

        o.from_policy = MAIL_FROM_REJECT;
        r = prep("From: Bob <bob@example.com>\nTo: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, -EPERM, "reject: -EPERM");
        ok(e && strstr(e, "bob@example.com") && strstr(e, "reject"), "with a sentence naming it");
        free(e);
        r = prep("From: ALERTS@contoso.com\nTo: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, 0, "reject: the mailbox itself (any case) passes");
        mail_prepared_free(&m);
        o.from_policy = MAIL_FROM_REWRITE;

        o.envelope_from = "backup@example.org";
        r = prep("To: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, 0, "no From, -f with a domain");
        ok(header_has(&m, "From: alerts@contoso.com\r\n") &&
               header_has(&m, "Reply-To: backup@example.org\r\n"),
           "-f is the original From: rewritten to the mailbox, kept in Reply-To");
        mail_prepared_free(&m);
        o.envelope_from = NULL;

        o.full_name = "Jörg Daemon";
        r = prep("To: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, 0, "no From: built from -F and the mailbox");
        ok(header_has(&m, "From: =?UTF-8?Q?J=C3=B6rg_Daemon?= <alerts@contoso.com>\r\n"),
           "the -F name is RFC 2047 encoded");
        mail_prepared_free(&m);
        o.full_name = NULL;

        o.default_domain = "host.example.org";
        r = prep("From: backup\nTo: team, carol\n\nb\n", &o, &m, &e);
        is_int(r, 0, "default_domain");
        ok(header_has(&m, "Reply-To: backup <backup@host.example.org>\r\n"),
           "a bare From gets the default domain (and goes to Reply-To)");
        ok(rcpt(&m, "a@example.com") && rcpt(&m, "b@example.com") &&
               rcpt(&m, "carol@host.example.org") && m.n_recipients == 3,
           "aliases with two targets and the default domain");
        mail_prepared_free(&m);
        mail_aliases_free(aliases);
}

static void test_recipients(void)
{
        struct mail_prepare_options o = base();
        struct mail_prepared m;
        char *cl[] = {"x@example.com", "a@example.com"};
        char *e;
        int r;

        o.recipients = cl;
        o.n_recipients = 2;
        r = prep("To: a@example.com\nBcc: hidden@example.com\n\nb\n", &o, &m, &e);
        is_int(r, 0, "-t plus command line");
        ok(header_has(&m, "Bcc: hidden@example.com, x@example.com\r\n"),
           "a command-line-only recipient is added to Bcc, Bcc kept");
        is_int(m.n_recipients, 3, "three envelope recipients, no duplicate");
        mail_prepared_free(&m);

        o.recipients_from_headers = false;
        o.n_recipients = 1;
        r = prep("To: undisclosed-recipients:;\n\nb\n", &o, &m, &e);
        is_int(r, 0, "a group without members");
        ok(header_has(&m, "To: undisclosed-recipients:;\r\n"), "is kept");
        ok(header_has(&m, "Bcc: x@example.com\r\n"), "the recipient is in a new Bcc");
        mail_prepared_free(&m);

        o.n_recipients = 0;
        r = prep("To: a@example.com\n\nb\n", &o, &m, &e);
        is_int(r, -EBADMSG, "without -t the command line must name recipients");
        ok(e && strstr(e, "No recipients"), "and says so");
        free(e);
        o.recipients_from_headers = true;
        r = prep("Subject: x\n\nb\n", &o, &m, &e);
        is_int(r, -EBADMSG, "-t with no recipient at all");
        free(e);

        static const char *const bad[] = {
            "To: a@b@example.com\n\nb\n",
            "To: Bob Smith\n\nb\n",
            "To: <a@example.com\n\nb\n",
            "To: a@localhost\n\nb\n",
            "To: \"a b\"@example.com\n\nb\n",
            "To: a@example.com\nTo: b@example.com\n\nb\n",
            "To: root\n\nb\n",
            "From: a@example.com, b@example.com\nTo: c@example.com\n\nb\n",
            "To: a@example.com (unclosed\n\nb\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                r = prep(bad[i], &o, &m, &e);
                char what[160];

                snprintf(what, sizeof(what), "refused: %.*s", (int)strcspn(bad[i], "\n"), bad[i]);
                is_int(r, -EBADMSG, what);
                ok(e && strlen(e) > 10, "with a sentence");
                if (e)
                        printf("# %s\n", e);
                free(e);
        }
        r = prep("To: \"Smith, Bob\" <bob@example.com>, (comment) c@example.com (Carol),\n"
                 " g: d@example.com, <e@example.com>;\n\nb\n",
                 &o, &m, &e);
        is_int(r, 0, "quoted strings, comments, groups, continuation lines");
        ok(m.n_recipients == 4 && rcpt(&m, "bob@example.com") && rcpt(&m, "c@example.com") &&
               rcpt(&m, "d@example.com") && rcpt(&m, "e@example.com"),
           "all four recipients found");
        mail_prepared_free(&m);
}

static void test_recipient_limit(void)
{
        struct mail_prepare_options o = base();
        struct mail_prepared m;
        size_t n = 501;
        size_t cap = n * 30 + 64;
        char *text = malloc(cap), *p = text, *e;
        int r;

        p += snprintf(p, cap, "To: ");
        for (size_t i = 0; i < n; i++)
                p += snprintf(p, cap - (size_t)(p - text), "%su%zu@example.com", i ? ", " : "", i);
        snprintf(p, cap - (size_t)(p - text), "\n\nb\n");
        r = prep(text, &o, &m, &e);
        is_int(r, -EBADMSG, "501 recipients are refused");
        ok(e && strstr(e, "500"), "naming Graph's limit");
        free(e);
        p = strrchr(text, ',');
        snprintf(p, cap - (size_t)(p - text), "\n\nb\n");
        r = prep(text, &o, &m, &e);
        is_int(r, 0, "500 pass");
        is_int(m.n_recipients, 500, "500 recipients");
        ok(header_has(&m, "\r\n u"), "the long To is folded");
        for (const uint8_t *l = m.data, *end;
             (end = memmem(l, m.len - (size_t)(l - m.data), "\r\n", 2)); l = end + 2) {
                if (end - l > 78) {
                        ok(false, "a header line over 78");
                        break;
                }
                if (end == l)
                        break;
        }
        mail_prepared_free(&m);
        free(text);
}

static void test_encoding_and_bounds(void)
{
        struct mail_prepare_options o = base();
        struct mail_prepared m;
        char *e, *big;
        int r = prep("To: a@example.com\nSubject: Grüße aus Köln, a very long subject line that "
                     "surely needs folding somewhere ✓ ✓ ✓ ✓\n\nbody ü\n",
                     &o, &m, &e);

        is_int(r, 0, "8-bit subject");
        ok(header_has(&m, "Subject: =?UTF-8?"), "8-bit header text becomes encoded words");
        ok(!memchr(m.data, 0xc3,
                   (size_t)((uint8_t *)memmem(m.data, m.len, "\r\n\r\n", 4) - m.data)),
           "no 8-bit byte left in the header block");
        ok(header_has(&m, "Content-Type: text/plain; charset=UTF-8\r\n") &&
               header_has(&m, "Content-Transfer-Encoding: 8bit\r\n"),
           "an 8-bit body without MIME headers is labelled");
        mail_prepared_free(&m);

        r = prep("To: a@example.com\nSubject: caf\xe9\n\nb\n", &o, &m, &e);
        is_int(r, 0, "ISO-8859-1 subject");
        ok(header_has(&m, "Subject: =?UTF-8?B?Y2Fmw6k=?="), "read as Latin-1, sent as UTF-8");
        mail_prepared_free(&m);

        /* Fields of 60 KiB each (under the per-field bound) adding up to more than 1 MiB. */
        size_t n_fields = MAIL_HEADER_BLOCK_MAX / (60 * 1024) + 2,
               cap = n_fields * (60 * 1024 + 16) + 64;
        char *q = big = malloc(cap);
        q += snprintf(q, cap, "To: a@example.com\n");
        for (size_t i = 0; i < n_fields; i++) {
                q += snprintf(q, cap - (size_t)(q - big), "X-Big-%zu: ", i);
                memset(q, 'x', 60 * 1024);
                q += 60 * 1024;
                *q++ = '\n';
        }
        snprintf(q, cap - (size_t)(q - big), "\nb\n");
        r = prep(big, &o, &m, &e);
        is_int(r, -EMSGSIZE, "a header block over 1 MiB");
        ok(e && strstr(e, "header block"), "says the header block is too large");
        free(e);
        memset(big + 18, 'y', 70 * 1024);
        memcpy(big + 18, "X-Long: ", 8);
        memcpy(big + 18 + 70 * 1024, "\n\nb\n", 5); /* the message ends after it */
        r = prep(big, &o, &m, &e);
        is_int(r, -EMSGSIZE, "one field over 64 KiB");
        ok(e && strstr(e, "X-Long"), "names the field");
        free(e);
        free(big);
        r = mail_prepare((const uint8_t *)"To: a@example.com\n\nb", (size_t)MAIL_MESSAGE_MAX + 1,
                         &o, &m, &e);
        is_int(r, -EMSGSIZE, "a message over 150 MiB (length checked first)");
        free(e);
        r = mail_prepare((const uint8_t *)"To: a@example.com\nX: a\0b\n\nb\n", 27, &o, &m, &e);
        is_int(r, -EBADMSG, "NUL in the header block");
        free(e);
}

int main(void)
{
        test_mbox_crlf_date_id();
        test_from();
        test_recipients();
        test_recipient_limit();
        test_encoding_and_bounds();
        return done_testing();
}
