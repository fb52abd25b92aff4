/* credbroker store migrate --to wrapped|objects: moves every account's metadata, newest refresh
 * token (at its own generation) and client secret from the other credential-store backend to the
 * named one (pkcs11/store-migrate.c), one account at a time: read the source, write the
 * destination, read the destination back, and only then remove it from the source. A run killed
 * anywhere is finished by running it again. The broker must not run meanwhile: the command
 * refuses when its admin socket answers and holds that socket itself while it works, so that a
 * broker started meanwhile refuses to start (docs/credbroker.conf.md, "Moving between
 * backends"). */
#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin-client.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "fault.h"
#include "log.h"
#include "options.h"
#include "store.h"
#include "util.h"

static void usage(FILE *f)
{
        fputs("Usage: credbroker store migrate --to wrapped|objects [-v] [--admin-socket PATH]\n"
              "                                [--config PATH]\n"
              "\n"
              "Moves every account (metadata, newest refresh token with its generation, client\n"
              "secret) from the other credential-store backend to the named one. Keys,\n"
              "certificates and the audit key stay in the token, where both backends keep them.\n"
              "Each account is written to the destination and read back before it is removed\n"
              "from the source: an interrupted run is finished by running it again.\n"
              "Stop credbrokerd first; the command refuses while the broker's admin socket\n"
              "answers, and a broker started while it runs refuses to start. Afterwards set\n"
              "\"store = wrapped\" (or objects) in the [pkcs11] section of the configuration.\n"
              "\n"
              "Exit: 0 every account moved, 64 usage, 70 an account could not be moved (it stays\n"
              "where it was; run again), 75 the broker is running, 78 configuration or token.\n",
              f);
}

static const char *backend_name(enum store_backend b)
{
        return b == STORE_BACKEND_WRAPPED ? "wrapped" : "objects";
}

static enum store_backend other_backend(enum store_backend b)
{
        return b == STORE_BACKEND_WRAPPED ? STORE_BACKEND_OBJECTS : STORE_BACKEND_WRAPPED;
}

/* ---- the broker must not run: its admin socket, answered or held ---- */

struct guard {
        int fd;
        const char *path;
        bool bound;
};

static int guard_refuse(const char *path)
{
        fprintf(stderr,
                "credbroker: something answers on %s (a running broker, or another migration): "
                "stop credbrokerd (and credbrokerd.socket) first, then run this again\n",
                path);
        return EXIT_TEMPFAIL;
}

/* 0 with the socket bound and listening (never accepting) until guard_release(); a broker
 * starting meanwhile finds it answered and refuses to start (broker/net/listen.c). */
static int guard_take(const char *path, struct guard *g)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        *g = (struct guard){.fd = -1, .path = path};
        if (strlen(path) >= sizeof(sa.sun_path))
                return EXIT_CONFIG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        g->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (g->fd < 0)
                return EXIT_SOFTWARE;
        if (connect(g->fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0)
                return guard_refuse(path);
        if (errno == ECONNREFUSED)
                (void)unlink(path); /* stale: left by a broker or a migration that is gone */
        close(g->fd);
        g->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (g->fd < 0)
                return EXIT_SOFTWARE;
        if (bind(g->fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == EADDRINUSE)
                        return guard_refuse(path);
                fprintf(stderr,
                        "credbroker: warning: cannot hold %s (%s): make sure credbrokerd is not "
                        "started until this command has finished\n",
                        path, strerror(errno));
                return 0;
        }
        g->bound = true;
        return listen(g->fd, 1) < 0 ? EXIT_SOFTWARE : 0;
}

static void guard_release(struct guard *g)
{
        if (g->bound)
                (void)unlink(g->path);
        if (g->fd >= 0)
                close(g->fd);
        *g = (struct guard){.fd = -1};
}

/* Test builds: CREDBROKER_FAULT=migrate-pause-after-guard stops the command (SIGSTOP) once it
 * holds the admin socket, before it touches the token, so that a test can try to start a broker
 * meanwhile (tests/integration/store-migrate.test.js). */
static void pause_point(const char *name)
{
#if ENABLE_FAULT_POINTS
        const char *want = secure_getenv("CREDBROKER_FAULT");

        if (want && strcmp(want, name) == 0)
                raise(SIGSTOP);
#else
        (void)name;
#endif
}

/* ---- moving ---- */

static int open_backend(const struct config *c, enum store_backend backend, struct store **ret)
{
        return store_open(
            &(struct store_options){
                .module_path = c->module_path,
                .token_uri = c->token_uri,
                .pin_source = c->pin_source,
                .module_dirs = c->module_dirs,
                .n_module_dirs = c->n_module_dirs,
                .backend = backend,
                .wrapped_dir = c->wrapped_dir,
            },
            ret);
}

static void print_moved(const char *name, const struct store_account_copy *copy, int imported,
                        const char *to)
{
        printf("%s: %s %s:", name, imported == 1 ? "already in" : "moved to", to);
        if (copy->meta)
                printf(" metadata");
        if (copy->refresh_token)
                printf("%s refresh token generation %" PRIu64, copy->meta ? "," : "",
                       copy->generation);
        if (copy->client_secret)
                printf("%s client secret", copy->meta || copy->refresh_token ? "," : "");
        printf("\n");
}

/* The object store's refresh-token generations, found by one scan before the first account. */
struct generations {
        struct store_generation_entry *entries;
        size_t n;
};

/* The generations of account (the entries are sorted by account), gathered into out: how many. */
static size_t generations_of(const struct generations *all, const char *account, uint64_t *out)
{
        size_t lo = 0, hi = all->n, k = 0;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(all->entries[mid].account, account) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (size_t i = lo; i < all->n && strcmp(all->entries[i].account, account) == 0; i++)
                out[k++] = all->entries[i].generation;
        return k;
}

/* 1 when the account was moved, 0 when the source holds nothing of it to move, else negative. */
static int migrate_one(struct store *from, struct store *to, const char *name, const char *to_name,
                       const struct generations *all)
{
        _cleanup_free_ uint64_t *g = calloc(all->n ? all->n : 1, sizeof(*g));
        struct store_account_copy copy = {0};
        size_t n;
        int r, imported;

        if (!g)
                return -ENOMEM;
        /* The object store's generations of the account, from the one scan. */
        n = generations_of(all, name, g);
        r = store_export_account(from, name, g, n, &copy);
        if (r == -ENOENT)
                return 0; /* keys or a certificate only: they stay in the token */
        if (r < 0)
                return r;
        fault_point("migrate-after-export");
        imported = r = store_import_account(to, name, &copy);
        fault_point("migrate-after-import");
        if (r >= 0)
                r = store_verify_account(to, name, &copy);
        fault_point("migrate-after-verify");
        /* Only an account read back intact from the destination leaves the source. */
        if (r >= 0)
                r = store_drop_account_data(from, name, g, n);
        fault_point("migrate-after-drop");
        if (r >= 0)
                print_moved(name, &copy, imported, to_name);
        store_account_copy_clear(&copy);
        return r < 0 ? r : 1;
}

static int migrate_all(struct store *from, struct store *to, enum store_backend target,
                       bool verbose, unsigned *ret_moved, unsigned *ret_failed)
{
        struct generations all = {0};
        char **names = NULL;
        size_t n = 0;
        int r;

        *ret_moved = *ret_failed = 0;
        r = store_list_refresh_token_generations(from, &all.entries, &all.n);
        if (r >= 0)
                r = store_list_all_accounts(from, &names, &n);
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot list the accounts of the %s store: %s\n",
                        backend_name(other_backend(target)), strerror(-r));
                free(all.entries);
                return EXIT_CONFIG;
        }
        if (verbose)
                fprintf(stderr, "credbroker: %zu account%s in the %s store to look at\n", n,
                        n == 1 ? "" : "s", backend_name(other_backend(target)));
        for (size_t i = 0; i < n; i++) {
                r = migrate_one(from, to, names[i], backend_name(target), &all);
                if (r > 0)
                        (*ret_moved)++;
                if (r < 0) {
                        (*ret_failed)++;
                        fprintf(stderr, "credbroker: %s: not moved (%s); it stays in %s\n",
                                names[i], strerror(-r), backend_name(other_backend(target)));
                }
        }
        store_names_free(names, n);
        free(all.entries);
        return 0;
}

static int report(const struct config *c, const char *config_path, enum store_backend target,
                  unsigned moved, unsigned failed)
{
        const char *to = backend_name(target);

        printf("Moved %u account%s from %s to %s.\n", moved, moved == 1 ? "" : "s",
               backend_name(other_backend(target)), to);
        if (failed > 0) {
                fprintf(stderr,
                        "credbroker: %u account%s could not be moved and stay%s in %s: fix the "
                        "cause above and run \"credbroker store migrate --to %s\" again\n",
                        failed, failed == 1 ? "" : "s", failed == 1 ? "s" : "",
                        backend_name(other_backend(target)), to);
                return EXIT_SOFTWARE;
        }
        if ((c->store == CONFIG_STORE_WRAPPED) == (target == STORE_BACKEND_WRAPPED))
                printf("%s already says \"store = %s\": start credbrokerd.\n", config_path, to);
        else
                printf("Next: set \"store = %s\" in the [pkcs11] section of %s, then start "
                       "credbrokerd.\n",
                       to, config_path);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

struct migrate_args {
        const char *to;
        const char *config_option;
        const char *admin_socket;
        bool verbose;
};

/* -1 to go on, else an exit code. */
static int parse(int argc, char **argv, struct migrate_args *a)
{
        static const struct option options[] = {
            {"to", required_argument, NULL, 't'},
            {"verbose", no_argument, NULL, 'v'},
            CLI_OPTION_ADMIN_SOCKET,
            CLI_OPTION_CONFIG,
            CLI_OPTION_HELP,
            {0},
        };
        int c;

        optind = 1;
        while ((c = getopt_long(argc, argv, "t:vc:h", options, NULL)) != -1)
                switch (c) {
                case 't':
                        a->to = optarg;
                        break;
                case 'v':
                        a->verbose = true;
                        break;
                case CLI_OPT_ADMIN_SOCKET:
                        a->admin_socket = optarg;
                        break;
                case 'c':
                        a->config_option = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        if (optind != argc || !a->to ||
            (strcmp(a->to, "wrapped") != 0 && strcmp(a->to, "objects") != 0)) {
                usage(stderr);
                return EXIT_USAGE;
        }
        return -1;
}

static int cmd_store_migrate(int argc, char **argv)
{
        _cleanup_(store_closep) struct store *from = NULL, *to = NULL;
        struct migrate_args a = {0};
        struct config *c = NULL;
        struct guard g = {.fd = -1};
        enum store_backend target;
        unsigned moved = 0, failed = 0;
        const char *config_path;
        int r;

        r = parse(argc, argv, &a);
        if (r >= 0)
                return r;
        if (a.verbose)
                log_set_level(LOG_LEVEL_INFO);
        target = strcmp(a.to, "wrapped") == 0 ? STORE_BACKEND_WRAPPED : STORE_BACKEND_OBJECTS;
        config_path = cli_config_path(a.config_option);
        if (config_load(config_path, true, &c) < 0)
                return EXIT_CONFIG;
        r = guard_take(admin_socket_path(a.admin_socket, a.config_option), &g);
        if (r == 0)
                pause_point("migrate-pause-after-guard");
        if (r == 0 &&
            (open_backend(c, other_backend(target), &from) < 0 || open_backend(c, target, &to) < 0))
                r = EXIT_CONFIG;
        if (r == 0)
                r = migrate_all(from, to, target, a.verbose, &moved, &failed);
        if (r == 0)
                r = report(c, config_path, target, moved, failed);
        guard_release(&g);
        config_free(c);
        return r;
}

int cmd_store(int argc, char **argv)
{
        static const struct cli_command commands[] = {
            {"migrate", cmd_store_migrate},
        };
        const struct cli_command *c;
        int r;

        r = cli_usage_or_help(argc, argv, usage, EXIT_USAGE);
        if (r >= 0)
                return r;
        c = cli_command_find(commands, ELEMENTSOF(commands), argv[1]);
        if (!c) {
                fprintf(stderr, "credbroker: unknown store command \"%.40s\"\n", argv[1]);
                return EXIT_USAGE;
        }
        return c->run(argc - 1, argv + 1);
}
