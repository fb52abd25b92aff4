/* credbroker account show: everything an administrator may see of one account, never a secret's
 * value: settings, refresh-token generation and age, whether a client secret is stored, and the
 * assertion certificate with the thumbprints Entra shows. */
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
#include "store.h"
#include "util.h"

struct account_view {
        struct account_meta meta;
        /* The URLs the account talks to (explicit, or from the authority and tenant), or NULL. */
        char *token_endpoint;
        char *device_endpoint;
        bool has_meta;
        bool meta_unreadable;
        bool has_refresh_token;
        struct store_refresh_token_info refresh_token;
        bool has_secret;
        bool has_certificate;
        struct store_certificate_info certificate;
};

static void account_view_clear(struct account_view *v)
{
        account_meta_clear(&v->meta);
        free(v->token_endpoint);
        free(v->device_endpoint);
        store_certificate_info_clear(&v->certificate);
}

/* 0, -ENOENT when the account has no object at all, or another negative errno. */
static int account_view_load(struct store *store, const char *name, struct account_view *v)
{
        _cleanup_free_ char *json = NULL;
        int r;

        *v = (struct account_view){0};
        r = store_get_meta(store, name, &json);
        if (r == 0) {
                v->has_meta = true;
                v->meta_unreadable = account_meta_from_json(json, &v->meta) < 0;
        } else if (r != -ENOENT) {
                return r;
        }
        r = store_refresh_token_info(store, name, &v->refresh_token);
        if (r == 0)
                v->has_refresh_token = true;
        else if (r != -ENOENT)
                return r;
        r = store_has_client_secret(store, name);
        if (r < 0)
                return r;
        v->has_secret = r > 0;
        r = store_get_certificate(store, name, &v->certificate);
        if (r == 0)
                v->has_certificate = true;
        else if (r != -ENOENT)
                return r;
        if (!v->has_meta && !v->has_refresh_token && !v->has_secret && !v->has_certificate &&
            v->refresh_token.n_generations == 0)
                return -ENOENT;
        return 0;
}

static void format_age(uint64_t then, uint64_t now, char out[static 48])
{
        uint64_t age;

        if (then == 0) {
                snprintf(out, 48, "unknown");
                return;
        }
        age = now > then ? now - then : 0;
        if (age >= 86400)
                snprintf(out, 48, "%llu day%s", (unsigned long long)(age / 86400),
                         age / 86400 == 1 ? "" : "s");
        else if (age >= 3600)
                snprintf(out, 48, "%llu hour%s", (unsigned long long)(age / 3600),
                         age / 3600 == 1 ? "" : "s");
        else if (age >= 60)
                snprintf(out, 48, "%llu minute%s", (unsigned long long)(age / 60),
                         age / 60 == 1 ? "" : "s");
        else
                snprintf(out, 48, "less than a minute");
}

/* The effective endpoints, with the configuration's authority as the default, as the broker
 * derives them (account_meta_token_endpoint). */
static int account_view_endpoints(struct account_view *v, const char *config_option)
{
        _cleanup_(config_freep) struct config *config = NULL;
        const char *path = cli_config_path(config_option);
        int r;

        if (!v->has_meta || v->meta_unreadable)
                return 0;
        if (!config_option && access(path, F_OK) < 0 ? config_new_default(&config) < 0
                                                     : config_load(path, true, &config) < 0)
                return -EINVAL;
        if (account_meta_token_endpoint(&v->meta, config->authority, &v->token_endpoint) < 0)
                return -ENOMEM;
        r = account_meta_device_endpoint(&v->meta, config->authority, &v->device_endpoint);
        return r == -EOPNOTSUPP ? 0 : r;
}

static void show_text(const char *name, const struct account_view *v, uint64_t now)
{
        char when[32], age[48];

        printf("Account:             %s\n", name);
        if (v->meta_unreadable) {
                printf("Metadata:            unreadable (store it again with account import)\n");
        } else if (!v->has_meta) {
                printf("Metadata:            none (an app-only account made by keygen or "
                       "secret)\n");
        } else {
                printf("Flow:                %s\n", v->meta.flow);
                printf("Tenant:              %s\n", v->meta.tenant);
                printf("Client ID:           %s\n", v->meta.client_id);
                printf("Mailbox:             %s\n", v->meta.mailbox ? v->meta.mailbox : "-");
                if (v->meta.username)
                        printf("User name:           %s\n", v->meta.username);
                if (v->meta.authority)
                        printf("Authority:           %s\n", v->meta.authority);
                if (v->token_endpoint)
                        printf("Token endpoint:      %s\n", v->token_endpoint);
                if (v->device_endpoint)
                        printf("Device endpoint:     %s\n", v->device_endpoint);
                /* As the broker's account.show says them (account-via-broker.c). */
                if (v->meta.assertion_alg || v->meta.flow_kind == ACCOUNT_FLOW_CLIENT_CERTIFICATE)
                        printf("Assertion alg:       %s\n",
                               v->meta.assertion_alg ? v->meta.assertion_alg : "PS256 (default)");
                if (v->meta.client_auth || v->meta.flow_kind == ACCOUNT_FLOW_CLIENT_SECRET)
                        printf("Client auth:         %s\n",
                               v->meta.client_auth ? v->meta.client_auth : "post (default)");
                account_format_time(v->meta.created, when);
                printf("Created:             %s\n", when);
        }
        if (v->has_refresh_token) {
                account_format_time(v->refresh_token.stored_at, when);
                format_age(v->refresh_token.stored_at, now, age);
                printf("Refresh token:       generation %llu (%zu object%s), stored %s, age %s\n",
                       (unsigned long long)v->refresh_token.generation,
                       v->refresh_token.n_generations,
                       v->refresh_token.n_generations == 1 ? "" : "s", when, age);
        } else if (v->refresh_token.n_generations > 0) {
                printf("Refresh token:       none intact (%zu damaged object%s)\n",
                       v->refresh_token.n_generations,
                       v->refresh_token.n_generations == 1 ? "" : "s");
        } else {
                printf("Refresh token:       none\n");
        }
        printf("Client secret:       %s\n", v->has_secret ? "present" : "none");
        if (!v->has_certificate) {
                printf("Certificate:         none\n");
                return;
        }
        printf("Certificate:\n");
        printf("  Subject:           %s\n", v->certificate.subject);
        printf("  Issuer:            %s\n", v->certificate.issuer);
        account_format_time(v->certificate.not_before, when);
        printf("  Not before:        %s\n", when);
        account_format_time(v->certificate.not_after, when);
        printf("  Not after:         %s%s\n", when,
               v->certificate.not_after <= now ? " (EXPIRED)" : "");
        printf("  Key:               RSA %u bits, in the token, not extractable\n",
               v->certificate.bits);
        printf("  Thumbprint (SHA-1, as the Entra portal shows it): %s\n", v->certificate.sha1_hex);
        printf("  SHA-256 thumbprint: %s\n", v->certificate.sha256_hex);
}

static int show_json(const char *name, const struct account_view *v)
{
        _cleanup_json_ cJSON *o = cJSON_CreateObject();
        cJSON *rt = NULL, *cert = NULL;
        char *text;
        bool good;

        if (!o)
                return EXIT_SOFTWARE;
        good = cJSON_AddStringToObject(o, "account", name) &&
               cJSON_AddBoolToObject(o, "metadata", v->has_meta && !v->meta_unreadable);
        if (good && v->has_meta && !v->meta_unreadable)
                good =
                    cJSON_AddStringToObject(o, "flow", v->meta.flow) &&
                    cJSON_AddStringToObject(o, "tenant", v->meta.tenant) &&
                    cJSON_AddStringToObject(o, "client_id", v->meta.client_id) &&
                    (!v->meta.mailbox || cJSON_AddStringToObject(o, "mailbox", v->meta.mailbox)) &&
                    (!v->meta.username ||
                     cJSON_AddStringToObject(o, "username", v->meta.username)) &&
                    (!v->meta.authority ||
                     cJSON_AddStringToObject(o, "authority", v->meta.authority)) &&
                    (!v->meta.token_endpoint ||
                     cJSON_AddStringToObject(o, "token_endpoint", v->meta.token_endpoint)) &&
                    (!v->meta.device_endpoint ||
                     cJSON_AddStringToObject(o, "device_endpoint", v->meta.device_endpoint)) &&
                    (!v->token_endpoint ||
                     cJSON_AddStringToObject(o, "effective_token_endpoint", v->token_endpoint)) &&
                    (!v->device_endpoint ||
                     cJSON_AddStringToObject(o, "effective_device_endpoint", v->device_endpoint)) &&
                    (!v->meta.assertion_alg ||
                     cJSON_AddStringToObject(o, "assertion_alg", v->meta.assertion_alg)) &&
                    (!v->meta.client_auth ||
                     cJSON_AddStringToObject(o, "client_auth", v->meta.client_auth)) &&
                    json_add_uint(o, "created", v->meta.created);
        if (good && v->has_refresh_token) {
                good = (rt = cJSON_AddObjectToObject(o, "refresh_token")) &&
                       json_add_uint(rt, "generation", v->refresh_token.generation) &&
                       json_add_uint(rt, "objects", v->refresh_token.n_generations) &&
                       (v->refresh_token.stored_at
                            ? json_add_uint(rt, "stored_at", v->refresh_token.stored_at)
                            : cJSON_AddNullToObject(rt, "stored_at") != NULL);
        } else if (good) {
                good = cJSON_AddNullToObject(o, "refresh_token") != NULL;
        }
        if (good)
                good = cJSON_AddBoolToObject(o, "client_secret", v->has_secret);
        if (good && v->has_certificate) {
                good =
                    (cert = cJSON_AddObjectToObject(o, "certificate")) &&
                    cJSON_AddStringToObject(cert, "subject", v->certificate.subject) &&
                    cJSON_AddStringToObject(cert, "issuer", v->certificate.issuer) &&
                    json_add_uint(cert, "not_before", v->certificate.not_before) &&
                    json_add_uint(cert, "not_after", v->certificate.not_after) &&
                    json_add_uint(cert, "bits", v->certificate.bits) &&
                    cJSON_AddStringToObject(cert, "sha1_thumbprint", v->certificate.sha1_hex) &&
                    cJSON_AddStringToObject(cert, "sha256_thumbprint", v->certificate.sha256_hex);
        } else if (good) {
                good = cJSON_AddNullToObject(o, "certificate") != NULL;
        }
        if (!good)
                return EXIT_SOFTWARE;
        text = cJSON_Print(o);
        if (!text)
                return EXIT_SOFTWARE;
        puts(text);
        json_free_string(text);
        return 0;
}

static void show_usage(FILE *f)
{
        fputs("Usage: credbroker account show NAME [--json] [-v] [--admin-socket PATH]\n"
              "                              [--config PATH]\n"
              "\n"
              "Shows an account's settings, its refresh-token generation and age, whether a\n"
              "client secret is stored (never its value) and its assertion certificate with the\n"
              "SHA-1 thumbprint the Entra portal shows and the SHA-256 one. While the broker\n"
              "runs it is asked (with the account's state); otherwise the token is opened.\n",
              f);
}

int account_show(int argc, char **argv)
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
        const char *config_option = NULL, *admin_socket = NULL, *name;
        struct account_view view;
        bool json = false, verbose = false;
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
                        show_usage(stdout);
                        return 0;
                default:
                        show_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc) {
                show_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0)
                return broker_account_show(admin, name, json);
        if (r != 1)
                return r;
        r = account_open_store(config_option, &store);
        if (r != 0)
                return r;
        r = account_view_load(store, name, &view);
        if (r == -ENOENT) {
                fprintf(stderr, "credbroker: there is no account %s in the token\n", name);
                return EXIT_NOINPUT;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: reading account %s failed: %s\n", name, strerror(-r));
                return EXIT_SOFTWARE;
        }
        if (account_view_endpoints(&view, config_option) < 0) {
                account_view_clear(&view);
                return EXIT_CONFIG;
        }
        if (json)
                r = show_json(name, &view);
        else
                show_text(name, &view, (uint64_t)time(NULL));
        account_view_clear(&view);
        return r;
}
