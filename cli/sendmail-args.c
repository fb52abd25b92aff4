/* credbroker sendmail's command line; see sendmail-args.h. Parsed by hand rather than with
 * getopt: sendmail's options take attached values of their own shapes (-oi, -odi, -B8BITMIME,
 * -FCronDaemon, -q1h) and unknown tuning options must be ignored, never refused. */
#include "sendmail-args.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "log.h"
#include "util.h"

static int fail(struct sendmail_args *a, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(a->error, sizeof(a->error), fmt, ap);
        va_end(ap);
        return r;
}

/* A recipient as callers write it: "user", "user@host", "<user@host>"; no spaces or controls,
 * and no leading '-' unless after "--" (dash_ok). */
static bool recipient_is_valid(const char *s, bool dash_ok)
{
        size_t n = strlen(s);

        if (n == 0 || n > 320 || (s[0] == '-' && !dash_ok))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c <= 0x20 || c == 0x7f || strchr("<>()[]\\,;:\"", c))
                        return false;
        }
        return true;
}

/* Adds each address of a comma-separated argument ("a@x, b@y" is one argument to sendmail). */
static int add_recipients(struct sendmail_args *a, const char *arg, bool dash_ok)
{
        _cleanup_free_ char *copy = NULL;
        char *save = NULL;

        if (strlen(arg) > SENDMAIL_ARG_MAX)
                return fail(a, -EINVAL, "a recipient argument is longer than %u bytes",
                            SENDMAIL_ARG_MAX);
        copy = strdup(arg);
        if (!copy)
                return -ENOMEM;
        for (char *r = strtok_r(copy, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
                size_t len;
                char **grown;

                r += strspn(r, " \t");
                len = strlen(r);
                while (len > 0 && strchr(" \t", r[len - 1]))
                        r[--len] = 0;
                if (len >= 2 && r[0] == '<' && r[len - 1] == '>') {
                        r[len - 1] = 0;
                        r++;
                }
                if (*r == 0)
                        continue;
                if (!recipient_is_valid(r, dash_ok))
                        return fail(a, -EINVAL, "not a mail address: \"%.80s\"", r);
                if (a->n_recipients >= SENDMAIL_RECIPIENTS_MAX)
                        return fail(a, -E2BIG, "more than %u recipients", SENDMAIL_RECIPIENTS_MAX);
                grown = reallocarray(a->recipients, a->n_recipients + 1, sizeof(char *));
                if (!grown)
                        return -ENOMEM;
                a->recipients = grown;
                a->recipients[a->n_recipients] = strdup(r);
                if (!a->recipients[a->n_recipients])
                        return -ENOMEM;
                a->n_recipients++;
        }
        return 0;
}

/* -b MODE. */
static int take_mode(struct sendmail_args *a, const char *v)
{
        static const struct {
                const char *name;
                enum sendmail_mode mode;
        } modes[] = {
            {"m", SENDMAIL_MODE_DELIVER},
            {"s", SENDMAIL_MODE_SMTP},
            {"i", SENDMAIL_MODE_INIT_ALIASES},
            {"p", SENDMAIL_MODE_LIST_QUEUE},
        };

        for (size_t i = 0; i < ELEMENTSOF(modes); i++)
                if (strcmp(v, modes[i].name) == 0) {
                        a->mode = modes[i].mode;
                        return 0;
                }
        return fail(a, -EINVAL, "sendmail -b%.20s is not supported (only -bm, -bs, -bi, -bp)", v);
}

/* An option that takes a value (attached or the next argument), once the value is known. */
static int take_value(struct sendmail_args *a, char letter, const char *v)
{
        if (strlen(v) > SENDMAIL_ARG_MAX)
                return fail(a, -EINVAL, "the value of -%c is longer than %u bytes", letter,
                            SENDMAIL_ARG_MAX);
        switch (letter) {
        case 'b':
                return take_mode(a, v);
        case 'f':
        case 'r':
                a->envelope_from = v;
                return 0;
        case 'F':
                a->full_name = v;
                return 0;
        case 'p':
                /* sendmail's own -p is -pPROTOCOL[:HOST]; a profile name never has a ':'. */
                if (name_is_valid(v)) {
                        a->profile = v;
                        return 0;
                }
                if (strchr(v, ':')) {
                        log_debug("sendmail: ignoring -p%.80s (a received protocol)", v);
                        return 0;
                }
                return fail(a, -EINVAL, "not a profile name: \"%.64s\"", v);
        case 'o':
                /* -oi is -i; every other -o option tunes a local MTA we are not. */
                if (strcmp(v, "i") == 0)
                        a->dot_ends_message = false;
                else
                        log_debug("sendmail: ignoring -o%.80s", v);
                return 0;
        default:
                log_debug("sendmail: ignoring -%c%.80s", letter, v);
                return 0;
        }
}

/* Letters that take a value: the ones we use and sendmail's tuning options we ignore (-O option,
 * -B body type, -N DSN notify, -R DSN return, -V envelope id, -X log file, -C config, -L syslog
 * tag, -h hop count, -d debug, -A config choice of mailq). */
#define VALUE_LETTERS "bfrFpoOBNRVXCLhdA"
/* Flags we ignore: -m (me too), -n (no aliasing), -U (initial submission), -G (relay), -x. */
#define IGNORED_FLAGS "mnUGx"

/* One argument that starts with '-': a cluster of flags, possibly ending in a valued option.
 * *i moves past a separate value. */
static int parse_option(struct sendmail_args *a, int argc, char **argv, int *i)
{
        const char *arg = argv[*i];

        for (const char *p = arg + 1; *p; p++) {
                if (strchr(VALUE_LETTERS, *p)) {
                        if (p[1])
                                return take_value(a, *p, p + 1);
                        if (*i + 1 >= argc) {
                                /* A dangling -o/-O/... is as ignorable as its value would be. */
                                if (strchr("bfrFp", *p))
                                        return fail(a, -EINVAL, "-%c needs a value", *p);
                                return 0;
                        }
                        return take_value(a, *p, argv[++*i]);
                }
                switch (*p) {
                case 't':
                        a->recipients_from_headers = true;
                        break;
                case 'i':
                        a->dot_ends_message = false;
                        break;
                case 'v':
                        a->verbose = true;
                        break;
                case 'q':
                        /* -q, -q1h, -qIqueueid...: flush the whole spool now. */
                        a->mode = SENDMAIL_MODE_FLUSH_QUEUE;
                        return 0;
                default:
                        if (!strchr(IGNORED_FLAGS, *p))
                                return fail(a, -EINVAL, "unknown option -%c", *p);
                        log_debug("sendmail: ignoring -%c", *p);
                }
        }
        return 0;
}

static void mode_from_name(struct sendmail_args *a, const char *argv0)
{
        const char *base = argv0 ? strrchr(argv0, '/') : NULL;

        base = base ? base + 1 : argv0;
        if (!base)
                return;
        if (strcmp(base, "mailq") == 0)
                a->mode = SENDMAIL_MODE_LIST_QUEUE;
        else if (strcmp(base, "newaliases") == 0)
                a->mode = SENDMAIL_MODE_INIT_ALIASES;
}

int sendmail_args_parse(int argc, char **argv, struct sendmail_args *a)
{
        bool options_done = false;
        int r;

        *a = (struct sendmail_args){.dot_ends_message = true};
        mode_from_name(a, argc > 0 ? argv[0] : NULL);
        for (int i = 1; i < argc; i++) {
                const char *arg = argv[i];

                r = 0;
                /* Options may come after recipients, as with sendmail; "--" ends them. */
                if (!options_done && strcmp(arg, "--") == 0)
                        options_done = true;
                else if (!options_done && arg[0] == '-' && arg[1])
                        r = parse_option(a, argc, argv, &i);
                else
                        r = add_recipients(a, arg, options_done);
                if (r < 0)
                        return r;
        }
        if (a->mode == SENDMAIL_MODE_DELIVER && !a->recipients_from_headers && a->n_recipients == 0)
                return fail(a, -EINVAL, "no recipients: give addresses or -t");
        return 0;
}

void sendmail_args_done(struct sendmail_args *a)
{
        for (size_t i = 0; i < a->n_recipients; i++)
                free(a->recipients[i]);
        free(a->recipients);
        a->recipients = NULL;
        a->n_recipients = 0;
}

const char *sendmail_local_sender(const char *address, const char *hostname, char *buf, size_t size)
{
        const char *at = address ? strrchr(address, '@') : NULL;
        size_t n;

        if (!at || at == address)
                return address;
        if (strchr(at + 1, '.') && !(hostname && strcasecmp(at + 1, hostname) == 0))
                return address;
        n = (size_t)(at - address);
        if (n >= size)
                return address;
        memcpy(buf, address, n);
        buf[n] = 0;
        return buf;
}
