/* credbroker account add / login: provisioning an account through the broker's admin socket
 * (docs/admin-protocol.md). The broker runs the sign-in; the CLI collects what it needs (a
 * password without echo, a client secret from standard input), shows the device code and a
 * countdown, and reports the outcome. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "account-meta.h"
#include "admin-client.h"
#include "admin-frame.h"
#include "client.h"
#include "cmd-account.h"
#include "json.h"
#include "options.h"
#include "parse-date.h"
#include "sign-in.h"
#include "tty-password.h"
#include "util.h"
#include "wire.h"

/* The broker refuses URLs of 512 bytes or more (docs/admin-protocol.md). */
#define URL_MAX (ACCOUNT_META_URL_MAX - 1)

static void add_usage(FILE *f)
{
        fputs("Usage: credbroker account add NAME --tenant TENANT --client-id ID\n"
              "           --flow device|password|client-secret|client-certificate\n"
              "           [--mailbox UPN] [--scope S]... [--graph URL]\n"
              "           [--cloud global|usgov|usgov-high|dod|china]\n"
              "           [--authority URL | --token-endpoint URL [--device-endpoint URL]]\n"
              "           [--username UPN [--password-stdin]]           (password flow)\n"
              "           [--secret-stdin [--secret-expires YYYY-MM-DD]] (client-secret flow)\n"
              "           [--client-auth post|basic]                    (client-secret flow)\n"
              "           [--assertion-alg PS256|RS256]            (client-certificate flow)\n"
              "           [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Adds an account through the running broker, which signs in and stores the\n"
              "credential in the PKCS#11 token:\n"
              "  device              prints Microsoft's code and URL, then waits for the sign-in\n"
              "                      (works with MFA and conditional access)\n"
              "  password            asks for the password on the terminal without echo, or\n"
              "                      reads one line of standard input (--password-stdin); used\n"
              "                      once and never stored; no MFA\n"
              "  client-secret       the app's secret from standard input (--secret-stdin)\n"
              "  client-certificate  the key and certificate made by \"account keygen NAME\"\n"
              "\n"
              "--client-auth basic sends the client secret in an HTTP Basic header, for an OAuth\n"
              "server that takes nothing else (default post: in the request body, as Microsoft\n"
              "wants). --assertion-alg RS256 signs the client assertion RS256 with x5t, for a\n"
              "server that cannot verify the default PS256 with x5t#S256.\n"
              "\n"
              "Exit: 0 signed in, 64 usage, 65 bad input, 69 broker not running, 73 the account\n"
              "exists, 75 try again, 77 sign-in refused (declined, expired, wrong password),\n"
              "78 the app registration or tenant must change (the message says how).\n",
              f);
}

static bool url_is_acceptable(const char *url)
{
        size_t n = strlen(url);

        if (n > URL_MAX || strncmp(url, "https://", 8) != 0 || n == 8)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f ||
                    strchr("\"\\<>", url[i]))
                        return false;
        return true;
}

struct add_options {
        struct account_meta meta; /* tenant, client id, mailbox, username, authority, graph */
        const char *flow;
        const char *token_endpoint;
        const char *device_endpoint;
        const char *scopes[WIRE_MAX_SCOPES];
        size_t n_scopes;
        bool password_stdin;
        bool secret_stdin;
        const char *secret_expires;
        const char *assertion_alg; /* "PS256" or "RS256"; NULL: the broker's default */
        const char *client_auth;   /* "post" or "basic"; NULL: the broker's default */
        struct cli_target target;  /* --admin-socket, --config */
};

static int add_check(const struct add_options *o)
{
        static const char *const flows[] = {"device", "password", "client-secret",
                                            "client-certificate"};
        struct account_meta check = o->meta;
        bool flow_known = false;

        for (size_t i = 0; o->flow && i < ELEMENTSOF(flows); i++)
                flow_known |= strcmp(o->flow, flows[i]) == 0;
        if (!o->meta.tenant || !o->meta.client_id || !flow_known) {
                fprintf(stderr, "credbroker: account add needs --tenant, --client-id and --flow "
                                "device, password, client-secret or client-certificate\n");
                return EXIT_USAGE;
        }
        /* The broker checks again (the same function); this gives the message before anything
         * is sent. */
        check.flow = (char *)o->flow;
        if (account_meta_validate(&check) < 0) {
                fprintf(stderr, "credbroker: tenant, client id, mailbox, user name, authority or "
                                "graph has characters that are not allowed (URLs must be "
                                "https://), or --cloud is not global, usgov, usgov-high, dod "
                                "or china\n");
                return EXIT_USAGE;
        }
        if ((o->token_endpoint && !url_is_acceptable(o->token_endpoint)) ||
            (o->device_endpoint && !url_is_acceptable(o->device_endpoint))) {
                fprintf(stderr, "credbroker: --token-endpoint and --device-endpoint must be "
                                "https:// URLs\n");
                return EXIT_USAGE;
        }
        if (o->meta.authority && o->token_endpoint) {
                fprintf(stderr, "credbroker: give --authority or --token-endpoint, not both\n");
                return EXIT_USAGE;
        }
        if (o->device_endpoint && !o->token_endpoint) {
                fprintf(stderr, "credbroker: --device-endpoint goes with --token-endpoint\n");
                return EXIT_USAGE;
        }
        if (strcmp(o->flow, "password") == 0 ? !o->meta.username
                                             : o->meta.username || o->password_stdin) {
                fprintf(stderr, "credbroker: --username (and --password-stdin) go with, and "
                                "only with, --flow password\n");
                return EXIT_USAGE;
        }
        if (strcmp(o->flow, "client-secret") == 0 ? !o->secret_stdin
                                                  : o->secret_stdin || o->secret_expires) {
                fprintf(stderr, "credbroker: --flow client-secret reads the secret from standard "
                                "input: give --secret-stdin (and only then --secret-expires)\n");
                return EXIT_USAGE;
        }
        if (o->assertion_alg && strcmp(o->flow, "client-certificate") != 0) {
                fprintf(stderr, "credbroker: --assertion-alg goes with, and only with, --flow "
                                "client-certificate\n");
                return EXIT_USAGE;
        }
        if (o->client_auth && strcmp(o->flow, "client-secret") != 0) {
                fprintf(stderr, "credbroker: --client-auth goes with, and only with, --flow "
                                "client-secret\n");
                return EXIT_USAGE;
        }
        return 0;
}

static cJSON *add_request(const char *name, const struct add_options *o)
{
        _cleanup_json_ cJSON *request = admin_request_new("account.add");
        struct {
                const char *key, *value;
        } fields[] = {
            {"account", name},
            {"flow", o->flow},
            {"tenant", o->meta.tenant},
            {"client_id", o->meta.client_id},
            {"mailbox", o->meta.mailbox},
            {"username", o->meta.username},
            {"authority", o->meta.authority},
            {"token_endpoint", o->token_endpoint},
            {"device_endpoint", o->device_endpoint},
            {"graph", o->meta.graph},
            {"cloud", o->meta.cloud},
            {"assertion_alg", o->assertion_alg},
            {"client_auth", o->client_auth},
        };
        uint64_t expires_at;

        if (!request)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (fields[i].value &&
                    !cJSON_AddStringToObject(request, fields[i].key, fields[i].value))
                        return NULL;
        if (o->n_scopes > 0) {
                cJSON *array = cJSON_AddArrayToObject(request, "scopes");

                for (size_t i = 0; i < o->n_scopes; i++)
                        if (!array ||
                            !cJSON_AddItemToArray(array, cJSON_CreateString(o->scopes[i])))
                                return NULL;
        }
        if (o->secret_expires && (parse_iso_date(o->secret_expires, &expires_at) < 0 ||
                                  !json_add_uint(request, "secret_expires_at", expires_at)))
                return NULL;
        return TAKE_PTR(request);
}

/* The password of the password flow: the terminal without echo, or one line of stdin. */
static int read_password(bool from_stdin, const char *username, struct secret **ret)
{
        char prompt[400];
        int r;

        if (from_stdin)
                r = password_read_line(STDIN_FILENO, ADMIN_SECRET_MAX, ret);
        else {
                snprintf(prompt, sizeof(prompt), "Password for %s: ", username);
                r = password_read_tty(prompt, ADMIN_SECRET_MAX, ret);
        }
        if (r == 0)
                return 0;
        fprintf(stderr, "credbroker: cannot read the password: %s\n",
                r == -ENXIO     ? "there is no terminal; use --password-stdin"
                : r == -EFBIG   ? "longer than 1024 bytes"
                : r == -ENODATA ? "it is empty"
                : r == -EIO     ? "no input"
                                : strerror(-r));
        return EXIT_DATAERR;
}

/* Sends request (with the secret under secret_key, if any) and follows the sign-in. */
static int send_and_follow(const char *admin_socket, const cJSON *request, const char *secret_key,
                           const struct secret *secret)
{
        _cleanup_admin_ struct admin_conn *c = NULL;
        int r;

        r = admin_connect_or_report(admin_socket, &c);
        if (r == 0)
                r = admin_send(c, request, secret_key, secret);
        if (r == 0)
                r = sign_in_follow(c);
        return r;
}

enum {
        OPT_TOKEN_ENDPOINT = 0x100,
        OPT_DEVICE_ENDPOINT,
        OPT_PASSWORD_STDIN,
        OPT_SECRET_STDIN,
        OPT_SECRET_EXPIRES,
        OPT_GRAPH,
        OPT_ASSERTION_ALG,
        OPT_CLIENT_AUTH,
};

/* The options whose value is checked as it is read: 0, or EXIT_USAGE after saying why. */
static int add_checked_option(int c, const char *arg, void *userdata)
{
        struct add_options *o = userdata;
        uint64_t ignored;

        switch (c) {
        case 's':
                if (o->n_scopes == WIRE_MAX_SCOPES || !scope_is_valid(arg)) {
                        fprintf(stderr,
                                "credbroker: at most %u scopes, each 1-%u printable characters "
                                "without spaces\n",
                                WIRE_MAX_SCOPES, SCOPE_MAX_LEN);
                        return EXIT_USAGE;
                }
                o->scopes[o->n_scopes++] = arg;
                return 0;
        case OPT_SECRET_EXPIRES:
                if (parse_iso_date(arg, &ignored) < 0) {
                        fprintf(stderr, "credbroker: --secret-expires wants a date YYYY-MM-DD\n");
                        return EXIT_USAGE;
                }
                o->secret_expires = arg;
                return 0;
        case OPT_ASSERTION_ALG:
                /* Exactly as the broker spells them (account_meta_validate). */
                if (strcmp(arg, "PS256") != 0 && strcmp(arg, "RS256") != 0) {
                        fprintf(stderr,
                                "credbroker: --assertion-alg is PS256 (the default) or RS256\n");
                        return EXIT_USAGE;
                }
                o->assertion_alg = arg;
                return 0;
        case OPT_CLIENT_AUTH:
                if (strcmp(arg, "post") != 0 && strcmp(arg, "basic") != 0) {
                        fprintf(stderr, "credbroker: --client-auth is post (the default: the "
                                        "secret in the request body) or basic (an HTTP Basic "
                                        "header)\n");
                        return EXIT_USAGE;
                }
                o->client_auth = arg;
                return 0;
        }
        return EXIT_USAGE;
}

/* The secret the flow sends (password, client secret) and its member name, or none. */
static int add_read_secret(const struct add_options *o, struct secret **ret, const char **ret_key)
{
        int r;

        if (strcmp(o->flow, "password") == 0) {
                *ret_key = "password";
                return read_password(o->password_stdin, o->meta.username, ret);
        }
        if (strcmp(o->flow, "client-secret") != 0)
                return 0;
        *ret_key = "client_secret";
        r = password_read_line(STDIN_FILENO, ADMIN_SECRET_MAX, ret);
        if (r < 0) {
                fprintf(stderr,
                        "credbroker: cannot read the client secret from standard input: %s\n",
                        r == -EFBIG                  ? "longer than 1024 bytes"
                        : r == -ENODATA || r == -EIO ? "it is empty"
                                                     : strerror(-r));
                return EXIT_DATAERR;
        }
        return 0;
}

int account_add(int argc, char **argv)
{
        static const struct cli_option options[] = {
            CLI_ARG("tenant", 't', struct add_options, meta.tenant),
            CLI_ARG("client-id", 'i', struct add_options, meta.client_id),
            CLI_ARG("flow", 'f', struct add_options, flow),
            CLI_ARG("mailbox", 'm', struct add_options, meta.mailbox),
            CLI_OWN("scope", required_argument, 's'),
            CLI_ARG("authority", 'a', struct add_options, meta.authority),
            CLI_ARG("token-endpoint", OPT_TOKEN_ENDPOINT, struct add_options, token_endpoint),
            CLI_ARG("device-endpoint", OPT_DEVICE_ENDPOINT, struct add_options, device_endpoint),
            CLI_ARG("graph", OPT_GRAPH, struct add_options, meta.graph),
            CLI_ARG("cloud", 'C', struct add_options, meta.cloud),
            CLI_ARG("username", 'u', struct add_options, meta.username),
            CLI_FLAG("password-stdin", OPT_PASSWORD_STDIN, struct add_options, password_stdin),
            CLI_FLAG("secret-stdin", OPT_SECRET_STDIN, struct add_options, secret_stdin),
            CLI_OWN("secret-expires", required_argument, OPT_SECRET_EXPIRES),
            CLI_OWN("assertion-alg", required_argument, OPT_ASSERTION_ALG),
            CLI_OWN("client-auth", required_argument, OPT_CLIENT_AUTH),
            CLI_ADMIN_SOCKET(struct add_options, target),
            CLI_CONFIG(struct add_options, target),
            CLI_HELP,
            {0},
        };
        struct add_options o = {0};
        _cleanup_json_ cJSON *request = NULL;
        _cleanup_secret_ struct secret *secret = NULL;
        const char *name, *secret_key = NULL;
        int r;

        r = cli_parse_one(argc, argv, "t:i:f:m:s:a:u:c:h", options, &o, add_checked_option,
                          add_usage, EXIT_USAGE);
        if (r >= 0)
                return r;
        r = account_name_arg(argc, argv, add_usage, &name);
        if (r >= 0)
                return r;
        r = add_check(&o);
        if (r != 0)
                return r;
        request = add_request(name, &o);
        if (!request)
                return EXIT_SOFTWARE;
        r = add_read_secret(&o, &secret, &secret_key);
        if (r != 0)
                return r;
        return send_and_follow(admin_socket_path(o.target.admin_socket, o.target.config), request,
                               secret_key, secret);
}

static void login_usage(FILE *f)
{
        fputs("Usage: credbroker account login NAME [--password-stdin] [--admin-socket PATH]\n"
              "                                [--config PATH]\n"
              "\n"
              "Signs an existing delegated account in again, with the flow it was added with:\n"
              "the device code, or the password (asked on the terminal without echo, or one\n"
              "line of standard input with --password-stdin). Exit codes as account add.\n",
              f);
}

struct login_options {
        struct cli_target target;
        bool password_stdin;
};

int account_login(int argc, char **argv)
{
        static const struct cli_option options[] = {
            CLI_FLAG("password-stdin", OPT_PASSWORD_STDIN, struct login_options, password_stdin),
            CLI_ADMIN_SOCKET(struct login_options, target),
            CLI_CONFIG(struct login_options, target),
            CLI_HELP,
            {0},
        };
        struct login_options o = {0};
        const char *name, *admin_socket, *flow, *username;
        _cleanup_json_ cJSON *show = NULL, *request = NULL, *show_reply = NULL;
        _cleanup_secret_ struct secret *password = NULL;
        const cJSON *account;
        int r;

        r = cli_parse_one(argc, argv, "c:h", options, &o, NULL, login_usage, EXIT_USAGE);
        if (r >= 0)
                return r;
        r = account_name_arg(argc, argv, login_usage, &name);
        if (r >= 0)
                return r;
        admin_socket = admin_socket_path(o.target.admin_socket, o.target.config);

        /* The account's flow decides whether a password is needed. */
        show = admin_request_new("account.show");
        if (!show || !cJSON_AddStringToObject(show, "account", name))
                return EXIT_SOFTWARE;
        r = admin_call(admin_socket, show, &show_reply);
        if (r != 0)
                return r;
        account = cJSON_GetObjectItemCaseSensitive(show_reply, "account");
        flow = json_get_string(account, "flow");
        username = json_get_string(account, "username");
        request = admin_request_new("account.login");
        if (!request || !cJSON_AddStringToObject(request, "account", name))
                return EXIT_SOFTWARE;
        if (flow && strcmp(flow, "password") == 0) {
                r = read_password(o.password_stdin, username ? username : name, &password);
                if (r != 0)
                        return r;
        } else if (o.password_stdin) {
                fprintf(stderr,
                        "credbroker: account %s does not use the password flow; "
                        "--password-stdin does not apply\n",
                        name);
                return EXIT_USAGE;
        }
        return send_and_follow(admin_socket, request, password ? "password" : NULL, password);
}
