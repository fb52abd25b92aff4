/* The options the broker commands share (--socket, --admin-socket, --config, --help) and the
 * tail of their getopt switch, written once. */
#pragma once

#include <getopt.h>
#include <stdio.h>

/* getopt_long() value of --admin-socket, which has no short form. */
#define CLI_OPT_ADMIN_SOCKET 0x200

#define CLI_OPTION_SOCKET                                                                          \
        {                                                                                          \
                "socket", required_argument, NULL, 'S'                                             \
        }
#define CLI_OPTION_ADMIN_SOCKET                                                                    \
        {                                                                                          \
                "admin-socket", required_argument, NULL, CLI_OPT_ADMIN_SOCKET                      \
        }
#define CLI_OPTION_CONFIG                                                                          \
        {                                                                                          \
                "config", required_argument, NULL, 'c'                                             \
        }
#define CLI_OPTION_HELP                                                                            \
        {                                                                                          \
                "help", no_argument, NULL, 'h'                                                     \
        }

/* Where a command finds the broker: the arguments of the options above, NULL when not given. */
struct cli_target {
        const char *socket;
        const char *admin_socket;
        const char *config;
};

/* For the default: branch of a command's getopt switch. Takes 'S', CLI_OPT_ADMIN_SOCKET and 'c'
 * into t and returns -1 (parsing goes on); for 'h' prints usage on stdout and returns 0; for
 * anything else (an unknown option, a missing argument) prints usage on stderr and returns
 * usage_exit. */
int cli_shared_option(int c, struct cli_target *t, void (*usage)(FILE *f), int usage_exit);
