/* The JSON view of an account; see account-view.h. */
#include "account-view.h"

#include <errno.h>
#include <string.h>

#include "json.h"
#include "util.h"

void account_view_store_status(const struct account_inventory *item, struct account_status *ret)
{
        *ret = (struct account_status){.state = "ok"};
        if (!item->has_meta || !item->meta_valid) {
                ret->state = "needs_config";
                ret->message = item->has_meta ? "the account's metadata is unreadable"
                                              : "the account has no metadata: add it again";
                return;
        }
        if (item->meta.flow_kind == ACCOUNT_FLOW_CLIENT_SECRET && !item->has_secret) {
                ret->state = "needs_config";
                ret->message = "no client secret in the credential store";
        } else if (item->meta.flow_kind == ACCOUNT_FLOW_CLIENT_CERTIFICATE &&
                   !item->has_certificate) {
                ret->state = "needs_config";
                ret->message = "no key and certificate: run credbroker account keygen";
        } else if (!account_flow_is_app_only(item->meta.flow_kind) && !item->has_refresh_token) {
                ret->state = "needs_reauth";
                ret->message = "no refresh token in the credential store: sign in again";
        }
}

static bool add_optional_time(cJSON *o, const char *key, uint64_t v)
{
        return v == 0 || json_add_uint(o, key, v);
}

static bool add_optional_string(cJSON *o, const char *key, const char *v)
{
        return !v || cJSON_AddStringToObject(o, key, v);
}

static const char *flow_name(const struct account_meta *m, const struct account_view_options *o)
{
        return o->stored_flow_name ? m->flow : account_flow_to_string(m->flow_kind);
}

cJSON *account_view_list_row(const struct account_inventory *item,
                             const struct account_status *status,
                             const struct account_view_options *o)
{
        _cleanup_json_ cJSON *row = cJSON_CreateObject();
        const struct account_meta *m = &item->meta;

        if (!row || !cJSON_AddStringToObject(row, "account", item->name) ||
            !cJSON_AddStringToObject(row, "state", status->state))
                return NULL;
        if (item->meta_valid && !(cJSON_AddStringToObject(row, "flow", flow_name(m, o)) &&
                                  cJSON_AddStringToObject(row, "tenant", m->tenant) &&
                                  cJSON_AddStringToObject(row, "client_id", m->client_id) &&
                                  add_optional_string(row, "mailbox", m->mailbox)))
                return NULL;
        return TAKE_PTR(row);
}

/* "scopes" as an array of the space-separated list. */
/* Adds "effective_token_endpoint" and (when the account has a device flow)
 * "effective_device_endpoint": the URLs the broker actually uses, so that account show never
 * has to say "(configured default)". */
static bool add_endpoints(cJSON *o, const struct account_meta *m, const char *default_authority)
{
        _cleanup_free_ char *token = NULL, *device = NULL;
        int r;

        if (account_meta_token_endpoint(m, default_authority, &token) < 0)
                return false;
        r = account_meta_device_endpoint(m, default_authority, &device);
        if (r < 0 && r != -EOPNOTSUPP)
                return false;
        return cJSON_AddStringToObject(o, "effective_token_endpoint", token) &&
               (!device || cJSON_AddStringToObject(o, "effective_device_endpoint", device));
}

static bool add_meta(cJSON *o, const struct account_meta *m, const struct account_view_options *vo)
{
        return cJSON_AddStringToObject(o, "flow", flow_name(m, vo)) &&
               cJSON_AddStringToObject(o, "tenant", m->tenant) &&
               cJSON_AddStringToObject(o, "client_id", m->client_id) &&
               add_optional_string(o, "mailbox", m->mailbox) &&
               add_optional_string(o, "username", m->username) &&
               add_optional_string(o, "authority", m->authority) &&
               add_optional_string(o, "token_endpoint", m->token_endpoint) &&
               add_optional_string(o, "device_endpoint", m->device_endpoint) &&
               add_optional_string(o, "graph", m->graph) &&
               add_optional_string(o, "cloud", m->cloud) &&
               add_optional_string(o, "assertion_alg", m->assertion_alg) &&
               add_optional_string(o, "client_auth", m->client_auth) &&
               add_optional_time(o, "secret_expires_at", m->secret_expires_at) &&
               json_add_uint(o, "created", m->created) &&
               (!m->scopes || json_add_scope_list(o, "scopes", m->scopes)) &&
               add_endpoints(o, m, vo->default_authority);
}

static bool add_refresh_token(cJSON *o, const struct account_inventory *item)
{
        const struct store_refresh_token_info *rt = &item->refresh_token;
        cJSON *sub;

        if (!item->has_refresh_token)
                /* Objects that are there but none reads back intact (a crash, a damaged one). */
                return cJSON_AddNullToObject(o, "refresh_token") &&
                       (rt->n_generations == 0 ||
                        json_add_uint(o, "refresh_token_damaged", rt->n_generations));
        return (sub = cJSON_AddObjectToObject(o, "refresh_token")) &&
               json_add_uint(sub, "generation", rt->generation) &&
               json_add_uint(sub, "objects", rt->n_generations) &&
               add_optional_time(sub, "stored_at", rt->stored_at);
}

static bool add_certificate(cJSON *o, const struct account_inventory *item)
{
        const struct store_certificate_info *c = &item->certificate;
        cJSON *sub;

        if (!item->has_certificate)
                return cJSON_AddNullToObject(o, "certificate") != NULL;
        return (sub = cJSON_AddObjectToObject(o, "certificate")) &&
               cJSON_AddStringToObject(sub, "subject", c->subject) &&
               cJSON_AddStringToObject(sub, "issuer", c->issuer) &&
               json_add_uint(sub, "not_before", c->not_before) &&
               json_add_uint(sub, "not_after", c->not_after) &&
               json_add_uint(sub, "bits", c->bits) &&
               cJSON_AddStringToObject(sub, "sha1_thumbprint", c->sha1_hex) &&
               cJSON_AddStringToObject(sub, "sha256_thumbprint", c->sha256_hex);
}

/* Which credential-store backends hold the account's metadata, refresh token or client secret
 * (both: a credbroker store migrate that was interrupted). */
static const char *backend_name(unsigned backends)
{
        bool objects = backends & STORE_BACKEND_BIT(STORE_BACKEND_OBJECTS),
             wrapped = backends & STORE_BACKEND_BIT(STORE_BACKEND_WRAPPED);

        return objects && wrapped ? "both" : wrapped ? "wrapped" : "objects";
}

cJSON *account_view_show(const struct account_inventory *item, const struct account_status *status,
                         const struct account_view_options *o)
{
        _cleanup_json_ cJSON *a = cJSON_CreateObject();

        if (!a || !cJSON_AddStringToObject(a, "account", item->name) ||
            !cJSON_AddBoolToObject(a, "metadata", item->meta_valid) ||
            (item->has_meta && !item->meta_valid &&
             !cJSON_AddTrueToObject(a, "metadata_unreadable")) ||
            (item->meta_valid && !add_meta(a, &item->meta, o)) ||
            !cJSON_AddStringToObject(a, "state", status->state) ||
            !add_optional_string(a, "message", status->message) ||
            !cJSON_AddBoolToObject(a, "client_secret", item->has_secret) ||
            !add_refresh_token(a, item) || !add_certificate(a, item) ||
            (item->backends &&
             !cJSON_AddStringToObject(a, "backend", backend_name(item->backends))))
                return NULL;
        return TAKE_PTR(a);
}
