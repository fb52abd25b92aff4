/* credbroker account test: "save and test the connection". Asks the broker (account.test) for a
 * token of the account and prints its scopes and expiry, never the token; with --send-to also
 * mails a test message through Graph with a token from the client socket, under a policy
 * profile, which tests the whole path a job will use. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin-client.h"
#include "client.h"
#include "cmd-account.h"
#include "commands.h"
#include "config.h"
#include "display.h"
#include "graph-send.h"
#include "json.h"
#include "mail.h"
#include "mime.h"
#include "options.h"
#include "policy.h"
#include "util.h"
#include "wire.h"

static void test_usage(FILE *f)
{
        fputs("Usage: credbroker account test NAME [--scope S]... [--send-to ADDR [-p PROFILE]]\n"
              "                              [--admin-socket PATH] [--socket PATH]\n"
              "                              [--config PATH]\n"
              "\n"
              "Has the running broker obtain a token for the account (from its cache or from\n"
              "Microsoft) and prints the token's scopes and expiry, never the token.\n"
              "--send-to also sends a test message to ADDR through Microsoft Graph, with a\n"
              "token asked for under the policy profile PROFILE (default: NAME) on the client\n"
              "socket, exactly as a job would.\n"
              "\n"
              "Exit: 0 ok, 64 usage, 66 no such account, 69 broker not running, 75 try again,\n"
              "77 denied (profile or Graph), 78 the account needs an administrator.\n",
              f);
}

static void print_test_reply(const char *name, const cJSON *reply)
{
        const cJSON *scopes = cJSON_GetObjectItemCaseSensitive(reply, "scopes");
        const char *mailbox = json_get_string(reply, "mailbox");
        const cJSON *scope;
        uint64_t expires_at;
        char when[32], relative[32];

        printf("account %s: the broker obtained a token\n", name);
        fputs("  scopes:      ", stdout);
        cJSON_ArrayForEach(scope, scopes)
        {
                if (!cJSON_IsString(scope))
                        continue;
                display_text(stdout, scope->valuestring);
                fputc(' ', stdout);
        }
        fputc('\n', stdout);
        if (json_get_u64(reply, "expires_at", &expires_at) == 0) {
                display_time(expires_at, when);
                display_relative(expires_at, (uint64_t)time(NULL), relative);
                printf("  expires:     %s (%s)\n", when, relative);
        }
        if (mailbox) {
                fputs("  mailbox:     ", stdout);
                display_text(stdout, mailbox);
                fputc('\n', stdout);
        }
}

/* Root was denied the test token: say whether the profile's own rules refuse uid 0 (a dry run
 * of its peer rules, as "credbroker policy test" does) and how to test instead. */
static void explain_root_denial(const char *name, const char *profile, const struct config *config)
{
        _cleanup_(policy_set_freep) struct policy_set *set = NULL;
        const struct policy_profile *p = NULL;
        struct policy_peer peer = {.uid = 0, .gid = 0, .pid = getpid()};
        struct policy_decision d = {0};

        if (config->policy_dir && policy_set_load(config->policy_dir, &set) == 0)
                p = policy_set_find(set, profile);
        if (p) {
                policy_evaluate_peer(
                    p, &peer, &(struct policy_time){.wall = time(NULL), .monotonic_usec = 0}, &d);
        }
        if (p && d.verdict != POLICY_ALLOW)
                fprintf(stderr,
                        "credbroker: profile %s does not allow uid 0 (root): its rule %s denies "
                        "it, so the broker refused the test token.\n",
                        profile, d.rule);
        else
                fprintf(stderr,
                        "credbroker: the broker denied root (uid 0) a token for profile %s.\n",
                        profile);
        fprintf(stderr,
                "credbroker: to send the test message, give -p PROFILE naming a profile of "
                "account %s that allows root, or run it as the job's user: credbroker token -p "
                "%s (or credbroker send) as that user.\n",
                name, profile);
}

/* The test message, text/plain, From the account's mailbox (NULL: Graph fills it in) to to: 0
 * with *ret, or an exit code after saying why. */
static int test_message(const char *name, const char *profile, const char *from, const char *to,
                        uint8_t **ret, size_t *ret_len)
{
        char host[256] = "this host", content[768], stamp[32];
        char *recipients[] = {(char *)to};
        _cleanup_free_ char *error = NULL;
        int r;

        (void)gethostname(host, sizeof(host) - 1);
        display_time((uint64_t)time(NULL), stamp);
        snprintf(content, sizeof(content),
                 "This is a test message from credbroker on %s, sent at %s through account %s "
                 "and profile %s. If you can read it, the connection works.\n",
                 host, stamp, name, profile);
        r = mail_build(&(struct mail_build_spec){.from = from,
                                                 .subject = "credbroker test message",
                                                 .text = content,
                                                 .to = recipients,
                                                 .n_to = 1},
                       ret, ret_len, &error);
        if (r >= 0)
                return 0;
        fprintf(stderr, "credbroker: cannot build the test message: %s\n",
                error ? error : strerror(-r));
        return r == -ENOMEM ? EXIT_SOFTWARE : EXIT_DATAERR;
}

/* A token of the account for profile from the client socket: 0 with *ret set, or an exit code
 * after saying why. */
static int test_token(const char *name, const char *profile, const char *socket,
                      const struct config *config, const char *config_option, cJSON **ret)
{
        _cleanup_json_ cJSON *reply = NULL;
        const char *account;
        enum wire_error code;
        int r;

        r = client_request_token(client_socket_path(socket, config_option), profile, NULL, 0, 300,
                                 &reply);
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                if (geteuid() == 0 && json_get_string(reply, "error") &&
                    wire_error_from_string(json_get_string(reply, "error"), &code) == 0 &&
                    code == WIRE_DENIED) {
                        explain_root_denial(name, profile, config);
                        return EXIT_NOPERM;
                }
                return client_report_error(reply);
        }
        if (!json_get_string(reply, "access_token")) {
                fprintf(stderr, "credbroker: the broker's reply has no access token\n");
                return EXIT_SOFTWARE;
        }
        account = json_get_string(reply, "account");
        if (!account || strcmp(account, name) != 0) {
                fprintf(stderr,
                        "credbroker: profile %s draws on another account; give -p with a profile "
                        "of account %s\n",
                        profile, name);
                return EXIT_USAGE;
        }
        *ret = TAKE_PTR(reply);
        return 0;
}

/* Where to send: the broker's token reply names the account's Graph (its cloud's, "graph"), an
 * older broker does not: then the configured one. */
static const char *graph_base_of(const cJSON *reply, const char *configured)
{
        const char *graph = json_get_string(reply, "graph");

        /* The same check as the broker's for an account's graph: https:// and bounded. */
        if (graph && strncmp(graph, "https://", 8) == 0 && strlen(graph) < 512 &&
            !strpbrk(graph, " \t\r\n"))
                return graph;
        return configured;
}

/* The exit code of Graph's answer, by its HTTP status as ever: 0 sent, 75 not reached or
 * unavailable (429, 5xx), 77 the token refused (401, 403), 65 the message refused (400, 413),
 * 69 any other answer. */
static int graph_exit_code(const struct graph_mail_outcome *o)
{
        long s = o->http_status;

        if (o->result == GRAPH_MAIL_SENT)
                return 0;
        if (s == 0)
                return o->result == GRAPH_MAIL_PERMANENT ? EXIT_DATAERR : EXIT_TEMPFAIL;
        if (s == 429 || s >= 500)
                return EXIT_TEMPFAIL;
        if (s == 401 || s == 403)
                return EXIT_NOPERM;
        if (s == 400 || s == 413)
                return EXIT_DATAERR;
        return EXIT_UNAVAILABLE;
}

/* Sends the message with the token of reply, as the account's mailbox, to its Graph (sendMail
 * with the MIME message: one request, Mail.Send only): 0, or an exit code after saying why. */
static int graph_send(const struct config *config, const cJSON *reply, const uint8_t *message,
                      size_t len)
{
        const cJSON *delegated = cJSON_GetObjectItemCaseSensitive(reply, "delegated");
        const char *mailbox = json_get_string(reply, "mailbox");
        struct graph_mail_target t = {
            .graph_url = graph_base_of(reply, config->graph_url),
            .ca_file = config->ca_bundle,
            .mailbox = mailbox,
            /* An older broker does not say: /me when it names no mailbox, as before. */
            .delegated = delegated ? cJSON_IsTrue(delegated) : !mailbox,
            .from = mailbox,
            /* Kept in Sent Items: leaving it out takes a draft, which needs Mail.ReadWrite. */
            .save_to_sent_items = true,
        };
        struct graph_mail_outcome o = {0};
        int r;

        r = graph_mail_send(&t, json_get_string(reply, "access_token"), message, len, NULL, NULL,
                            &o);
        if (r == -EINVAL && !t.delegated && !t.mailbox) {
                fprintf(stderr, "credbroker: the broker's reply names no mailbox to send as with "
                                "an app-only token (account add --mailbox)\n");
                return EXIT_DATAERR;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot send the test message: %s\n", strerror(-r));
                return EXIT_SOFTWARE;
        }
        r = graph_exit_code(&o);
        if (r != 0)
                fprintf(stderr, "credbroker: %s\n", o.reason);
        return r;
}

static int send_test_message(const char *name, const char *profile, const char *socket,
                             const char *config_option, const char *to)
{
        _cleanup_(config_freep) struct config *config = NULL;
        _cleanup_json_ cJSON *reply = NULL;
        _cleanup_free_ uint8_t *message = NULL;
        const char *path = cli_config_path(config_option);
        size_t len = 0;
        int r;

        if (!config_option && access(path, F_OK) < 0 ? config_new_default(&config) < 0
                                                     : config_load(path, true, &config) < 0)
                return EXIT_CONFIG;
        r = test_token(name, profile, socket, config, config_option, &reply);
        if (r != 0)
                return r;
        r = test_message(name, profile, json_get_string(reply, "mailbox"), to, &message, &len);
        if (r != 0)
                return r;
        r = graph_send(config, reply, message, len);
        if (r == 0)
                printf("test message to %s accepted by Microsoft Graph\n", to);
        return r;
}

enum { OPT_SEND_TO = 0x100 };

struct test_options {
        cJSON *request; /* account.test, with the scopes asked for */
        cJSON *scopes;
        const char *send_to;
        const char *profile;
        struct cli_target target; /* --admin-socket, --socket, --config */
};

/* The options of account test checked as they are read: 0, or an exit code after saying why. */
static int test_option(int c, const char *arg, void *userdata)
{
        struct test_options *o = userdata;

        switch (c) {
        case 's':
                if (!o->scopes)
                        o->scopes = cJSON_AddArrayToObject(o->request, "scopes");
                if (!scope_is_valid(arg) || cJSON_GetArraySize(o->scopes) >= (int)WIRE_MAX_SCOPES) {
                        fprintf(stderr, "credbroker: at most %u valid scopes\n", WIRE_MAX_SCOPES);
                        return EXIT_USAGE;
                }
                if (!cJSON_AddItemToArray(o->scopes, cJSON_CreateString(arg)))
                        return EXIT_SOFTWARE;
                break;
        case OPT_SEND_TO:
                if (!mail_address_is_valid(arg, true)) {
                        fprintf(stderr, "credbroker: --send-to wants one mail address\n");
                        return EXIT_USAGE;
                }
                o->send_to = arg;
                break;
        }
        return 0;
}

int account_test(int argc, char **argv)
{
        static const struct cli_option options[] = {
            CLI_OWN("scope", required_argument, 's'),
            CLI_OWN("send-to", required_argument, OPT_SEND_TO),
            CLI_ARG("profile", 'p', struct test_options, profile),
            CLI_ADMIN_SOCKET(struct test_options, target),
            CLI_SOCKET(struct test_options, target),
            CLI_CONFIG(struct test_options, target),
            CLI_HELP,
            {0},
        };
        _cleanup_json_ cJSON *request = admin_request_new("account.test"), *reply = NULL;
        struct test_options o = {.request = request};
        const char *name;
        int r;

        if (!request)
                return EXIT_SOFTWARE;
        r = cli_parse_one(argc, argv, "s:p:S:c:h", options, &o, test_option, test_usage,
                          EXIT_USAGE);
        if (r >= 0)
                return r;
        if (o.profile && !o.send_to) {
                test_usage(stderr);
                return EXIT_USAGE;
        }
        r = account_name_arg(argc, argv, test_usage, &name);
        if (r >= 0)
                return r;
        if (o.profile && !name_is_valid(o.profile)) {
                fprintf(stderr, "credbroker: invalid profile name\n");
                return EXIT_USAGE;
        }
        if (!cJSON_AddStringToObject(request, "account", name))
                return EXIT_SOFTWARE;
        r = admin_call(admin_socket_path(o.target.admin_socket, o.target.config), request, &reply);
        if (r != 0)
                return r;
        print_test_reply(name, reply);
        fflush(stdout);
        if (!o.send_to)
                return 0;
        return send_test_message(name, o.profile ? o.profile : name, o.target.socket,
                                 o.target.config, o.send_to);
}
