/* The admin socket's operations (docs/admin-protocol.md): the request envelope, and the
 * operations that only read or remove: account.list, account.show, account.remove, reload.
 * status and metrics are in admin-status.c; account.add, account.login and account.test in
 * provision.c. Every store access runs on the store worker. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "account-view.h"
#include "admin-audit.h"
#include "admin-inventory.h"
#include "admin-queue.h"
#include "admin-status.h"
#include "admin.h"
#include "accounts.h"
#include "audit.h"
#include "config.h"
#include "policy-reload.h"
#include "policy.h"
#include "store-worker.h"
#include "util.h"
#include "broker.h"
#include "json.h"
#include "log.h"
#include "provision.h"

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

void admin_account_status_of(struct broker *b, const struct account_inventory *item,
                             struct account_status *ret)
{
        struct account *a = account_find(b->accounts, item->name);

        account_view_store_status(item, ret);
        if (!a || !item->meta_valid)
                return;
        if (a->state == ACCOUNT_NEEDS_REAUTH)
                ret->state = "needs_reauth";
        else if (a->state == ACCOUNT_NEEDS_CONFIG)
                ret->state = "needs_config";
        else if (account_busy(a))
                ret->state = "refreshing";
        else if (a->retry_at_usec > now_boottime_usec()) {
                ret->state = "backoff";
                ret->until = admin_boottime_to_unix(a->retry_at_usec);
        }
        if (account_message(a)[0] && strcmp(ret->state, "ok") != 0 &&
            strcmp(ret->state, "refreshing"))
                ret->message = account_message(a);
}

/* ---- account.list ---- */

static cJSON *list_row(struct broker *b, const struct account_inventory *item)
{
        struct account_status status;

        admin_account_status_of(b, item, &status);
        return account_view_list_row(
            item, &status,
            &(struct account_view_options){.default_authority = b->config->authority});
}

/* ---- account.show ---- */

static void reply_show(struct inventory_operation *io, int result)
{
        struct broker *b = io->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        const struct account_inventory *item;
        struct account_status status;
        cJSON *o;

        if (result == -ENOENT) {
                admin_operation_fail(&io->op, ADMIN_NOT_FOUND, "No such account.");
                return;
        }
        if (result < 0 || io->request->n_items != 1) {
                admin_operation_fail(&io->op, ADMIN_UNAVAILABLE,
                                     "The credential store could not be read; try again later.");
                return;
        }
        item = &io->request->items[0];
        admin_account_status_of(b, item, &status);
        reply = admin_reply_new();
        o = reply ? account_view_show(
                        item, &status,
                        &(struct account_view_options){.default_authority = b->config->authority})
                  : NULL;
        if (o && !cJSON_AddItemToObject(reply, "account", o)) {
                cJSON_Delete(o);
                o = NULL;
        }
        admin_operation_finish(&io->op, o ? reply : NULL);
}

static void on_inventory_gathered(struct store_job *job, void *userdata)
{
        struct inventory_operation *io = userdata;

        io->reply(io, job->result);
        inventory_operation_free(io);
}

/* Gathers the inventory of account (NULL: every account) on the store worker and calls reply on
 * the loop with the result (<0: the store could not be read); replies itself on failure. */
static void inventory_begin(struct admin_connection *c, const char *account,
                            void (*reply)(struct inventory_operation *io, int result),
                            admin_account_row_fn row)
{
        struct inventory_operation *io = calloc(1, sizeof(*io));
        struct store_job *job = NULL;

        if (!io || !(io->request = calloc(1, sizeof(*io->request))) ||
            store_job_new(STORE_JOB_CALL, account ? account : "-", &job) < 0) {
                if (io)
                        inventory_operation_free(io);
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        if (account) {
                memcpy(io->request->account, account, strlen(account) + 1);
                /* account.show says which backend holds it ("backend"); a copy: a reload may
                 * replace the configuration while the store worker reads it. */
                io->request->backends_wanted = true;
                io->request->wrapped_dir =
                    c->broker->config->wrapped_dir ? strdup(c->broker->config->wrapped_dir) : NULL;
        }
        io->reply = reply;
        io->row = row;
        job->call = inventory_gather;
        job->call_arg = io->request;
        admin_operation_begin(c, &io->op);
        if (store_worker_submit(c->broker->store_worker, job, on_inventory_gathered, io) < 0) {
                store_job_free(job);
                admin_operation_fail(&io->op, ADMIN_UNAVAILABLE,
                                     "The credential store is busy; try again later.");
                inventory_operation_free(io);
        }
}

static void reply_rows(struct inventory_operation *io, int result)
{
        _cleanup_json_ cJSON *reply = admin_reply_new();
        cJSON *accounts = reply ? cJSON_AddArrayToObject(reply, "accounts") : NULL;
        bool good = accounts != NULL;

        if (result < 0) {
                admin_operation_fail(&io->op, ADMIN_UNAVAILABLE,
                                     "The credential store could not be read; try again later.");
                return;
        }
        for (size_t i = 0; good && i < io->request->n_items; i++) {
                cJSON *row = io->row(io->op.broker, &io->request->items[i]);
                good = row && cJSON_AddItemToArray(accounts, row);
                if (!good)
                        cJSON_Delete(row);
        }
        admin_operation_finish(&io->op, good ? reply : NULL);
}

void admin_inventory_rows(struct admin_connection *c, admin_account_row_fn row)
{
        inventory_begin(c, NULL, reply_rows, row);
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

static void on_account_removed(struct store_job *job, void *userdata)
{
        struct remove_operation *ro = userdata;
        struct broker *b = ro->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        cJSON *removed;
        bool good;

        if (job->result < 0) {
                log_error_errno(job->result, "Admin: failed to remove account %s", ro->account);
                admin_operation_fail(&ro->op, ADMIN_UNAVAILABLE,
                                     "The account could not be removed from the credential store.");
                goto out;
        }
        if (ro->n_removed == 0) {
                admin_operation_fail(&ro->op, ADMIN_NOT_FOUND, "No such account.");
                goto out;
        }
        token_cache_drop_account(&b->cache, ro->account);
        accounts_forget(b, ro->account);
        log_info("Admin: account %s removed (%zu objects).", ro->account, ro->n_removed);
        admin_operation_audit(&ro->op, ro->account);
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
                admin_send_error(c, ADMIN_UNAVAILABLE,
                                 "The account is being signed in; try again when that is done.");
                return;
        }
        if (a && (account_busy(a) || a->waiters)) {
                admin_send_error(c, ADMIN_UNAVAILABLE,
                                 "The account is being refreshed; try again in a moment.");
                return;
        }
        /* Nothing issued from the cache once removal is asked for. */
        token_cache_drop_account(&b->cache, account);
        ro = calloc(1, sizeof(*ro));
        if (!ro || store_job_new(STORE_JOB_CALL, account, &job) < 0) {
                free(ro);
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        memcpy(ro->account, account, strlen(account) + 1);
        job->call = remove_account_call;
        job->call_arg = ro;
        admin_operation_begin(c, &ro->op);
        if (store_worker_submit(b->store_worker, job, on_account_removed, ro) < 0) {
                store_job_free(job);
                admin_operation_fail(&ro->op, ADMIN_UNAVAILABLE,
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
                admin_send_error(c, ADMIN_BAD_REQUEST, error);
                return;
        }
        reply = admin_reply_new();
        if (reply && !json_add_uint(reply, "profiles", profiles)) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_send(c, reply);
}

/* ---- the envelope and the operation table ---- */

static void handle_list(struct admin_connection *c, const cJSON *request, const char *account)
{
        admin_inventory_rows(c, list_row);
}

static void handle_reload(struct admin_connection *c, const cJSON *request, const char *account)
{
        do_reload(c);
}

static void handle_ping(struct admin_connection *c, const cJSON *request, const char *account)
{
        _cleanup_json_ cJSON *reply = admin_reply_new();

        admin_send(c, reply);
}

static void handle_show(struct admin_connection *c, const cJSON *request, const char *account)
{
        inventory_begin(c, account, reply_show, NULL);
}

static void handle_remove(struct admin_connection *c, const cJSON *request, const char *account)
{
        start_remove(c, account);
}

static void handle_add(struct admin_connection *c, const cJSON *request, const char *account)
{
        provision_start(c, request, false);
}

static void handle_login(struct admin_connection *c, const cJSON *request, const char *account)
{
        provision_start(c, request, true);
}

static void handle_credential(struct admin_connection *c, const cJSON *request, const char *account)
{
        admin_credential_start(c, request, c->handling->name);
}

static void handle_test(struct admin_connection *c, const cJSON *request, const char *account)
{
        provision_test(c, request);
}

/* Every operation of the admin socket (docs/admin-protocol.md). */
static const struct admin_op admin_ops[] = {
    {"ping", handle_ping, false, false, NULL},
    {"status", admin_status_handle, false, true, NULL},
    {"metrics", admin_metrics_handle, false, false, NULL},
    {"reload", handle_reload, false, false, NULL},
    {"account.list", handle_list, false, true, NULL},
    {"account.show", handle_show, true, true, NULL},
    {"account.remove", handle_remove, true, true, "account_removed"},
    {"account.add", handle_add, true, true, "account_added"},
    {"account.login", handle_login, true, true, "account_signed_in"},
    {"account.keygen", handle_credential, true, true, "account_key_generated"},
    {"account.cert", handle_credential, true, true, "account_certificate_stored"},
    {"account.secret", handle_credential, true, true, "account_secret_stored"},
    {"account.test", handle_test, true, true, NULL},
    {"audit.checkpoint", admin_audit_checkpoint, false, false, NULL},
    {"audit.rotate", admin_audit_rotate, false, false, NULL},
    {"audit.key", admin_audit_key, false, false, NULL},
    {"queue.list", admin_queue_list, false, false, NULL},
    {"queue.show", admin_queue_show, false, false, NULL},
    {"queue.flush", admin_queue_flush, false, false, NULL},
    {"queue.delete", admin_queue_delete, false, false, NULL},
};

const struct admin_op *admin_op_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(admin_ops); i++)
                if (strcmp(admin_ops[i].name, name) == 0)
                        return &admin_ops[i];
        return NULL;
}

const struct admin_op *admin_op_table(size_t *ret_n)
{
        *ret_n = ELEMENTSOF(admin_ops);
        return admin_ops;
}

/* The account name of a request that needs one; replies bad_request and returns NULL when it is
 * missing or invalid. */
static const char *request_account(struct admin_connection *c, const cJSON *request)
{
        const char *name = json_get_string(request, "account");

        if (!name || !name_is_valid(name)) {
                admin_send_error(c, ADMIN_BAD_REQUEST,
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

static void dispatch(struct admin_connection *c, const cJSON *request)
{
        const cJSON *version = cJSON_GetObjectItemCaseSensitive(request, "v");
        const char *name = json_get_string(request, "op"), *account = NULL;
        const struct admin_op *op;

        if (!cJSON_IsNumber(version) || !name) {
                admin_send_error(c, ADMIN_BAD_REQUEST, "Every request needs \"v\":1 and \"op\".");
                return;
        }
        if (version->valuedouble != 1) {
                admin_send_error(c, ADMIN_UNSUPPORTED_VERSION, "Only version 1 is spoken here.");
                return;
        }
        op = admin_op_find(name);
        if (!op) {
                admin_send_error(c, ADMIN_UNKNOWN_OP, "Unknown operation.");
                return;
        }
        if (op->needs_account && !(account = request_account(c, request)))
                return;
        c->handling = op;
        op->handler(c, request, account);
        c->handling = NULL;
}

void admin_handle(struct admin_connection *c, uint8_t *payload, size_t len)
{
        _cleanup_json_ cJSON *request = NULL;

        if (!utf8_is_valid(payload, len) || json_parse(payload, len, &request) < 0 ||
            !cJSON_IsObject(request) || json_has_duplicate_keys(request)) {
                explicit_bzero(payload, len);
                admin_send_error(c, ADMIN_BAD_REQUEST, "The request is not a JSON object.");
                return;
        }
        /* Whatever the operation, the frame's bytes are not needed again. */
        explicit_bzero(payload, len);
        dispatch(c, request);
        wipe_strings(request);
}
