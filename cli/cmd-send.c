/* credbroker send: mail a message through Microsoft Graph with a token from the broker. The
 * message is real MIME (mail/mime.h: mail_build): text, HTML or both, attachments, UTF-8 subject
 * and names, extra header fields. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "codec.h"
#include "commands.h"
#include "json.h"
#include "log.h"
#include "mail.h"
#include "mail-deliver.h"
#include "mime.h"
#include "options.h"
#include "strbuf.h"
#include "util.h"

/* The text or HTML body; attachments are bounded by the message (150 MiB) instead. */
#define BODY_MAX        (3 * 1024 * 1024)
#define MAX_RECIPIENTS  500
#define MAX_HEADERS     100
#define MAX_ATTACHMENTS 250
/* Graph takes MIME in one sendMail request up to 4 MB of base64. */
#define DIRECT_MIME_MAX (3 * 1024 * 1024)

static void usage(FILE *f)
{
        fputs(
            "Usage: credbroker send -p PROFILE --to ADDR[,ADDR...] [--cc ...] [--bcc ...]\n"
            "                       --subject TEXT [--body-file FILE] [--html | --html-file F]\n"
            "                       [--attach FILE[;type=TYPE]]... [--header 'Name: value']...\n"
            "                       [--from ADDR] [--reply-to ADDR] [--save-to-sent-items yes|no]\n"
            "                       [--mailbox UPN] [--socket PATH] [--config PATH]\n"
            "\n"
            "Sends a MIME message through Microsoft Graph with a token from the broker. The\n"
            "body is read from FILE, or from standard input.\n"
            "\n"
            "  -p, --profile NAME   the policy profile to ask under\n"
            "      --to, --cc, --bcc ADDRS  recipients, comma separated, repeatable\n"
            "  -s, --subject TEXT   subject line (UTF-8)\n"
            "  -b, --body-file F    message body (default: standard input)\n"
            "      --html           the body is HTML (default: plain text)\n"
            "      --html-file F    an HTML version of the text body (multipart/alternative)\n"
            "  -a, --attach F[;type=T]  attach file F (type from its extension, or T)\n"
            "      --header 'X-Name: value'  an extra header field, repeatable\n"
            "      --from ADDR      the From address ('Name <addr>' allowed)\n"
            "      --reply-to ADDR  the Reply-To address\n"
            "      --save-to-sent-items yes|no  keep a copy in Sent Items (default yes)\n"
            "  -m, --mailbox UPN    mailbox to send as (default: the account's mailbox)\n"
            "  -S, --socket PATH    broker socket\n"
            "  -c, --config PATH    a configuration naming the socket (default "
            "$CREDBROKER_CONFIG)\n"
            "\n"
            "What Graph cannot take now (down, throttled, the token endpoint unreachable) goes to\n"
            "the broker's spool, which sends it later; exit 0 then too.\n",
            f);
}

struct strv {
        char **v;
        size_t n;
};

static void strv_done(struct strv *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        free(s->v);
        *s = (struct strv){0};
}

static int strv_add(struct strv *s, const char *item, size_t max)
{
        char **v;

        if (s->n >= max)
                return -E2BIG;
        v = realloc(s->v, (s->n + 1) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        s->v = v;
        v[s->n] = strdup(item);
        if (!v[s->n])
                return -ENOMEM;
        s->n++;
        return 0;
}

struct send_options {
        struct cli_target target;
        const char *profile, *subject, *body_file, *html_file, *mailbox, *from, *reply_to;
        const char *save_to_sent_items;
        bool html;
        struct strv to, cc, bcc, headers, attach;
        size_t n_recipients;
};

static void send_options_done(struct send_options *o)
{
        strv_done(&o->to), strv_done(&o->cc), strv_done(&o->bcc);
        strv_done(&o->headers), strv_done(&o->attach);
}

/* Adds every comma-separated address of list to the recipients array. */
static int add_recipients(struct strv *array, const char *list, size_t *count)
{
        _cleanup_free_ char *copy = strdup(list);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *a = strtok_r(copy, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
                size_t len;

                /* Spaces around an address are trimmed; one inside it makes it invalid, so no
                 * recipient is ever silently dropped. */
                while (*a == ' ')
                        a++;
                len = strlen(a);
                while (len > 0 && a[len - 1] == ' ')
                        a[--len] = 0;
                if (!mail_address_is_valid(a, false)) {
                        fprintf(stderr, "credbroker: not a valid mail address: \"%.80s\"\n", a);
                        return -EINVAL;
                }
                if (++*count > MAX_RECIPIENTS) {
                        fprintf(stderr, "credbroker: at most %d recipients\n", MAX_RECIPIENTS);
                        return -EINVAL;
                }
                if (strv_add(array, a, MAX_RECIPIENTS) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Reads a UTF-8 text (path, or standard input when NULL) of at most BODY_MAX bytes. */
static int read_text(const char *path, struct buf **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_buf_ struct buf *body = NULL;
        int r;

        fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : dup(STDIN_FILENO);
        if (fd < 0) {
                fprintf(stderr, "credbroker: cannot read %s: %s\n", path ? path : "stdin",
                        strerror(errno));
                return EXIT_NOINPUT;
        }
        if (buf_new(BODY_MAX + 1, &body) < 0)
                return EXIT_SOFTWARE;
        while ((r = buf_read_fd(body, fd)) > 0)
                ;
        if (r == -EMSGSIZE || buf_len(body) > BODY_MAX) {
                fprintf(stderr, "credbroker: %s is larger than %d bytes\n",
                        path ? path : "the body", BODY_MAX);
                return EXIT_DATAERR;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot read %s: %s\n", path ? path : "the body",
                        strerror(-r));
                return EXIT_NOINPUT;
        }
        if (buf_put(body, "", 1) < 0)
                return EXIT_SOFTWARE;
        if (!utf8_is_valid(buf_data(body), buf_len(body) - 1)) {
                fprintf(stderr, "credbroker: %s is not valid UTF-8 text\n",
                        path ? path : "the body");
                return EXIT_DATAERR;
        }
        *ret = TAKE_PTR(body);
        return 0;
}

enum {
        OPT_TO = 0x100,
        OPT_CC,
        OPT_BCC,
        OPT_HTML,
        OPT_HTML_FILE,
        OPT_HEADER,
        OPT_FROM,
        OPT_REPLY_TO,
        OPT_SAVE,
};

/* --to, --cc, --bcc, --header and --attach: 0, or an exit code after saying why. */
static int list_option(int c, const char *arg, void *userdata)
{
        struct send_options *o = userdata;
        int r;

        if (c == 'a' || c == OPT_HEADER) {
                r = strv_add(c == 'a' ? &o->attach : &o->headers, arg,
                             c == 'a' ? MAX_ATTACHMENTS : MAX_HEADERS);
                if (r == -E2BIG)
                        fprintf(stderr, "credbroker: at most %d %s\n",
                                c == 'a' ? MAX_ATTACHMENTS : MAX_HEADERS,
                                c == 'a' ? "attachments" : "--header fields");
                return r == -ENOMEM ? EXIT_SOFTWARE : r < 0 ? EXIT_USAGE : 0;
        }
        r = add_recipients(c == OPT_TO   ? &o->to
                           : c == OPT_CC ? &o->cc
                                         : &o->bcc,
                           arg, &o->n_recipients);
        if (r < 0)
                return r == -ENOMEM ? EXIT_SOFTWARE : EXIT_USAGE;
        return 0;
}

/* -1 when the command goes on, else its exit code. */
static int parse_options(int argc, char **argv, struct send_options *o)
{
        static const struct cli_option options[] = {
            CLI_ARG("profile", 'p', struct send_options, profile),
            CLI_OWN("to", required_argument, OPT_TO),
            CLI_OWN("cc", required_argument, OPT_CC),
            CLI_OWN("bcc", required_argument, OPT_BCC),
            CLI_ARG("subject", 's', struct send_options, subject),
            CLI_ARG("body-file", 'b', struct send_options, body_file),
            CLI_FLAG("html", OPT_HTML, struct send_options, html),
            CLI_ARG("html-file", OPT_HTML_FILE, struct send_options, html_file),
            CLI_OWN("attach", required_argument, 'a'),
            CLI_OWN("header", required_argument, OPT_HEADER),
            CLI_ARG("from", OPT_FROM, struct send_options, from),
            CLI_ARG("reply-to", OPT_REPLY_TO, struct send_options, reply_to),
            CLI_ARG("save-to-sent-items", OPT_SAVE, struct send_options, save_to_sent_items),
            CLI_ARG("mailbox", 'm', struct send_options, mailbox),
            CLI_SOCKET(struct send_options, target),
            CLI_CONFIG(struct send_options, target),
            CLI_HELP,
            {0},
        };

        return cli_parse_one(argc, argv, "p:s:b:a:m:S:c:h", options, o, list_option, usage,
                             EXIT_USAGE);
}

/* -1 when the options make a message, else the exit code after saying why not. */
static int check_options(int argc, const struct send_options *o)
{
        const char *s = o->save_to_sent_items;

        if (!o->profile || !o->subject || o->to.n == 0 || optind < argc) {
                fprintf(stderr, "credbroker: send needs -p PROFILE, --to and --subject\n");
                usage(stderr);
                return EXIT_USAGE;
        }
        if (!utf8_is_valid((const uint8_t *)o->subject, strlen(o->subject)) ||
            strpbrk(o->subject, "\r\n")) {
                fprintf(stderr, "credbroker: the subject is not one line of UTF-8 text\n");
                return EXIT_USAGE;
        }
        if (o->mailbox && !mail_address_is_valid(o->mailbox, false)) {
                fprintf(stderr, "credbroker: --mailbox wants a user principal name\n");
                return EXIT_USAGE;
        }
        if (o->html && o->html_file) {
                fprintf(stderr, "credbroker: --html (the body is HTML) and --html-file (an HTML "
                                "version of the text body) exclude each other\n");
                return EXIT_USAGE;
        }
        if (s && strcmp(s, "yes") != 0 && strcmp(s, "no") != 0) {
                fprintf(stderr, "credbroker: --save-to-sent-items wants yes or no\n");
                return EXIT_USAGE;
        }
        return -1;
}

/* "FILE" or "FILE;type=TYPE" into specs (pointing into the option strings, cut at ';'). */
static void attachment_specs(struct strv *attach, struct mail_attachment_spec *specs)
{
        for (size_t i = 0; i < attach->n; i++) {
                char *t = strstr(attach->v[i], ";type=");

                specs[i] = (struct mail_attachment_spec){attach->v[i], NULL};
                if (t) {
                        *t = 0;
                        specs[i].content_type = t + strlen(";type=");
                }
        }
}

/* The MIME message: 0, or an exit code after saying why. */
static int build_message(struct send_options *o, const char *text, const char *html, uint8_t **ret,
                         size_t *ret_len)
{
        _cleanup_free_ struct mail_attachment_spec *specs =
            calloc(o->attach.n ? o->attach.n : 1, sizeof(*specs));
        _cleanup_free_ char *error = NULL;
        struct mail_build_spec spec = {
            .from = o->from ? o->from : o->mailbox,
            .reply_to = o->reply_to,
            .subject = o->subject,
            .text = text,
            .html = html,
            .to = o->to.v,
            .n_to = o->to.n,
            .cc = o->cc.v,
            .n_cc = o->cc.n,
            .bcc = o->bcc.v,
            .n_bcc = o->bcc.n,
            .headers = o->headers.v,
            .n_headers = o->headers.n,
            .attachments = specs,
            .n_attachments = o->attach.n,
        };
        int r;

        if (!specs)
                return EXIT_SOFTWARE;
        attachment_specs(&o->attach, specs);
        r = mail_build(&spec, ret, ret_len, &error);
        if (r >= 0)
                return 0;
        fprintf(stderr, "credbroker: %s\n", error ? error : strerror(-r));
        switch (r) {
        case -EINVAL:
                return EXIT_USAGE;
        case -EMSGSIZE:
                return EXIT_DATAERR;
        case -ENOMEM:
                return EXIT_SOFTWARE;
        default:
                return EXIT_NOINPUT; /* an attachment that cannot be read */
        }
}

static bool save_to_sent_items(const struct send_options *o)
{
        return !o->save_to_sent_items || strcmp(o->save_to_sent_items, "yes") == 0;
}

/* On a terminal: how much of a large message Graph has (the upload-session path only). */
static void show_progress(uint64_t done, uint64_t total, void *userdata)
{
        unsigned percent = total ? (unsigned)(done * 100 / total) : 100;
        int width = 30, filled = (int)(percent * (unsigned)width / 100);

        fprintf(stderr, "\rcredbroker: uploading [%.*s%*s] %3u%% of %.1f MB", filled,
                "##############################", width - filled, "", percent, (double)total / 1e6);
        if (done >= total)
                fputc('\n', stderr);
        fflush(stderr);
}

/* Through the one delivery flow sendmail uses too (cli/mail-deliver.c): Graph directly, or the
 * broker's spool when Graph or the token endpoint cannot be reached now. */
static int deliver(const struct send_options *o, const uint8_t *mime, size_t len)
{
        struct mail_deliver_result result;
        struct mail_deliver_request request = {
            .socket = client_socket_path(o->target.socket, o->target.config),
            .profile = o->profile,
            .raw = mime,
            .len = len,
            .recipients_from_headers = true,
            /* The administrator wrote the From (or --mailbox) on purpose: Graph decides. */
            .from_policy = MAIL_FROM_KEEP,
            .mailbox = o->mailbox,
            .save_to_sent_items = save_to_sent_items(o),
            .progress = isatty(STDERR_FILENO) ? show_progress : NULL,
        };

        mail_deliver(&request, &result);
        if (result.exit_code != 0)
                fprintf(stderr, "credbroker: %s\n", result.reason);
        else if (result.queued)
                fprintf(stderr, "credbroker: queued in the broker's spool: %s\n", result.reason);
        return result.exit_code;
}

static int run(struct send_options *o)
{
        _cleanup_buf_ struct buf *body = NULL, *html = NULL;
        _cleanup_free_ uint8_t *mime = NULL;
        size_t len = 0;
        const char *text;
        int r;

        r = read_text(o->body_file, &body);
        if (r == 0 && o->html_file)
                r = read_text(o->html_file, &html);
        if (r != 0)
                return r;
        text = (const char *)buf_data(body);
        r = build_message(o, o->html ? NULL : text,
                          o->html ? text
                          : html  ? (const char *)buf_data(html)
                                  : NULL,
                          &mime, &len);
        if (r != 0)
                return r;
        return deliver(o, mime, len);
}

int cmd_send(int argc, char **argv)
{
        struct send_options o = {.profile = NULL};
        int r = parse_options(argc, argv, &o);

        if (r < 0)
                r = check_options(argc, &o);
        if (r < 0)
                r = run(&o);
        send_options_done(&o);
        return r;
}
