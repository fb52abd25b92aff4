/* credbroker sendmail's command line: the flags real callers of /usr/sbin/sendmail pass (cron,
 * anacron, PHP, mailx, mdadm, logwatch, git send-email), parsed the way sendmail does. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Graph takes at most 500 recipients per message. */
#define SENDMAIL_RECIPIENTS_MAX 500u
#define SENDMAIL_ARG_MAX        1024u /* longest option value or recipient argument */

enum sendmail_mode {
        SENDMAIL_MODE_DELIVER, /* -bm (default): read a message, deliver it */
        SENDMAIL_MODE_SMTP,    /* -bs: SMTP on stdin/stdout */
        SENDMAIL_MODE_INIT_ALIASES /* -bi, newaliases: nothing to do */,
        SENDMAIL_MODE_LIST_QUEUE,  /* -bp, mailq */
        SENDMAIL_MODE_FLUSH_QUEUE, /* -q[time] */
};

struct sendmail_args {
        enum sendmail_mode mode;
        const char *profile;          /* -p NAME (a sendmail -pPROTOCOL:HOST is ignored) */
        const char *envelope_from;    /* -f / -r */
        const char *full_name;        /* -F */
        bool recipients_from_headers; /* -t */
        bool dot_ends_message;        /* false with -i or -oi */
        bool verbose;                 /* -v */
        char **recipients;            /* command-line recipients, comma lists split; owned */
        size_t n_recipients;
        char error[200]; /* after a failed parse: one sentence saying why */
};

/* Parses argv[1..] (argv[0] is the command's name: "sendmail", "mailq" and "newaliases" select
 * their modes as in sendmail). Unknown -o, -O, -B, -N, -R, -V and sendmail's other delivery
 * tuning options are accepted and ignored (debug log). 0, or -EINVAL (a missing value, an
 * unsupported -b mode or option, no recipient to deliver to, a bad address) with a->error set,
 * or -E2BIG (too many recipients), or -ENOMEM. a is zeroed first; free with
 * sendmail_args_done(). */
int sendmail_args_parse(int argc, char **argv, struct sendmail_args *a);
void sendmail_args_done(struct sendmail_args *a);

/* An envelope sender of this host (-f root@HOSTNAME, as mailutils and cron pass it; MAIL FROM in
 * -bs): user@host where host has no dot or is this host's own name (hostname, compared without
 * case; may be NULL) is the local user, whose address the aliases and default_domain decide.
 * Writes the local part into buf and returns buf then; else returns address unchanged. */
const char *sendmail_local_sender(const char *address, const char *hostname, char *buf,
                                  size_t size);
