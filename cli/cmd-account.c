/* credbroker account: provisioning accounts straight into the PKCS#11 token (administrators):
 * import, list, remove and the client secret here; show and keygen in their own files. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "account-meta.h"
#include "account-via-broker.h"
#include "admin-client.h"
#include "client.h"
#include "cmd-account.h"
#include "commands.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "options.h"
#include "secret.h"
#include "store.h"
#include "util.h"

bool account_name_check(const char *name)
{
        if (name_is_valid(name) && strcmp(name, "credbroker") != 0)
                return true;
        fprintf(stderr,
                "credbroker: invalid account name \"%.80s\": use 1-64 characters of a-z, 0-9, "
                "'.', '_' and '-', not starting with '.'; \"credbroker\" is reserved\n",
                name);
        return false;
}

int account_name_arg(int argc, char **argv, void (*usage)(FILE *f), const char **ret)
{
        if (optind + 1 != argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (!account_name_check(argv[optind]))
                return EXIT_USAGE;
        *ret = argv[optind];
        return -1;
}

int account_result(int r, const char *doing, const char *name)
{
        if (r < 0) {
                fprintf(stderr, "credbroker: %s %s failed: %s\n", doing, name, strerror(-r));
                return EXIT_SOFTWARE;
        }
        return r;
}

int account_read_secret_stdin(size_t max, struct secret **ret)
{
        _cleanup_secret_ struct secret *value = NULL;
        size_t len = 0;
        int r;

        /* Room for the value, a CR LF, and one byte more to notice a longer input. */
        r = secret_new(max + 3, &value);
        if (r < 0)
                return r;
        r = read_bounded(STDIN_FILENO, secret_data(value), max + 2, &len);
        if (r < 0)
                return r;
        if (len > 0 && secret_data(value)[len - 1] == '\n')
                len--;
        if (len > 0 && secret_data(value)[len - 1] == '\r')
                len--;
        if (len == 0)
                return -ENODATA;
        if (len > max)
                return -EFBIG;
        r = secret_set_len(value, len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(value);
        return 0;
}

/* The options every command of struct account_command has, and --json for those with it. */
static const struct cli_option common_options[] = {
    CLI_FLAG("verbose", 'v', struct account_args, verbose),
    CLI_ARG("admin-socket", CLI_OPT_ADMIN_SOCKET, struct account_args, admin_socket),
    CLI_ARG("config", 'c', struct account_args, config_option),
    CLI_HELP,
    {0},
};
static const struct cli_option json_option[] = {
    CLI_FLAG("json", 'j', struct account_args, json),
    {0},
};

/* -1 to go on, 0 after --help, or an exit code after printing why. */
static int account_parse(const struct account_command *cmd, int argc, char **argv, void *state,
                         struct account_args *ret)
{
        struct cli_parser p = {
            .options = {cmd->options, common_options, cmd->json ? json_option : NULL},
            .dest = {state, ret, ret},
            .option = cmd->option,
            .userdata = state,
            .usage = cmd->usage,
            .usage_exit = EXIT_USAGE,
        };
        int r;

        *ret = (struct account_args){0};
        r = cli_parse(&p, argc, argv);
        if (r >= 0)
                return r;
        if (cmd->takes_name) {
                r = account_name_arg(argc, argv, cmd->usage, &ret->name);
                if (r >= 0)
                        return r;
        }
        if ((!cmd->takes_name && optind != argc) || cli_missing(cmd->options, state)) {
                cmd->usage(stderr);
                return EXIT_USAGE;
        }
        return -1;
}

static int open_store(const char *config_option, struct account_target *t)
{
        const char *path = cli_config_path(config_option);

        if (config_load(path, true, &t->config) < 0)
                return EXIT_CONFIG;
        if (store_open(
                &(struct store_options){
                    .module_path = t->config->module_path,
                    .token_uri = t->config->token_uri,
                    .pin_source = t->config->pin_source,
                    .module_dirs = t->config->module_dirs,
                    .n_module_dirs = t->config->n_module_dirs,
                    .backend = t->config->store == CONFIG_STORE_WRAPPED ? STORE_BACKEND_WRAPPED
                                                                        : STORE_BACKEND_OBJECTS,
                    .wrapped_dir = t->config->wrapped_dir,
                },
                &t->store) < 0)
                return EXIT_CONFIG;
        return 0;
}

static void account_target_close(struct account_target *t);

/* 0 with admin or store set, else an exit code after printing why. */
static int account_target_open(const struct account_args *a, struct account_target *ret)
{
        int r;

        *ret = (struct account_target){0};
        r = admin_connect_or_fallback(admin_socket_path(a->admin_socket, a->config_option),
                                      a->verbose, &ret->admin);
        if (r != 1)
                return r;
        r = open_store(a->config_option, ret);
        if (r != 0)
                account_target_close(ret);
        return r;
}

static void account_target_close(struct account_target *t)
{
        admin_close(t->admin);
        store_close(t->store);
        config_free(t->config);
        *t = (struct account_target){0};
}

static int account_run_state(const struct account_command *cmd, int argc, char **argv, void *state)
{
        _cleanup_(account_target_close) struct account_target t = {0};
        struct account_args a;
        int r;

        r = account_parse(cmd, argc, argv, state, &a);
        if (r >= 0)
                return r;
        r = cmd->prepare ? cmd->prepare(&a, state) : 0;
        if (r == 0)
                r = account_target_open(&a, &t);
        if (r == 0)
                r = cmd->run(&a, &t, state);
        secret_free(a.secret);
        return r;
}

int account_run(const struct account_command *cmd, int argc, char **argv)
{
        _cleanup_free_ void *state = calloc(1, cmd->state_size ? cmd->state_size : 1);
        int r;

        if (!state)
                return EXIT_SOFTWARE;
        if (cmd->defaults)
                memcpy(state, cmd->defaults, cmd->state_size);
        r = account_run_state(cmd, argc, argv, state);
        if (cmd->done)
                cmd->done(state);
        return r;
}

enum {
        OPT_IMPORT_GRAPH = 0x100,
        OPT_IMPORT_CLOUD,
};

struct import_options {
        struct account_meta meta;
        const char *token_file;
};

static void import_usage(FILE *f)
{
        fputs("Usage: credbroker account import NAME --tenant TENANT --client-id ID\n"
              "                                 --refresh-token-file FILE [--mailbox UPN]\n"
              "                                 [--authority URL] [--graph URL]\n"
              "                                 [--cloud global|usgov|usgov-high|dod|china]\n"
              "                                 [-v] [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Writes an account and its refresh token into the PKCS#11 token (through the\n"
              "broker while it runs). The file is read once and wiped from memory; delete it\n"
              "afterwards (shred -u FILE).\n",
              f);
}

/* The refresh token of --refresh-token-file: 0, or an exit code after printing why. */
static int import_read_token(const char *token_file, struct secret **ret)
{
        int r = secret_from_file(token_file, TOKEN_MAX_LEN, ret);

        if (r < 0) {
                fprintf(stderr, "credbroker: cannot read the refresh token from %s: %s\n",
                        token_file,
                        r == -EFBIG     ? "larger than 16 KiB"
                        : r == -ENODATA ? "the file is empty"
                                        : strerror(-r));
                return EXIT_NOINPUT;
        }
        if (!token_is_valid(secret_str(*ret), secret_len(*ret))) {
                fprintf(stderr, "credbroker: %s does not hold one refresh token on one line\n",
                        token_file);
                return EXIT_DATAERR;
        }
        return 0;
}

static int import_direct(struct store *store, const char *name, const struct account_meta *meta,
                         const struct secret *token, uint64_t *ret_generation)
{
        _cleanup_free_ char *json = NULL;
        int r;

        if (account_meta_to_json(meta, &json) < 0)
                return EXIT_SOFTWARE;
        /* The refresh token first: an account whose meta exists always has a credential. */
        r = store_write_refresh_token(store, name, token, ret_generation);
        if (r == 0)
                r = store_put_meta(store, name, json);
        if (r < 0) {
                fprintf(stderr, "credbroker: writing account %s to the token failed: %s\n", name,
                        strerror(-r));
                return EXIT_SOFTWARE;
        }
        return 0;
}

static int import_prepare(struct account_args *a, void *state)
{
        struct import_options *o = state;

        o->meta.created = (uint64_t)time(NULL);
        if (account_meta_validate(&o->meta) < 0) {
                fprintf(stderr, "credbroker: tenant, client id, mailbox, authority or graph has "
                                "characters that are not allowed (URLs must be https://), or "
                                "--cloud is not global, usgov, usgov-high, dod or china\n");
                return EXIT_USAGE;
        }
        return import_read_token(o->token_file, &a->secret);
}

static int import_run(const struct account_args *a, struct account_target *t, void *state)
{
        struct import_options *o = state;
        uint64_t generation;
        int r;

        r = t->admin ? broker_account_import(t->admin, a->name, &o->meta, a->secret, &generation)
                     : import_direct(t->store, a->name, &o->meta, a->secret, &generation);
        if (r != 0)
                return r;
        printf("Imported account %s (refresh token generation %llu).\n", a->name,
               (unsigned long long)generation);
        return 0;
}

static const struct account_command import_command = {
    .name = "import",
    .usage = import_usage,
    .options =
        (const struct cli_option[]){
            CLI_REQUIRED_ARG("tenant", 't', struct import_options, meta.tenant),
            CLI_REQUIRED_ARG("client-id", 'i', struct import_options, meta.client_id),
            CLI_REQUIRED_ARG("refresh-token-file", 'f', struct import_options, token_file),
            CLI_ARG("mailbox", 'm', struct import_options, meta.mailbox),
            CLI_ARG("authority", 'a', struct import_options, meta.authority),
            CLI_ARG("graph", OPT_IMPORT_GRAPH, struct import_options, meta.graph),
            CLI_ARG("cloud", OPT_IMPORT_CLOUD, struct import_options, meta.cloud),
            {0},
        },
    .takes_name = true,
    .state_size = sizeof(struct import_options),
    .defaults = &(const struct import_options){.meta = {.flow = (char *)"refresh_token"}},
    .prepare = import_prepare,
    .run = import_run,
};

static void list_usage(FILE *f)
{
        fputs("Usage: credbroker account list [--json] [-v] [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Lists the accounts in the PKCS#11 token, including app-only accounts that have\n"
              "only a key and certificate or a client secret; never prints a secret.\n"
              "While the broker runs it is asked (its admin socket), and the list shows each\n"
              "account's state; otherwise the token is opened directly. -v says which.\n",
              f);
}

static int list_run(const struct account_args *a, struct account_target *t, void *state)
{
        if (t->admin)
                return broker_account_list(t->admin, a->json);
        return account_list_direct(t->store, t->config, a->json);
}

static const struct account_command list_command = {
    .name = "list",
    .usage = list_usage,
    .json = true,
    .run = list_run,
};

static void remove_usage(FILE *f)
{
        fputs("Usage: credbroker account remove NAME [-v] [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Destroys every object of the account in the PKCS#11 token (metadata, refresh\n"
              "tokens, client secret, assertion key and certificate) and lists what it removed.\n"
              "There is no confirmation: the exact account name is required. While the broker\n"
              "runs, it does the removal (and drops the account's cached tokens first).\n",
              f);
}

static int remove_direct(struct store *store, const char *name)
{
        struct store_removed_object *removed = NULL;
        size_t n = 0;
        int r;

        r = store_remove_account_report(store, name, &removed, &n);
        if (r < 0) {
                fprintf(stderr,
                        "credbroker: removing account %s failed (%s); what is left is still "
                        "listed, run the command again\n",
                        name, strerror(-r));
                return EXIT_SOFTWARE;
        }
        if (n == 0) {
                fprintf(stderr, "credbroker: there is no account %s in the token\n", name);
                return EXIT_NOINPUT;
        }
        printf("Removed account %s:", name);
        for (size_t i = 0; i < n; i++)
                printf("%s %s (%s)", i ? "," : "", removed[i].label, removed[i].class_name);
        printf("\n");
        store_removed_free(removed, n);
        return 0;
}

static int remove_run(const struct account_args *a, struct account_target *t, void *state)
{
        if (t->admin)
                return broker_account_remove(t->admin, a->name);
        return remove_direct(t->store, a->name);
}

static const struct account_command remove_command = {
    .name = "remove",
    .usage = remove_usage,
    .takes_name = true,
    .run = remove_run,
};

static void secret_usage(FILE *f)
{
        fputs("Usage: credbroker account secret NAME --secret-stdin [-v] [--admin-socket PATH]\n"
              "                                 [--config PATH]\n"
              "\n"
              "Stores the app registration's client secret for the account, read from standard\n"
              "input (never from the command line or the environment), e.g.\n"
              "  credbroker account secret alerts --secret-stdin < secret-file\n"
              "A previous secret is replaced only after the new one reads back intact.\n"
              "While the broker runs, it stores the secret.\n",
              f);
}

struct secret_options {
        bool from_stdin;
};

static int secret_prepare(struct account_args *a, void *state)
{
        int r;

        r = account_read_secret_stdin(STORE_CLIENT_SECRET_MAX, &a->secret);
        if (r < 0) {
                fprintf(stderr,
                        "credbroker: cannot read the client secret from standard input: %s\n",
                        r == -EFBIG     ? "longer than 1024 bytes"
                        : r == -ENODATA ? "it is empty"
                                        : strerror(-r));
                return EXIT_DATAERR;
        }
        return 0;
}

/* Either path's result in the same words: 0 or an exit code. */
static int secret_run(const struct account_args *a, struct account_target *t, void *state)
{
        int r = t->admin ? broker_account_secret(t->admin, a->name, a->secret)
                         : store_put_client_secret(t->store, a->name, a->secret);

        if (r == -EINVAL) {
                fprintf(stderr, "credbroker: the client secret must be printable ASCII without "
                                "spaces, quotes or backslashes\n");
                return EXIT_DATAERR;
        }
        r = account_result(r, "storing the client secret of", a->name);
        if (r == 0)
                printf("Stored the client secret of account %s.\n", a->name);
        return r;
}

static const struct account_command secret_command = {
    .name = "secret",
    .usage = secret_usage,
    .options =
        (const struct cli_option[]){
            CLI_REQUIRED_FLAG("secret-stdin", 's', struct secret_options, from_stdin),
            {0},
        },
    .takes_name = true,
    .state_size = sizeof(struct secret_options),
    .prepare = secret_prepare,
    .run = secret_run,
};

static void account_usage(FILE *f)
{
        fputs("Usage: credbroker account COMMAND ...\n"
              "  add NAME ...      add an account through the broker, which signs it in\n"
              "  login NAME        sign a delegated account in again\n"
              "  test NAME ...     have the broker get a token; optionally send a test mail\n"
              "  import NAME ...   provision an account from a refresh token\n"
              "  list              list accounts\n"
              "  show NAME         an account's settings, credentials and certificate\n"
              "  remove NAME       destroy every object of an account\n"
              "  secret NAME ...   store the client secret (read from standard input)\n"
              "  keygen NAME ...   make the assertion key in the token and its certificate\n"
              "  cert NAME ...     store a CA-issued certificate for that key\n"
              "Run \"credbroker account COMMAND --help\" for details.\n",
              f);
}

int cmd_account(int argc, char **argv)
{
        static const struct cli_command own[] = {
            {"add", account_add},
            {"login", account_login},
            {"test", account_test},
        };
        static const struct account_command *const commands[] = {
            &import_command, &list_command,           &account_show_command, &remove_command,
            &secret_command, &account_keygen_command, &account_cert_command,
        };
        const struct cli_command *c;
        int r;

        r = cli_usage_or_help(argc, argv, account_usage, EXIT_USAGE);
        if (r >= 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[1], commands[i]->name) == 0)
                        return account_run(commands[i], argc - 1, argv + 1);
        c = cli_command_find(own, ELEMENTSOF(own), argv[1]);
        if (c)
                return c->run(argc - 1, argv + 1);
        fprintf(stderr, "credbroker: unknown account command \"%.40s\"\n", argv[1]);
        return EXIT_USAGE;
}
