/* What the `credbroker account` subcommands share: the prologue of the commands that work with or
 * without the broker (options, the admin socket, the fallback to the token), checking account
 * names, reading a secret from standard input, and the one account view (account show, list). */
#pragma once

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "admin-client.h"
#include "config.h"
#include "options.h"
#include "secret.h"
#include "store.h"

struct account_args;
struct account_target;

/* A command that works through the broker or, when none listens, on the token directly:
 * import, list, show, remove, secret, keygen, cert. account_run() gives it a state (state_size
 * bytes, a copy of defaults or zeroes), parses its options, calls prepare, finds the broker or
 * opens the token, calls run, and last done. */
struct account_command {
        const char *name; /* credbroker account NAME */
        void (*usage)(FILE *f);
        /* The command's own options, ending with {0}, their values stored into the state (their
         * letters are the short options; without a CLI_REQUIRED_* one the command prints usage
         * and exits 64); may be NULL. */
        const struct cli_option *options;
        /* One of the command's own CLI_STORE_NONE options: 0, or an exit code after printing
         * why. */
        int (*option)(int c, const char *arg, void *state);
        bool takes_name; /* one NAME argument, checked with account_name_check() */
        bool json;       /* --json */
        size_t state_size;
        const void *defaults; /* state_size bytes; NULL: zeroes */
        /* After the options, before the broker is asked or the token opened: checks what they
         * left to check and reads what the command needs (a file, standard input; a secret into
         * a->secret). 0 or an exit code after printing why; may be NULL. */
        int (*prepare)(struct account_args *a, void *state);
        /* The work, through the broker (t->admin) or on the token (t->store): 0 or an exit
         * code after printing why. */
        int (*run)(const struct account_args *a, struct account_target *t, void *state);
        /* Frees what options, prepare and run left in the state; may be NULL. */
        void (*done)(void *state);
};

struct account_args {
        const char *name; /* NAME, or NULL */
        const char *config_option;
        const char *admin_socket;
        bool verbose;
        bool json;
        /* The secret prepare read for run (import: the refresh token, secret: the client
         * secret), or NULL; account_run() frees it. */
        struct secret *secret;
};

/* Where the command works: the running broker (admin), else the token (store, with the
 * configuration that names it). */
struct account_target {
        struct admin_conn *admin;
        struct store *store;
        struct config *config;
};

/* Runs cmd: the common options (-v, --admin-socket, --config, --help, --json when the command
 * has it) and the command's own, then prepare, then run on the broker or the token (-v says
 * which). Returns the command's exit code. */
int account_run(const struct account_command *cmd, int argc, char **argv);

/* Prints a clear message and returns false for a name the store would refuse. */
bool account_name_check(const char *name);

/* After the options: exactly one more argument, an account name (account_name_check()). -1 with
 * *ret set, else EXIT_USAGE after printing why (usage on stderr for a missing or extra
 * argument). */
int account_name_arg(int argc, char **argv, void (*usage)(FILE *f), const char **ret);

/* What the work of a command returned, once the command has reported the errors it words
 * itself: an exit code (> 0, the broker path reported it) as it is, 0, or for a negative errno
 * "credbroker: DOING NAME failed: ERROR" and EXIT_SOFTWARE. */
int account_result(int r, const char *doing, const char *name);

/* Reads standard input (at most max bytes, one trailing newline dropped) into a secret, so the
 * value is never on argv or in the environment. -EFBIG when longer, -ENODATA when empty. */
int account_read_secret_stdin(size_t max, struct secret **ret);

/* ---- the account view (cmd-account-show.c) ---- */

/* Prints value as indented JSON: 0 or EXIT_SOFTWARE. */
int account_print_json(const cJSON *value);

/* Prints an account.show object (docs/admin-protocol.md) as text or JSON: whichever path built
 * it, the same object prints the same. 0 or EXIT_SOFTWARE. */
int account_show_print(const cJSON *account, bool json);

/* One row of account list from the account.list row and the account.show object. */
cJSON *account_list_row(const cJSON *listed, const cJSON *shown);
/* Prints the rows as the table (the refresh-token generation last) or as JSON. */
int account_list_print(const cJSON *rows, bool json);

/* The direct path of account show and list: the same objects, built from the token. */
int account_show_direct(struct store *store, const struct config *config, const char *name,
                        bool json);
int account_list_direct(struct store *store, const struct config *config, bool json);

extern const struct account_command account_show_command, account_keygen_command,
    account_cert_command;

int account_add(int argc, char **argv);
int account_login(int argc, char **argv);
int account_test(int argc, char **argv);
