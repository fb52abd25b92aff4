/* The account commands over the admin socket; see account-via-broker.h. */
#include "account-via-broker.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "cmd-account.h"
#include "display.h"
#include "json.h"
#include "util.h"
#include "wire.h"

/* More accounts than a token holds in practice; a longer list is a broken reply. */
#define ACCOUNTS_MAX 4096

/* admin_exchange_ok() on a request built by the caller, which this takes over (NULL: out of
 * memory). */
static int exchange_ok(struct admin_conn *c, cJSON *request, cJSON **ret)
{
        _cleanup_json_ cJSON *owned = request;

        return owned ? admin_exchange_ok(c, owned, ret) : EXIT_SOFTWARE;
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

/* Sends op (about account name, when not NULL) and finds the reply's member key, which is() must
 * accept and which has at most max items: 0 with *ret the reply and *ret_member in it, else an
 * exit code after printing why (the broker's reply MISSING, when it has no such member). */
static int exchange_member(struct admin_conn *c, const char *op, const char *name, const char *key,
                           cJSON_bool (*is)(const cJSON *), int max, const char *missing,
                           cJSON **ret, const cJSON **ret_member)
{
        int r;

        r = exchange_ok(c, request_for(op, name), ret);
        if (r != 0)
                return r;
        *ret_member = cJSON_GetObjectItemCaseSensitive(*ret, key);
        if (!is(*ret_member) || cJSON_GetArraySize(*ret_member) > max) {
                fprintf(stderr, "credbroker: the broker's reply %s\n", missing);
                return EXIT_SOFTWARE;
        }
        return 0;
}

int broker_account_list(struct admin_conn *c, bool json)
{
        _cleanup_json_ cJSON *reply = NULL, *rows = cJSON_CreateArray();
        const cJSON *accounts, *a;
        int r;

        if (!rows)
                return EXIT_SOFTWARE;
        r = exchange_member(c, "account.list", NULL, "accounts", cJSON_IsArray, ACCOUNTS_MAX,
                            "has no list of accounts", &reply, &accounts);
        if (r != 0)
                return r;
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
                row = account_list_row(a, cJSON_GetObjectItemCaseSensitive(shown, "account"));
                if (!row || !cJSON_AddItemToArray(rows, row)) {
                        cJSON_Delete(row);
                        return EXIT_SOFTWARE;
                }
        }
        return account_list_print(rows, json);
}

int broker_account_show(struct admin_conn *c, const char *name, bool json)
{
        _cleanup_json_ cJSON *reply = NULL;
        const cJSON *account;
        int r;

        r = exchange_member(c, "account.show", name, "account", cJSON_IsObject, INT_MAX,
                            "has no account", &reply, &account);
        if (r != 0)
                return r;
        return account_show_print(account, json);
}

int broker_account_remove(struct admin_conn *c, const char *name)
{
        _cleanup_json_ cJSON *reply = NULL;
        const cJSON *removed, *item;
        bool first = true;
        int r;

        r = exchange_member(c, "account.remove", name, "removed", cJSON_IsArray, INT_MAX,
                            "does not say what it removed", &reply, &removed);
        if (r != 0)
                return r;
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
        enum admin_error code;
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
                if (map_errors &&
                    admin_error_from_string(json_get_string(reply, "error"), &code) == 0) {
                        if (code == ADMIN_EXISTS)
                                return -EEXIST;
                        if (code == ADMIN_BAD_REQUEST)
                                return -EINVAL;
                        if (code == ADMIN_NOT_FOUND)
                                return -ENOKEY;
                }
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
static char *der_to_pem(const void *der, size_t len)
{
        gnutls_datum_t in = {.data = (unsigned char *)der, .size = (unsigned)len}, out = {0};
        char *pem;

        if (len > UINT_MAX || gnutls_pem_base64_encode2("CERTIFICATE", &in, &out) < 0)
                return NULL;
        pem = strndup((const char *)out.data, out.size);
        gnutls_free(out.data);
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
              (!m->graph || cJSON_AddStringToObject(request, "graph", m->graph)) &&
              (!m->cloud || cJSON_AddStringToObject(request, "cloud", m->cloud)) &&
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
