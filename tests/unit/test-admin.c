/* Unit tests for the admin socket's tables and its one account view: the operation table
 * (admin-ops.c), enum admin_error's strings (wire.c), the reply envelope both sockets use, and
 * the account.show / account.list objects the broker and the CLI's direct path both build
 * (account-view.c) from a store inventory made up here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "account-view.h"
#include "admin.h"
#include "json.h"
#include "tap.h"
#include "wire.h"

static void test_op_table(void)
{
        static const struct {
                const char *name;
                bool needs_account, needs_store;
                const char *audit;
        } want[] = {
            {"ping", false, false, NULL},
            {"status", false, true, NULL},
            {"metrics", false, false, NULL},
            {"reload", false, false, NULL},
            {"account.list", false, true, NULL},
            {"account.show", true, true, NULL},
            {"account.remove", true, true, "account_removed"},
            {"account.add", true, true, "account_added"},
            {"account.login", true, true, "account_signed_in"},
            {"account.keygen", true, true, "account_key_generated"},
            {"account.cert", true, true, "account_certificate_stored"},
            {"account.secret", true, true, "account_secret_stored"},
            {"account.test", true, true, NULL},
            {"audit.checkpoint", false, false, NULL},
            {"audit.rotate", false, false, NULL},
            {"audit.key", false, false, NULL},
            {"queue.list", false, false, NULL},
            {"queue.show", false, false, NULL},
            {"queue.flush", false, false, NULL},
            {"queue.delete", false, false, NULL},
        };
        const struct admin_op *table;
        size_t n;

        table = admin_op_table(&n);
        is_int(n, sizeof(want) / sizeof(want[0]), "the table has the operations listed here");
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                const struct admin_op *op = admin_op_find(want[i].name);
                char what[128];

                snprintf(what, sizeof(what), "%s is in the table with a handler", want[i].name);
                if (!ok(op && op->handler && strcmp(op->name, want[i].name) == 0, what))
                        continue;
                snprintf(what, sizeof(what), "%s: needs_account, needs_store", want[i].name);
                ok(op->needs_account == want[i].needs_account &&
                       op->needs_store == want[i].needs_store,
                   what);
                snprintf(what, sizeof(what), "%s: its audit event", want[i].name);
                ok(want[i].audit ? op->audit && strcmp(op->audit, want[i].audit) == 0 : !op->audit,
                   what);
        }
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (strcmp(table[i].name, table[j].name) == 0)
                                ok(0, "no operation is in the table twice");
        ok(!admin_op_find("account.nope") && !admin_op_find("") && !admin_op_find("token"),
           "an unknown operation is not found (token is the client socket's)");
}

static void test_errors(void)
{
        static const char *const names[] = {
            "bad_request",     "unsupported_version", "unknown_op",     "denied",
            "reauth_required", "unavailable",         "internal",       "not_found",
            "exists",          "needs_config",        "sign_in_failed",
        };
        enum admin_error e;

        is_int(_ADMIN_ERROR_MAX, sizeof(names) / sizeof(names[0]), "eleven admin error codes");
        for (unsigned i = 0; i < _ADMIN_ERROR_MAX; i++) {
                is_str(admin_error_to_string((enum admin_error)i), names[i], names[i]);
                ok(admin_error_from_string(names[i], &e) == 0 && e == (enum admin_error)i,
                   "the code reads back");
        }
        is_str(admin_error_to_string(_ADMIN_ERROR_MAX), "internal", "out of range is internal");
        is_int(admin_error_from_string("rate_limited", &e), -EINVAL, "not an admin code");
        is_int(admin_error_from_string(NULL, &e), -EINVAL, "NULL is no code");
        /* The client socket's codes that both sockets share are spelled alike. */
        is_str(admin_error_to_string(ADMIN_DENIED), wire_error_to_string(WIRE_DENIED), "denied");
        is_str(admin_error_to_string(ADMIN_UNAVAILABLE), wire_error_to_string(WIRE_UNAVAILABLE),
               "unavailable");
}

static void is_json(cJSON *o, const char *want, const char *what)
{
        char *text = o ? cJSON_PrintUnformatted(o) : NULL;

        is_str(text, want, what);
        json_free_string(text);
        cJSON_Delete(o);
}

static void test_envelope(void)
{
        is_json(wire_reply_new(true), "{\"v\":1,\"ok\":true}", "the ok envelope");
        is_json(wire_error_reply_new(admin_error_to_string(ADMIN_EXISTS), "It exists."),
                "{\"v\":1,\"ok\":false,\"error\":\"exists\",\"message\":\"It exists.\"}",
                "the error envelope");
}

/* The view as a peer receives it (raw numbers become numbers). */
static cJSON *received(cJSON *o)
{
        char *text = o ? cJSON_PrintUnformatted(o) : NULL;
        cJSON *copy = NULL;

        if (!text || json_parse(text, strlen(text), &copy) < 0)
                copy = NULL;
        json_free_string(text);
        cJSON_Delete(o);
        return copy;
}

static void item_init(struct account_inventory *item, const char *meta_json)
{
        *item = (struct account_inventory){.name = strdup("alerts")};
        if (meta_json) {
                item->has_meta = true;
                item->meta_valid = account_meta_from_json(meta_json, &item->meta) == 0;
        }
}

static void item_clear(struct account_inventory *item)
{
        free(item->name);
        account_meta_clear(&item->meta);
}

#define META(flow)                                                                                 \
        "{\"tenant\":\"contoso.onmicrosoft.com\",\"client_id\":\"11111111-2222\",\"flow\":\"" flow \
        "\",\"created\":1700000000}"

static void test_store_status(void)
{
        struct account_inventory item;
        struct account_status s;

        item_init(&item, NULL);
        account_view_store_status(&item, &s);
        is_str(s.state, "needs_config", "no metadata: needs_config");
        item_clear(&item);

        item_init(&item, "{\"tenant\":1}");
        account_view_store_status(&item, &s);
        is_str(s.state, "needs_config", "unreadable metadata: needs_config");
        is_str(s.message, "the account's metadata is unreadable", "and says so");
        item_clear(&item);

        item_init(&item, META("client-secret"));
        account_view_store_status(&item, &s);
        is_str(s.state, "needs_config", "client-secret flow without a secret: needs_config");
        item.has_secret = true;
        account_view_store_status(&item, &s);
        is_str(s.state, "ok", "with its secret: ok");
        ok(!s.message, "and no message");
        item_clear(&item);

        item_init(&item, META("refresh_token"));
        account_view_store_status(&item, &s);
        is_str(s.state, "needs_reauth", "delegated without a refresh token: needs_reauth");
        item.has_refresh_token = true;
        account_view_store_status(&item, &s);
        is_str(s.state, "ok", "with one: ok");
        item_clear(&item);
}

static void test_show(void)
{
        struct account_view_options o = {.default_authority = "https://login.example"};
        struct account_status status = {.state = "ok"};
        struct account_inventory item;
        const cJSON *rt;
        cJSON *a;
        uint64_t v;

        item_init(&item, META("refresh_token"));
        item.has_refresh_token = true;
        item.refresh_token = (struct store_refresh_token_info){
            .generation = 7, .stored_at = 1790000000, .n_generations = 2};
        a = received(account_view_show(&item, &status, &o));
        ok(a != NULL, "account.show's object");
        is_str(json_get_string(a, "account"), "alerts", "its name");
        is_str(json_get_string(a, "flow"), "refresh-token",
               "the broker names the flow canonically");
        is_str(json_get_string(a, "effective_token_endpoint"),
               "https://login.example/contoso.onmicrosoft.com/oauth2/v2.0/token",
               "the effective token endpoint from the default authority");
        is_str(json_get_string(a, "state"), "ok", "the state");
        rt = cJSON_GetObjectItemCaseSensitive(a, "refresh_token");
        ok(json_get_u64(rt, "generation", &v) == 0 && v == 7, "the refresh-token generation");
        ok(json_get_u64(rt, "objects", &v) == 0 && v == 2, "how many objects");
        ok(json_get_u64(rt, "stored_at", &v) == 0 && v == 1790000000, "when it was stored");
        ok(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a, "client_secret")), "no secret");
        ok(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(a, "certificate")), "no certificate");
        ok(!cJSON_GetObjectItemCaseSensitive(a, "metadata_unreadable"), "readable metadata");
        cJSON_Delete(a);

        o.stored_flow_name = true;
        a = received(account_view_show(&item, &status, &o));
        is_str(json_get_string(a, "flow"), "refresh_token", "the direct path's flow as stored");
        cJSON_Delete(a);
        a = received(account_view_list_row(&item, &status, &o));
        is_str(json_get_string(a, "flow"), "refresh_token", "the list row's too");
        is_str(json_get_string(a, "tenant"), "contoso.onmicrosoft.com", "the list row's tenant");
        cJSON_Delete(a);
        item_clear(&item);

        item_init(&item, "{\"tenant\":1}");
        item.refresh_token.n_generations = 3;
        account_view_store_status(&item, &status);
        a = received(account_view_show(&item, &status, &o));
        ok(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "metadata_unreadable")),
           "unreadable metadata is said");
        ok(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(a, "metadata")) &&
               !json_get_string(a, "flow"),
           "and no settings are shown");
        ok(json_get_u64(a, "refresh_token_damaged", &v) == 0 && v == 3,
           "damaged refresh-token objects are counted");
        is_str(json_get_string(a, "message"), "the account's metadata is unreadable",
               "the message");
        cJSON_Delete(a);
        item_clear(&item);
}

int main(void)
{
        test_op_table();
        test_errors();
        test_envelope();
        test_store_status();
        test_show();
        return done_testing();
}
