/* credbroker reload (also "credbroker policy reload"): asks the running broker to reload its
 * configuration and policy through the admin socket; a broken file keeps the old policy. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin-client.h"
#include "client.h"
#include "commands.h"
#include "json.h"
#include "options.h"
#include "wire.h"

static void usage(FILE *f)
{
        fputs("Usage: credbroker reload [--admin-socket PATH] [--config PATH]\n"
              "       credbroker policy reload [...]\n"
              "\n"
              "Makes the running broker reload its policy. A broken file keeps the old policy\n"
              "and the broker's message names the first file:line with a problem.\n"
              "\n"
              "Exit: 0 reloaded, 64 usage, 69 broker not running, 77 no permission,\n"
              "78 the new policy has an error (the old one stays in force).\n",
              f);
}

int cmd_reload(int argc, char **argv)
{
        _cleanup_json_ cJSON *reply = NULL;
        uint64_t profiles;
        int r;

        r = cli_target_call(argc, argv, true, usage, "reload", &reply);
        if (r >= 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                enum admin_error code;

                r = admin_report_error(reply);
                /* Unless the broker could not be asked at all, a refused reload is an error in
                 * the new files: the old policy stays in force. */
                if (r == EXIT_NOPERM || r == EXIT_TEMPFAIL ||
                    (admin_error_from_string(json_get_string(reply, "error"), &code) == 0 &&
                     code == ADMIN_UNKNOWN_OP))
                        return r;
                return EXIT_CONFIG;
        }
        if (json_get_u64(reply, "profiles", &profiles) == 0)
                printf("Reloaded the policy: %llu profile%s.\n", (unsigned long long)profiles,
                       profiles == 1 ? "" : "s");
        else
                printf("Reloaded the policy.\n");
        return 0;
}
