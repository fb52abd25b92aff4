/* Provisioning through the admin socket; see provision.h. An account.add runs in three steps,
 * so that nothing is stored unless the sign-in worked:
 *
 *   (worker) prepare: the account must not exist (add) or must (login); for a certificate
 *            account, sign the first assertion
 *   (loop)   the flow: a token request (password, client secret, certificate), the device code
 *            flow (flow-device.c), or nothing (refresh-token import)
 *   (worker) commit: refresh token first (design.md §6), then the client secret, then the
 *            metadata, which is what makes the account exist
 *
 * Secrets from the request (password, client secret, imported refresh token) live in struct
 * secret only; a password is wiped as soon as its one request is built. */
#include "provision.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "accounts.h"
#include "audit.h"
#include "config.h"
#include "idp.h"
#include "store-worker.h"
#include "util.h"
#include "broker.h"
#include "flow-device.h"
#include "grant.h"
#include "json.h"
#include "log.h"

#define PROVISION_SECRET_MAX 4096

struct provision {
        struct admin_operation op;
        bool login;
        char account[NAME_MAX_LEN + 1];
        struct account_meta meta;
        char *meta_json;      /* what commit stores (add only) */
        char *token_endpoint; /* resolved */
        char *scope;          /* asked for */
        bool generic;
        struct secret *password;                /* ROPC: used once, then wiped */
        struct secret *client_secret;           /* client-secret flow: stored in the HSM */
        struct secret *refresh_token;           /* imported, or obtained by the flow */
        struct grant_credential_call assertion; /* client-certificate flow */
        char *granted_scope;
        /* The sign-in's access token, cached once the credentials are stored: the first
         * client request after an approval needs no second upstream request. */
        struct secret *access_token;
        uint64_t access_token_sent_usec;
        uint64_t access_token_expires_in;
        struct device_flow *device;
        char *existing_meta; /* login: the stored metadata */
        bool prepare_found_meta;
        bool replace;           /* refresh-token import: an existing account is overwritten */
        uint64_t generation;    /* of the refresh token commit stored, 0 if none */
        struct provision *next; /* broker->provisions */
};

bool provision_busy(const struct broker *b, const char *account)
{
        for (const struct provision *p = b->provisions; p; p = p->next)
                if (strcmp(p->account, account) == 0)
                        return true;
        return false;
}

static void provision_unlink(struct provision *p)
{
        if (!p->op.broker)
                return;
        for (struct provision **link = &p->op.broker->provisions; *link; link = &(*link)->next)
                if (*link == p) {
                        *link = p->next;
                        return;
                }
}

static void provision_free(struct provision *p)
{
        if (!p)
                return;
        provision_unlink(p);
        account_meta_clear(&p->meta);
        free(p->meta_json);
        free(p->token_endpoint);
        free(p->scope);
        secret_free(p->password);
        secret_free(p->client_secret);
        secret_free(p->refresh_token);
        secret_free(p->assertion.credential);
        free(p->granted_scope);
        secret_free(p->access_token);
        free(p->existing_meta);
        device_flow_free(p->device);
        free(p);
}

static void provision_fail(struct provision *p, enum admin_error code, const char *message)
{
        struct broker *b = p->op.broker;

        log_warning("Admin: account %s: %s", p->account, message);
        if (code == ADMIN_SIGN_IN_FAILED || code == ADMIN_NEEDS_CONFIG)
                (void)audit_write(b->audit, &(struct audit_record){.event = "sign_in_failed",
                                                                   .account = p->account,
                                                                   .error = message});
        admin_operation_fail(&p->op, code, message);
        provision_free(p);
}

/* ---- reading the request ---- */

static int take_secret(const cJSON *request, const char *key, struct secret **ret)
{
        const char *value = json_get_string(request, key);
        size_t len;

        if (!value)
                return -ENOENT;
        len = strnlen(value, PROVISION_SECRET_MAX + 1);
        if (len == 0 || len > PROVISION_SECRET_MAX)
                return -EINVAL;
        return secret_new_from(value, len, ret);
}

static int dup_optional(const cJSON *request, const char *key, char **ret)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(request, key);

        if (!item || cJSON_IsNull(item))
                return 0;
        if (!cJSON_IsString(item) || strlen(item->valuestring) > 1024)
                return -EINVAL;
        *ret = strdup(item->valuestring);
        return *ret ? 0 : -ENOMEM;
}

static int take_scopes(const cJSON *request, char **ret)
{
        const cJSON *array = cJSON_GetObjectItemCaseSensitive(request, "scopes"), *item;
        char *scopes[ACCOUNT_META_SCOPES_MAX];
        size_t n = 0;

        if (!array || cJSON_IsNull(array))
                return 0;
        if (!cJSON_IsArray(array))
                return -EINVAL;
        cJSON_ArrayForEach(item, array)
        {
                if (!cJSON_IsString(item) || n >= ACCOUNT_META_SCOPES_MAX ||
                    !scope_is_valid(item->valuestring))
                        return -EINVAL;
                scopes[n++] = item->valuestring;
        }
        if (n == 0)
                return 0;
        return scope_key_build(scopes, n, ret);
}

#define INVALID_SETTINGS                                                                           \
        "Invalid settings: tenant and client_id are required; URLs must be https://, cloud "       \
        "global, usgov, usgov-high, dod or china, device_endpoint needs token_endpoint, scopes "   \
        "at most 16 valid scopes, assertion_alg PS256 or RS256, client_auth post or basic."

/* The request's settings into p->meta; the secret its flow needs into secret memory. On
 * failure *ret_message says what is wrong. */
static int parse_add(struct provision *p, const cJSON *request, const char **ret_message)
{
        struct account_meta *m = &p->meta;
        uint64_t expires = 0;
        int r;

        r = dup_optional(request, "flow", &m->flow);
        if (r == 0 && (!m->flow || account_flow_from_string(m->flow, &m->flow_kind) < 0 ||
                       strcmp(m->flow, "refresh_token") == 0)) {
                *ret_message = "\"flow\" must be device, password, client-secret, "
                               "client-certificate or refresh-token.";
                return -EINVAL;
        }
        if (r == 0)
                r = dup_optional(request, "tenant", &m->tenant);
        if (r == 0)
                r = dup_optional(request, "client_id", &m->client_id);
        if (r == 0)
                r = dup_optional(request, "mailbox", &m->mailbox);
        if (r == 0)
                r = dup_optional(request, "authority", &m->authority);
        if (r == 0)
                r = dup_optional(request, "token_endpoint", &m->token_endpoint);
        if (r == 0)
                r = dup_optional(request, "device_endpoint", &m->device_endpoint);
        if (r == 0)
                r = dup_optional(request, "graph", &m->graph);
        if (r == 0)
                r = dup_optional(request, "cloud", &m->cloud);
        if (r == 0)
                r = dup_optional(request, "username", &m->username);
        if (r == 0)
                r = take_scopes(request, &m->scopes);
        if (r == 0)
                r = dup_optional(request, "assertion_alg", &m->assertion_alg);
        if (r == 0)
                r = dup_optional(request, "client_auth", &m->client_auth);
        if (r == 0 && cJSON_GetObjectItemCaseSensitive(request, "secret_expires_at"))
                r = json_get_u64(request, "secret_expires_at", &expires) < 0 ? -EINVAL : 0;
        m->secret_expires_at = expires;
        m->created = now_realtime_usec() / USEC_PER_SEC;
        if (r < 0 || account_meta_validate(m) < 0) {
                *ret_message = INVALID_SETTINGS;
                return -EINVAL;
        }
        switch (m->flow_kind) {
        case ACCOUNT_FLOW_PASSWORD:
                if (!m->username) {
                        *ret_message = "The password flow needs \"username\".";
                        return -EINVAL;
                }
                r = take_secret(request, "password", &p->password);
                *ret_message = "The password flow needs \"password\" (1-4096 bytes).";
                break;
        case ACCOUNT_FLOW_CLIENT_SECRET:
                r = take_secret(request, "client_secret", &p->client_secret);
                if (r == 0 && secret_len(p->client_secret) > STORE_CLIENT_SECRET_MAX)
                        r = -EINVAL;
                *ret_message = "The client-secret flow needs \"client_secret\" (1-1024 bytes).";
                break;
        case ACCOUNT_FLOW_REFRESH_TOKEN:
                r = take_secret(request, "refresh_token", &p->refresh_token);
                if (r == 0 &&
                    !token_is_valid(secret_str(p->refresh_token), secret_len(p->refresh_token)))
                        r = -EINVAL;
                *ret_message = "The refresh-token flow needs a valid \"refresh_token\".";
                if (r == 0 && cJSON_GetObjectItemCaseSensitive(request, "replace")) {
                        const cJSON *replace = cJSON_GetObjectItemCaseSensitive(request, "replace");
                        if (!cJSON_IsBool(replace)) {
                                *ret_message = "\"replace\" must be true or false.";
                                r = -EINVAL;
                        }
                        p->replace = cJSON_IsTrue(replace);
                }
                break;
        default:
                r = 0;
        }
        return r;
}

static bool scope_list_has(const char *scopes, const char *scope)
{
        size_t len = strlen(scope);

        for (const char *s = scopes; *s;) {
                size_t n = strcspn(s, " ");
                if (n == len && strncmp(s, scope, len) == 0)
                        return true;
                s += n;
                s += *s == ' ';
        }
        return false;
}

/* The Graph resource of the account's default scopes (its cloud's, or its Graph host's). */
static const char *graph_resource(const struct provision *p)
{
        const struct config *config = p->op.broker->config;

        return account_meta_graph_resource(&p->meta, config->graph_url, config->cloud);
}

/* The scope to ask for: the account's scopes ({resource}/Mail.Send by default, with the
 * account's Graph resource) and, for delegated flows, offline_access for the refresh token;
 * app-only: {resource}/.default. */
static int resolve_scope(struct provision *p, const char *override)
{
        const struct account_meta *m = &p->meta;
        _cleanup_free_ char *defaults = NULL;
        const char *scopes = override;

        if (!scopes) {
                if (account_meta_default_scopes(m, graph_resource(p), &defaults) < 0)
                        return -ENOMEM;
                scopes = defaults ? defaults : "";
        }
        if (account_flow_is_app_only(m->flow_kind))
                return grant_app_only_scope(scopes, graph_resource(p), p->generic, &p->scope);
        /* offline_access is Microsoft's (OpenID's) way to ask for a refresh token; a
         * standards-only server returns one without it. */
        if (p->generic && scope_list_has(scopes, "openid") &&
            !scope_list_has(scopes, "offline_access")) {
                /* OpenID Connect servers issue a refresh token only for offline_access. */
                if (asprintf(&p->scope, "%s offline_access", scopes) < 0)
                        p->scope = NULL;
        } else if (p->generic)
                p->scope = strdup(scopes);
        else if (asprintf(&p->scope, "%s%soffline_access", scopes, *scopes ? " " : "") < 0)
                p->scope = NULL;
        return p->scope ? 0 : -ENOMEM;
}

/* ---- commit ---- */

static int commit_call(struct store *store, void *userdata)
{
        struct provision *p = userdata;
        uint64_t generation;
        int r;

        if (p->refresh_token) {
                r = store_write_refresh_token(store, p->account, p->refresh_token, &generation);
                if (r < 0)
                        return r;
                p->generation = generation;
        }
        if (p->client_secret) {
                r = store_put_client_secret(store, p->account, p->client_secret);
                if (r < 0)
                        return r;
        }
        return p->meta_json ? store_put_meta(store, p->account, p->meta_json) : 0;
}

static void forget_runtime_account(struct broker *b, const char *name)
{
        struct account *a = account_find(b->accounts, name);

        token_cache_drop_account(&b->cache, name);
        if (!a)
                return;
        if (account_busy(a) || a->waiters) {
                /* Its next refresh reads the new refresh token; clear what stopped it. */
                a->state = ACCOUNT_OK;
                a->retry_at_usec = 0;
                a->failures = 0;
                account_clear_message(a);
                return;
        }
        accounts_remove(b->accounts, a);
}

/* Caches the sign-in's access token under the account's default scope set, the key a profile
 * with the account's scopes asks for. Best effort: a miss only costs a refresh. */
static void cache_sign_in_token(struct broker *b, struct provision *p)
{
        _cleanup_free_ char *key = NULL;
        struct cached_token *t;

        if (!p->access_token)
                return;
        if (account_meta_default_scopes(&p->meta, graph_resource(p), &key) < 0 || !key)
                return;
        if (token_cache_put(&b->cache, p->account, key, &p->access_token, p->granted_scope,
                            p->access_token_sent_usec, p->access_token_expires_in, &t) == 0)
                audit_fingerprint(b->audit, t->access_token, t->fingerprint);
}

static void on_committed(struct store_job *job, void *userdata)
{
        struct provision *p = userdata;
        struct broker *b = p->op.broker;
        _cleanup_json_ cJSON *reply = NULL;

        if (job->result < 0) {
                log_error_errno(job->result, "Admin: account %s: failed to store the credentials",
                                p->account);
                admin_operation_fail(&p->op, ADMIN_UNAVAILABLE,
                                     "The sign-in worked but the credential store failed to keep "
                                     "the result; try again.");
                provision_free(p);
                return;
        }
        forget_runtime_account(b, p->account);
        cache_sign_in_token(b, p);
        log_info("Admin: account %s %s (flow %s).", p->account,
                 p->login ? "signed in again" : "added", account_flow_to_string(p->meta.flow_kind));
        admin_operation_audit(&p->op, p->account);
        _cleanup_free_ char *granted = NULL;
        if (grant_granted_scope(p->scope, p->granted_scope, &granted) < 0)
                granted = NULL;
        reply = admin_reply_new();
        if (reply && (!cJSON_AddStringToObject(reply, "stage", "done") ||
                      !cJSON_AddStringToObject(reply, "account", p->account) ||
                      !json_add_scope_list(reply, "scopes", granted ? granted : p->scope) ||
                      (p->generation && !json_add_uint(reply, "generation", p->generation)))) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_operation_finish(&p->op, reply);
        provision_free(p);
}

static void commit(struct provision *p)
{
        struct broker *b = p->op.broker;
        struct store_job *job = NULL;

        if (!p->login && account_meta_to_json(&p->meta, &p->meta_json) < 0) {
                provision_fail(p, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        if (store_job_new(STORE_JOB_CALL, p->account, &job) < 0) {
                provision_fail(p, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        job->call = commit_call;
        job->call_arg = p;
        /* A refresh token from a sign-in exists nowhere else. */
        job->keep_on_stop = true;
        if (store_worker_submit(b->store_worker, job, on_committed, p) < 0) {
                store_job_free(job);
                provision_fail(p, ADMIN_UNAVAILABLE,
                               "The credential store is busy; try again later.");
        }
}

/* ---- the flows ---- */

static void run_flow(struct provision *p);

static int resign_call(struct store *store, void *userdata)
{
        struct provision *p = userdata;

        return grant_credential_fetch(store, &p->assertion);
}

static void on_resigned(struct store_job *job, void *userdata)
{
        struct provision *p = userdata;

        if (job->result < 0) {
                provision_fail(p, ADMIN_UNAVAILABLE,
                               "The RS256 client assertion could not be signed.");
                return;
        }
        run_flow(p);
}

/* The server refused the PS256 assertion (AADSTS700027): sign an RS256 one and try once more. */
static void resign_assertion(struct provision *p)
{
        struct store_job *job = NULL;

        if (store_job_new(STORE_JOB_CALL, p->account, &job) < 0) {
                provision_fail(p, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        job->call = resign_call;
        job->call_arg = p;
        if (store_worker_submit(p->op.broker->store_worker, job, on_resigned, p) < 0) {
                store_job_free(job);
                provision_fail(p, ADMIN_UNAVAILABLE,
                               "The credential store is busy; try again later.");
        }
}

/* The token endpoint's answer to the flow's request. */
static void on_signed_in(struct idp_result *result, void *userdata)
{
        struct provision *p = userdata;
        char message[384];
        const char *code;

        if (result->outcome != IDP_OK && grant_credential_refused(&p->assertion, result)) {
                resign_assertion(p);
                return;
        }
        if (result->outcome != IDP_OK) {
                code = provision_sign_in_error(result, p->meta.flow_kind == ACCOUNT_FLOW_PASSWORD,
                                               message, sizeof(message));
                provision_fail(p, admin_error_parse(code), message);
                return;
        }
        if (!account_flow_is_app_only(p->meta.flow_kind)) {
                if (!result->refresh_token) {
                        provision_fail(p, ADMIN_SIGN_IN_FAILED,
                                       p->generic ? "Sign-in failed: the server returned no "
                                                    "refresh token. An OpenID Connect server "
                                                    "issues one only for the offline_access "
                                                    "scope: add offline_access to the account's "
                                                    "scopes (and allow it for the client)."
                                                  : "Sign-in failed: the server returned no "
                                                    "refresh token (was offline_access "
                                                    "refused?).");
                        return;
                }
                p->refresh_token = TAKE_PTR(result->refresh_token);
        }
        p->granted_scope = TAKE_PTR(result->scope);
        p->access_token = TAKE_PTR(result->access_token);
        p->access_token_sent_usec = result->sent_at_usec;
        p->access_token_expires_in = result->expires_in;
        commit(p);
}

static void on_device_flow_done(struct idp_result *result, const char *code, const char *message,
                                void *userdata)
{
        struct provision *p = userdata;

        if (code) {
                provision_fail(p, admin_error_parse(code), message);
                return;
        }
        on_signed_in(result, p);
}

static void on_device_code(struct cJSON *stage, void *userdata)
{
        struct provision *p = userdata;

        admin_operation_send(&p->op, stage);
}

static void on_abandoned(struct admin_operation *op)
{
        struct provision *p = container_of(op, struct provision, op);

        /* Nobody is waiting for the user any more: stop polling, and end with a failure. */
        if (p->device)
                device_flow_cancel(p->device);
}

static void run_flow(struct provision *p)
{
        struct broker *b = p->op.broker;
        struct secret *form = NULL;
        int r = 0;

        switch (p->meta.flow_kind) {
        case ACCOUNT_FLOW_REFRESH_TOKEN:
                commit(p);
                return;
        case ACCOUNT_FLOW_DEVICE: {
                struct device_flow_params params = {
                    .client_id = p->meta.client_id,
                    .token_endpoint = p->token_endpoint,
                    .scope = p->scope,
                    .generic = p->generic,
                    .on_code = on_device_code,
                    .on_done = on_device_flow_done,
                    .userdata = p,
                };
                char *device_endpoint = NULL;
                r = account_meta_device_endpoint(&p->meta, b->config->authority, &device_endpoint);
                if (r == -EOPNOTSUPP) {
                        provision_fail(p, ADMIN_BAD_REQUEST,
                                       "The device flow with a token_endpoint needs "
                                       "device_endpoint too.");
                        return;
                }
                params.device_endpoint = device_endpoint;
                if (r == 0)
                        r = device_flow_start(b->idp, b->epfd, &params, &p->device);
                free(device_endpoint);
                break;
        }
        case ACCOUNT_FLOW_PASSWORD:
                r = grant_form_password(p->meta.client_id, p->meta.username, p->password, p->scope,
                                        p->generic, &form);
                /* Used once: the form holds the only copy from here until it is sent. */
                secret_free(p->password);
                p->password = NULL;
                break;
        case ACCOUNT_FLOW_CLIENT_SECRET:
                /* The stored copy stays for commit; the request gets its own. */
                r = secret_new_from(secret_data(p->client_secret), secret_len(p->client_secret),
                                    &p->assertion.credential);
                p->assertion.flow = ACCOUNT_FLOW_CLIENT_SECRET;
                /* fall through */
        case ACCOUNT_FLOW_CLIENT_CERTIFICATE:
                if (r == 0)
                        r = grant_post_client_credentials(b->idp, &p->meta, p->token_endpoint,
                                                          p->scope, &p->assertion, on_signed_in, p);
                break;
        }
        if (r == 0 && form)
                r = idp_post_token_request(b->idp, p->token_endpoint, &form, on_signed_in, p);
        secret_free(form);
        if (r < 0) {
                log_error_errno(r, "Admin: account %s: cannot start the sign-in", p->account);
                provision_fail(p, ADMIN_UNAVAILABLE, "The sign-in request could not be started.");
        }
}

/* ---- prepare ---- */

static int prepare_call(struct store *store, void *userdata)
{
        struct provision *p = userdata;
        int r;

        free(p->existing_meta);
        p->existing_meta = NULL;
        r = store_get_meta(store, p->account, &p->existing_meta);
        if (r < 0 && r != -ENOENT)
                return r;
        p->prepare_found_meta = r == 0;
        if (p->login || p->prepare_found_meta)
                return 0;
        if (p->meta.flow_kind == ACCOUNT_FLOW_CLIENT_CERTIFICATE)
                return grant_credential_fetch(store, &p->assertion);
        return 0;
}

/* account.login: the stored metadata says how to sign in again. */
static int take_stored_meta(struct provision *p, const char **ret_message)
{
        struct account_meta stored = {0};

        if (!p->prepare_found_meta) {
                *ret_message = "No such account.";
                return -ENOENT;
        }
        if (account_meta_from_json(p->existing_meta, &stored) < 0) {
                *ret_message = "The account's metadata is unreadable: remove and add it again.";
                return -EINVAL;
        }
        if (stored.flow_kind != ACCOUNT_FLOW_DEVICE && stored.flow_kind != ACCOUNT_FLOW_PASSWORD) {
                account_meta_clear(&stored);
                *ret_message = "Only device and password accounts sign in again; use "
                               "account.add for the others.";
                return -EOPNOTSUPP;
        }
        if (stored.flow_kind == ACCOUNT_FLOW_PASSWORD && !p->password) {
                account_meta_clear(&stored);
                *ret_message = "A password account needs \"password\" to sign in again.";
                return -EINVAL;
        }
        account_meta_clear(&p->meta);
        p->meta = stored;
        return 0;
}

static void on_prepared(struct store_job *job, void *userdata)
{
        struct provision *p = userdata;
        struct broker *b = p->op.broker;
        const char *message = NULL;
        int r = job->result;

        if (r < 0 && !p->prepare_found_meta && r == -ENOENT &&
            p->meta.flow_kind == ACCOUNT_FLOW_CLIENT_CERTIFICATE) {
                provision_fail(p, ADMIN_NEEDS_CONFIG,
                               "The account has no assertion key and certificate: run "
                               "credbroker account keygen first.");
                return;
        }
        if (r < 0) {
                log_error_errno(r, "Admin: account %s: cannot read the credential store",
                                p->account);
                provision_fail(p, ADMIN_UNAVAILABLE,
                               "The credential store could not be read; try again later.");
                return;
        }
        if (!p->login && p->prepare_found_meta && !p->replace) {
                provision_fail(p, ADMIN_EXISTS,
                               "The account exists: remove it first, or use "
                               "account.login to sign it in again.");
                return;
        }
        if (p->login && take_stored_meta(p, &message) < 0) {
                provision_fail(p,
                               strcmp(message, "No such account.") == 0 ? ADMIN_NOT_FOUND
                                                                        : ADMIN_BAD_REQUEST,
                               message);
                return;
        }
        p->generic = account_meta_is_generic_oauth(&p->meta);
        if (account_meta_token_endpoint(&p->meta, b->config->authority, &p->token_endpoint) < 0 ||
            resolve_scope(p, NULL) < 0) {
                provision_fail(p, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        run_flow(p);
}

void provision_start(struct admin_connection *c, const cJSON *request, bool login)
{
        struct broker *b = c->broker;
        struct provision *p = calloc(1, sizeof(*p));
        const char *name = json_get_string(request, "account"), *message = "Out of memory.";
        struct store_job *job = NULL;
        int r;

        if (!p) {
                admin_send_error(c, ADMIN_INTERNAL, message);
                return;
        }
        p->login = login;
        memcpy(p->account, name, strlen(name) + 1);
        /* Two sign-ins of one account would race on its refresh token and metadata. */
        if (provision_busy(b, p->account)) {
                admin_send_error(c, ADMIN_UNAVAILABLE,
                                 "The account is being signed in by another request; try again "
                                 "when that one is done.");
                provision_free(p);
                return;
        }
        if (login) {
                r = take_secret(request, "password", &p->password);
                if (r == -ENOENT)
                        r = 0;
                message = "\"password\" must be 1-4096 bytes.";
        } else {
                r = parse_add(p, request, &message);
        }
        if (r == 0 && !login && p->meta.flow_kind == ACCOUNT_FLOW_CLIENT_CERTIFICATE) {
                char *endpoint = NULL;
                r = account_meta_token_endpoint(&p->meta, b->config->authority, &endpoint);
                if (r == 0)
                        r = grant_credential_call_init(&p->assertion, p->account, p->meta.flow_kind,
                                                       endpoint, p->meta.client_id);
                if (r == 0)
                        grant_credential_call_set_alg(&p->assertion, &p->meta);
                free(endpoint);
                message = "The token endpoint or client id is too long for an assertion.";
        }
        if (r < 0) {
                admin_send_error(c, r == -ENOMEM ? ADMIN_INTERNAL : ADMIN_BAD_REQUEST, message);
                provision_free(p);
                return;
        }
        if (store_job_new(STORE_JOB_CALL, p->account, &job) < 0) {
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                provision_free(p);
                return;
        }
        job->call = prepare_call;
        job->call_arg = p;
        p->op.abandoned = on_abandoned;
        admin_operation_begin(c, &p->op);
        p->next = b->provisions;
        b->provisions = p;
        if (store_worker_submit(b->store_worker, job, on_prepared, p) < 0) {
                store_job_free(job);
                admin_operation_fail(&p->op, ADMIN_UNAVAILABLE,
                                     "The credential store is busy; try again later.");
                provision_free(p);
        }
}
