/* The CLI's commands; each parses its own options and returns a sysexits.h code. */
#pragma once

#include <stdbool.h>

#include "credbroker.h"

int cmd_token(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_account(int argc, char **argv);
int cmd_ping(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_reload(int argc, char **argv);
int cmd_setup(int argc, char **argv);
int cmd_sendmail(int argc, char **argv);
int cmd_store(int argc, char **argv); /* cmd-store.c: store migrate */
int cmd_queue(int argc, char **argv); /* cmd-queue.c; queue.h for sendmail -bp / -q */

/* The configuration for commands that need one: --config, else $CREDBROKER_CONFIG, else the
 * default path. */
const char *cli_config_path(const char *option);

/* The socket (admin false) or admin_socket (admin true) the configuration chosen as above
 * names, or NULL when no configuration applies (none at the default path, or unreadable). */
const char *cli_configured_socket(const char *config_option, bool admin);

/* libcredbroker's configured-socket lookup over cli_configured_socket(): config_option is the
 * --config argument (or NULL). */
const char *cli_socket_from_config(enum credbroker_socket which, void *config_option);
