/* The admin socket's operations (docs/admin-protocol.md): the request envelope, and the
 * operations that only read or remove: account.list, account.show, account.remove, status,
 * reload. account.add, account.login and account.test are in provision.c. Every store access
 * runs on the store worker. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin-inventory.h"
#include "admin.h"
#include "audit-checkpoint.h"
#include "broker.h"
#include "json.h"
#include "log.h"
#include "provision.h"

struct inventory_operation {
        struct admin_operation op;
        struct inventory_request *request;
        void (*reply)(struct inventory_operation *io, int result);
};

static void inventory_operation_free(struct inventory_operation *io)
{
        inventory_request_free(io->request);
        free(io);
}

/* Unix seconds of a CLOCK_BOOTTIME instant. */
uint64_t admin_boottime_to_unix(uint64_t boottime_usec)
{
        uint64_t now_boot = now_boottime_usec(), now_real = now_realtime_usec();

        if (boottime_usec >= now_boot)
                return (now_real + (boottime_usec - now_boot)) / USEC_PER_SEC;
        return (now_real - (now_boot - boottime_usec)) / USEC_PER_SEC;
}

/* The state status and account.list report: the runtime account's when the broker has one,
 * else what the store's objects imply. */
struct account_status {
        const char *state;
        uint64_t until; /* unix seconds, backoff only */
        const char *message;
};

static void account_status_of(struct broker *b, const struct account_inventory *item,
                              struct account_status *ret)
{
        struct account *a = account_find(b->accounts, item->name);
        uint64_t now = now_boottime_usec();

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
        if (!a)
                return;
        if (a->state == ACCOUNT_NEEDS_REAUTH)
                ret->state = "needs_reauth";
        else if (a->state == ACCOUNT_NEEDS_CONFIG)
                ret->state = "needs_config";
        else if (a->refreshing)
                ret->state = "refreshing";
        else if (a->retry_at_usec > now) {
                ret->state = "backoff";
                ret->until = admin_boottime_to_unix(a->retry_at_usec);
        }
        if (a->message[0] && strcmp(ret->state, "ok") != 0 && strcmp(ret->state, "refreshing"))
                ret->message = a->message;
}

static bool add_optional_time(cJSON *o, const char *key, uint64_t v)
{
        return v == 0 || json_add_uint(o, key, v);
}

static bool add_optional_string(cJSON *o, const char *key, const char *v)
{
        return !v || cJSON_AddStringToObject(o, key, v);
}

/* ---- account.list ---- */

static void reply_list(struct inventory_operation *io, int result)
{
        struct broker *b = io->op.broker;
        _cleanup_json_ cJSON *reply = admin_reply_new();
        cJSON *accounts = reply ? cJSON_AddArrayToObject(reply, "accounts") : NULL;
        bool good = accounts != NULL;

        if (result < 0) {
                admin_operation_fail(&io->op, "unavailable",
                                     "The credential store could not be read; try again later.");
                return;
        }
        for (size_t i = 0; good && i < io->request->n_items; i++) {
                const struct account_inventory *item = &io->request->items[i];
                const struct account_meta *m = &item->meta;
                struct account_status status;
                cJSON *row = cJSON_CreateObject();

                account_status_of(b, item, &status);
                good = row && cJSON_AddItemToArray(accounts, row) &&
                       cJSON_AddStringToObject(row, "account", item->name) &&
                       cJSON_AddStringToObject(row, "state", status.state);
                if (good && item->meta_valid)
                        good = cJSON_AddStringToObject(row, "flow",
                                                       account_flow_to_string(m->flow_kind)) &&
                               cJSON_AddStringToObject(row, "tenant", m->tenant) &&
                               cJSON_AddStringToObject(row, "client_id", m->client_id) &&
                               add_optional_string(row, "mailbox", m->mailbox);
        }
        admin_operation_finish(&io->op, good ? reply : NULL);
}

/* ---- account.show ---- */

static bool add_meta(cJSON *o, const struct account_meta *m)
{
        cJSON *scopes = NULL;
        bool good = cJSON_AddStringToObject(o, "flow", account_flow_to_string(m->flow_kind)) &&
                    cJSON_AddStringToObject(o, "tenant", m->tenant) &&
                    cJSON_AddStringToObject(o, "client_id", m->client_id) &&
                    add_optional_string(o, "mailbox", m->mailbox) &&
                    add_optional_string(o, "username", m->username) &&
                    add_optional_string(o, "authority", m->authority) &&
                    add_optional_string(o, "token_endpoint", m->token_endpoint) &&
                    add_optional_string(o, "device_endpoint", m->device_endpoint) &&
                    add_optional_string(o, "graph", m->graph) &&
                    add_optional_string(o, "assertion_alg", m->assertion_alg) &&
                    add_optional_string(o, "client_auth", m->client_auth) &&
                    add_optional_time(o, "secret_expires_at", m->secret_expires_at) &&
                    json_add_uint(o, "created", m->created);

        if (good && m->scopes) {
                const char *s = m->scopes;
                char scope[SCOPE_MAX_LEN + 1];

                good = (scopes = cJSON_AddArrayToObject(o, "scopes")) != NULL;
                while (good && *s) {
                        size_t len = strcspn(s, " ");
                        cJSON *item;
                        if (len > SCOPE_MAX_LEN)
                                break;
                        memcpy(scope, s, len);
                        scope[len] = 0;
                        item = cJSON_CreateString(scope);
                        good = item && cJSON_AddItemToArray(scopes, item);
                        s += len;
                        s += *s == ' ';
                }
        }
        return good;
}

static void reply_show(struct inventory_operation *io, int result)
{
        struct broker *b = io->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        const struct account_inventory *item;
        struct account_status status;
        cJSON *o, *sub;
        bool good;

        if (result == -ENOENT) {
                admin_operation_fail(&io->op, "not_found", "No such account.");
                return;
        }
        if (result < 0 || io->request->n_items != 1) {
                admin_operation_fail(&io->op, "unavailable",
                                     "The credential store could not be read; try again later.");
                return;
        }
        item = &io->request->items[0];
        account_status_of(b, item, &status);
        reply = admin_reply_new();
        o = reply ? cJSON_AddObjectToObject(reply, "account") : NULL;
        good = o && cJSON_AddStringToObject(o, "account", item->name) &&
               cJSON_AddBoolToObject(o, "metadata", item->meta_valid) &&
               (!item->meta_valid ||
                (add_meta(o, &item->meta) &&
                 inventory_add_endpoints(o, &item->meta, b->config->authority))) &&
               cJSON_AddStringToObject(o, "state", status.state) &&
               add_optional_string(o, "message", status.message) &&
               cJSON_AddBoolToObject(o, "client_secret", item->has_secret);
        if (good && item->has_refresh_token)
                good = (sub = cJSON_AddObjectToObject(o, "refresh_token")) &&
                       json_add_uint(sub, "generation", item->refresh_token.generation) &&
                       json_add_uint(sub, "objects", item->refresh_token.n_generations) &&
                       add_optional_time(sub, "stored_at", item->refresh_token.stored_at);
        else if (good)
                good = cJSON_AddNullToObject(o, "refresh_token") != NULL;
        if (good && item->has_certificate)
                good =
                    (sub = cJSON_AddObjectToObject(o, "certificate")) &&
                    cJSON_AddStringToObject(sub, "subject", item->certificate.subject) &&
                    cJSON_AddStringToObject(sub, "issuer", item->certificate.issuer) &&
                    json_add_uint(sub, "not_before", item->certificate.not_before) &&
                    json_add_uint(sub, "not_after", item->certificate.not_after) &&
                    json_add_uint(sub, "bits", item->certificate.bits) &&
                    cJSON_AddStringToObject(sub, "sha1_thumbprint", item->certificate.sha1_hex) &&
                    cJSON_AddStringToObject(sub, "sha256_thumbprint", item->certificate.sha256_hex);
        else if (good)
                good = cJSON_AddNullToObject(o, "certificate") != NULL;
        admin_operation_finish(&io->op, good ? reply : NULL);
}

/* ---- status ---- */

/* Next refresh and token expiry from the account's cached tokens: the soonest refresh, the
 * latest expiry. */
static void cached_times(struct broker *b, const char *account, uint64_t *ret_next_refresh,
                         uint64_t *ret_expires)
{
        uint64_t next = 0, expires = 0;

        for (const struct cached_token *t = b->cache.entries; t; t = t->next) {
                if (strcmp(t->account, account) != 0)
                        continue;
                if (next == 0 || t->refresh_usec < next)
                        next = t->refresh_usec;
                if (t->expires_usec > expires)
                        expires = t->expires_usec;
        }
        *ret_next_refresh = next ? admin_boottime_to_unix(next) : 0;
        *ret_expires = expires ? admin_boottime_to_unix(expires) : 0;
}

static void reply_status(struct inventory_operation *io, int result)
{
        struct broker *b = io->op.broker;
        _cleanup_json_ cJSON *reply = admin_reply_new();
        cJSON *accounts = reply ? cJSON_AddArrayToObject(reply, "accounts") : NULL;
        bool good = accounts != NULL;

        if (result < 0) {
                admin_operation_fail(&io->op, "unavailable",
                                     "The credential store could not be read; try again later.");
                return;
        }
        for (size_t i = 0; good && i < io->request->n_items; i++) {
                const struct account_inventory *item = &io->request->items[i];
                const struct account *a = account_find(b->accounts, item->name);
                uint64_t next_refresh, expires, credential_expires = 0;
                struct account_status status;
                cJSON *row = cJSON_CreateObject();

                account_status_of(b, item, &status);
                cached_times(b, item->name, &next_refresh, &expires);
                if (item->meta_valid && item->meta.flow_kind == ACCOUNT_FLOW_CLIENT_SECRET)
                        credential_expires = item->meta.secret_expires_at;
                else if (item->has_certificate)
                        credential_expires = item->certificate.not_after;
                good = row && cJSON_AddItemToArray(accounts, row) &&
                       cJSON_AddStringToObject(row, "account", item->name) &&
                       cJSON_AddStringToObject(row, "state", status.state) &&
                       add_optional_time(row, "state_until", status.until) &&
                       add_optional_time(row, "last_refresh", a ? a->last_refresh_at : 0) &&
                       add_optional_time(row, "next_refresh", next_refresh) &&
                       add_optional_time(row, "token_expires_at", expires) &&
                       add_optional_time(row, "refresh_token_stored_at",
                                         item->has_refresh_token ? item->refresh_token.stored_at
                                                                 : 0) &&
                       add_optional_time(row, "credential_expires_at", credential_expires) &&
                       add_optional_string(row, "message", status.message) &&
                       /* needs_reauth because the previous run stopped during a refresh */
                       (!a || a->state != ACCOUNT_NEEDS_REAUTH || !a->reauth_interrupted ||
                        cJSON_AddTrueToObject(row, "interrupted_refresh"));
        }
        admin_operation_finish(&io->op, good ? reply : NULL);
}

static void on_inventory_gathered(struct store_job *job, void *userdata)
{
        struct inventory_operation *io = userdata;

        io->reply(io, job->result);
        inventory_operation_free(io);
}

static void start_inventory(struct admin_connection *c, const char *account,
                            void (*reply)(struct inventory_operation *io, int result))
{
        struct inventory_operation *io = calloc(1, sizeof(*io));
        struct store_job *job = NULL;

        if (!io || !(io->request = calloc(1, sizeof(*io->request))) ||
            store_job_new(STORE_JOB_CALL, account ? account : "-", &job) < 0) {
                if (io)
                        inventory_operation_free(io);
                admin_send_error(c, "internal", "Out of memory.");
                return;
        }
        if (account)
                memcpy(io->request->account, account, strlen(account) + 1);
        io->reply = reply;
        job->call = inventory_gather;
        job->call_arg = io->request;
        admin_operation_begin(c, &io->op);
        if (store_worker_submit(c->broker->store_worker, job, on_inventory_gathered, io) < 0) {
                store_job_free(job);
                admin_operation_fail(&io->op, "unavailable",
                                     "The credential store is busy; try again later.");
                inventory_operation_free(io);
        }
}

/* ---- account.remove ---- */

struct remove_operation {
        struct admin_operation op;
        char account[NAME_MAX_LEN + 1];
        struct store_removed_object *removed;
        size_t n_removed;
};

static int remove_account_call(struct store *store, void *userdata)
{
        struct remove_operation *ro = userdata;

        store_removed_free(ro->removed, ro->n_removed);
        ro->removed = NULL;
        ro->n_removed = 0;
        return store_remove_account_report(store, ro->account, &ro->removed, &ro->n_removed);
}

/* Forgets the runtime account, so that a later request reads the store afresh. */
static void forget_account(struct broker *b, const char *name)
{
        for (struct account **link = &b->accounts; *link; link = &(*link)->next) {
                struct account *a = *link;
                if (strcmp(a->name, name) != 0)
                        continue;
                if (a->refreshing || a->waiters)
                        return; /* its refresh ends on its own; a reload forgets it later */
                *link = a->next;
                account_free(a);
                return;
        }
}

static void on_account_removed(struct store_job *job, void *userdata)
{
        struct remove_operation *ro = userdata;
        struct broker *b = ro->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        cJSON *removed;
        bool good;

        if (job->result < 0) {
                log_error_errno(job->result, "Admin: failed to remove account %s", ro->account);
                admin_operation_fail(&ro->op, "unavailable",
                                     "The account could not be removed from the credential store.");
                goto out;
        }
        if (ro->n_removed == 0) {
                admin_operation_fail(&ro->op, "not_found", "No such account.");
                goto out;
        }
        token_cache_drop_account(&b->cache, ro->account);
        forget_account(b, ro->account);
        log_info("Admin: account %s removed (%zu objects).", ro->account, ro->n_removed);
        (void)audit_write(
            b->audit, &(struct audit_record){.event = "account_removed", .account = ro->account});
        reply = admin_reply_new();
        removed = reply ? cJSON_AddArrayToObject(reply, "removed") : NULL;
        good = removed != NULL;
        for (size_t i = 0; good && i < ro->n_removed; i++) {
                char line[512];
                cJSON *item;
                snprintf(line, sizeof(line), "%s (%s)", ro->removed[i].label,
                         ro->removed[i].class_name);
                item = cJSON_CreateString(line);
                good = item && cJSON_AddItemToArray(removed, item);
        }
        admin_operation_finish(&ro->op, good ? reply : NULL);
out:
        store_removed_free(ro->removed, ro->n_removed);
        free(ro);
}

static void start_remove(struct admin_connection *c, const char *account)
{
        struct broker *b = c->broker;
        struct remove_operation *ro;
        struct store_job *job = NULL;
        struct account *a = account_find(b->accounts, account);

        if (provision_busy(b, account)) {
                admin_send_error(c, "unavailable",
                                 "The account is being signed in; try again when that is done.");
                return;
        }
        if (a && (a->refreshing || a->waiters)) {
                admin_send_error(c, "unavailable",
                                 "The account is being refreshed; try again in a moment.");
                return;
        }
        /* Nothing issued from the cache once removal is asked for. */
        token_cache_drop_account(&b->cache, account);
        ro = calloc(1, sizeof(*ro));
        if (!ro || store_job_new(STORE_JOB_CALL, account, &job) < 0) {
                free(ro);
                admin_send_error(c, "internal", "Out of memory.");
                return;
        }
        memcpy(ro->account, account, strlen(account) + 1);
        job->call = remove_account_call;
        job->call_arg = ro;
        admin_operation_begin(c, &ro->op);
        if (store_worker_submit(b->store_worker, job, on_account_removed, ro) < 0) {
                store_job_free(job);
                admin_operation_fail(&ro->op, "unavailable",
                                     "The credential store is busy; try again later.");
                free(ro);
        }
}

/* ---- reload ---- */

static void do_reload(struct admin_connection *c)
{
        _cleanup_json_ cJSON *reply = NULL;
        char error[256];
        size_t profiles;

        if (broker_reload(c->broker, error, sizeof(error), &profiles) < 0) {
                admin_send_error(c, "bad_request", error);
                return;
        }
        reply = admin_reply_new();
        if (reply && !json_add_uint(reply, "profiles", profiles)) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_send(c, reply);
}

/* ---- audit.checkpoint, audit.rotate, audit.key ---- */

struct checkpoint_operation {
        struct admin_operation op;
        bool rotate;
};

static void on_checkpoint_done(void *userdata, int r, bool reopened)
{
        struct checkpoint_operation *co = userdata;
        struct broker *b = co->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        uint64_t seq, count;
        bool good;

        if (r < 0) {
                admin_operation_fail(&co->op, "unavailable",
                                     r == -ECANCELED
                                         ? "The broker is stopping; its final checkpoint "
                                           "seals the log."
                                         : "The audit checkpoint could not be written; the "
                                           "broker's log says why.");
                free(co);
                return;
        }
        reply = admin_reply_new();
        good = reply != NULL;
        if (good && co->rotate)
                good = cJSON_AddBoolToObject(reply, "reopened", reopened) != NULL;
        if (good && audit_last_checkpoint(b->audit, &seq, &count))
                good = json_add_uint(reply, "seq", seq) && json_add_uint(reply, "count", count);
        admin_operation_finish(&co->op, good ? reply : NULL);
        free(co);
}

static void start_checkpoint(struct admin_connection *c, bool rotate)
{
        struct checkpoint_operation *co;

        if (!c->broker->checkpoints) {
                admin_send_error(c, "unavailable", "The audit log has no checkpoints here.");
                return;
        }
        co = calloc(1, sizeof(*co));
        if (!co) {
                admin_send_error(c, "internal", "Out of memory.");
                return;
        }
        co->rotate = rotate;
        admin_operation_begin(c, &co->op);
        audit_checkpoint_request(c->broker->checkpoints, rotate, on_checkpoint_done, co);
}

static void do_audit_key(struct admin_connection *c)
{
        _cleanup_json_ cJSON *reply = NULL;

        if (!c->broker->checkpoints) {
                admin_send_error(c, "unavailable", "The audit log has no checkpoints here.");
                return;
        }
        reply = admin_reply_new();
        if (reply &&
            !cJSON_AddStringToObject(reply, "key", audit_checkpoint_key(c->broker->checkpoints))) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_send(c, reply);
}

/* ---- the envelope ---- */

/* The account name of a request that needs one; replies bad_request and returns NULL when it is
 * missing or invalid. */
static const char *request_account(struct admin_connection *c, const cJSON *request)
{
        const char *name = json_get_string(request, "account");

        if (!name || !name_is_valid(name)) {
                admin_send_error(c, "bad_request",
                                 "\"account\" must be a name of 1-64 characters [a-z0-9._-].");
                return NULL;
        }
        return name;
}

/* Wipes every string of the request: a password or secret must not outlive its use in cJSON's
 * heap copies either. */
static void wipe_strings(cJSON *json)
{
        for (cJSON *item = json; item; item = item->next) {
                if (cJSON_IsString(item) && item->valuestring)
                        explicit_bzero(item->valuestring, strlen(item->valuestring));
                if (item->child)
                        wipe_strings(item->child);
        }
}

void admin_handle(struct admin_connection *c, uint8_t *payload, size_t len)
{
        _cleanup_json_ cJSON *request = NULL;
        const cJSON *version;
        const char *op, *account;

        if (!utf8_is_valid(payload, len) || json_parse(payload, len, &request) < 0 ||
            !cJSON_IsObject(request) || json_has_duplicate_keys(request)) {
                explicit_bzero(payload, len);
                admin_send_error(c, "bad_request", "The request is not a JSON object.");
                return;
        }
        /* Whatever the operation, the frame's bytes are not needed again. */
        explicit_bzero(payload, len);
        version = cJSON_GetObjectItemCaseSensitive(request, "v");
        op = json_get_string(request, "op");
        if (!cJSON_IsNumber(version) || !op) {
                admin_send_error(c, "bad_request", "Every request needs \"v\":1 and \"op\".");
        } else if (version->valuedouble != 1) {
                admin_send_error(c, "unsupported_version", "Only version 1 is spoken here.");
        } else if (strcmp(op, "account.list") == 0) {
                start_inventory(c, NULL, reply_list);
        } else if (strcmp(op, "status") == 0) {
                start_inventory(c, NULL, reply_status);
        } else if (strcmp(op, "reload") == 0) {
                do_reload(c);
        } else if (strcmp(op, "audit.checkpoint") == 0 || strcmp(op, "audit.rotate") == 0) {
                start_checkpoint(c, strcmp(op, "audit.rotate") == 0);
        } else if (strcmp(op, "audit.key") == 0) {
                do_audit_key(c);
        } else if (strcmp(op, "ping") == 0) {
                _cleanup_json_ cJSON *reply = admin_reply_new();
                admin_send(c, reply);
        } else if (strcmp(op, "account.show") == 0) {
                if ((account = request_account(c, request)))
                        start_inventory(c, account, reply_show);
        } else if (strcmp(op, "account.remove") == 0) {
                if ((account = request_account(c, request)))
                        start_remove(c, account);
        } else if (strcmp(op, "account.add") == 0 || strcmp(op, "account.login") == 0) {
                if ((account = request_account(c, request)))
                        provision_start(c, request, strcmp(op, "account.login") == 0);
        } else if (strcmp(op, "account.keygen") == 0 || strcmp(op, "account.cert") == 0 ||
                   strcmp(op, "account.secret") == 0) {
                if ((account = request_account(c, request)))
                        admin_credential_start(c, request, op);
        } else if (strcmp(op, "account.test") == 0) {
                if ((account = request_account(c, request)))
                        provision_test(c, request);
        } else {
                admin_send_error(c, "unknown_op", "Unknown operation.");
        }
        wipe_strings(request);
}
