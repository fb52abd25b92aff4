/* account.test on the admin socket: obtains a token for the account the way a client request
 * would (from the cache, else through the account's single-flight refresh) and reports its
 * scopes and expiry, never the token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "accounts.h"
#include "refresh.h"
#include "store-worker.h"
#include "util.h"
#include "waiter.h"
#include "wire.h"
#include "broker.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "provision.h"

/* A token with less left than this is refreshed first. */
#define TEST_MIN_TTL_SEC 60

struct test_operation {
        struct admin_operation op;
        char account[NAME_MAX_LEN + 1];
        char *scope_key; /* asked for; NULL: the account's default */
};

static void test_operation_free(struct test_operation *t)
{
        free(t->scope_key);
        free(t);
}

static void reply_token(struct test_operation *t, const struct account *a,
                        const struct cached_token *token)
{
        _cleanup_json_ cJSON *reply = admin_reply_new();
        uint64_t now = now_boottime_usec();
        cJSON *scopes = json_string_array_ref(token->scopes, token->n_scopes);
        bool good = reply && scopes && cJSON_AddItemToObject(reply, "scopes", scopes);

        if (!good)
                cJSON_Delete(scopes);
        good = good && cJSON_AddStringToObject(reply, "account", t->account) &&
               json_add_uint(reply, "expires_at", admin_boottime_to_unix(token->expires_usec)) &&
               json_add_uint(reply, "expires_in", cached_token_ttl(token, now)) &&
               (!a->meta.mailbox || cJSON_AddStringToObject(reply, "mailbox", a->meta.mailbox));
        admin_operation_finish(&t->op, good ? reply : NULL);
}

static void on_answer(struct broker *b, struct waiter *w, enum refresh_outcome outcome)
{
        struct test_operation *t = w->answer_data;
        struct account *a = w->account;
        const struct cached_token *token = token_cache_get(&b->cache, a->name, w->scope_key);
        char message[384];

        if (token && cached_token_ttl(token, now_boottime_usec()) > 0) {
                reply_token(t, a, token);
        } else if (outcome == REFRESH_NOT_PROVISIONED) {
                admin_operation_fail(&t->op, ADMIN_NEEDS_CONFIG,
                                     "The account's metadata is missing or invalid.");
        } else if (outcome == REFRESH_STORE_UNAVAILABLE || !a->loaded) {
                admin_operation_fail(&t->op, ADMIN_UNAVAILABLE,
                                     "The credential store is not answering; try again later.");
        } else if (outcome == REFRESH_SCOPES_REFUSED) {
                admin_operation_fail(&t->op, ADMIN_NEEDS_CONFIG,
                                     "The identity provider refused these scopes for the "
                                     "account: grant the app the permissions.");
        } else if (a->state == ACCOUNT_NEEDS_REAUTH) {
                snprintf(message, sizeof(message), "The account must sign in again: %s",
                         account_message(a));
                admin_operation_fail(&t->op, ADMIN_REAUTH_REQUIRED, message);
        } else if (a->state == ACCOUNT_NEEDS_CONFIG) {
                snprintf(message, sizeof(message), "The account needs configuration: %s",
                         account_message(a));
                admin_operation_fail(&t->op, ADMIN_NEEDS_CONFIG, message);
        } else {
                snprintf(message, sizeof(message), "No token could be obtained: %s",
                         account_message(a)[0] ? account_message(a)
                                               : "the identity provider is unavailable");
                admin_operation_fail(&t->op, ADMIN_UNAVAILABLE, message);
        }
        waiter_free(w);
        test_operation_free(t);
}

/* The scope set a test without "scopes" asks for: the account's, else Mail.Send (delegated) or
 * .default (app-only) of the account's Graph resource (its cloud's). */
static int default_scope_key(const struct broker *b, const struct account_meta *m, char **ret)
{
        const char *resource =
            account_meta_graph_resource(m, b->config->graph_url, b->config->cloud);

        if (m->scopes)
                *ret = strdup(m->scopes);
        else if (asprintf(ret, "%s/%s", resource,
                          account_flow_is_app_only(m->flow_kind) ? ".default" : "Mail.Send") < 0)
                *ret = NULL;
        return *ret ? 0 : -ENOMEM;
}

static void on_meta_read(struct store_job *job, void *userdata)
{
        struct test_operation *t = userdata;
        struct broker *b = t->op.broker;
        struct account_meta meta = {0};
        struct account *a = NULL;
        struct waiter *w = NULL;
        const struct cached_token *token;

        if (job->result == -ENOENT) {
                admin_operation_fail(&t->op, ADMIN_NOT_FOUND, "No such account.");
                goto out;
        }
        if (job->result < 0) {
                admin_operation_fail(&t->op, ADMIN_UNAVAILABLE,
                                     "The credential store could not be read; try again later.");
                goto out;
        }
        if (account_meta_from_json(job->meta_json, &meta) < 0) {
                admin_operation_fail(&t->op, ADMIN_NEEDS_CONFIG,
                                     "The account's metadata is unreadable.");
                goto out;
        }
        if (!t->scope_key && default_scope_key(b, &meta, &t->scope_key) < 0)
                goto oom;
        if (accounts_get(b, t->account, &a) < 0)
                goto oom;
        token = token_cache_get(&b->cache, t->account, t->scope_key);
        if (a->loaded && token &&
            cached_token_ttl(token, now_boottime_usec()) >= TEST_MIN_TTL_SEC) {
                reply_token(t, a, token);
                goto out;
        }
        w = calloc(1, sizeof(*w));
        if (!w || !(w->scope_key = strdup(t->scope_key)))
                goto oom;
        w->account = a;
        w->min_ttl = TEST_MIN_TTL_SEC;
        w->answer = on_answer;
        w->answer_data = t;
        account_add_waiter(a, w);
        account_meta_clear(&meta);
        /* Loading accounts start their refresh once the metadata is in (request.c). */
        if (a->loaded)
                refresh_start(b, a, w->scope_key);
        return;
oom:
        waiter_free(w);
        admin_operation_fail(&t->op, ADMIN_INTERNAL, "Out of memory.");
out:
        account_meta_clear(&meta);
        test_operation_free(t);
}

void provision_test(struct admin_connection *c, const cJSON *request)
{
        const cJSON *array = cJSON_GetObjectItemCaseSensitive(request, "scopes"), *item;
        const char *name = json_get_string(request, "account");
        struct test_operation *t = calloc(1, sizeof(*t));
        char *scopes[WIRE_MAX_SCOPES];
        struct store_job *job = NULL;
        size_t n = 0;

        if (!t) {
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        memcpy(t->account, name, strlen(name) + 1);
        if (array && !cJSON_IsNull(array)) {
                bool good = cJSON_IsArray(array);
                cJSON_ArrayForEach(item, array)
                {
                        if (!good || !cJSON_IsString(item) || n >= WIRE_MAX_SCOPES ||
                            !scope_is_valid(item->valuestring)) {
                                good = false;
                                break;
                        }
                        scopes[n++] = item->valuestring;
                }
                if (!good || n == 0 || scope_key_build(scopes, n, &t->scope_key) < 0) {
                        admin_send_error(c, ADMIN_BAD_REQUEST,
                                         "\"scopes\" must be an array of 1-16 valid scopes.");
                        test_operation_free(t);
                        return;
                }
        }
        if (store_job_new(STORE_JOB_GET_META, name, &job) < 0) {
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                test_operation_free(t);
                return;
        }
        admin_operation_begin(c, &t->op);
        if (store_worker_submit(c->broker->store_worker, job, on_meta_read, t) < 0) {
                store_job_free(job);
                admin_operation_fail(&t->op, ADMIN_UNAVAILABLE,
                                     "The credential store is busy; try again later.");
                test_operation_free(t);
        }
}
