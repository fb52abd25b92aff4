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
#include "graph.h"
#include "json.h"
#include "policy.h"
#include "util.h"
#include "wire.h"

#define ADDRESS_MAX 320

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

static bool address_is_plain(const char *a)
{
        size_t n = strlen(a);
        const char *at = strchr(a, '@');

        if (n == 0 || n > ADDRESS_MAX || !at || at == a || !at[1] || strchr(at + 1, '@'))
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f ||
                    strchr("<>()[]\\,;:\"", a[i]))
                        return false;
        return true;
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

static int send_test_message(const char *name, const char *profile, const char *socket,
                             const char *config_option, const char *to)
{
        _cleanup_(config_freep) struct config *config = NULL;
        _cleanup_json_ cJSON *document = cJSON_CreateObject(), *reply = NULL;
        const char *path = cli_config_path(config_option), *account, *mailbox;
        cJSON *message, *recipients, *entry, *body;
        char host[256] = "this host", content[768], stamp[32];
        char *text;
        int r;

        if (!config_option && access(path, F_OK) < 0 ? config_new_default(&config) < 0
                                                     : config_load(path, true, &config) < 0)
                return EXIT_CONFIG;
        r = client_request_token(client_socket_path(socket, config_option), profile, NULL, 0, 300,
                                 &reply);
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                const char *code = json_get_string(reply, "error");

                if (geteuid() == 0 && code && strcmp(code, "denied") == 0) {
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
        mailbox = json_get_string(reply, "mailbox");
        (void)gethostname(host, sizeof(host) - 1);
        display_time((uint64_t)time(NULL), stamp);
        snprintf(content, sizeof(content),
                 "This is a test message from credbroker on %s, sent at %s through account %s "
                 "and profile %s. If you can read it, the connection works.\n",
                 host, stamp, name, profile);
        message = document ? cJSON_AddObjectToObject(document, "message") : NULL;
        recipients = message ? cJSON_AddArrayToObject(message, "toRecipients") : NULL;
        entry = cJSON_CreateObject();
        if (!recipients || !entry || !cJSON_AddItemToArray(recipients, entry) ||
            !cJSON_AddStringToObject(cJSON_AddObjectToObject(entry, "emailAddress"), "address",
                                     to) ||
            !cJSON_AddStringToObject(message, "subject", "credbroker test message") ||
            !(body = cJSON_AddObjectToObject(message, "body")) ||
            !cJSON_AddStringToObject(body, "contentType", "Text") ||
            !cJSON_AddStringToObject(body, "content", content) ||
            !cJSON_AddBoolToObject(document, "saveToSentItems", false))
                return EXIT_SOFTWARE;
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
        if (r == 0)
                printf("test message to %s accepted by Microsoft Graph\n", to);
        return r;
}

enum { OPT_SEND_TO = 0x100, OPT_ADMIN_SOCKET };

struct test_options {
        cJSON *request; /* account.test, with the scopes asked for */
        cJSON *scopes;
        const char *send_to;
        const char *profile;
        const char *admin_socket;
        const char *socket;
        const char *config;
};

/* One option of account test: 0, or an exit code after saying why. */
static int test_option(struct test_options *o, int c, const char *arg)
{
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
                if (!address_is_plain(arg)) {
                        fprintf(stderr, "credbroker: --send-to wants one mail address\n");
                        return EXIT_USAGE;
                }
                o->send_to = arg;
                break;
        case 'p':
                o->profile = arg;
                break;
        case OPT_ADMIN_SOCKET:
                o->admin_socket = arg;
                break;
        case 'S':
                o->socket = arg;
                break;
        case 'c':
                o->config = arg;
                break;
        case 'h':
                test_usage(stdout);
                return -1;
        default:
                test_usage(stderr);
                return EXIT_USAGE;
        }
        return 0;
}

int account_test(int argc, char **argv)
{
        static const struct option options[] = {
            {"scope", required_argument, NULL, 's'},
            {"send-to", required_argument, NULL, OPT_SEND_TO},
            {"profile", required_argument, NULL, 'p'},
            {"admin-socket", required_argument, NULL, OPT_ADMIN_SOCKET},
            {"socket", required_argument, NULL, 'S'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_json_ cJSON *request = admin_request_new("account.test"), *reply = NULL;
        struct test_options o = {.request = request};
        const char *name;
        int c, r;

        if (!request)
                return EXIT_SOFTWARE;
        while ((c = getopt_long(argc, argv, "s:p:S:c:h", options, NULL)) >= 0) {
                r = test_option(&o, c, optarg);
                if (r != 0)
                        return r < 0 ? 0 : r;
        }
        if (optind + 1 != argc || (o.profile && !o.send_to)) {
                test_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        if (o.profile && !name_is_valid(o.profile)) {
                fprintf(stderr, "credbroker: invalid profile name\n");
                return EXIT_USAGE;
        }
        if (!cJSON_AddStringToObject(request, "account", name))
                return EXIT_SOFTWARE;
        r = admin_call(admin_socket_path(o.admin_socket, o.config), request, &reply);
        if (r != 0)
                return r;
        print_test_reply(name, reply);
        fflush(stdout);
        if (!o.send_to)
                return 0;
        return send_test_message(name, o.profile ? o.profile : name, o.socket, o.config, o.send_to);
}
