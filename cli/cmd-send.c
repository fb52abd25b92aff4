/* credbroker send: mail a message through Microsoft Graph with a token from the broker. */
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
#include "commands.h"
#include "config.h"
#include "graph.h"
#include "json.h"
#include "log.h"
#include "options.h"
#include "util.h"

/* Graph refuses requests above 4 MB; the JSON envelope needs some of that. */
#define BODY_MAX       (3 * 1024 * 1024)
#define MAX_RECIPIENTS 500
#define ADDRESS_MAX    320

static void usage(FILE *f)
{
        fputs("Usage: credbroker send -p PROFILE --to ADDR[,ADDR...] [--cc ...] [--bcc ...]\n"
              "                       --subject TEXT [--body-file FILE] [--html]\n"
              "                       [--mailbox UPN] [--socket PATH] [--config PATH]\n"
              "\n"
              "Sends a message through Microsoft Graph with a token from the broker. The body\n"
              "is read from FILE, or from standard input.\n"
              "\n"
              "  -p, --profile NAME   the policy profile to ask under\n"
              "      --to, --cc, --bcc ADDRS  recipients, comma separated, repeatable\n"
              "  -s, --subject TEXT   subject line\n"
              "  -b, --body-file F    message body (default: standard input)\n"
              "      --html           the body is HTML (default: plain text)\n"
              "  -m, --mailbox UPN    mailbox to send as (default: the account's mailbox)\n"
              "  -S, --socket PATH    broker socket\n"
              "  -c, --config PATH    configuration with the Graph URL and CA bundle\n"
              "                       (default $CREDBROKER_CONFIG or " CONFIG_DEFAULT_PATH ")\n",
              f);
}

static bool address_is_valid(const char *a)
{
        size_t n = strlen(a);
        const char *at = strchr(a, '@');

        if (n == 0 || n > ADDRESS_MAX || !at || at == a || !at[1] || strchr(at + 1, '@'))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)a[i];
                if (c <= 0x20 || c == 0x7f || strchr("<>()[]\\,;:\"", c))
                        return false;
        }
        return true;
}

/* Adds every comma-separated address of list to the recipients array. */
static int add_recipients(cJSON *array, const char *list, size_t *count)
{
        _cleanup_free_ char *copy = strdup(list);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *a = strtok_r(copy, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
                cJSON *entry, *email;

                size_t len;

                /* Spaces around an address are trimmed; one inside it makes it invalid, so no
                 * recipient is ever silently dropped. */
                while (*a == ' ')
                        a++;
                len = strlen(a);
                while (len > 0 && a[len - 1] == ' ')
                        a[--len] = 0;
                if (!address_is_valid(a)) {
                        fprintf(stderr, "credbroker: not a valid mail address: \"%.80s\"\n", a);
                        return -EINVAL;
                }
                if (++*count > MAX_RECIPIENTS) {
                        fprintf(stderr, "credbroker: at most %d recipients\n", MAX_RECIPIENTS);
                        return -EINVAL;
                }
                entry = cJSON_CreateObject();
                email = entry ? cJSON_AddObjectToObject(entry, "emailAddress") : NULL;
                if (!email || !cJSON_AddStringToObject(email, "address", a) ||
                    !cJSON_AddItemToArray(array, entry)) {
                        cJSON_Delete(entry);
                        return -ENOMEM;
                }
        }
        return 0;
}

static int read_body(const char *path, struct buf **ret)
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
                fprintf(stderr, "credbroker: the body is larger than %d bytes\n", BODY_MAX);
                return EXIT_DATAERR;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot read the body: %s\n", strerror(-r));
                return EXIT_NOINPUT;
        }
        if (buf_put(body, "", 1) < 0)
                return EXIT_SOFTWARE;
        if (!utf8_is_valid(buf_data(body), buf_len(body) - 1)) {
                fprintf(stderr, "credbroker: the body is not valid UTF-8 text\n");
                return EXIT_DATAERR;
        }
        *ret = TAKE_PTR(body);
        return 0;
}

/* Graph URL and CA bundle come from the configuration when there is one. */
static int load_client_config(const char *option, struct config **ret)
{
        const char *path = cli_config_path(option);

        if (!option && access(path, F_OK) < 0 && errno == ENOENT)
                return config_new_default(ret) < 0 ? EXIT_SOFTWARE : 0;
        return config_load(path, true, ret) < 0 ? EXIT_CONFIG : 0;
}

struct send_options {
        struct cli_target target;
        const char *profile, *subject, *body_file, *mailbox;
        bool html;
        cJSON *to, *cc, *bcc; /* the recipient arrays, in the message being built */
        size_t n_recipients, n_to;
};

/* -1 when the command goes on, else its exit code. */
static int parse_options(int argc, char **argv, struct send_options *o)
{
        enum { OPT_TO = 0x100, OPT_CC, OPT_BCC, OPT_HTML };
        static const struct option options[] = {
            {"profile", required_argument, NULL, 'p'},
            {"to", required_argument, NULL, OPT_TO},
            {"cc", required_argument, NULL, OPT_CC},
            {"bcc", required_argument, NULL, OPT_BCC},
            {"subject", required_argument, NULL, 's'},
            {"body-file", required_argument, NULL, 'b'},
            {"html", no_argument, NULL, OPT_HTML},
            {"mailbox", required_argument, NULL, 'm'},
            CLI_OPTION_SOCKET,
            CLI_OPTION_CONFIG,
            CLI_OPTION_HELP,
            {0},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "p:s:b:m:S:c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'p':
                        o->profile = optarg;
                        break;
                case OPT_TO:
                case OPT_CC:
                case OPT_BCC:
                        r = add_recipients(c == OPT_TO   ? o->to
                                           : c == OPT_CC ? o->cc
                                                         : o->bcc,
                                           optarg, &o->n_recipients);
                        if (r < 0)
                                return r == -ENOMEM ? EXIT_SOFTWARE : EXIT_USAGE;
                        if (c == OPT_TO)
                                o->n_to = (size_t)cJSON_GetArraySize(o->to);
                        break;
                case 's':
                        o->subject = optarg;
                        break;
                case 'b':
                        o->body_file = optarg;
                        break;
                case OPT_HTML:
                        o->html = true;
                        break;
                case 'm':
                        o->mailbox = optarg;
                        break;
                default:
                        r = cli_shared_option(c, &o->target, usage, EXIT_USAGE);
                        if (r >= 0)
                                return r;
                }
        }
        return -1;
}

/* -1 when the options make a message, else the exit code after saying why not. */
static int check_options(int argc, const struct send_options *o)
{
        if (!o->profile || !o->subject || o->n_to == 0 || optind < argc) {
                fprintf(stderr, "credbroker: send needs -p PROFILE, --to and --subject\n");
                usage(stderr);
                return EXIT_USAGE;
        }
        if (!utf8_is_valid((const uint8_t *)o->subject, strlen(o->subject))) {
                fprintf(stderr, "credbroker: the subject is not valid UTF-8 text\n");
                return EXIT_USAGE;
        }
        if (o->mailbox && !address_is_valid(o->mailbox)) {
                fprintf(stderr, "credbroker: --mailbox wants a user principal name\n");
                return EXIT_USAGE;
        }
        return -1;
}

/* Completes Graph's sendMail document: subject, body, no empty recipient lists. */
static int finish_document(cJSON *document, cJSON *message, const struct send_options *o,
                           const struct buf *body)
{
        cJSON *content;

        /* Graph wants absent lists rather than empty ones. */
        if (cJSON_GetArraySize(o->cc) == 0)
                cJSON_DeleteItemFromObjectCaseSensitive(message, "ccRecipients");
        if (cJSON_GetArraySize(o->bcc) == 0)
                cJSON_DeleteItemFromObjectCaseSensitive(message, "bccRecipients");
        content = cJSON_AddObjectToObject(message, "body");
        if (!content || !cJSON_AddStringToObject(message, "subject", o->subject) ||
            !cJSON_AddStringToObject(content, "contentType", o->html ? "HTML" : "Text") ||
            !cJSON_AddStringToObject(content, "content", (const char *)buf_data(body)) ||
            !cJSON_AddBoolToObject(document, "saveToSentItems", true))
                return -ENOMEM;
        return 0;
}

int cmd_send(int argc, char **argv)
{
        _cleanup_json_ cJSON *document = cJSON_CreateObject();
        _cleanup_json_ cJSON *reply = NULL;
        _cleanup_(config_freep) struct config *config = NULL;
        _cleanup_buf_ struct buf *body = NULL;
        struct send_options o = {.profile = NULL};
        const char *mailbox;
        cJSON *message;
        char *text;
        int r;

        message = document ? cJSON_AddObjectToObject(document, "message") : NULL;
        o.to = message ? cJSON_AddArrayToObject(message, "toRecipients") : NULL;
        o.cc = message ? cJSON_AddArrayToObject(message, "ccRecipients") : NULL;
        o.bcc = message ? cJSON_AddArrayToObject(message, "bccRecipients") : NULL;
        if (!o.bcc)
                return EXIT_SOFTWARE;
        r = parse_options(argc, argv, &o);
        if (r < 0)
                r = check_options(argc, &o);
        if (r >= 0)
                return r;
        r = load_client_config(o.target.config, &config);
        if (r == 0)
                r = read_body(o.body_file, &body);
        if (r != 0)
                return r;
        if (finish_document(document, message, &o, body) < 0)
                return EXIT_SOFTWARE;

        r = client_get_token(client_socket_path(o.target.socket, o.target.config), o.profile, NULL,
                             0, 300, &reply);
        if (r != 0)
                return r;
        mailbox = o.mailbox ? o.mailbox : json_get_string(reply, "mailbox");
        text = cJSON_PrintUnformatted(document);
        if (!text)
                return EXIT_SOFTWARE;
        r = graph_send_mail(&(struct graph_request){
            .graph_base = graph_base_of(reply, config->graph_url),
            .ca_bundle = config->ca_bundle,
            .mailbox = mailbox,
            .access_token = json_get_string(reply, "access_token"),
            .body = text,
        });
        json_free_string(text);
        return r;
}
