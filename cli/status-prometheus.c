/* The Prometheus text exposition format of the broker's state; see status-prometheus.h and
 * docs/monitoring.md for each family. */
#include "status-prometheus.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "cleanup.h"
#include "json.h"

/* The states of the status reply (docs/admin-protocol.md), one sample each per account. */
static const char *const account_states[] = {
    "ok", "refreshing", "backoff", "needs_reauth", "needs_config",
};

/* The classes of the token endpoint's failures (broker/idp/token-response.h). */
static const char *const upstream_error_classes[] = {
    "transient",
    "reauth",
    "config",
    "scopes_refused",
};

/* A time of the status reply and the family it goes to. */
static const struct {
        const char *key, *name, *help;
} account_times[] = {
    {"last_refresh", "credbroker_account_last_refresh_timestamp_seconds",
     "When the account's access token was last refreshed since the broker started (unix time)."},
    {"next_refresh", "credbroker_account_next_refresh_timestamp_seconds",
     "When the account's soonest cached access token is refreshed ahead of expiry (unix time)."},
    {"token_expires_at", "credbroker_account_token_expiry_timestamp_seconds",
     "When the account's latest cached access token expires (unix time)."},
    {"state_until", "credbroker_account_backoff_until_timestamp_seconds",
     "Until when the account backs off after a failed refresh (unix time)."},
    {"refresh_token_stored_at", "credbroker_account_refresh_token_stored_timestamp_seconds",
     "When the account's refresh token was stored (unix time); Microsoft drops one unused for "
     "90 days."},
    {"credential_expires_at", "credbroker_account_credential_expiry_timestamp_seconds",
     "When the account's client certificate or client secret expires (unix time)."},
};

void status_prometheus_label_value(FILE *f, const char *value)
{
        for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
                if (*p == '\\' || *p == '"')
                        fprintf(f, "\\%c", *p);
                else if (*p == '\n')
                        fputs("\\n", f);
                else if (*p < 0x20 || *p >= 0x7f)
                        fputc('?', f);
                else
                        fputc(*p, f);
        }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
        /* HELP texts are this file's own: no backslash or line feed to escape. */
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} (or name{label="value",label2="value2"}) and a space, before the value. */
static void sample(FILE *f, const char *name, const char *label, const char *value,
                   const char *label2, const char *value2)
{
        fputs(name, f);
        if (label) {
                fprintf(f, "{%s=\"", label);
                status_prometheus_label_value(f, value);
                if (label2) {
                        fprintf(f, "\",%s=\"", label2);
                        status_prometheus_label_value(f, value2);
                }
                fputs("\"}", f);
        }
        fputc(' ', f);
}

/* The account objects that have a name; the others are left out. */
#define FOR_EACH_NAMED_ACCOUNT(a, name, accounts)                                                  \
        cJSON_ArrayForEach(a, accounts) if ((name = json_get_string(a, "account")) != NULL)

static void write_account_states(FILE *f, const struct status_prometheus *s)
{
        const cJSON *a;
        const char *name;

        family(f, "credbroker_account_state", "gauge",
               "The account's state as the broker sees it: 1 for the state it is in, 0 for the "
               "others.");
        FOR_EACH_NAMED_ACCOUNT(a, name, s->accounts)
        {
                const char *state = json_get_string(a, "state");

                for (size_t i = 0; i < ELEMENTSOF(account_states); i++) {
                        sample(f, "credbroker_account_state", "account", name, "state",
                               account_states[i]);
                        fprintf(f, "%d\n", state && strcmp(state, account_states[i]) == 0);
                }
        }
        family(f, "credbroker_account_check", "gauge",
               "The account's level as credbroker status judges it: 0 OK, 1 WARNING, 2 CRITICAL, "
               "3 UNKNOWN.");
        FOR_EACH_NAMED_ACCOUNT(a, name, s->accounts)
        {
                char reason[600];

                sample(f, "credbroker_account_check", "account", name, NULL, NULL);
                fprintf(f, "%d\n",
                        (int)status_check_account(a, s->now, s->warn_days, reason, sizeof(reason)));
        }
}

static void write_account_times(FILE *f, const struct status_prometheus *s)
{
        const cJSON *a;
        const char *name;
        uint64_t t;

        for (size_t i = 0; i < ELEMENTSOF(account_times); i++) {
                family(f, account_times[i].name, "gauge", account_times[i].help);
                FOR_EACH_NAMED_ACCOUNT(a, name, s->accounts)
                {
                        if (json_get_u64(a, account_times[i].key, &t) < 0 || t == 0)
                                continue;
                        sample(f, account_times[i].name, "account", name, NULL, NULL);
                        fprintf(f, "%llu\n", (unsigned long long)t);
                }
        }
        family(f, "credbroker_account_refresh_token_age_seconds", "gauge",
               "How long ago the account's refresh token was stored, when this was written.");
        FOR_EACH_NAMED_ACCOUNT(a, name, s->accounts)
        {
                if (json_get_u64(a, "refresh_token_stored_at", &t) < 0 || t == 0)
                        continue;
                sample(f, "credbroker_account_refresh_token_age_seconds", "account", name, NULL,
                       NULL);
                fprintf(f, "%llu\n", (unsigned long long)(t < s->now ? s->now - t : 0));
        }
}

static uint64_t counter(const cJSON *o, const char *key)
{
        uint64_t v;

        return json_get_u64(o, key, &v) == 0 ? v : 0;
}

static void write_profiles(FILE *f, const struct status_prometheus *s)
{
        const cJSON *rows = cJSON_GetObjectItemCaseSensitive(s->metrics, "profiles"), *p;
        const char *name;

        if (!cJSON_IsArray(rows))
                rows = NULL;

        family(f, "credbroker_tokens_issued_total", "counter",
               "Access tokens handed out, by policy profile, since the broker started.");
        cJSON_ArrayForEach(p, rows) if ((name = json_get_string(p, "profile")) != NULL)
        {
                sample(f, "credbroker_tokens_issued_total", "profile", name, NULL, NULL);
                fprintf(f, "%llu\n", (unsigned long long)counter(p, "issued"));
        }
        family(f, "credbroker_tokens_denied_total", "counter",
               "Token requests refused, by policy profile and reason (policy: the profile's "
               "decision; rate_limited: a rate rule), since the broker started.");
        cJSON_ArrayForEach(p, rows) if ((name = json_get_string(p, "profile")) != NULL)
        {
                sample(f, "credbroker_tokens_denied_total", "profile", name, "reason", "policy");
                fprintf(f, "%llu\n", (unsigned long long)counter(p, "denied"));
                sample(f, "credbroker_tokens_denied_total", "profile", name, "reason",
                       "rate_limited");
                fprintf(f, "%llu\n", (unsigned long long)counter(p, "rate_limited"));
        }
        family(f, "credbroker_metrics_profiles_truncated", "gauge",
               "1 when the policy has more profiles than one metrics reply holds and some were "
               "left out.");
        if (s->metrics)
                fprintf(f, "credbroker_metrics_profiles_truncated %d\n",
                        cJSON_IsTrue(
                            cJSON_GetObjectItemCaseSensitive(s->metrics, "profiles_truncated")));
}

static void write_requests(FILE *f, const struct status_prometheus *s)
{
        const cJSON *upstream = cJSON_GetObjectItemCaseSensitive(s->metrics, "upstream");

        if (!cJSON_IsObject(upstream))
                upstream = NULL;

        family(f, "credbroker_token_requests_unknown_profile_total", "counter",
               "Token requests naming a profile the policy does not have.");
        if (s->metrics)
                fprintf(f, "credbroker_token_requests_unknown_profile_total %llu\n",
                        (unsigned long long)counter(s->metrics, "unknown_profile"));
        family(f, "credbroker_bad_requests_total", "counter",
               "Client requests that were not well-formed.");
        if (s->metrics)
                fprintf(f, "credbroker_bad_requests_total %llu\n",
                        (unsigned long long)counter(s->metrics, "bad_requests"));
        family(f, "credbroker_upstream_tokens_total", "counter",
               "Access tokens the token endpoint gave the broker's refreshes.");
        if (upstream)
                fprintf(f, "credbroker_upstream_tokens_total %llu\n",
                        (unsigned long long)counter(upstream, "ok"));
        family(f, "credbroker_upstream_errors_total", "counter",
               "Failed refreshes by class: transient (retried with backoff), reauth (an "
               "administrator must sign in again), config (the app registration or account is "
               "wrong), scopes_refused (one scope set is refused).");
        for (size_t i = 0; upstream && i < ELEMENTSOF(upstream_error_classes); i++) {
                sample(f, "credbroker_upstream_errors_total", "class", upstream_error_classes[i],
                       NULL, NULL);
                fprintf(f, "%llu\n",
                        (unsigned long long)counter(upstream, upstream_error_classes[i]));
        }
}

/* The mail spool (docs/mail-spool.md): messages by state, and the oldest one's age. Absent when
 * the broker has no spool. */
static void write_spool(FILE *f, const struct status_prometheus *s)
{
        static const char *const states[] = {"queued", "deferred", "sending", "held", "failed"};
        const cJSON *spool =
            s->metrics ? cJSON_GetObjectItemCaseSensitive(s->metrics, "mail_spool") : NULL;

        if (!cJSON_IsObject(spool))
                return;
        family(
            f, "credbroker_mail_spool_messages", "gauge",
            "Messages in the mail spool by state: queued (due), deferred (after a temporary "
            "failure), sending, held (interrupted during delivery: may have been sent), failed.");
        for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                sample(f, "credbroker_mail_spool_messages", "state", states[i], NULL, NULL);
                fprintf(f, "%llu\n", (unsigned long long)counter(spool, states[i]));
        }
        family(f, "credbroker_mail_spool_oldest_age_seconds", "gauge",
               "Age of the oldest message not yet delivered (0: none).");
        fprintf(f, "credbroker_mail_spool_oldest_age_seconds %llu\n",
                (unsigned long long)counter(spool, "oldest_age_seconds"));
}

int status_prometheus_write(FILE *f, const struct status_prometheus *s)
{
        bool up = s->accounts && s->metrics;

        family(f, "credbroker_up", "gauge",
               "1 when credbroker status read the broker's state, 0 when the broker could not be "
               "reached or its reply was not understood.");
        fprintf(f, "credbroker_up %d\n", up);
        family(f, "credbroker_status", "gauge",
               "What credbroker status exits with: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
        fprintf(f, "credbroker_status %d\n", up ? (int)s->overall : (int)STATUS_UNKNOWN);
        write_account_states(f, s);
        write_account_times(f, s);
        write_profiles(f, s);
        write_requests(f, s);
        write_spool(f, s);
        return fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
}
