/* The account commands over the admin socket; see account-via-broker.h. */
#include "account-via-broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "display.h"
#include "json.h"
#include "util.h"

/* More accounts than a token holds in practice; a longer list is a broken reply. */
#define ACCOUNTS_MAX 4096

/* Sends request and returns the "ok" reply, or the exit code after printing why. */
static int exchange_ok(struct admin_conn *c, cJSON *request, cJSON **ret)
{
        _cleanup_json_ cJSON *owned = request;
        cJSON *reply = NULL;
        int r;

        if (!owned)
                return EXIT_SOFTWARE;
        r = admin_exchange(c, owned, &reply);
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                r = admin_report_error(reply);
                cJSON_Delete(reply);
                return r;
        }
        *ret = reply;
        return 0;
}

static cJSON *request_for(const char *op, const char *name)
{
        cJSON *request = admin_request_new(op);

        if (request && name && !cJSON_AddStringToObject(request, "account", name)) {
                cJSON_Delete(request);
                return NULL;
        }
        return request;
}

static int print_json(const cJSON *value)
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

/* A column of a table: sanitized, padded to width. */
static void column(const char *s, int width)
{
        int n = (int)strlen(s);

        display_text(stdout, s);
        for (; n < width; n++)
                fputc(' ', stdout);
        fputc(' ', stdout);
}

/* One row of "account list" as the direct path prints it (cmd-account.c), from the broker's
 * list row and its account.show object, plus the state only the broker knows. Numbers are
 * plain cJSON numbers (not json_add_uint's raw ones) because print_list_row() reads them back;
 * generations and times are far below 2^53. */
static cJSON *list_row(const cJSON *listed, const cJSON *shown)
{
        _cleanup_json_ cJSON *row = cJSON_CreateObject();
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(shown, "refresh_token");
        const cJSON *cert = cJSON_GetObjectItemCaseSensitive(shown, "certificate");
        static const char *const keys[] = {"account", "flow", "tenant", "client_id", "mailbox"};
        uint64_t generation, not_after;

        if (!row)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *value = json_get_string(listed, keys[i]);

                if (value && !cJSON_AddStringToObject(row, keys[i], value))
                        return NULL;
        }
        if (!(json_get_u64(rt, "generation", &generation) == 0
                  ? cJSON_AddNumberToObject(row, "refresh_token_generation", (double)generation) !=
                        NULL
                  : cJSON_AddNullToObject(row, "refresh_token_generation") != NULL) ||
            !cJSON_AddBoolToObject(
                row, "client_secret",
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(shown, "client_secret"))))
                return NULL;
        if (cJSON_IsObject(cert) && json_get_u64(cert, "not_after", &not_after) == 0 &&
            (!cJSON_AddNumberToObject(row, "certificate_not_after", (double)not_after) ||
             !cJSON_AddStringToObject(row, "certificate_sha1_thumbprint",
                                      field(cert, "sha1_thumbprint"))))
                return NULL;
        if (json_get_string(listed, "state") &&
            !cJSON_AddStringToObject(row, "state", json_get_string(listed, "state")))
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
        column(field(row, "flow"), 18);
        column(field(row, "tenant"), 38);
        column(field(row, "client_id"), 38);
        column(field(row, "mailbox"), 30);
        column(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "client_secret")) ? "yes" : "no",
               6);
        column(until, 10);
        column(field(row, "state"), 12);
        /* The refresh-token generation stays the last column, as on the direct path: scripts
         * read it from there. */
        printf("%s\n", generation);
}

int broker_account_list(struct admin_conn *c, bool json)
{
        _cleanup_json_ cJSON *reply = NULL, *rows = cJSON_CreateArray();
        const cJSON *accounts, *a;
        int r;

        if (!rows)
                return EXIT_SOFTWARE;
        r = exchange_ok(c, request_for("account.list", NULL), &reply);
        if (r != 0)
                return r;
        accounts = cJSON_GetObjectItemCaseSensitive(reply, "accounts");
        if (!cJSON_IsArray(accounts) || cJSON_GetArraySize(accounts) > ACCOUNTS_MAX) {
                fprintf(stderr, "credbroker: the broker's reply has no list of accounts\n");
                return EXIT_SOFTWARE;
        }
        /* account.list has names, settings and state; the credential facts of each row come
         * from account.show on the same connection. */
        cJSON_ArrayForEach(a, accounts)
        {
                _cleanup_json_ cJSON *shown = NULL;
                const char *name = json_get_string(a, "account");
                cJSON *row;

                if (!name) {
                        fprintf(stderr, "credbroker: the broker's list has a nameless entry\n");
                        return EXIT_SOFTWARE;
                }
                r = exchange_ok(c, request_for("account.show", name), &shown);
                if (r != 0)
                        return r;
                row = list_row(a, cJSON_GetObjectItemCaseSensitive(shown, "account"));
                if (!row || !cJSON_AddItemToArray(rows, row)) {
                        cJSON_Delete(row);
                        return EXIT_SOFTWARE;
                }
        }
        if (json)
                return print_json(rows);
        printf("%-20s %-18s %-38s %-38s %-30s %-6s %-10s %-12s %s\n", "ACCOUNT", "FLOW", "TENANT",
               "CLIENT ID", "MAILBOX", "SECRET", "CERT UNTIL", "STATE", "RT GENERATION");
        cJSON_ArrayForEach(a, rows) print_list_row(a);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

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

/* The object of "credbroker account show --json" (docs/admin-protocol.md), as text. */
static void show_text(const cJSON *a)
{
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(a, "refresh_token");
        const cJSON *cert = cJSON_GetObjectItemCaseSensitive(a, "certificate");
        uint64_t generation, stored, now = (uint64_t)time(NULL);
        char text[96], when[32], age[32];

        row("Account:", field(a, "account"));
        if (json_get_string(a, "flow")) {
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
                setting_row(a, "Assertion alg:", "assertion_alg", "client-certificate",
                            "PS256 (default)");
                setting_row(a, "Client auth:", "client_auth", "client-secret", "post (default)");
                time_row("Created:", a, "created");
        } else {
                row("Metadata:", "none (an app-only account made by keygen or secret)");
        }
        if (json_get_string(a, "state"))
                row("State:", field(a, "state"));
        if (json_get_string(a, "message"))
                row("Message:", field(a, "message"));
        if (cJSON_IsObject(rt) && json_get_u64(rt, "generation", &generation) == 0) {
                if (json_get_u64(rt, "stored_at", &stored) == 0 && stored > 0) {
                        display_time(stored, when);
                        display_relative(stored, now, age);
                        snprintf(text, sizeof(text), "generation %llu, stored %s (%s)",
                                 (unsigned long long)generation, when, age);
                } else {
                        snprintf(text, sizeof(text), "generation %llu",
                                 (unsigned long long)generation);
                }
                row("Refresh token:", text);
        } else {
                row("Refresh token:", "none");
        }
        row("Client secret:", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "client_secret"))
                                  ? "present"
                                  : "none");
        time_row("Secret expires:", a, "secret_expires_at");
        if (!cJSON_IsObject(cert)) {
                row("Certificate:", "none");
                return;
        }
        printf("Certificate:\n");
        row("  Subject:", field(cert, "subject"));
        row("  Issuer:", field(cert, "issuer"));
        time_row("  Not before:", cert, "not_before");
        time_row("  Not after:", cert, "not_after");
        row("  SHA-1 thumbprint:", field(cert, "sha1_thumbprint"));
        row("  SHA-256:", field(cert, "sha256_thumbprint"));
}

int broker_account_show(struct admin_conn *c, const char *name, bool json)
{
        _cleanup_json_ cJSON *reply = NULL;
        const cJSON *account;
        int r;

        r = exchange_ok(c, request_for("account.show", name), &reply);
        if (r != 0)
                return r;
        account = cJSON_GetObjectItemCaseSensitive(reply, "account");
        if (!cJSON_IsObject(account)) {
                fprintf(stderr, "credbroker: the broker's reply has no account\n");
                return EXIT_SOFTWARE;
        }
        if (json)
                return print_json(account);
        show_text(account);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

int broker_account_remove(struct admin_conn *c, const char *name)
{
        _cleanup_json_ cJSON *reply = NULL;
        const cJSON *removed, *item;
        bool first = true;
        int r;

        r = exchange_ok(c, request_for("account.remove", name), &reply);
        if (r != 0)
                return r;
        removed = cJSON_GetObjectItemCaseSensitive(reply, "removed");
        if (!cJSON_IsArray(removed)) {
                fprintf(stderr, "credbroker: the broker's reply does not say what it removed\n");
                return EXIT_SOFTWARE;
        }
        if (cJSON_GetArraySize(removed) == 0) {
                fprintf(stderr, "credbroker: there is no account %s in the token\n", name);
                return EXIT_NOINPUT;
        }
        printf("Removed account %s:", name);
        cJSON_ArrayForEach(item, removed)
        {
                if (!cJSON_IsString(item))
                        continue;
                fputs(first ? " " : ", ", stdout);
                display_text(stdout, item->valuestring);
                first = false;
        }
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

/* ---- account secret / keygen / cert ---- */

/* Sends request (with secret under secret_key, if any) and returns the "ok" reply in *ret. An
 * error the direct path reports in its own words comes back as a negative errno, as the store
 * would return it: exists -EEXIST, bad_request -EINVAL, not_found -ENOKEY; any other error is
 * reported here and its exit code returned. */
static int exchange_credential(struct admin_conn *c, cJSON *request, const char *secret_key,
                               const struct secret *secret, bool map_errors, cJSON **ret)
{
        _cleanup_json_ cJSON *owned = request, *reply = NULL;
        const char *code;
        int r;

        if (!owned)
                return EXIT_SOFTWARE;
        r = admin_send(c, owned, secret_key, secret);
        if (r == 0)
                r = admin_read_reply(c, -1, &reply);
        if (r == -ETIMEDOUT) {
                fprintf(stderr, "credbroker: the broker did not answer in time\n");
                return EXIT_TEMPFAIL;
        }
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
                code = map_errors ? json_get_string(reply, "error") : NULL;
                if (code && strcmp(code, "exists") == 0)
                        return -EEXIST;
                if (code && strcmp(code, "bad_request") == 0)
                        return -EINVAL;
                if (code && strcmp(code, "not_found") == 0)
                        return -ENOKEY;
                return admin_report_error(reply);
        }
        *ret = TAKE_PTR(reply);
        return 0;
}

int broker_account_secret(struct admin_conn *c, const char *name, const struct secret *secret)
{
        _cleanup_json_ cJSON *reply = NULL;

        return exchange_credential(c, request_for("account.secret", name), "client_secret", secret,
                                   true, &reply);
}

static int dup_field(const cJSON *o, const char *key, char **ret)
{
        const char *s = json_get_string(o, key);

        if (!s)
                return -EBADMSG;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int copy_hex(const cJSON *o, const char *key, char *out, size_t size)
{
        const char *s = json_get_string(o, key);

        if (!s || strlen(s) != size - 1)
                return -EBADMSG;
        memcpy(out, s, size);
        return 0;
}

/* The certificate facts of a keygen or cert reply. */
static int certificate_from_reply(const cJSON *reply, bool with_pem,
                                  struct store_certificate_info *ret)
{
        uint64_t bits;

        if (dup_field(reply, "subject", &ret->subject) < 0 ||
            dup_field(reply, "issuer", &ret->issuer) < 0 ||
            json_get_u64(reply, "not_before", &ret->not_before) < 0 ||
            json_get_u64(reply, "not_after", &ret->not_after) < 0 ||
            json_get_u64(reply, "bits", &bits) < 0 || bits > 16384 ||
            copy_hex(reply, "sha1", ret->sha1_hex, sizeof(ret->sha1_hex)) < 0 ||
            copy_hex(reply, "sha256", ret->sha256_hex, sizeof(ret->sha256_hex)) < 0 ||
            (with_pem && dup_field(reply, "pem", &ret->pem) < 0)) {
                store_certificate_info_clear(ret);
                fprintf(stderr, "credbroker: the broker's reply has no certificate\n");
                return EXIT_SOFTWARE;
        }
        ret->bits = (unsigned)bits;
        return 0;
}

int broker_account_keygen(struct admin_conn *c, const char *name,
                          const struct store_keygen_options *o, struct store_certificate_info *ret,
                          char **ret_csr)
{
        _cleanup_json_ cJSON *reply = NULL;
        cJSON *request = request_for("account.keygen", name);
        int r;

        if (request && !(cJSON_AddNumberToObject(request, "bits", o->bits) &&
                         cJSON_AddNumberToObject(request, "days", o->days) &&
                         (!o->subject || cJSON_AddStringToObject(request, "subject", o->subject)) &&
                         cJSON_AddBoolToObject(request, "csr", o->csr) &&
                         cJSON_AddBoolToObject(request, "replace", o->replace))) {
                cJSON_Delete(request);
                request = NULL;
        }
        r = exchange_credential(c, request, NULL, NULL, true, &reply);
        if (r != 0)
                return r;
        r = certificate_from_reply(reply, true, ret);
        if (r != 0)
                return r;
        if (o->csr && dup_field(reply, "csr_pem", ret_csr) < 0) {
                store_certificate_info_clear(ret);
                fprintf(stderr, "credbroker: the broker's reply has no certificate request\n");
                return EXIT_SOFTWARE;
        }
        return 0;
}

/* A DER certificate as PEM text, for the JSON request. */
static char *der_to_pem(const unsigned char *der, size_t len)
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        static const char head[] = "-----BEGIN CERTIFICATE-----\n",
                          tail[] = "-----END CERTIFICATE-----\n";
        size_t encoded = (len + 2) / 3 * 4, n = 0, column = 0;
        char *pem = malloc(sizeof(head) + encoded + encoded / 64 + 2 + sizeof(tail));

        if (!pem)
                return NULL;
        memcpy(pem, head, sizeof(head) - 1);
        n = sizeof(head) - 1;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)der[i] << 16;
                char quad[4];

                if (i + 1 < len)
                        v |= (uint32_t)der[i + 1] << 8;
                if (i + 2 < len)
                        v |= der[i + 2];
                quad[0] = alphabet[(v >> 18) & 63];
                quad[1] = alphabet[(v >> 12) & 63];
                quad[2] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
                quad[3] = i + 2 < len ? alphabet[v & 63] : '=';
                memcpy(pem + n, quad, 4);
                n += 4;
                column += 4;
                if (column == 64) {
                        pem[n++] = '\n';
                        column = 0;
                }
        }
        if (column)
                pem[n++] = '\n';
        memcpy(pem + n, tail, sizeof(tail));
        return pem;
}

int broker_account_cert(struct admin_conn *c, const char *name, const void *data, size_t len,
                        struct store_certificate_info *ret)
{
        _cleanup_json_ cJSON *reply = NULL;
        _cleanup_free_ char *text = NULL;
        cJSON *request = request_for("account.cert", name);
        int r;

        /* PEM goes as it is; anything else (DER, or not a certificate at all, which the broker
         * then refuses) as PEM text. */
        if (len >= 11 && memcmp(data, "-----BEGIN ", 11) == 0 && !memchr(data, 0, len))
                text = strndup(data, len);
        else
                text = der_to_pem(data, len);
        if (!text || (request && !cJSON_AddStringToObject(request, "pem", text))) {
                cJSON_Delete(request);
                request = NULL;
        }
        r = exchange_credential(c, request, NULL, NULL, true, &reply);
        if (r == -EINVAL)
                return -EBADMSG;
        if (r != 0)
                return r;
        return certificate_from_reply(reply, false, ret);
}

int broker_account_import(struct admin_conn *c, const char *name, const struct account_meta *m,
                          const struct secret *token, uint64_t *ret_generation)
{
        _cleanup_json_ cJSON *reply = NULL;
        cJSON *request = request_for("account.add", name);
        int r;

        /* The direct path overwrites an existing account's refresh token and settings: so does
         * "replace". */
        if (request &&
            !(cJSON_AddStringToObject(request, "flow", "refresh-token") &&
              cJSON_AddStringToObject(request, "tenant", m->tenant) &&
              cJSON_AddStringToObject(request, "client_id", m->client_id) &&
              (!m->mailbox || cJSON_AddStringToObject(request, "mailbox", m->mailbox)) &&
              (!m->authority || cJSON_AddStringToObject(request, "authority", m->authority)) &&
              cJSON_AddBoolToObject(request, "replace", true))) {
                cJSON_Delete(request);
                request = NULL;
        }
        r = exchange_credential(c, request, "refresh_token", token, false, &reply);
        if (r != 0)
                return r;
        if (json_get_u64(reply, "generation", ret_generation) < 0) {
                fprintf(stderr, "credbroker: the broker's reply has no refresh-token generation\n");
                return EXIT_SOFTWARE;
        }
        return 0;
}
