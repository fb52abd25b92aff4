/* credbroker account: provisioning accounts straight into the PKCS#11 token (administrators). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account-meta.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "log.h"
#include "secret.h"
#include "store.h"
#include "util.h"

static int open_store(const char *config_option, struct store **ret)
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
              "                                 [--authority URL] [--config PATH]\n"
              "\n"
              "Writes an account and its refresh token into the PKCS#11 token. The file is\n"
              "read once and wiped from memory; delete it afterwards (shred -u FILE).\n",
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
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        struct account_meta meta = {.flow = (char *)"refresh_token"};
        const char *name, *token_file = NULL, *config_option = NULL;
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_secret_ struct secret *token = NULL;
        _cleanup_free_ char *json = NULL;
        uint64_t generation;
        int c, r;

        while ((c = getopt_long(argc, argv, "t:i:f:m:a:c:h", options, NULL)) >= 0) {
                switch (c) {
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
        if (!name_is_valid(name)) {
                fprintf(stderr, "credbroker: account names are 1-64 of [a-z0-9._-]\n");
                return EXIT_USAGE;
        }
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

        r = open_store(config_option, &store);
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

static int account_list(int argc, char **argv)
{
        static const struct option options[] = {
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_(store_closep) struct store *store = NULL;
        const char *config_option = NULL;
        char **names = NULL;
        size_t n = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        puts("Usage: credbroker account list [--config PATH]\n\n"
                             "Lists the accounts in the PKCS#11 token; never prints a secret.");
                        return 0;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind != argc)
                return EXIT_USAGE;
        r = open_store(config_option, &store);
        if (r != 0)
                return r;
        if (store_list_accounts(store, &names, &n) < 0) {
                fprintf(stderr, "credbroker: cannot list the accounts in the token\n");
                return EXIT_SOFTWARE;
        }
        printf("%-20s %-14s %-38s %-38s %-30s %s\n", "ACCOUNT", "FLOW", "TENANT", "CLIENT ID",
               "MAILBOX", "RT GENERATION");
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *json = NULL;
                _cleanup_secret_ struct secret *token = NULL;
                struct account_meta meta = {0};
                uint64_t generation = 0;
                char gen[24] = "none";

                if (store_get_meta(store, names[i], &json) < 0 ||
                    account_meta_from_json(json, &meta) < 0) {
                        printf("%-20s (unreadable metadata)\n", names[i]);
                        continue;
                }
                if (store_read_refresh_token(store, names[i], &token, &generation) == 0)
                        snprintf(gen, sizeof(gen), "%llu", (unsigned long long)generation);
                printf("%-20s %-14s %-38s %-38s %-30s %s\n", names[i], meta.flow, meta.tenant,
                       meta.client_id, meta.mailbox ? meta.mailbox : "-", gen);
                account_meta_clear(&meta);
        }
        store_names_free(names, n);
        return 0;
}

int cmd_account(int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                fputs("Usage: credbroker account import|list ...\n"
                      "  import NAME ...   provision an account from a refresh token\n"
                      "  list              list accounts\n"
                      "Run \"credbroker account COMMAND --help\" for details.\n",
                      argc < 2 ? stderr : stdout);
                return argc < 2 ? EXIT_USAGE : 0;
        }
        if (strcmp(argv[1], "import") == 0)
                return account_import(argc - 1, argv + 1);
        if (strcmp(argv[1], "list") == 0)
                return account_list(argc - 1, argv + 1);
        fprintf(stderr, "credbroker: unknown account command \"%.40s\"\n", argv[1]);
        return EXIT_USAGE;
}
