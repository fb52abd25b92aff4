/* The broker commands' shared options; see options.h. */
#include "options.h"

int cli_shared_option(int c, struct cli_target *t, void (*usage)(FILE *f), int usage_exit)
{
        switch (c) {
        case 'S':
                t->socket = optarg;
                return -1;
        case CLI_OPT_ADMIN_SOCKET:
                t->admin_socket = optarg;
                return -1;
        case 'c':
                t->config = optarg;
                return -1;
        case 'h':
                usage(stdout);
                return 0;
        default:
                usage(stderr);
                return usage_exit;
        }
}
