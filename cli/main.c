/* credbroker: the command-line client. Dispatches to one command per file. */
#include "build-config.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "hardening.h"
#include "json.h"
#include "log.h"
#include "options.h"

const char *cli_config_path(const char *option)
{
        const char *env;

        if (option)
                return option;
        env = secure_getenv("CREDBROKER_CONFIG");
        return env && *env ? env : CONFIG_DEFAULT_PATH;
}

/* The configuration's socket and admin_socket, read once (the CLI runs one command). */
static bool configured_loaded;
static char *configured_socket, *configured_admin_socket;

static void load_configured_sockets(const char *config_option)
{
        _cleanup_(config_freep) struct config *config = NULL;
        const char *path = cli_config_path(config_option), *env;

        if (configured_loaded)
                return;
        configured_loaded = true;
        /* The default configuration is optional (a client machine may have none, or one only
         * root reads): the built-in defaults apply then, silently. One named by --config or
         * $CREDBROKER_CONFIG that cannot be read is reported, and the defaults apply too. */
        env = secure_getenv("CREDBROKER_CONFIG");
        if (!config_option && !(env && *env) && access(path, R_OK) < 0)
                return;
        if (config_load(path, true, &config) < 0)
                return;
        configured_socket = TAKE_PTR(config->socket_path);
        configured_admin_socket = TAKE_PTR(config->admin_socket_path);
}

const char *cli_configured_socket(const char *config_option, bool admin)
{
        load_configured_sockets(config_option);
        return admin ? configured_admin_socket : configured_socket;
}

const char *cli_socket_from_config(enum credbroker_socket which, void *config_option)
{
        return cli_configured_socket(config_option, which == CREDBROKER_SOCKET_ADMIN);
}

/* Run through a symlink named sendmail (or mailq, newaliases): the sendmail command, with
 * argv[0] telling it which. */
static bool invoked_as_sendmail(const char *argv0)
{
        const char *base = argv0 ? strrchr(argv0, '/') : NULL;

        base = base ? base + 1 : argv0;
        return base && (strcmp(base, "sendmail") == 0 || strcmp(base, "mailq") == 0 ||
                        strcmp(base, "newaliases") == 0);
}

static void usage(FILE *f)
{
        fputs("Usage: credbroker COMMAND [OPTIONS]\n"
              "\n"
              "Commands:\n"
              "  token     print an access token for a profile\n"
              "  send      send mail through Microsoft Graph with a brokered token\n"
              "  sendmail  a drop-in sendmail(8) for cron and other programs (docs/mail.md)\n"
              "  account   add, sign in, test, list and remove accounts (administrators)\n"
              "  status    each account's state, as a monitoring check (administrators)\n"
              "  reload    make the broker reload its policy (administrators)\n"
              "  queue     list, show, flush and delete spooled mail (administrators)\n"
              "  store     move accounts between credential-store backends (administrators)\n"
              "  ping      check that the broker is running\n"
              "  policy    check, dry-run and show the policy (credbroker-policy(5))\n"
              "  audit     query, summarise and verify the audit log\n"
              "\n"
              "Run \"credbroker COMMAND --help\" for a command's options.\n",
              f);
}

int main(int argc, char **argv)
{
        static const struct cli_command commands[] = {
            {"token", cmd_token},   {"send", cmd_send},         {"account", cmd_account},
            {"ping", cmd_ping},     {"policy", cmd_policy},     {"status", cmd_status},
            {"reload", cmd_reload}, {"setup", cmd_setup},       {"queue", cmd_queue},
            {"audit", cmd_audit},   {"sendmail", cmd_sendmail}, {"store", cmd_store},
        };
        const struct cli_command *c;
        bool as_sendmail = argc > 0 && invoked_as_sendmail(argv[0]);
        int r;

        log_set_ident("credbroker");
        log_set_level(LOG_LEVEL_WARNING);
        r = as_sendmail ? -1 : cli_usage_or_help(argc, argv, usage, EXIT_USAGE);
        if (r >= 0)
                return r;
        if (!as_sendmail && strcmp(argv[1], "--version") == 0) {
                printf("credbroker %s\n", PACKAGE_VERSION);
                return 0;
        }
        /* The CLI holds tokens too: no core dumps, no ptrace by other processes. */
        if (harden_process() < 0)
                return EXIT_SOFTWARE;
        json_init();
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return EXIT_SOFTWARE;
        c = cli_command_find(commands, ELEMENTSOF(commands), as_sendmail ? "sendmail" : argv[1]);
        /* As sendmail, argv[0] stays: sendmail, mailq or newaliases tell the command which. */
        r = !c ? EXIT_USAGE : as_sendmail ? c->run(argc, argv) : c->run(argc - 1, argv + 1);
        if (!c)
                fprintf(stderr, "credbroker: unknown command \"%.40s\"; see credbroker --help\n",
                        argv[1]);
        curl_global_cleanup();
        return r;
}
