/* credbroker setup: the first run in one command. Creates what a fresh host needs (a SoftHSM2
 * token with its own softhsm2.conf under the state directory, a random PIN in the root-only
 * file the unit's LoadCredential= reads, the configuration, the default policy), or points the
 * configuration at an existing HSM. Idempotent: what exists is reported and kept; what exists
 * but differs is replaced only with --force, and then kept aside, never deleted. */
#include "build-config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "log.h"
#include "secret.h"
#include "options.h"
#include "setup-files.h"
#include "setup-token.h"
#include "store.h"
#include "tty-password.h"

#define EXIT_CANTCREAT 73
#define PIN_FILE_MAX   256

#define SETUP_PIN         SYSCONFDIR "/pkcs11-pin"
#define SETUP_SO_PIN      SYSCONFDIR "/pkcs11-so-pin"
#define SETUP_POLICY_DIR  SYSCONFDIR "/policy.d"
#define SETUP_STATE_DIR   LOCALSTATEDIR "/lib/credbroker"
#define SETUP_SOFTHSM_DIR SETUP_STATE_DIR "/softhsm"
#define SETUP_LOG_DIR     LOCALSTATEDIR "/log/credbroker"
#define SETUP_SPOOL_DIR   LOCALSTATEDIR "/spool/credbroker"
#define SETUP_PIN_SOURCE  "credential:pkcs11-pin"
#define SETUP_LABEL       "credbroker"
#define SETUP_TOKEN_URI   "pkcs11:token=" SETUP_LABEL

/* The same text as dist/policy.d/default (tests/integration/setup.test.js compares them). */
static const char default_policy[] =
    "# /etc/credbroker/policy.d/default: installed with credbroker; it lets nobody have a token.\n"
    "#\n"
    "# Every file in this directory is a profile, named by its file name: a client asks for one\n"
    "# with `credbroker token -p NAME`. A profile names the account it draws on, the scopes it "
    "may\n"
    "# hand out, and the PAM-style rules a local process must pass (man credbroker-policy). A "
    "request\n"
    "# that names no existing profile is refused (unknown_profile), so a fresh installation "
    "hands\n"
    "# out nothing until the administrator writes a profile. This one shows the shape and "
    "denies\n"
    "# everyone, audited; delete it or keep it, it grants nothing.\n"
    "#\n"
    "# Commented examples (more, with explanations, in "
    "/usr/share/doc/credbroker/examples/policy.d/):\n"
    "#\n"
    "#   /etc/credbroker/policy.d/alerts: root and the monitoring user may send alert mail\n"
    "#     account   alerts\n"
    "#     scope     https://graph.microsoft.com/Mail.Send\n"
    "#     peer      sufficient   uid      root\n"
    "#     peer      required     uid      nagios\n"
    "#     request   required     rate     60/min per-uid\n"
    "#\n"
    "#   /etc/credbroker/policy.d/backup: only backup.service, as root, at night\n"
    "#     account   backup\n"
    "#     scope     https://graph.microsoft.com/.default\n"
    "#     peer      requisite    unit     backup.service\n"
    "#     peer      required     uid      root\n"
    "#     peer      required     time     22:00-06:00\n"
    "#\n"
    "# Rules on `exe` and `unit` need the drop-in in\n"
    "# /usr/share/doc/credbroker/examples/credbroker.service.d/peer-rules.conf.example\n"
    "# (docs/operations.md, \"Hardening\"); without it they match nothing, so they deny.\n"
    "#\n"
    "# Check the directory with `credbroker policy check`, dry-run a request with\n"
    "# `credbroker policy test -p PROFILE --uid USER`, and apply it with `credbroker reload`.\n"
    "account   default\n"
    "scope     https://graph.microsoft.com/Mail.Send\n"
    "\n"
    "peer      required     deny\n";

struct setup {
        struct setup_root root;
        bool prefix; /* --prefix: the files name the prefixed paths */
        bool force;
        bool pin_stdin;
        bool external; /* --module: an existing HSM */
        const char *module;
        const char *token_uri;
        char stamp[32];
        struct config *existing; /* the configuration found, when it loads */
        bool config_exists;      /* something is at the configuration's path */
        bool config_matches;     /* it already points at what setup would write */
        struct secret *pin;      /* external: the PIN given (NULL: the existing file's) */
        bool conflict;
};

static void setup_done(struct setup *s)
{
        config_free(s->existing);
        secret_free(s->pin);
}

static void say(const char *what, const char *path, const char *detail)
{
        printf("  %-9s %s%s%s\n", what, path, detail ? " " : "", detail ? detail : "");
}

static void setup_usage(FILE *f)
{
        fputs("Usage: credbroker setup [--force] [--root DIR | --prefix DIR] [--user USER]\n"
              "       credbroker setup --module PATH [--token-uri URI [--pin-stdin]] [...]\n"
              "\n"
              "Creates what a fresh host needs: a SoftHSM2 token in " SETUP_SOFTHSM_DIR "\n"
              "with its own softhsm2.conf, a random PIN in " SETUP_PIN " (root, 0600,\n"
              "read by the unit's LoadCredential=), the configuration " CONFIG_DEFAULT_PATH "\n"
              "and the default policy (denies everyone). With --module it uses an existing\n"
              "HSM instead: --token-uri selects its token (without it, setup lists the tokens\n"
              "the module offers) and the user PIN comes from the terminal or one line of\n"
              "standard input (--pin-stdin), or from an existing " SETUP_PIN ".\n"
              "\n"
              "What exists is kept and reported; a second run changes nothing. State that\n"
              "differs from what setup would write is replaced only with --force, and kept\n"
              "as NAME.replaced-TIME. --root DIR works on the system image at DIR (the files\n"
              "name the paths inside it); --prefix DIR puts everything under DIR and the files\n"
              "name those paths (a broker can run from there). --user USER owns the token\n"
              "(default credbroker, the unit's User=).\n"
              "\n"
              "Exit: 0 set up (or already), 64 usage, 73 existing state differs (--force),\n"
              "78 the token or PIN does not work.\n",
              f);
}

enum { OPT_ROOT = 256, OPT_PREFIX, OPT_USER, OPT_MODULE, OPT_TOKEN_URI, OPT_PIN_STDIN };

/* --root, --prefix and --module: 0, or EXIT_USAGE after saying why. */
static int setup_option(int c, const char *arg, void *userdata)
{
        struct setup *s = userdata;

        if (c == OPT_MODULE) {
                s->module = arg;
                s->external = true;
                return 0;
        }
        if (arg[0] != '/' || strlen(arg) > 1024 || s->root.dest[0]) {
                fputs("credbroker: --root/--prefix wants one absolute directory\n", stderr);
                return EXIT_USAGE;
        }
        s->root.dest = arg;
        s->prefix = c == OPT_PREFIX;
        s->root.shown = s->prefix ? arg : "";
        return 0;
}

static int parse_options(struct setup *s, int argc, char **argv)
{
        static const struct cli_option options[] = {
            CLI_FLAG("force", 'f', struct setup, force),
            CLI_OWN("root", required_argument, OPT_ROOT),
            CLI_OWN("prefix", required_argument, OPT_PREFIX),
            CLI_ARG("user", OPT_USER, struct setup, root.user),
            CLI_OWN("module", required_argument, OPT_MODULE),
            CLI_ARG("token-uri", OPT_TOKEN_URI, struct setup, token_uri),
            CLI_FLAG("pin-stdin", OPT_PIN_STDIN, struct setup, pin_stdin),
            CLI_HELP,
            {0},
        };
        int r = cli_parse_one(argc, argv, "fh", options, s, setup_option, setup_usage, EXIT_USAGE);

        if (r >= 0)
                return r;
        if (optind < argc || (s->token_uri && !s->external) || (s->pin_stdin && !s->external)) {
                fputs("credbroker: --token-uri and --pin-stdin go with --module; see credbroker "
                      "setup --help\n",
                      stderr);
                return EXIT_USAGE;
        }
        if (s->external && s->module[0] != '/') {
                fputs("credbroker: --module wants the module's absolute path\n", stderr);
                return EXIT_USAGE;
        }
        return -1; /* go on */
}

/* What the configuration must say: the token, the PIN credential and, with --prefix, the paths
 * under the prefix. */
static int config_text(const struct setup *s, char **ret)
{
        _cleanup_free_ char *socket = setup_shown(&s->root, RUNTIME_DIR "/socket");
        _cleanup_free_ char *admin = setup_shown(&s->root, RUNTIME_DIR "/admin.socket");
        _cleanup_free_ char *policy = setup_shown(&s->root, SETUP_POLICY_DIR);
        _cleanup_free_ char *audit = setup_shown(&s->root, SETUP_LOG_DIR "/audit.log");
        _cleanup_free_ char *spool = setup_shown(&s->root, SETUP_SPOOL_DIR);
        _cleanup_free_ char *broker = NULL;

        if (!socket || !admin || !policy || !audit || !spool)
                return -ENOMEM;
        if (s->prefix && asprintf(&broker,
                                  "[broker]\nsocket = %s\nadmin_socket = %s\npolicy_dir = %s\n"
                                  "audit_log = %s\n\n[mail]\nspool_dir = %s\n"
                                  "maildrop_dir = %s/maildrop\n\n",
                                  socket, admin, policy, audit, spool, spool) < 0)
                return -ENOMEM;
        if (asprintf(ret,
                     "# Written by `credbroker setup`: the PKCS#11 token and its PIN. Every other "
                     "key has\n# its default (credbroker.conf(5)).\n\n%s"
                     "[pkcs11]\nmodule = %s\ntoken = %s\npin_source = " SETUP_PIN_SOURCE "\n",
                     broker ? broker : "", s->module, s->token_uri) < 0)
                return -ENOMEM;
        return 0;
}

static bool same(const char *a, const char *b)
{
        return a && b && strcmp(a, b) == 0;
}

/* Whether the existing configuration already says what setup would write. */
static bool config_matches(const struct setup *s, const struct config *c)
{
        _cleanup_free_ char *socket = setup_shown(&s->root, RUNTIME_DIR "/socket");
        _cleanup_free_ char *admin = setup_shown(&s->root, RUNTIME_DIR "/admin.socket");
        _cleanup_free_ char *policy = setup_shown(&s->root, SETUP_POLICY_DIR);
        _cleanup_free_ char *audit = setup_shown(&s->root, SETUP_LOG_DIR "/audit.log");
        _cleanup_free_ char *spool = setup_shown(&s->root, SETUP_SPOOL_DIR);

        if (!same(c->module_path, s->module) || !same(c->token_uri, s->token_uri) ||
            !same(c->pin_source, SETUP_PIN_SOURCE))
                return false;
        return !s->prefix || (same(c->socket_path, socket) && same(c->admin_socket_path, admin) &&
                              same(c->policy_dir, policy) && same(c->audit_log, audit) &&
                              same(c->mail.spool_dir, spool));
}

static void conflict(struct setup *s, const char *path, const char *why)
{
        if (!s->conflict && !s->force)
                puts("Existing state differs from what setup would write:");
        s->conflict = true;
        say(s->force ? "replacing" : "differs", path, why);
}

static int read_given_pin(struct setup *s)
{
        int r;

        if (s->pin_stdin)
                r = password_read_line(STDIN_FILENO, PIN_FILE_MAX, &s->pin);
        else
                r = password_read_tty("User PIN of the token: ", PIN_FILE_MAX, &s->pin);
        if (r == -ENXIO)
                return log_error_errno(r, "No terminal to ask for the token's user PIN; give it "
                                          "on standard input with --pin-stdin");
        if (r < 0)
                return log_error_errno(r, "Failed to read the token's user PIN");
        return 0;
}

/* The token and PIN: both there (kept), neither (created), or one without the other. */
static int plan_token(struct setup *s)
{
        _cleanup_free_ char *pin = setup_dest(&s->root, SETUP_PIN);
        _cleanup_free_ char *softhsm = setup_dest(&s->root, SETUP_SOFTHSM_DIR);
        _cleanup_secret_ struct secret *old = NULL;
        bool have_pin, have_token;

        if (!pin || !softhsm)
                return -ENOMEM;
        have_pin = setup_exists(pin);
        if (!s->external) {
                have_token = setup_exists(softhsm);
                if (have_pin && !have_token)
                        conflict(s, pin, "(a PIN without the SoftHSM2 token it belongs to)");
                if (!have_pin && have_token)
                        conflict(s, softhsm, "(a token without its PIN file)");
                return 0;
        }
        if (!s->pin_stdin && have_pin)
                return 0; /* the existing PIN file is checked against the token below */
        if (read_given_pin(s) < 0)
                return EXIT_USAGE;
        if (have_pin &&
            (secret_from_file(pin, PIN_FILE_MAX, &old) < 0 || !secret_equal(old, s->pin)))
                conflict(s, pin, "(holds another PIN)");
        return 0;
}

static int plan(struct setup *s)
{
        _cleanup_free_ char *conf = setup_dest(&s->root, CONFIG_DEFAULT_PATH);
        int r;

        if (!conf)
                return -ENOMEM;
        r = plan_token(s);
        if (r != 0)
                return r;
        s->config_exists = setup_exists(conf);
        if (s->config_exists && config_load(conf, true, &s->existing) == 0)
                s->config_matches = config_matches(s, s->existing);
        if (s->config_exists && !s->config_matches)
                conflict(s, conf, "(names another token, PIN or paths)");
        return 0;
}

/* Loads the module, finds the token and logs in with the PIN file, as the broker will. */
static int check_token(const struct setup *s, const char *pin_path)
{
        _cleanup_(config_freep) struct config *defaults = NULL;
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_free_ char *source = NULL;
        const struct config *c = s->existing;
        struct store_options options;
        int r;

        if (!c) {
                r = config_new_default(&defaults);
                if (r < 0)
                        return r;
                c = defaults;
        }
        if (asprintf(&source, "file:%s", pin_path) < 0)
                return -ENOMEM;
        options = (struct store_options){
            .module_path = s->module,
            .token_uri = s->token_uri,
            .pin_source = source,
            .module_dirs = c->module_dirs,
            .n_module_dirs = c->n_module_dirs,
        };
        return store_open(&options, &store);
}

static int write_pin(const char *path, struct secret *pin)
{
        int r = setup_write_file(path, secret_data(pin), secret_len(pin), 0600, 0, 0);

        if (r == -EEXIST)
                return log_error_errno(r, "%s appeared while setup ran", path);
        return r;
}

static int move_aside(const struct setup *s, const char *path)
{
        _cleanup_free_ char *aside = NULL;
        int r;

        if (!setup_exists(path))
                return 0;
        r = setup_move_aside(path, s->stamp, &aside);
        if (r < 0)
                return r;
        say("kept", aside, "(replaced)");
        return 0;
}

/* SOFTHSM2_CONF for this process: the real softhsm2.conf, or with --root (whose file names the
 * path inside the image) a copy naming the token directory where setup writes it. */
static int softhsm_files(const struct setup *s, const char *dir, char **ret_own_conf)
{
        _cleanup_free_ char *conf = NULL, *tokens = NULL, *shown = NULL, *text = NULL;
        _cleanup_free_ char *own = NULL, *own_text = NULL;
        int r;

        if (asprintf(&conf, "%s/softhsm2.conf", dir) < 0 || asprintf(&tokens, "%s/tokens", dir) < 0)
                return -ENOMEM;
        shown = setup_shown(&s->root, SETUP_SOFTHSM_DIR "/tokens");
        if (!shown || asprintf(&text,
                               "# SoftHSM2's configuration for credbroker's token (credbroker "
                               "setup); the\n# unit passes it in SOFTHSM2_CONF. The system-wide "
                               "/etc/softhsm/softhsm2.conf is not used.\n"
                               "directories.tokendir = %s\nobjectstore.backend = file\n"
                               "log.level = ERROR\n",
                               shown) < 0)
                return -ENOMEM;
        r = setup_mkdir(tokens, 0700, 0, 0, NULL);
        if (r < 0)
                return r;
        r = setup_write_file(conf, text, strlen(text), 0600, 0, 0);
        if (r < 0)
                return r;
        if (strcmp(s->root.dest, s->root.shown) == 0) {
                *ret_own_conf = TAKE_PTR(conf);
                return 0;
        }
        if (asprintf(&own, "%s/.setup-softhsm2.conf", dir) < 0 ||
            asprintf(&own_text, "directories.tokendir = %s\nobjectstore.backend = file\n", tokens) <
                0)
                return -ENOMEM;
        r = setup_write_file(own, own_text, strlen(own_text), 0600, 0, 0);
        if (r < 0)
                return r;
        *ret_own_conf = TAKE_PTR(own);
        return 0;
}

struct created {
        char *dir, *pin, *so_pin;
        bool dir_made, pin_written, so_pin_written;
};

static void created_undo(struct created *c)
{
        if (c->so_pin_written)
                (void)unlink(c->so_pin);
        if (c->pin_written)
                (void)unlink(c->pin);
        if (c->dir_made)
                (void)setup_remove_tree(c->dir);
}

static void created_free(struct created *c)
{
        free(c->dir);
        free(c->pin);
        free(c->so_pin);
}

/* A new token in a new directory, its PINs, and a login with the PIN file as the broker will
 * do. Any failure removes what this run made. */
static int create_softhsm(const struct setup *s, struct created *c)
{
        _cleanup_secret_ struct secret *user_pin = NULL, *so_pin = NULL;
        _cleanup_free_ char *own_conf = NULL;
        int r;

        r = setup_mkdir(c->dir, 0700, 0, 0, &c->dir_made);
        if (r < 0)
                return r;
        if (!c->dir_made)
                return log_error_errno(-EEXIST, "%s appeared while setup ran", c->dir);
        r = softhsm_files(s, c->dir, &own_conf);
        if (r < 0)
                return r;
        if (setenv("SOFTHSM2_CONF", own_conf, 1) < 0)
                return -errno;
        if (setup_random_pin(SETUP_PIN_LENGTH, &user_pin) < 0 ||
            setup_random_pin(SETUP_PIN_LENGTH, &so_pin) < 0)
                return -ENOMEM;
        r = setup_init_token(s->module, SETUP_LABEL, so_pin, user_pin);
        if (r < 0)
                return r;
        r = write_pin(c->pin, user_pin);
        if (r < 0)
                return r;
        c->pin_written = true;
        r = write_pin(c->so_pin, so_pin);
        if (r < 0)
                return r;
        c->so_pin_written = true;
        r = check_token(s, c->pin);
        if (r < 0)
                return r;
        if (strcmp(s->root.dest, s->root.shown) != 0)
                (void)unlink(own_conf);
        if (s->root.have_user)
                return setup_chown_tree(c->dir, s->root.uid, s->root.gid);
        return 0;
}

static int setup_softhsm(const struct setup *s)
{
        _cleanup_free_ char *state = setup_dest(&s->root, SETUP_STATE_DIR);
        struct created c = {
            .dir = setup_dest(&s->root, SETUP_SOFTHSM_DIR),
            .pin = setup_dest(&s->root, SETUP_PIN),
            .so_pin = setup_dest(&s->root, SETUP_SO_PIN),
        };
        int r = -ENOMEM;

        if (!state || !c.dir || !c.pin || !c.so_pin)
                goto out;
        if (setup_exists(c.dir) && setup_exists(c.pin)) {
                say("exists", c.dir, "(SoftHSM2 token, kept)");
                say("exists", c.pin, "(its PIN, kept)");
                r = 0;
                goto out;
        }
        /* Only --force gets here with one of them present (plan() stopped otherwise). */
        if ((r = move_aside(s, c.dir)) < 0 || (r = move_aside(s, c.pin)) < 0 ||
            (r = move_aside(s, c.so_pin)) < 0)
                goto out;
        /* systemd's StateDirectory= would make it the same way: the unit's user, 0755. */
        r = setup_mkdir(state, 0755, s->root.have_user ? s->root.uid : 0,
                        s->root.have_user ? s->root.gid : 0, NULL);
        if (r >= 0)
                r = create_softhsm(s, &c);
        if (r < 0) {
                created_undo(&c);
                goto out;
        }
        say("created", c.dir, "(SoftHSM2 token \"" SETUP_LABEL "\", softhsm2.conf, tokens/)");
        say("created", c.pin, "(user PIN, root, 0600: the unit's LoadCredential=)");
        say("created", c.so_pin, "(security officer PIN, root, 0600: keep it offline)");
out:
        created_free(&c);
        return r;
}

/* An existing HSM: the PIN given is checked against the token before it is stored. */
static int setup_external(const struct setup *s)
{
        _cleanup_free_ char *pin = setup_dest(&s->root, SETUP_PIN), *check = NULL;
        _cleanup_secret_ struct secret *old = NULL;
        int r;

        if (!pin)
                return -ENOMEM;
        if (!s->pin ||
            (secret_from_file(pin, PIN_FILE_MAX, &old) == 0 && secret_equal(old, s->pin))) {
                r = check_token(s, pin);
                if (r >= 0)
                        say("exists", pin, "(opens the token, kept)");
                return r;
        }
        if (asprintf(&check, "%s.setup-check", pin) < 0)
                return -ENOMEM;
        (void)unlink(check);
        r = write_pin(check, s->pin);
        if (r < 0)
                return r;
        r = check_token(s, check);
        (void)unlink(check);
        if (r < 0)
                return r;
        r = move_aside(s, pin);
        if (r < 0)
                return r;
        r = write_pin(pin, s->pin);
        if (r >= 0)
                say("created", pin, "(user PIN, root, 0600: the unit's LoadCredential=)");
        return r;
}

static int setup_config(const struct setup *s)
{
        _cleanup_free_ char *conf = setup_dest(&s->root, CONFIG_DEFAULT_PATH), *text = NULL;
        int r;

        if (!conf)
                return -ENOMEM;
        if (s->config_matches) {
                say("exists", conf, "(names this token and PIN, kept)");
                return 0;
        }
        r = config_text(s, &text);
        if (r < 0)
                return r;
        r = move_aside(s, conf);
        if (r < 0)
                return r;
        r = setup_write_file(conf, text, strlen(text), 0644, 0, 0);
        if (r < 0)
                return r;
        say("created", conf, NULL);
        return 0;
}

static int setup_policy(const struct setup *s)
{
        _cleanup_free_ char *dir = setup_dest(&s->root, SETUP_POLICY_DIR), *file = NULL;
        int r;

        if (!dir || asprintf(&file, "%s/default", dir) < 0)
                return -ENOMEM;
        r = setup_mkdir(dir, 0755, 0, 0, NULL);
        if (r < 0)
                return r;
        /* As dist/install-config.sh: a profile named default may mean something else there. */
        if (!setup_dir_is_empty(dir)) {
                say("exists", dir, "(has profiles, kept)");
                return 0;
        }
        r = setup_write_file(file, default_policy, sizeof(default_policy) - 1, 0644, 0, 0);
        if (r >= 0)
                say("created", file, "(denies everyone)");
        return r;
}

/* --prefix: what systemd (RuntimeDirectory=, LogsDirectory=) makes for the unit. */
static int setup_prefix_dirs(const struct setup *s)
{
        _cleanup_free_ char *run = setup_dest(&s->root, RUNTIME_DIR);
        _cleanup_free_ char *logs = setup_dest(&s->root, SETUP_LOG_DIR);
        int r;

        if (!run || !logs)
                return -ENOMEM;
        r = setup_mkdir(run, 0755, 0, 0, NULL);
        if (r < 0)
                return r;
        return setup_mkdir(logs, 0750, s->root.have_user ? s->root.uid : 0,
                           s->root.have_user ? s->root.gid : 0, NULL);
}

static void report_user(const struct setup *s)
{
        _cleanup_free_ char *dir = setup_dest(&s->root, SETUP_SOFTHSM_DIR);

        if (s->external)
                return;
        if (s->root.have_user)
                printf("  owner     %s: %s (uid %u); the PIN files and the configuration stay "
                       "root's\n",
                       dir ? dir : SETUP_SOFTHSM_DIR, s->root.user, (unsigned)s->root.uid);
        else
                printf("  owner     %s: root, as the user %s does not exist (yet).\n"
                       "            The package (or systemd-sysusers) creates the user, and "
                       "systemd's\n            StateDirectory= gives " SETUP_STATE_DIR
                       " to the unit's User= at the first start.\n",
                       dir ? dir : SETUP_SOFTHSM_DIR, s->root.user);
}

static void next_steps(const struct setup *s)
{
        _cleanup_free_ char *conf = setup_shown(&s->root, CONFIG_DEFAULT_PATH);
        _cleanup_free_ char *etc = setup_shown(&s->root, SYSCONFDIR);
        _cleanup_free_ char *softhsm = setup_shown(&s->root, SETUP_SOFTHSM_DIR);
        _cleanup_free_ char *opt = NULL;

        if (!conf || !etc || !softhsm)
                return;
        if (s->prefix && asprintf(&opt, " --config %s", conf) < 0)
                return;
        puts("\nNext steps:");
        if (s->prefix)
                printf("  1. start the broker (CREDENTIALS_DIRECTORY plays LoadCredential=):\n"
                       "       %s%s%sCREDENTIALS_DIRECTORY=%s credbrokerd --config %s\n",
                       s->external ? "" : "SOFTHSM2_CONF=", s->external ? "" : softhsm,
                       s->external ? "" : "/softhsm2.conf ", etc, conf);
        else
                puts("  1. start the broker:\n"
                     "       systemctl enable --now credbroker.socket credbroker.service");
        printf("  2. add an account (signs in and stores the credential in the token):\n"
               "       credbroker account add NAME --tenant TENANT --client-id ID --flow "
               "device --mailbox UPN%s\n"
               "  3. let a job use it: a profile in %s/policy.d/NAME (see default there),\n"
               "     then credbroker policy check and credbroker reload%s\n"
               "  4. test the whole path a job will use:\n"
               "       credbroker account test NAME --send-to ADDR%s\n",
               opt ? opt : "", etc, opt ? opt : "", opt ? opt : "");
}

static int list_tokens(const struct setup *s)
{
        int r;

        printf("Tokens that %s offers:\n", s->module);
        r = setup_list_tokens(s->module, stdout);
        if (r < 0)
                return EXIT_CONFIG;
        if (r == 0)
                puts("  (none initialised)");
        puts("Choose one with --token-uri URI (the URI may be shortened to pkcs11:token=LABEL).");
        return EXIT_USAGE;
}

static int run_steps(struct setup *s)
{
        _cleanup_free_ char *etc = setup_dest(&s->root, SYSCONFDIR);
        int r;

        if (!etc || setup_mkdir(etc, 0755, 0, 0, NULL) < 0)
                return EXIT_CANTCREAT;
        r = s->external ? setup_external(s) : setup_softhsm(s);
        if (r < 0) {
                fputs("credbroker: setup stopped (above); the token and PIN files it was making "
                      "are removed again\n",
                      stderr);
                return EXIT_CONFIG;
        }
        if (setup_config(s) < 0 || setup_policy(s) < 0 || (s->prefix && setup_prefix_dirs(s) < 0))
                return EXIT_CANTCREAT;
        report_user(s);
        next_steps(s);
        return 0;
}

int cmd_setup(int argc, char **argv)
{
        _cleanup_(setup_done) struct setup s = {
            .root = {.dest = "", .shown = "", .user = "credbroker"},
        };
        _cleanup_(config_freep) struct config *defaults = NULL;
        time_t now = time(NULL);
        struct tm tm;
        int r;

        r = parse_options(&s, argc, argv);
        if (r >= 0)
                return r;
        if (!s.external) {
                if (config_new_default(&defaults) < 0)
                        return EXIT_SOFTWARE;
                s.module = defaults->module_path;
                s.token_uri = SETUP_TOKEN_URI;
        } else if (!s.token_uri)
                return list_tokens(&s);
        if (!gmtime_r(&now, &tm) || strftime(s.stamp, sizeof(s.stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return EXIT_SOFTWARE;
        r = setup_lookup_user(&s.root);
        if (r < 0 && r != -ENOENT)
                return EXIT_SOFTWARE;
        r = plan(&s);
        if (r != 0)
                return r < 0 ? EXIT_SOFTWARE : r;
        if (s.conflict && !s.force) {
                puts("Nothing was changed. --force replaces these (the old ones are kept as "
                     "NAME.replaced-TIME).");
                return EXIT_CANTCREAT;
        }
        printf("credbroker setup%s%s:\n", s.root.dest[0] ? " in " : "", s.root.dest);
        return run_steps(&s);
}
