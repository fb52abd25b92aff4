/* The admin socket's monitoring operations (docs/admin-protocol.md, docs/monitoring.md):
 * status, every account's state from the store and the runtime account, and metrics, the
 * engine's counters (engine/metrics.h) for `credbroker status --prometheus`. */
#include <string.h>

#include "admin-status.h"

#include "accounts.h"
#include "broker.h"
#include "json.h"
#include "metrics.h"
#include "spool.h"
#include "policy.h"
#include "util.h"

/* At most this many profile rows in a metrics reply: with 64-character names and 20-digit
 * counters each row is under 200 bytes, so the reply stays well inside one frame
 * (WIRE_FRAME_MAX). */
#define METRICS_REPLY_PROFILES_MAX 256

static bool add_optional_time(cJSON *o, const char *key, uint64_t v)
{
        return v == 0 || json_add_uint(o, key, v);
}

static bool add_optional_string(cJSON *o, const char *key, const char *v)
{
        return !v || cJSON_AddStringToObject(o, key, v);
}

/* Next refresh and token expiry from the account's cached tokens: the soonest refresh, the
 * latest expiry. */
static void cached_times(struct broker *b, const char *account, uint64_t *ret_next_refresh,
                         uint64_t *ret_expires)
{
        uint64_t next = 0, expires = 0;

        for (const struct cached_token *t = token_cache_first_of(&b->cache, account); t;
             t = t->next_of_account) {
                if (next == 0 || t->refresh_usec < next)
                        next = t->refresh_usec;
                if (t->expires_usec > expires)
                        expires = t->expires_usec;
        }
        *ret_next_refresh = next ? admin_boottime_to_unix(next) : 0;
        *ret_expires = expires ? admin_boottime_to_unix(expires) : 0;
}

static cJSON *status_row(struct broker *b, const struct account_inventory *item)
{
        const struct account *a = account_find(b->accounts, item->name);
        uint64_t next_refresh, expires, credential_expires = 0;
        struct account_status status;
        _cleanup_json_ cJSON *row = cJSON_CreateObject();

        admin_account_status_of(b, item, &status);
        cached_times(b, item->name, &next_refresh, &expires);
        if (item->meta_valid && item->meta.flow_kind == ACCOUNT_FLOW_CLIENT_SECRET)
                credential_expires = item->meta.secret_expires_at;
        else if (item->has_certificate)
                credential_expires = item->certificate.not_after;
        if (!row || !cJSON_AddStringToObject(row, "account", item->name) ||
            !cJSON_AddStringToObject(row, "state", status.state) ||
            !add_optional_time(row, "state_until", status.until) ||
            !add_optional_time(row, "last_refresh", a ? a->last_refresh_at : 0) ||
            !add_optional_time(row, "next_refresh", next_refresh) ||
            !add_optional_time(row, "token_expires_at", expires) ||
            !add_optional_time(row, "refresh_token_stored_at",
                               item->has_refresh_token ? item->refresh_token.stored_at : 0) ||
            !add_optional_time(row, "credential_expires_at", credential_expires) ||
            !add_optional_string(row, "message", status.message))
                return NULL;
        /* needs_reauth because the previous run stopped during a refresh */
        if (a && a->state == ACCOUNT_NEEDS_REAUTH && a->reauth_interrupted &&
            !cJSON_AddTrueToObject(row, "interrupted_refresh"))
                return NULL;
        return TAKE_PTR(row);
}

void admin_status_handle(struct admin_connection *c, const cJSON *request, const char *account)
{
        admin_inventory_rows(c, status_row);
}

/* ---- metrics ---- */

static bool add_profile_row(cJSON *rows, const char *name, const struct metrics_profile *p)
{
        cJSON *row = cJSON_CreateObject();

        if (!row || !cJSON_AddItemToArray(rows, row)) {
                cJSON_Delete(row);
                return false;
        }
        return cJSON_AddStringToObject(row, "profile", name) &&
               json_add_uint(row, "issued", p ? p->issued : 0) &&
               json_add_uint(row, "denied", p ? p->denied[METRICS_DENIED_POLICY] : 0) &&
               json_add_uint(row, "rate_limited", p ? p->denied[METRICS_DENIED_RATE_LIMITED] : 0);
}

/* The current policy's profiles, in its order, each with its counters (zero when none). When
 * the policy has more profiles than fit, only those with counts, as many as fit, and
 * "profiles_truncated": true if some were left out. */
static bool add_profiles(cJSON *reply, const struct metrics *m, const struct policy_set *policy)
{
        size_t n = policy ? policy_set_count(policy) : 0, rows = 0;
        cJSON *array = cJSON_AddArrayToObject(reply, "profiles");
        bool truncated = false;

        if (!array)
                return false;
        for (size_t i = 0; i < n; i++) {
                const char *name = policy_profile_name(policy_set_get(policy, i));
                const struct metrics_profile *p = metrics_profile_find(m, name);

                if (n > METRICS_REPLY_PROFILES_MAX && !p)
                        continue;
                if (rows == METRICS_REPLY_PROFILES_MAX) {
                        truncated = true;
                        break;
                }
                if (!add_profile_row(array, name, p))
                        return false;
                rows++;
        }
        return !truncated || cJSON_AddTrueToObject(reply, "profiles_truncated");
}

static bool add_upstream(cJSON *reply, const struct metrics *m)
{
        cJSON *upstream = cJSON_AddObjectToObject(reply, "upstream");

        if (!upstream)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(m->upstream); i++)
                if (!json_add_uint(upstream, metrics_upstream_class((enum idp_outcome)i),
                                   m->upstream[i]))
                        return false;
        return true;
}

/* The spool's figures (engine/spool.h): absent when the broker has no spool. */
static bool add_spool(cJSON *reply, struct spool *spool)
{
        struct spool_figures f;
        cJSON *o;

        if (!spool)
                return true;
        spool_figures(spool, &f);
        o = cJSON_AddObjectToObject(reply, "mail_spool");
        return o && json_add_uint(o, "queued", f.queued - f.deferred - f.held - f.running) &&
               json_add_uint(o, "deferred", f.deferred) && json_add_uint(o, "held", f.held) &&
               json_add_uint(o, "sending", f.running) && json_add_uint(o, "failed", f.failed) &&
               json_add_uint(o, "bytes", f.bytes) &&
               json_add_uint(o, "oldest_age_seconds", f.oldest_age_sec);
}

void admin_metrics_handle(struct admin_connection *c, const cJSON *request, const char *account)
{
        const struct broker *b = c->broker;
        _cleanup_json_ cJSON *reply = admin_reply_new();

        if (reply && !(add_profiles(reply, &b->metrics, b->policy) &&
                       json_add_uint(reply, "unknown_profile", b->metrics.unknown_profile) &&
                       json_add_uint(reply, "bad_requests", b->metrics.bad_requests) &&
                       add_upstream(reply, &b->metrics) && add_spool(reply, b->spool))) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_send(c, reply);
}
