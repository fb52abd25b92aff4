/* credbroker ping: is the broker there? For scripts and health checks. */
#include "build-config.h"

#include <getopt.h>
#include <stdio.h>

#include "client.h"
#include "commands.h"
#include "json.h"

int cmd_ping(int argc, char **argv)
{
        static const struct option options[] = {
            {"socket", required_argument, NULL, 'S'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_json_ cJSON *request = cJSON_CreateObject();
        const char *socket = NULL, *config_option = NULL;
        cJSON *reply = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, "S:c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'S':
                        socket = optarg;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        puts("Usage: credbroker ping [--socket PATH] [--config PATH]\n\n"
                             "Checks that the broker answers; exit 69 when it does not.\n"
                             "The socket: --socket, else $CREDBROKER_SOCKET, else the socket of\n"
                             "--config or $CREDBROKER_CONFIG, else " DEFAULT_SOCKET ".");
                        return 0;
                default:
                        fputs("Usage: credbroker ping [--socket PATH] [--config PATH]\n", stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                fputs("Usage: credbroker ping [--socket PATH] [--config PATH]\n", stderr);
                return EXIT_USAGE;
        }
        if (!request || !json_add_uint(request, "v", WIRE_VERSION) ||
            !cJSON_AddStringToObject(request, "op", "ping"))
                return EXIT_SOFTWARE;
        r = client_call(client_socket_path(socket, config_option), request, &reply);
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                r = client_report_error(reply);
        else
                printf("credbrokerd %s is running\n", json_get_string(reply, "version")
                                                          ? json_get_string(reply, "version")
                                                          : "(unknown version)");
        cJSON_Delete(reply);
        return r;
}
