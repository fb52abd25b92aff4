/* The broker commands' shared options; see options.h. */
#include "options.h"

#include <ctype.h>
#include <string.h>

#include "admin-client.h"
#include "client.h"
#include "credbroker.h"
#include "json.h"

const struct cli_command *cli_command_find(const struct cli_command *table, size_t n,
                                           const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(name, table[i].name) == 0)
                        return &table[i];
        return NULL;
}

int cli_usage_or_help(int argc, char **argv, void (*usage)(FILE *f), int usage_exit)
{
        if (argc < 2) {
                usage(stderr);
                return usage_exit;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(stdout);
                return 0;
        }
        return -1;
}

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

/* Stores c's value where its entry in options says: true when options has c with a store. */
static bool store_option(const struct cli_option *options, void *dest, int c, char *arg)
{
        for (const struct cli_option *o = options; o && o->name; o++) {
                if (o->val != c || o->store == CLI_STORE_NONE)
                        continue;
                if (o->store == CLI_STORE_STRING)
                        memcpy((char *)dest + o->offset, &arg, sizeof(arg));
                else
                        *(bool *)((char *)dest + o->offset) = true;
                return true;
        }
        return false;
}

bool cli_missing(const struct cli_option *options, const void *dest)
{
        for (const struct cli_option *o = options; o && o->name; o++) {
                const char *member = (const char *)dest + o->offset, *value = NULL;

                if (!o->required || o->store == CLI_STORE_NONE)
                        continue;
                if (o->store == CLI_STORE_FLAG && !*(const bool *)member)
                        return true;
                if (o->store == CLI_STORE_STRING)
                        memcpy(&value, member, sizeof(value));
                if (o->store == CLI_STORE_STRING && !value)
                        return true;
        }
        return false;
}

#define GETOPT_OPTIONS_MAX 40

/* The getopt_long() tables of p's options, and the short options string when p has none. */
static int getopt_tables(const struct cli_parser *p, struct option options[GETOPT_OPTIONS_MAX],
                         char shorts[3 * GETOPT_OPTIONS_MAX + 1])
{
        size_t n = 0, k = 0;

        for (size_t t = 0; t < CLI_TABLES_MAX; t++)
                for (const struct cli_option *o = p->options[t]; o && o->name; o++) {
                        if (n + 1 >= GETOPT_OPTIONS_MAX)
                                return EXIT_SOFTWARE;
                        options[n++] = (struct option){o->name, o->has_arg, NULL, o->val};
                        if (o->val > 0 && o->val < 128 && isalnum(o->val)) {
                                shorts[k++] = (char)o->val;
                                if (o->has_arg != no_argument)
                                        shorts[k++] = ':';
                                if (o->has_arg == optional_argument)
                                        shorts[k++] = ':';
                        }
                }
        options[n] = (struct option){0};
        shorts[k] = '\0';
        return 0;
}

int cli_parse(const struct cli_parser *p, int argc, char **argv)
{
        struct option options[GETOPT_OPTIONS_MAX];
        char shorts[3 * GETOPT_OPTIONS_MAX + 1];
        int c, r;

        if (getopt_tables(p, options, shorts) != 0)
                return EXIT_SOFTWARE;
        while ((c = getopt_long(argc, argv, p->short_options ? p->short_options : shorts, options,
                                NULL)) >= 0) {
                bool stored = false;

                for (size_t t = 0; t < CLI_TABLES_MAX && !stored; t++)
                        stored = store_option(p->options[t], p->dest[t], c, optarg);
                if (stored)
                        continue;
                if (c == 'h' || c == '?' || !p->option) {
                        p->usage(c == 'h' ? stdout : stderr);
                        return c == 'h' ? 0 : p->usage_exit;
                }
                r = p->option(c, optarg, p->userdata);
                if (r != 0)
                        return r;
        }
        return -1;
}

int cli_parse_one(int argc, char **argv, const char *short_options,
                  const struct cli_option *options, void *dest,
                  int (*option)(int c, const char *arg, void *dest), void (*usage)(FILE *f),
                  int usage_exit)
{
        struct cli_parser p = {
            .short_options = short_options,
            .options = {options},
            .dest = {dest},
            .option = option,
            .userdata = dest,
            .usage = usage,
            .usage_exit = usage_exit,
        };

        return cli_parse(&p, argc, argv);
}

int cli_parse_target(int argc, char **argv, bool admin, void (*usage)(FILE *f),
                     struct cli_target *t)
{
        static const struct cli_option options[] = {
            CLI_ARG("config", 'c', struct cli_target, config),
            CLI_HELP,
            {0},
        };
        static const struct cli_option client[] = {
            CLI_ARG("socket", 'S', struct cli_target, socket), {0}};
        static const struct cli_option broker[] = {
            CLI_ARG("admin-socket", CLI_OPT_ADMIN_SOCKET, struct cli_target, admin_socket), {0}};
        struct cli_parser p = {
            .short_options = admin ? "c:h" : "S:c:h",
            .options = {admin ? broker : client, options},
            .dest = {t, t},
            .usage = usage,
            .usage_exit = EXIT_USAGE,
        };
        int r = cli_parse(&p, argc, argv);

        if (r < 0 && optind < argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        return r;
}

int cli_target_call(int argc, char **argv, bool admin, void (*usage)(FILE *f), const char *op,
                    cJSON **ret)
{
        _cleanup_json_ cJSON *request = NULL;
        struct cli_target t = {0};
        int r;

        r = cli_parse_target(argc, argv, admin, usage, &t);
        if (r >= 0)
                return r;
        request = admin ? admin_request_new(op) : credbroker_request_new(op);
        if (!request)
                return EXIT_SOFTWARE;
        r = admin ? admin_request(admin_socket_path(t.admin_socket, t.config), request, ret)
                  : client_call(client_socket_path(t.socket, t.config), request, ret);
        return r == 0 ? -1 : r;
}
