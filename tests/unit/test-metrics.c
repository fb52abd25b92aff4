/* Unit tests for the broker's monitoring counters (broker/engine/metrics.c) and their Prometheus
 * text (cli/status-prometheus.c): counts by profile, the table's bound and its pruning of
 * profiles the policy lost, names that are never counted, and label values escaped as the
 * exposition format wants. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "json.h"
#include "metrics.h"
#include "policy.h"
#include "status-prometheus.h"
#include "tap.h"

static char dir[] = "/tmp/test-metrics.XXXXXX";

static void write_profile(const char *name)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f) {
                perror(path);
                exit(EXIT_FAILURE);
        }
        fputs("account alerts\nscope https://graph.microsoft.com/Mail.Send\n"
              "peer required uid root\n",
              f);
        fclose(f);
}

static void remove_profiles(void)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/alerts", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/backup", dir);
        unlink(path);
        rmdir(dir);
}

static uint64_t issued(const struct broker *b, const char *profile)
{
        const struct metrics_profile *p = metrics_profile_find(&b->metrics, profile);

        return p ? p->issued : 0;
}

static void test_counts(struct broker *b)
{
        const struct metrics_profile *p;

        metrics_token_issued(b, "alerts");
        metrics_token_issued(b, "alerts");
        metrics_token_denied(b, "alerts", METRICS_DENIED_POLICY);
        metrics_token_denied(b, "backup", METRICS_DENIED_RATE_LIMITED);
        metrics_token_denied(b, "backup", _METRICS_DENIAL_MAX); /* out of range: ignored */
        p = metrics_profile_find(&b->metrics, "alerts");
        ok(p && p->issued == 2 && p->denied[METRICS_DENIED_POLICY] == 1 &&
               p->denied[METRICS_DENIED_RATE_LIMITED] == 0,
           "alerts: 2 issued, 1 denied by the policy");
        p = metrics_profile_find(&b->metrics, "backup");
        ok(p && p->issued == 0 && p->denied[METRICS_DENIED_RATE_LIMITED] == 1 &&
               p->denied[METRICS_DENIED_POLICY] == 0,
           "backup: 1 rate-limited, nothing else");
        ok(!metrics_profile_find(&b->metrics, "nobody-asked"), "a profile never counted has none");

        /* Names the policy could not have are never a label. */
        metrics_token_issued(b, "");
        metrics_token_issued(b, "Alerts\"}\n");
        metrics_token_issued(b,
                             "a-name-of-sixty-five-characters-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        metrics_token_issued(b, ".hidden");
        is_int(b->metrics.n_profiles, 2, "invalid names are not counted");

        metrics_upstream(&b->metrics, IDP_OK);
        metrics_upstream(&b->metrics, IDP_REAUTH);
        metrics_upstream(&b->metrics, IDP_REAUTH);
        metrics_upstream(&b->metrics, (enum idp_outcome)99);
        ok(b->metrics.upstream[IDP_OK] == 1 && b->metrics.upstream[IDP_REAUTH] == 2 &&
               b->metrics.upstream[IDP_TRANSIENT] == 0,
           "upstream answers by class; an unknown class is ignored");
        is_str(metrics_upstream_class(IDP_SCOPES_REFUSED), "scopes_refused", "class names");
        is_str(metrics_upstream_class(IDP_TRANSIENT), "transient", "class names");
}

/* Memory: the table's slots are small; the counters themselves are not kept two to four times
 * over in it. With 1,024 profiles (2,049 slots at least: 4,096), at most 128 bytes a profile
 * (a table of whole entries: 384). */
static void test_size(void)
{
        struct broker b = {0};
        char name[32];
        size_t bytes;

        for (int i = 0; i < 1024; i++) {
                snprintf(name, sizeof(name), "sized-%d", i);
                metrics_token_issued(&b, name);
        }
        bytes = b.metrics.allocated * sizeof(struct metrics_profile) +
                b.metrics.capacity * sizeof(*b.metrics.slots);
        is_int(b.metrics.n_profiles, 1024, "1,024 profiles counted");
        if (!ok(bytes <= 128 * 1024, "at most 128 bytes a profile"))
                printf("# %zu bytes for 1,024 profiles\n", bytes);
        is_int(issued(&b, "sized-0") + issued(&b, "sized-1023"), 2, "each found again");
        metrics_clear(&b.metrics);
}

/* Profiles that reloads dropped fill the table; at its bound they are pruned, those of the
 * current policy keep their counts, and the table never grows past the bound. */
static void test_bound(struct broker *b)
{
        char name[32], newest[32];
        bool bounded = true;

        for (int i = 0; i < 3 * METRICS_PROFILES_MAX; i++) {
                snprintf(name, sizeof(name), "gone-%d", i);
                metrics_token_issued(b, name);
                if (b->metrics.n_profiles > METRICS_PROFILES_MAX ||
                    2 * b->metrics.n_profiles > b->metrics.capacity)
                        bounded = false;
        }
        ok(bounded, "never more than METRICS_PROFILES_MAX profiles, never more than half full");
        ok(b->metrics.capacity <= 2 * METRICS_PROFILES_MAX, "the table stops growing");
        is_int(issued(b, "alerts"), 2, "a profile of the policy keeps its count through pruning");
        ok(!metrics_profile_find(&b->metrics, "gone-0"), "an old name the policy lost is pruned");
        snprintf(newest, sizeof(newest), "gone-%d", 3 * METRICS_PROFILES_MAX - 1);
        is_int(issued(b, newest), 1, "the newest name is counted");

        /* Without a policy to prune by, a full table counts no new name. */
        b->policy = NULL;
        for (int i = 0; i < 2 * METRICS_PROFILES_MAX; i++) {
                snprintf(name, sizeof(name), "later-%d", i);
                metrics_token_issued(b, name);
        }
        is_int(b->metrics.n_profiles, METRICS_PROFILES_MAX, "full: no new name is added");
        metrics_token_issued(b, newest);
        is_int(issued(b, newest), 2, "names already there still count");
}

static char *render(const char *accounts_json, const char *metrics_json)
{
        _cleanup_json_ cJSON *accounts = cJSON_Parse(accounts_json);
        _cleanup_json_ cJSON *metrics = metrics_json ? cJSON_Parse(metrics_json) : NULL;
        struct status_prometheus p = {
            .accounts = accounts, .metrics = metrics, .now = 1000, .warn_days = 30};
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        if (!f || status_prometheus_write(f, &p) < 0)
                abort();
        fclose(f);
        return text;
}

static void test_exposition(void)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        status_prometheus_label_value(f, "a\\b\"c\nd\x01\xc3\xa9");
        fclose(f);
        is_str(text, "a\\\\b\\\"c\\nd???", "label values: \\ \" and line feed escaped, the rest ?");
        free(text);

        text = render("[{\"account\":\"we\\\"ird\\n\",\"state\":\"backoff\",\"state_until\":1060,"
                      "\"refresh_token_stored_at\":400},{\"state\":\"ok\"}]",
                      "{\"profiles\":[{\"profile\":\"p\",\"issued\":7,\"denied\":1,"
                      "\"rate_limited\":2}],\"unknown_profile\":3,\"bad_requests\":4,"
                      "\"upstream\":{\"ok\":5,\"transient\":6,\"reauth\":0,\"config\":0,"
                      "\"scopes_refused\":0}}");
        ok(strstr(text,
                  "\ncredbroker_account_state{account=\"we\\\"ird\\n\",state=\"backoff\"} 1\n"),
           "an account's name is escaped in its labels");
        ok(strstr(text,
                  "\ncredbroker_account_backoff_until_timestamp_seconds{account=\"we\\\"ird\\n\"} "
                  "1060\n"),
           "backoff until");
        ok(strstr(text,
                  "\ncredbroker_account_refresh_token_age_seconds{account=\"we\\\"ird\\n\"} 600\n"),
           "refresh token age from now");
        ok(strstr(text, "\ncredbroker_account_check{account=\"we\\\"ird\\n\"} 1\n"),
           "backoff is a WARNING");
        ok(!strstr(text, "account=\"\""), "an account without a name is left out");
        ok(strstr(text,
                  "\ncredbroker_tokens_denied_total{profile=\"p\",reason=\"rate_limited\"} 2\n") &&
               strstr(text, "\ncredbroker_tokens_issued_total{profile=\"p\"} 7\n"),
           "profile counters");
        ok(strstr(text, "\ncredbroker_upstream_errors_total{class=\"transient\"} 6\n") &&
               strstr(text, "\ncredbroker_upstream_tokens_total 5\n") &&
               strstr(text, "\ncredbroker_token_requests_unknown_profile_total 3\n"),
           "upstream and request counters");
        ok(strstr(text, "\ncredbroker_up 1\n") != NULL, "up");
        ok(strstr(text, "# TYPE credbroker_tokens_issued_total counter\n") &&
               strstr(text, "# TYPE credbroker_account_state gauge\n"),
           "TYPE lines");
        free(text);

        text = render("[]", NULL);
        ok(strstr(text, "\ncredbroker_up 0\n") && strstr(text, "\ncredbroker_status 3\n") &&
               !strstr(text, "credbroker_upstream_tokens_total 0"),
           "without the metrics reply: up 0, status UNKNOWN, no counter samples");
        free(text);
}

int main(void)
{
        _cleanup_(policy_set_freep) struct policy_set *policy = NULL;
        struct broker b = {0};

        if (!mkdtemp(dir))
                return EXIT_FAILURE;
        write_profile("alerts");
        write_profile("backup");
        if (policy_set_load(dir, &policy) < 0) {
                printf("Bail out! cannot load the test policy\n");
                return EXIT_FAILURE;
        }
        b.policy = policy;
        test_counts(&b);
        test_size();
        test_bound(&b);
        metrics_clear(&b.metrics);
        ok(!b.metrics.profiles && b.metrics.n_profiles == 0, "cleared");
        test_exposition();
        remove_profiles();
        return done_testing();
}
