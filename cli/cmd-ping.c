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
        _cleanup_json_ cJSON *reply = NULL;
        const char *version;
        int r;

        r = cli_target_call(argc, argv, false, usage, "ping", &reply);
        if (r >= 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                return client_report_error(reply);
        version = json_get_string(reply, "version");
        printf("credbrokerd %s is running\n", version ? version : "(unknown version)");
        return 0;
}
