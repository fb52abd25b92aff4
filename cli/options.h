/* The options the broker commands share (--socket, --admin-socket, --config, --help) and the
 * tail of their getopt switch, written once. */
#pragma once

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
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

/* A command or subcommand: credbroker NAME, credbroker account NAME, ... */
struct cli_command {
        const char *name;
        int (*run)(int argc, char **argv); /* argv[0] is NAME; returns the exit code */
};

/* The command of table (n entries) called name, or NULL. */
const struct cli_command *cli_command_find(const struct cli_command *table, size_t n,
                                           const char *name);

/* Before a command looks up its subcommand argv[1]: none prints usage on stderr and returns
 * usage_exit; --help or -h prints it on stdout and returns 0; else -1 (go on). */
int cli_usage_or_help(int argc, char **argv, void (*usage)(FILE *f), int usage_exit);

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

/* ---- options as data: a command's table says where each option's value goes, and one loop
 * (cli_parse) reads argv for every command ---- */

enum cli_store {
        CLI_STORE_NONE,   /* the command's own handler checks and takes it (and 'h': help) */
        CLI_STORE_STRING, /* the argument goes into a char * or const char * member */
        CLI_STORE_FLAG,   /* true goes into a bool member */
};

struct cli_option {
        const char *name;
        int has_arg;
        int val;
        enum cli_store store;
        size_t offset; /* of the member, in the struct the table is for */
        bool required; /* the command refuses to run without it: see cli_missing() */
};

/* --name ARG into type's member (char * or const char *; anything else does not compile). */
#define CLI_ARG(name, val, type, member) CLI_ARG_(name, val, type, member, false)
/* --name sets type's bool member. */
#define CLI_FLAG(name, val, type, member) CLI_FLAG_(name, val, type, member, false)
/* The same, for an option the command cannot do without. */
#define CLI_REQUIRED_ARG(name, val, type, member)  CLI_ARG_(name, val, type, member, true)
#define CLI_REQUIRED_FLAG(name, val, type, member) CLI_FLAG_(name, val, type, member, true)
#define CLI_ARG_(name, val, type, member, required)                                                  \
        {                                                                                            \
                name, required_argument, val,                                                      \
                    _Generic(((type *)0)->member, char *: CLI_STORE_STRING,                        \
                             const char *: CLI_STORE_STRING),                                      \
                    offsetof(type, member), required \
        }
#define CLI_FLAG_(name, val, type, member, required)                                               \
        {                                                                                          \
                name, no_argument, val,                                                            \
                    _Generic(((type *)0)->member, bool                                             \
                             : CLI_STORE_FLAG),                                                    \
                    offsetof(type, member), required                                               \
        }
/* --name for the command's own handler. */
#define CLI_OWN(name, has_arg, val)                                                                \
        {                                                                                          \
                name, has_arg, val, CLI_STORE_NONE, 0, false                                       \
        }
#define CLI_HELP CLI_OWN("help", no_argument, 'h')
/* The shared options into a struct cli_target member of type. */
#define CLI_SOCKET(type, target) CLI_ARG("socket", 'S', type, target.socket)
#define CLI_ADMIN_SOCKET(type, target)                                                             \
        CLI_ARG("admin-socket", CLI_OPT_ADMIN_SOCKET, type, target.admin_socket)
#define CLI_CONFIG(type, target) CLI_ARG("config", 'c', type, target.config)

#define CLI_TABLES_MAX 3

/* How a command reads its options. */
struct cli_parser {
        /* NULL: the letters of the tables' options (val a letter or digit; ':' after those
         * with a required argument). */
        const char *short_options;
        /* Up to CLI_TABLES_MAX tables, each ending with {0} (NULL: none), and where the values of
         * each go. */
        const struct cli_option *options[CLI_TABLES_MAX];
        void *dest[CLI_TABLES_MAX];
        /* A CLI_STORE_NONE option other than 'h': 0, or an exit code after saying why. NULL:
         * none. */
        int (*option)(int c, const char *arg, void *userdata);
        void *userdata;
        void (*usage)(FILE *f);
        int usage_exit; /* after an unknown option or a missing argument */
};

/* True when an option options marks required was not given: its member in dest (filled by
 * cli_parse()) is still NULL or false. */
bool cli_missing(const struct cli_option *options, const void *dest);

/* Reads the options of argv (getopt_long, from optind): -1 when they are read and the command
 * goes on (optind at the first other argument); 0 after --help printed usage on stdout; else an
 * exit code after saying why (usage on stderr for an unknown option or a missing argument). */
int cli_parse(const struct cli_parser *p, int argc, char **argv);

/* cli_parse() for a command with one table: its values and its own options' handler (may be
 * NULL) take dest. */
int cli_parse_one(int argc, char **argv, const char *short_options,
                  const struct cli_option *options, void *dest,
                  int (*option)(int c, const char *arg, void *dest), void (*usage)(FILE *f),
                  int usage_exit);

/* For commands whose only options are --socket or --admin-socket (admin), --config and --help,
 * and which take no other argument: as cli_parse(), into t. */
int cli_parse_target(int argc, char **argv, bool admin, void (*usage)(FILE *f),
                     struct cli_target *t);

/* For such commands that send one request: cli_parse_target(), then {"op":op} to the broker's
 * socket, or its admin socket (admin). As cli_parse(): -1 with *ret the reply of either kind, or
 * an exit code (after saying why). */
int cli_target_call(int argc, char **argv, bool admin, void (*usage)(FILE *f), const char *op,
                    cJSON **ret);
