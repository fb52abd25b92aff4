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

void account_format_time(uint64_t unix_seconds, char out[static 32])
{
        time_t t = (time_t)unix_seconds;
        struct tm tm;

        if (unix_seconds == 0 || !gmtime_r(&t, &tm) ||
            strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(out, 32, "unknown");
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

int account_open_store(const char *config_option, struct store **ret)
{
        _cleanup_(config_freep) struct config *config = NULL;
        const char *path = cli_config_path(config_option);

        if (config_load(path, true, &config) < 0)
                return EXIT_CONFIG;
        if (store_open(
                &(struct store_options){
                    .module_path = config->module_path,
                    .token_uri = config->token_uri,
                    .pin_source = config->pin_source,
                    .module_dirs = config->module_dirs,
                    .n_module_dirs = config->n_module_dirs,
                },
                ret) < 0)
                return EXIT_CONFIG;
        return 0;
}

static void import_usage(FILE *f)
{
        fputs("Usage: credbroker account import NAME --tenant TENANT --client-id ID\n"
              "                                 --refresh-token-file FILE [--mailbox UPN]\n"
              "                                 [--authority URL] [-v] [--admin-socket PATH]\n"
              "                                 [--config PATH]\n"
              "\n"
              "Writes an account and its refresh token into the PKCS#11 token (through the\n"
              "broker while it runs). The file is read once and wiped from memory; delete it\n"
              "afterwards (shred -u FILE).\n",
              f);
}

static int account_import(int argc, char **argv)
{
        static const struct option options[] = {
            {"tenant", required_argument, NULL, 't'},
            {"client-id", required_argument, NULL, 'i'},
            {"refresh-token-file", required_argument, NULL, 'f'},
            {"mailbox", required_argument, NULL, 'm'},
            {"authority", required_argument, NULL, 'a'},
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        struct account_meta meta = {.flow = (char *)"refresh_token"};
        const char *name, *token_file = NULL, *config_option = NULL, *admin_socket = NULL;
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_admin_ struct admin_conn *admin = NULL;
        _cleanup_secret_ struct secret *token = NULL;
        _cleanup_free_ char *json = NULL;
        bool verbose = false;
        uint64_t generation;
        int c, r;

        while ((c = getopt_long(argc, argv, "t:i:f:m:a:vc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'v':
                        verbose = true;
                        break;
                case 'A':
                        admin_socket = optarg;
                        break;
                case 't':
                        meta.tenant = optarg;
                        break;
                case 'i':
                        meta.client_id = optarg;
                        break;
                case 'f':
                        token_file = optarg;
                        break;
                case 'm':
                        meta.mailbox = optarg;
                        break;
                case 'a':
                        meta.authority = optarg;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        import_usage(stdout);
                        return 0;
                default:
                        import_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc || !meta.tenant || !meta.client_id || !token_file) {
                import_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        meta.created = (uint64_t)time(NULL);
        if (account_meta_validate(&meta) < 0) {
                fprintf(stderr, "credbroker: tenant, client id, mailbox or authority has "
                                "characters that are not allowed (authority must be https://)\n");
                return EXIT_USAGE;
        }
        r = secret_from_file(token_file, TOKEN_MAX_LEN, &token);
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot read the refresh token from %s: %s\n",
                        token_file,
                        r == -EFBIG     ? "larger than 16 KiB"
                        : r == -ENODATA ? "the file is empty"
                                        : strerror(-r));
                return EXIT_NOINPUT;
        }
        if (!token_is_valid(secret_str(token), secret_len(token))) {
                fprintf(stderr, "credbroker: %s does not hold one refresh token on one line\n",
                        token_file);
                return EXIT_DATAERR;
        }
        if (account_meta_to_json(&meta, &json) < 0)
                return EXIT_SOFTWARE;

        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0) {
                r = broker_account_import(admin, name, &meta, token, &generation);
                if (r != 0)
                        return r;
                printf("Imported account %s (refresh token generation %llu).\n", name,
                       (unsigned long long)generation);
                return 0;
        }
        if (r != 1)
                return r;
        r = account_open_store(config_option, &store);
        if (r != 0)
                return r;
        /* The refresh token first: an account whose meta exists always has a credential. */
        r = store_write_refresh_token(store, name, token, &generation);
        if (r == 0)
                r = store_put_meta(store, name, json);
        if (r < 0) {
                fprintf(stderr, "credbroker: writing account %s to the token failed: %s\n", name,
                        strerror(-r));
                return EXIT_SOFTWARE;
        }
        printf("Imported account %s (refresh token generation %llu).\n", name,
               (unsigned long long)generation);
        return 0;
}

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

/* One account's row: what it has, never a secret's value. */
struct account_row {
        struct account_meta meta;
        bool has_meta;
        bool meta_unreadable;
        bool has_refresh_token;
        uint64_t generation;
        int has_secret;
        bool has_certificate;
        struct store_certificate_info certificate;
};

static void account_row_clear(struct account_row *row)
{
        account_meta_clear(&row->meta);
        store_certificate_info_clear(&row->certificate);
}

static void account_row_load(struct store *store, const char *name, struct account_row *row)
{
        _cleanup_free_ char *json = NULL;
        struct store_refresh_token_info rt;
        int r;

        *row = (struct account_row){0};
        r = store_get_meta(store, name, &json);
        if (r == 0) {
                row->has_meta = true;
                row->meta_unreadable = account_meta_from_json(json, &row->meta) < 0;
        } else if (r != -ENOENT) {
                row->meta_unreadable = true;
        }
        if (store_refresh_token_info(store, name, &rt) == 0) {
                row->has_refresh_token = true;
                row->generation = rt.generation;
        }
        row->has_secret = store_has_client_secret(store, name);
        row->has_certificate = store_get_certificate(store, name, &row->certificate) == 0;
}

static const char *or_dash(const char *s)
{
        return s && *s ? s : "-";
}

static int list_json(struct store *store, char **names, size_t n)
{
        _cleanup_json_ cJSON *array = cJSON_CreateArray();
        char *text;

        if (!array)
                return EXIT_SOFTWARE;
        for (size_t i = 0; i < n; i++) {
                struct account_row row;
                cJSON *o = cJSON_CreateObject();
                bool good;

                if (!o || !cJSON_AddItemToArray(array, o))
                        return EXIT_SOFTWARE;
                account_row_load(store, names[i], &row);
                good =
                    cJSON_AddStringToObject(o, "account", names[i]) &&
                    (!row.has_meta || row.meta_unreadable ||
                     (cJSON_AddStringToObject(o, "flow", row.meta.flow) &&
                      cJSON_AddStringToObject(o, "tenant", row.meta.tenant) &&
                      cJSON_AddStringToObject(o, "client_id", row.meta.client_id) &&
                      (!row.meta.mailbox ||
                       cJSON_AddStringToObject(o, "mailbox", row.meta.mailbox)))) &&
                    (!row.meta_unreadable || cJSON_AddBoolToObject(o, "metadata_unreadable", 1)) &&
                    (row.has_refresh_token
                         ? json_add_uint(o, "refresh_token_generation", row.generation)
                         : cJSON_AddNullToObject(o, "refresh_token_generation") != NULL) &&
                    cJSON_AddBoolToObject(o, "client_secret", row.has_secret > 0) &&
                    (!row.has_certificate ||
                     (json_add_uint(o, "certificate_not_after", row.certificate.not_after) &&
                      cJSON_AddStringToObject(o, "certificate_sha1_thumbprint",
                                              row.certificate.sha1_hex)));
                account_row_clear(&row);
                if (!good)
                        return EXIT_SOFTWARE;
        }
        text = cJSON_Print(array);
        if (!text)
                return EXIT_SOFTWARE;
        puts(text);
        json_free_string(text);
        return 0;
}

static int account_list(int argc, char **argv)
{
        static const struct option options[] = {
            {"json", no_argument, NULL, 'j'},
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_admin_ struct admin_conn *admin = NULL;
        const char *config_option = NULL, *admin_socket = NULL;
        bool json = false, verbose = false;
        char **names = NULL;
        size_t n = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "jvc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'j':
                        json = true;
                        break;
                case 'v':
                        verbose = true;
                        break;
                case 'A':
                        admin_socket = optarg;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        list_usage(stdout);
                        return 0;
                default:
                        list_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                list_usage(stderr);
                return EXIT_USAGE;
        }
        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0)
                return broker_account_list(admin, json);
        if (r != 1)
                return r;
        r = account_open_store(config_option, &store);
        if (r != 0)
                return r;
        if (store_list_all_accounts(store, &names, &n) < 0) {
                fprintf(stderr, "credbroker: cannot list the accounts in the token\n");
                return EXIT_SOFTWARE;
        }
        if (json) {
                r = list_json(store, names, n);
                store_names_free(names, n);
                return r;
        }
        /* The refresh-token generation stays the last column: scripts read it from there. */
        printf("%-20s %-14s %-38s %-38s %-30s %-6s %-10s %s\n", "ACCOUNT", "FLOW", "TENANT",
               "CLIENT ID", "MAILBOX", "SECRET", "CERT UNTIL", "RT GENERATION");
        for (size_t i = 0; i < n; i++) {
                struct account_row row;
                char generation[24] = "none", until[32] = "-";

                account_row_load(store, names[i], &row);
                if (row.has_refresh_token)
                        snprintf(generation, sizeof(generation), "%llu",
                                 (unsigned long long)row.generation);
                if (row.has_certificate) {
                        account_format_time(row.certificate.not_after, until);
                        until[10] = 0; /* the date is enough in a table */
                }
                if (row.meta_unreadable)
                        printf("%-20s (unreadable metadata)\n", names[i]);
                else
                        printf("%-20s %-14s %-38s %-38s %-30s %-6s %-10s %s\n", names[i],
                               row.has_meta ? row.meta.flow : "-",
                               row.has_meta ? row.meta.tenant : "-",
                               row.has_meta ? row.meta.client_id : "-",
                               or_dash(row.has_meta ? row.meta.mailbox : NULL),
                               row.has_secret > 0 ? "yes" : "no", until, generation);
                account_row_clear(&row);
        }
        store_names_free(names, n);
        return 0;
}

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

static int account_remove(int argc, char **argv)
{
        static const struct option options[] = {
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_admin_ struct admin_conn *admin = NULL;
        struct store_removed_object *removed = NULL;
        const char *config_option = NULL, *admin_socket = NULL, *name;
        bool verbose = false;
        size_t n = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "vc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'v':
                        verbose = true;
                        break;
                case 'A':
                        admin_socket = optarg;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        remove_usage(stdout);
                        return 0;
                default:
                        remove_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc) {
                remove_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0)
                return broker_account_remove(admin, name);
        if (r != 1)
                return r;
        r = account_open_store(config_option, &store);
        if (r != 0)
                return r;
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

static int account_secret(int argc, char **argv)
{
        static const struct option options[] = {
            {"secret-stdin", no_argument, NULL, 's'},
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_secret_ struct secret *secret = NULL;
        _cleanup_admin_ struct admin_conn *admin = NULL;
        const char *config_option = NULL, *admin_socket = NULL, *name;
        bool from_stdin = false, verbose = false;
        int c, r;

        while ((c = getopt_long(argc, argv, "svc:h", options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        from_stdin = true;
                        break;
                case 'v':
                        verbose = true;
                        break;
                case 'A':
                        admin_socket = optarg;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        secret_usage(stdout);
                        return 0;
                default:
                        secret_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc || !from_stdin) {
                secret_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        r = account_read_secret_stdin(STORE_CLIENT_SECRET_MAX, &secret);
        if (r < 0) {
                fprintf(stderr,
                        "credbroker: cannot read the client secret from standard input: %s\n",
                        r == -EFBIG     ? "longer than 1024 bytes"
                        : r == -ENODATA ? "it is empty"
                                        : strerror(-r));
                return EXIT_DATAERR;
        }
        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0) {
                r = broker_account_secret(admin, name, secret);
                if (r > 0)
                        return r;
        } else if (r != 1) {
                return r;
        } else {
                r = account_open_store(config_option, &store);
                if (r != 0)
                        return r;
                r = store_put_client_secret(store, name, secret);
        }
        if (r == -EINVAL) {
                fprintf(stderr, "credbroker: the client secret must be printable ASCII without "
                                "spaces, quotes or backslashes\n");
                return EXIT_DATAERR;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: storing the client secret of %s failed: %s\n", name,
                        strerror(-r));
                return EXIT_SOFTWARE;
        }
        printf("Stored the client secret of account %s.\n", name);
        return 0;
}

int cmd_account(int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } commands[] = {
            {"import", account_import}, {"list", account_list},     {"show", account_show},
            {"remove", account_remove}, {"secret", account_secret}, {"keygen", account_keygen},
            {"cert", account_cert},     {"add", account_add},       {"login", account_login},
            {"test", account_test},
        };

        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                fputs(
                    "Usage: credbroker account COMMAND ...\n"
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
                    argc < 2 ? stderr : stdout);
                return argc < 2 ? EXIT_USAGE : 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "credbroker: unknown account command \"%.40s\"\n", argv[1]);
        return EXIT_USAGE;
}
