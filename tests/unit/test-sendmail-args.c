/* credbroker sendmail's command line and input reading (cli/sendmail-args.c,
 * cli/sendmail-input.c): every caller form of issue 11 item 2. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "sendmail-args.h"
#include "sendmail-input.h"
#include "tap.h"

/* Parses a NULL-terminated argument list. */
static int parse(struct sendmail_args *a, const char *const *args)
{
        char *argv[64];
        int argc = 0;

        while (args[argc]) {
                argv[argc] = (char *)args[argc];
                argc++;
        }
        argv[argc] = NULL;
        return sendmail_args_parse(argc, argv, a);
}

static void test_cronie(void)
{
        struct sendmail_args a;
        const char *args[] = {"sendmail", "-FCronDaemon", "-i", "-odi", "-oem",
                              "-oi",      "-t",           "-f", "root", NULL};

        is_int(parse(&a, args), 0, "cronie's flags parse");
        ok(a.recipients_from_headers, "cronie: -t");
        ok(!a.dot_ends_message, "cronie: -i");
        is_str(a.full_name, "CronDaemon", "cronie: -F attached");
        is_str(a.envelope_from, "root", "cronie: -f separate");
        is_int(a.mode, SENDMAIL_MODE_DELIVER, "cronie: delivers");
        sendmail_args_done(&a);
}

static void test_debian_cron_anacron(void)
{
        struct sendmail_args a;
        const char *debian[] = {"sendmail", "-FCronDaemon",    "-i", "-B8BITMIME",
                                "-oem",     "ops@contoso.com", NULL};
        const char *anacron[] = {"sendmail", "-FAnacron", "-odi", "root", NULL};

        is_int(parse(&a, debian), 0, "Debian cron's flags parse");
        is_int(a.n_recipients, 1, "Debian cron: one recipient");
        is_str(a.n_recipients ? a.recipients[0] : NULL, "ops@contoso.com", "Debian cron: rcpt");
        ok(!a.recipients_from_headers, "Debian cron: no -t");
        sendmail_args_done(&a);
        is_int(parse(&a, anacron), 0, "anacron's flags parse");
        ok(a.dot_ends_message, "anacron: no -i, a lone dot ends the message");
        is_str(a.n_recipients ? a.recipients[0] : NULL, "root", "anacron: local recipient");
        sendmail_args_done(&a);
}

static void test_other_callers(void)
{
        struct sendmail_args a;
        const char *php[] = {"sendmail", "-t", "-i", "-fweb@contoso.com", NULL};
        const char *mailutils[] = {"sendmail", "-oi", "a@x.org", "b@y.org", NULL};
        const char *mdadm[] = {"sendmail", "-t", NULL};
        const char *git[] = {"sendmail", "-i", "-f", "dev@x.org", "a@x.org", "b@x.org", NULL};
        const char *dashdash[] = {"sendmail", "--", "-weird@x.org", NULL};
        const char *commas[] = {"sendmail", "a@x.org, <b@x.org>,c@x.org", NULL};

        is_int(parse(&a, php), 0, "PHP's flags parse");
        is_str(a.envelope_from, "web@contoso.com", "PHP: -f attached");
        sendmail_args_done(&a);
        is_int(parse(&a, mailutils), 0, "mailutils -oi rcpt... parses");
        ok(!a.dot_ends_message, "mailutils: -oi");
        is_int(a.n_recipients, 2, "mailutils: two recipients");
        sendmail_args_done(&a);
        is_int(parse(&a, mdadm), 0, "mdadm -t parses");
        ok(a.dot_ends_message && a.recipients_from_headers, "mdadm: -t without -i");
        sendmail_args_done(&a);
        is_int(parse(&a, git), 0, "git send-email parses");
        is_int(a.n_recipients, 2, "git send-email: two recipients");
        sendmail_args_done(&a);
        is_int(parse(&a, dashdash), 0, "-- ends the options");
        is_str(a.n_recipients ? a.recipients[0] : NULL, "-weird@x.org", "after --: a recipient");
        sendmail_args_done(&a);
        is_int(parse(&a, commas), 0, "a comma list in one argument");
        is_int(a.n_recipients, 3, "comma list: three recipients");
        is_str(a.n_recipients > 1 ? a.recipients[1] : NULL, "b@x.org", "comma list: <> stripped");
        sendmail_args_done(&a);
}

static void test_ignored_and_modes(void)
{
        struct sendmail_args a;
        const char *ignored[] = {"sendmail",
                                 "-ODeliveryMode=b",
                                 "-NSUCCESS,FAILURE",
                                 "-R",
                                 "hdrs",
                                 "-Vxyz",
                                 "-o",
                                 "em",
                                 "-Bbinarymime",
                                 "-U",
                                 "-m",
                                 "-pESMTP:host",
                                 "a@x.org",
                                 NULL};
        const char *bs[] = {"sendmail", "-bs", NULL}, *bi[] = {"sendmail", "-bi", NULL};
        const char *bp[] = {"sendmail", "-b", "p", NULL}, *q[] = {"sendmail", "-q1h", NULL};
        const char *mailq[] = {"/usr/bin/mailq", NULL};
        const char *profile[] = {"sendmail", "-p", "alerts", "-t", NULL};

        is_int(parse(&a, ignored), 0, "unknown tuning options are ignored, not refused");
        ok(a.profile == NULL, "-pPROTO:HOST is not a profile");
        sendmail_args_done(&a);
        is_int(parse(&a, bs), 0, "-bs");
        is_int(a.mode, SENDMAIL_MODE_SMTP, "-bs: SMTP mode, no recipients needed");
        is_int(parse(&a, bi), 0, "-bi");
        is_int(a.mode, SENDMAIL_MODE_INIT_ALIASES, "-bi: aliases mode");
        is_int(parse(&a, bp), 0, "-b p");
        is_int(a.mode, SENDMAIL_MODE_LIST_QUEUE, "-b p: list the spool");
        is_int(parse(&a, q), 0, "-q1h");
        is_int(a.mode, SENDMAIL_MODE_FLUSH_QUEUE, "-q: flush");
        is_int(parse(&a, mailq), 0, "invoked as mailq");
        is_int(a.mode, SENDMAIL_MODE_LIST_QUEUE, "mailq lists the spool");
        is_int(parse(&a, profile), 0, "-p PROFILE");
        is_str(a.profile, "alerts", "-p: the profile");
        sendmail_args_done(&a);
}

static void test_refusals(void)
{
        struct sendmail_args a;
        const char *none[] = {"sendmail", "-i", NULL}, *bd[] = {"sendmail", "-bd", NULL};
        const char *f[] = {"sendmail", "-t", "-f", NULL}, *z[] = {"sendmail", "-Z", "a@x", NULL};
        const char *bad[] = {"sendmail", "a b@x.org", NULL};

        is_int(parse(&a, none), -EINVAL, "no recipient and no -t: usage");
        ok(strstr(a.error, "recipients") != NULL, "no recipients: says so");
        sendmail_args_done(&a);
        is_int(parse(&a, bd), -EINVAL, "-bd (daemon) is refused");
        sendmail_args_done(&a);
        is_int(parse(&a, f), -EINVAL, "-f without a value");
        sendmail_args_done(&a);
        is_int(parse(&a, z), -EINVAL, "an unknown flag letter");
        sendmail_args_done(&a);
        is_int(parse(&a, bad), -EINVAL, "a recipient with a space");
        sendmail_args_done(&a);
}

/* Feeds text through a pipe to sendmail_read_message. */
static int read_text(const char *text, bool dot_ends, size_t max, char **ret, size_t *ret_len)
{
        int fds[2];
        uint8_t *data = NULL;
        int r;

        if (pipe(fds) < 0)
                return -errno;
        if (write(fds[1], text, strlen(text)) != (ssize_t)strlen(text))
                return -EIO;
        close(fds[1]);
        r = sendmail_read_message(fds[0], dot_ends, max, &data, ret_len);
        close(fds[0]);
        if (r == 0) {
                *ret = strndup((char *)data, *ret_len);
                free(data);
        }
        return r;
}

static void test_input(void)
{
        const char *m = "Subject: x\n\nline\n.\nafter\n";
        char *got = NULL;
        size_t len;

        is_int(read_text(m, true, 1000, &got, &len), 0, "dot ends: read");
        is_str(got, "Subject: x\n\nline\n", "without -i a lone dot ends the message");
        free(got);
        is_int(read_text(m, false, 1000, &got, &len), 0, "-i: read");
        is_str(got, m, "with -i the dot line is ordinary text");
        free(got);
        is_int(read_text("a\r\n.\r\nb", true, 1000, &got, &len), 0, "CRLF dot");
        is_str(got, "a\r\n", "a lone dot with CRLF ends it too");
        free(got);
        is_int(read_text("a\n..\n.x\n", true, 1000, &got, &len), 0, "dots in text");
        is_str(got, "a\n..\n.x\n", "\"..\" and \".x\" do not end it");
        free(got);
        is_int(read_text("a\n.", true, 1000, &got, &len), 0, "final dot without newline");
        is_str(got, "a\n", "a final lone dot without newline ends it");
        free(got);
        is_int(read_text("0123456789", false, 10, &got, &len), 0, "exactly max");
        free(got);
        is_int(read_text("0123456789X", false, 10, &got, &len), -EMSGSIZE, "max + 1: refused");
}

static void test_local_sender(void)
{
        char buf[64];

        is_str(sendmail_local_sender("root@vm", "vm", buf, sizeof(buf)), "root",
               "user@shortname is the local user");
        is_str(sendmail_local_sender("root@Host.Example.org", "host.example.org", buf, sizeof(buf)),
               "root", "user@this host's FQDN is the local user");
        is_str(sendmail_local_sender("ops@contoso.com", "vm", buf, sizeof(buf)), "ops@contoso.com",
               "a real address is kept");
        is_str(sendmail_local_sender("root", "vm", buf, sizeof(buf)), "root",
               "a bare name is kept");
        ok(sendmail_local_sender(NULL, "vm", buf, sizeof(buf)) == NULL, "NULL stays NULL");
}

int main(void)
{
        test_local_sender();
        test_cronie();
        test_debian_cron_anacron();
        test_other_callers();
        test_ignored_and_modes();
        test_refusals();
        test_input();
        return done_testing();
}
