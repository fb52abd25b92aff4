/* credbroker token: print an access token for a profile, for scripts. */
#include "build-config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "commands.h"
#include "config.h"
#include "json.h"
#include "options.h"
#include "util.h"

static void usage(FILE *f)
{
        fputs("Usage: credbroker token -p PROFILE [--scope S]... [--min-ttl SECONDS]\n"
              "                        [--format raw|json|header] [--socket PATH]\n"
              "                        [--config PATH]\n"
              "\n"
              "Prints an access token the broker hands out for PROFILE.\n"
              "\n"
              "  -p, --profile NAME     the policy profile to ask under\n"
              "  -s, --scope S          a scope (repeatable; default: the profile's)\n"
              "  -t, --min-ttl SECONDS  the token must stay valid at least this long\n"
              "  -f, --format FORMAT    raw (the token), json (the broker's reply),\n"
              "                         header (\"Authorization: Bearer ...\")\n"
              "  -S, --socket PATH      broker socket (default $CREDBROKER_SOCKET, else the\n"
              "                         socket of the configuration, else " DEFAULT_SOCKET ")\n"
              "  -c, --config PATH      configuration naming the socket (default\n"
              "                         $CREDBROKER_CONFIG, else " CONFIG_DEFAULT_PATH
              " if readable)\n"
              "\n"
              "Exit: 0 ok, 64 usage, 69 broker not running, 75 try later, 77 denied,\n"
              "78 configuration (unknown profile, account needs an administrator).\n",
              f);
}

int cmd_token(int argc, char **argv)
{
        static const struct option options[] = {
            {"profile", required_argument, NULL, 'p'},
            {"scope", required_argument, NULL, 's'},
            {"min-ttl", required_argument, NULL, 't'},
            {"format", required_argument, NULL, 'f'},
            CLI_OPTION_SOCKET,
            CLI_OPTION_CONFIG,
            CLI_OPTION_HELP,
            {0},
        };
        const char *profile = NULL, *format = "raw";
        struct cli_target target = {0};
        char *scopes[WIRE_MAX_SCOPES];
        size_t n_scopes = 0;
        long min_ttl = -1;
        cJSON *reply = NULL;
        uint32_t ttl;
        int c, r;

        while ((c = getopt_long(argc, argv, "p:s:t:f:S:c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'p':
                        profile = optarg;
                        break;
                case 's':
                        if (n_scopes == WIRE_MAX_SCOPES) {
                                fprintf(stderr, "credbroker: at most %u scopes\n", WIRE_MAX_SCOPES);
                                return EXIT_USAGE;
                        }
                        scopes[n_scopes++] = optarg;
                        break;
                case 't':
                        if (parse_u32(optarg, &ttl) < 0 || ttl > WIRE_MIN_TTL_MAX) {
                                fprintf(stderr, "credbroker: --min-ttl wants 0-%u seconds\n",
                                        WIRE_MIN_TTL_MAX);
                                return EXIT_USAGE;
                        }
                        min_ttl = ttl;
                        break;
                case 'f':
                        format = optarg;
                        break;
                default:
                        r = cli_shared_option(c, &target, usage, EXIT_USAGE);
                        if (r >= 0)
                                return r;
                }
        }
        if (!profile || optind < argc ||
            (strcmp(format, "raw") != 0 && strcmp(format, "json") != 0 &&
             strcmp(format, "header") != 0)) {
                usage(stderr);
                return EXIT_USAGE;
        }

        r = client_get_token(client_socket_path(target.socket, target.config), profile, scopes,
                             n_scopes, min_ttl, &reply);
        if (r != 0)
                return r;
        if (strcmp(format, "json") == 0) {
                char *text = cJSON_PrintUnformatted(reply);
                if (text)
                        printf("%s\n", text);
                json_free_string(text);
        } else {
                printf("%s%s\n", strcmp(format, "header") == 0 ? "Authorization: Bearer " : "",
                       json_get_string(reply, "access_token"));
        }
        cJSON_Delete(reply);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}
