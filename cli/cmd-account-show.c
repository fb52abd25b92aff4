/* credbroker account show and the account view: everything an administrator may see of an
 * account, never a secret's value. The objects are the admin protocol's (account.list's row,
 * account.show's "account"): the broker sends them, and without a broker the direct path builds
 * the same ones from the token with the broker's own builder (broker/admin/account-view.c), so
 * one renderer here prints either. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account-via-broker.h"
#include "account-view.h"
#include "client.h"
#include "config.h"
#include "cmd-account.h"
#include "display.h"
#include "json.h"
#include "store.h"
#include "util.h"

int account_print_json(const cJSON *value)
{
        char *text = cJSON_Print(value);

        if (!text)
                return EXIT_SOFTWARE;
        puts(text);
        json_free_string(text);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

static const char *field(const cJSON *o, const char *key)
{
        const char *s = json_get_string(o, key);

        return s && *s ? s : "-";
}

/* "Label:              value", the value with control characters replaced. */
static void row(const char *label, const char *value)
{
        printf("%-20s ", label);
        display_text(stdout, value);
        fputc('\n', stdout);
}

static void time_row(const char *label, const cJSON *o, const char *key)
{
        char when[32];
        uint64_t t;

        if (json_get_u64(o, key, &t) < 0)
                return;
        display_time(t, when);
        row(label, when);
}

/* An account setting of the token request (docs/microsoft-365.md), shown for the flow it applies
 * to or whenever it is set; absent means the broker's default. */
static void setting_row(const cJSON *a, const char *label, const char *key, const char *flow,
                        const char *default_text)
{
        const char *value = json_get_string(a, key);

        if (value)
                row(label, value);
        else if (strcmp(field(a, "flow"), flow) == 0)
                row(label, default_text);
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

static void print_settings(const cJSON *a)
{
        row("Flow:", field(a, "flow"));
        row("Tenant:", field(a, "tenant"));
        row("Client ID:", field(a, "client_id"));
        row("Mailbox:", field(a, "mailbox"));
        if (json_get_string(a, "username"))
                row("User name:", field(a, "username"));
        if (json_get_string(a, "authority"))
                row("Authority:", field(a, "authority"));
        /* The URLs the broker uses; an older broker sends only explicit ones. */
        if (json_get_string(a, "effective_token_endpoint"))
                row("Token endpoint:", field(a, "effective_token_endpoint"));
        else if (json_get_string(a, "token_endpoint"))
                row("Token endpoint:", field(a, "token_endpoint"));
        else
                row("Authority:", "(the broker's configured default)");
        if (json_get_string(a, "effective_device_endpoint"))
                row("Device endpoint:", field(a, "effective_device_endpoint"));
        else if (json_get_string(a, "device_endpoint"))
                row("Device endpoint:", field(a, "device_endpoint"));
        if (json_get_string(a, "cloud"))
                row("Cloud:", field(a, "cloud"));
        if (json_get_string(a, "graph"))
                row("Graph:", field(a, "graph"));
        setting_row(a, "Assertion alg:", "assertion_alg", "client-certificate", "PS256 (default)");
        setting_row(a, "Client auth:", "client_auth", "client-secret", "post (default)");
        time_row("Created:", a, "created");
}

static void print_refresh_token(const cJSON *a, uint64_t now)
{
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(a, "refresh_token");
        uint64_t generation, objects, stored = 0, damaged;
        char text[160], count[48] = "", when[32] = "unknown", age[48];

        if (!cJSON_IsObject(rt) || json_get_u64(rt, "generation", &generation) < 0) {
                if (json_get_u64(a, "refresh_token_damaged", &damaged) == 0 && damaged > 0) {
                        snprintf(text, sizeof(text), "none intact (%llu damaged object%s)",
                                 (unsigned long long)damaged, damaged == 1 ? "" : "s");
                        row("Refresh token:", text);
                } else {
                        row("Refresh token:", "none");
                }
                return;
        }
        if (json_get_u64(rt, "objects", &objects) == 0)
                snprintf(count, sizeof(count), " (%llu object%s)", (unsigned long long)objects,
                         objects == 1 ? "" : "s");
        if (json_get_u64(rt, "stored_at", &stored) == 0 && stored > 0)
                display_time(stored, when);
        format_age(stored, now, age);
        snprintf(text, sizeof(text), "generation %llu%s, stored %s, age %s",
                 (unsigned long long)generation, count, when, age);
        row("Refresh token:", text);
}

static void print_certificate(const cJSON *cert, uint64_t now)
{
        char text[80], when[32];
        uint64_t value;

        if (!cJSON_IsObject(cert)) {
                row("Certificate:", "none");
                return;
        }
        printf("Certificate:\n");
        row("  Subject:", field(cert, "subject"));
        row("  Issuer:", field(cert, "issuer"));
        time_row("  Not before:", cert, "not_before");
        if (json_get_u64(cert, "not_after", &value) == 0) {
                display_time(value, when);
                snprintf(text, sizeof(text), "%s%s", when, value <= now ? " (EXPIRED)" : "");
                row("  Not after:", text);
        }
        if (json_get_u64(cert, "bits", &value) == 0) {
                snprintf(text, sizeof(text), "RSA %llu bits, in the token, not extractable",
                         (unsigned long long)value);
                row("  Key:", text);
        }
        row("  Thumbprint (SHA-1, as the Entra portal shows it):", field(cert, "sha1_thumbprint"));
        row("  SHA-256 thumbprint:", field(cert, "sha256_thumbprint"));
}

/* Which credential-store backend holds the account's metadata, refresh token and client secret
 * (an older broker does not say). */
static void print_backend(const cJSON *a)
{
        const char *backend = json_get_string(a, "backend");

        if (!backend)
                return;
        if (strcmp(backend, "both") == 0)
                row("Store:", "BOTH objects and wrapped: a \"credbroker store migrate\" was "
                              "interrupted; stop credbrokerd and run it again with the same --to");
        else
                row("Store:", backend);
}

/* The object of "credbroker account show --json" (docs/admin-protocol.md), as text. */
static void show_text(const cJSON *a)
{
        uint64_t now = (uint64_t)time(NULL);

        row("Account:", field(a, "account"));
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "metadata_unreadable")))
                row("Metadata:", "unreadable (store it again with account import)");
        else if (json_get_string(a, "flow"))
                print_settings(a);
        else
                row("Metadata:", "none (an app-only account made by keygen or secret)");
        if (json_get_string(a, "state"))
                row("State:", field(a, "state"));
        if (json_get_string(a, "message"))
                row("Message:", field(a, "message"));
        print_refresh_token(a, now);
        row("Client secret:", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "client_secret"))
                                  ? "present"
                                  : "none");
        time_row("Secret expires:", a, "secret_expires_at");
        print_certificate(cJSON_GetObjectItemCaseSensitive(a, "certificate"), now);
        print_backend(a);
}

int account_show_print(const cJSON *account, bool json)
{
        if (json)
                return account_print_json(account);
        show_text(account);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

/* ---- account list ---- */

/* A column of a table: sanitized, padded to width. */
static void column(const char *s, int width)
{
        int n = (int)strlen(s);

        display_text(stdout, s);
        for (; n < width; n++)
                fputc(' ', stdout);
        fputc(' ', stdout);
}

/* Numbers are plain cJSON numbers (not json_add_uint's raw ones) because print_list_row() reads
 * them back; generations and times are far below 2^53. */
static bool add_list_credentials(cJSON *row, const cJSON *shown)
{
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(shown, "refresh_token");
        const cJSON *cert = cJSON_GetObjectItemCaseSensitive(shown, "certificate");
        uint64_t generation, not_after;

        if (!(json_get_u64(rt, "generation", &generation) == 0
                  ? cJSON_AddNumberToObject(row, "refresh_token_generation", (double)generation) !=
                        NULL
                  : cJSON_AddNullToObject(row, "refresh_token_generation") != NULL) ||
            !cJSON_AddBoolToObject(
                row, "client_secret",
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(shown, "client_secret"))))
                return false;
        return !cJSON_IsObject(cert) || json_get_u64(cert, "not_after", &not_after) < 0 ||
               (cJSON_AddNumberToObject(row, "certificate_not_after", (double)not_after) &&
                cJSON_AddStringToObject(row, "certificate_sha1_thumbprint",
                                        field(cert, "sha1_thumbprint")));
}

cJSON *account_list_row(const cJSON *listed, const cJSON *shown)
{
        _cleanup_json_ cJSON *row = cJSON_CreateObject();
        static const char *const keys[] = {"account", "flow", "tenant", "client_id", "mailbox"};

        if (!row)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *value = json_get_string(listed, keys[i]);

                if (value && !cJSON_AddStringToObject(row, keys[i], value))
                        return NULL;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(shown, "metadata_unreadable")) &&
            !cJSON_AddTrueToObject(row, "metadata_unreadable"))
                return NULL;
        if (!add_list_credentials(row, shown))
                return NULL;
        if (json_get_string(listed, "state") &&
            !cJSON_AddStringToObject(row, "state", json_get_string(listed, "state")))
                return NULL;
        if (json_get_string(shown, "backend") &&
            !cJSON_AddStringToObject(row, "backend", json_get_string(shown, "backend")))
                return NULL;
        return TAKE_PTR(row);
}

static void print_list_row(const cJSON *row)
{
        char until[32] = "-", generation[24] = "none";
        uint64_t value;

        if (json_get_u64(row, "certificate_not_after", &value) == 0) {
                display_time(value, until);
                until[10] = 0; /* the date is enough in a table */
        }
        if (json_get_u64(row, "refresh_token_generation", &value) == 0)
                snprintf(generation, sizeof(generation), "%llu", (unsigned long long)value);
        column(field(row, "account"), 20);
        column(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "metadata_unreadable"))
                   ? "(unreadable)"
                   : field(row, "flow"),
               18);
        column(field(row, "tenant"), 38);
        column(field(row, "client_id"), 38);
        column(field(row, "mailbox"), 30);
        column(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "client_secret")) ? "yes" : "no",
               6);
        column(until, 10);
        column(field(row, "state"), 12);
        /* The refresh-token generation stays the last column: scripts read it from there. */
        printf("%s\n", generation);
}

static const char *const list_stores[] = {"both", "objects", "wrapped"};

/* "Store: NAME: account, account" for the rows held by that store. */
static void print_store_names(const cJSON *rows, const char *store)
{
        const char *sep = " ";
        const cJSON *r;

        if (strcmp(store, "both") == 0)
                fputs("Store: BOTH objects and wrapped (a \"credbroker store migrate\" was "
                      "interrupted; stop credbrokerd and run it again with the same --to):",
                      stdout);
        else
                printf("Store: %s:", store);
        cJSON_ArrayForEach(r, rows)
        {
                if (strcmp(field(r, "backend"), store) != 0)
                        continue;
                fputs(sep, stdout);
                display_text(stdout, field(r, "account"));
                sep = ", ";
        }
        fputc('\n', stdout);
}

/* Under the table (whose columns scripts read): which credential store holds the accounts'
 * metadata, refresh tokens and client secrets. One line when a single store does; else a line
 * per store naming its accounts, BOTH first (and said on stderr too). */
static void print_stores(const cJSON *rows)
{
        unsigned count[ELEMENTSOF(list_stores)] = {0}, stores = 0;
        const cJSON *r;

        cJSON_ArrayForEach(r, rows)
        {
                for (size_t i = 0; i < ELEMENTSOF(list_stores); i++)
                        count[i] += strcmp(field(r, "backend"), list_stores[i]) == 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(list_stores); i++)
                stores += count[i] > 0;
        if (stores == 1 && count[0] == 0) {
                printf("Store: %s\n", count[1] ? "objects" : "wrapped");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(list_stores); i++)
                if (count[i] > 0)
                        print_store_names(rows, list_stores[i]);
        if (count[0] > 0)
                fprintf(stderr,
                        "credbroker: %u account%s in BOTH credential stores (objects and wrapped): "
                        "a \"credbroker store migrate\" was interrupted; stop credbrokerd and run "
                        "it again with the same --to\n",
                        count[0], count[0] == 1 ? " is" : "s are");
}

int account_list_print(const cJSON *rows, bool json)
{
        const cJSON *r;

        if (json)
                return account_print_json(rows);
        printf("%-20s %-18s %-38s %-38s %-30s %-6s %-10s %-12s %s\n", "ACCOUNT", "FLOW", "TENANT",
               "CLIENT ID", "MAILBOX", "SECRET", "CERT UNTIL", "STATE", "RT GENERATION");
        cJSON_ArrayForEach(r, rows) print_list_row(r);
        print_stores(rows);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

/* ---- the direct path ---- */

/* What the token holds of one account (name) or of all (NULL), as the broker gathers it, and
 * which credential-store backend holds each (account.show's "backend"). */
static int gather(struct store *store, const struct config *config, const char *name,
                  struct inventory_request **ret)
{
        struct inventory_request *request = calloc(1, sizeof(*request));
        int r;

        if (!request)
                return -ENOMEM;
        if (name)
                memcpy(request->account, name, strlen(name) + 1);
        request->backends_wanted = true;
        request->wrapped_dir = config->wrapped_dir ? strdup(config->wrapped_dir) : NULL;
        r = inventory_gather(store, request);
        for (size_t i = 0; r >= 0 && !name && i < request->n_items; i++)
                if (store_account_backends(store, request->wrapped_dir, request->items[i].name,
                                           &request->items[i].backends) < 0)
                        request->items[i].backends = 0;
        if (r < 0) {
                inventory_request_free(request);
                return r;
        }
        *ret = request;
        return 0;
}

/* o as the peer of a socket would see it: printed and parsed again (json_add_uint's raw numbers
 * become numbers). Takes o. */
static cJSON *as_received(cJSON *o)
{
        char *text = o ? cJSON_PrintUnformatted(o) : NULL;
        cJSON *copy = NULL;

        cJSON_Delete(o);
        if (text && json_parse((const uint8_t *)text, strlen(text), &copy) < 0)
                copy = NULL;
        json_free_string(text);
        return copy;
}

/* The objects of one account, as the broker would send them without runtime state. */
static int view_of(const struct account_inventory *item, const struct config *config,
                   cJSON **ret_listed, cJSON **ret_shown)
{
        const struct account_view_options o = {
            .default_authority = config->authority,
            .stored_flow_name = true,
        };
        struct account_status status;

        account_view_store_status(item, &status);
        *ret_shown = as_received(account_view_show(item, &status, &o));
        *ret_listed = as_received(account_view_list_row(item, &status, &o));
        return *ret_shown && *ret_listed ? 0 : -ENOMEM;
}

int account_show_direct(struct store *store, const struct config *config, const char *name,
                        bool json)
{
        struct inventory_request *request = NULL;
        _cleanup_json_ cJSON *shown = NULL, *listed = NULL;
        int r;

        r = gather(store, config, name, &request);
        if (r == -ENOENT) {
                fprintf(stderr, "credbroker: there is no account %s in the token\n", name);
                return EXIT_NOINPUT;
        }
        if (r < 0) {
                fprintf(stderr, "credbroker: reading account %s failed: %s\n", name, strerror(-r));
                return EXIT_SOFTWARE;
        }
        r = view_of(&request->items[0], config, &listed, &shown);
        inventory_request_free(request);
        if (r < 0)
                return EXIT_SOFTWARE;
        return account_show_print(shown, json);
}

/* Accounts with a sealed file in wrapped_dir that a store opened with `objects` does not list:
 * a credbroker store migrate --to wrapped, finished or not, before the configuration was
 * changed. Said on stderr, so that the table stays what the configuration's backend holds. */
static void note_wrapped_only(const struct config *config, const struct inventory_request *listed)
{
        struct dirent *e;
        unsigned n = 0;
        DIR *dir;

        if (config->store != CONFIG_STORE_OBJECTS || !config->wrapped_dir ||
            !(dir = opendir(config->wrapped_dir)))
                return;
        while ((e = readdir(dir))) {
                size_t len = strlen(e->d_name), suffix = strlen(".sealed");
                bool known = false;

                if (e->d_name[0] == '.' || len <= suffix ||
                    strcmp(e->d_name + len - suffix, ".sealed") != 0)
                        continue;
                for (size_t i = 0; i < listed->n_items && !known; i++)
                        known = strlen(listed->items[i].name) == len - suffix &&
                                strncmp(listed->items[i].name, e->d_name, len - suffix) == 0;
                n += !known;
        }
        closedir(dir);
        if (n > 0)
                fprintf(stderr,
                        "credbroker: %u more account%s held by the wrapped store (%s), which the "
                        "configuration does not use: finish with \"credbroker store migrate --to "
                        "wrapped\" and set \"store = wrapped\" in [pkcs11], or move %s back with "
                        "--to objects\n",
                        n, n == 1 ? " is" : "s are", config->wrapped_dir, n == 1 ? "it" : "them");
}

int account_list_direct(struct store *store, const struct config *config, bool json)
{
        _cleanup_json_ cJSON *rows = cJSON_CreateArray();
        struct inventory_request *request = NULL;
        int r;

        if (!rows)
                return EXIT_SOFTWARE;
        if (gather(store, config, NULL, &request) < 0) {
                fprintf(stderr, "credbroker: cannot list the accounts in the token\n");
                return EXIT_SOFTWARE;
        }
        for (size_t i = 0; i < request->n_items; i++) {
                _cleanup_json_ cJSON *listed = NULL, *shown = NULL;
                cJSON *row = NULL;

                r = view_of(&request->items[i], config, &listed, &shown);
                if (r == 0)
                        row = account_list_row(listed, shown);
                if (!row || !cJSON_AddItemToArray(rows, row)) {
                        cJSON_Delete(row);
                        inventory_request_free(request);
                        return EXIT_SOFTWARE;
                }
        }
        note_wrapped_only(config, request);
        inventory_request_free(request);
        return account_list_print(rows, json);
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

static int show_run(const struct account_args *a, struct account_target *t, void *state)
{
        if (t->admin)
                return broker_account_show(t->admin, a->name, a->json);
        return account_show_direct(t->store, t->config, a->name, a->json);
}

const struct account_command account_show_command = {
    .name = "show",
    .usage = show_usage,
    .takes_name = true,
    .json = true,
    .run = show_run,
};
