/* credbroker ping: is the broker there? For scripts and health checks. */
#include "build-config.h"

#include <getopt.h>
#include <stdio.h>

#include "client.h"
#include "commands.h"
#include "json.h"
#include "options.h"

static void usage(FILE *f)
{
        if (f != stdout) {
                fputs("Usage: credbroker ping [--socket PATH] [--config PATH]\n", f);
                return;
        }
        puts("Usage: credbroker ping [--socket PATH] [--config PATH]\n\n"
             "Checks that the broker answers; exit 69 when it does not.\n"
             "The socket: --socket, else $CREDBROKER_SOCKET, else the socket of\n"
             "--config or $CREDBROKER_CONFIG, else " DEFAULT_SOCKET ".");
}

int cmd_ping(int argc, char **argv)
{
        _cleanup_json_ cJSON *request = credbroker_request_new("ping");
        struct cli_target target = {0};
        cJSON *reply = NULL;
        int r;

        r = cli_parse_target(argc, argv, false, usage, &target);
        if (r >= 0)
                return r;
        if (!request)
                return EXIT_SOFTWARE;
        r = client_call(client_socket_path(target.socket, target.config), request, &reply);
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
