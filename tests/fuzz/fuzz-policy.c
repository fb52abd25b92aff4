/* Fuzz target for the policy parser (policy.d files are written by administrators, but a broken
 * one must never crash the broker on reload): parse one profile from memory; what parses must
 * print back as text that parses to the same rules, and must evaluate without trouble. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_POLICY_MAX (64 * 1024)

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-policy: invariant broken: %s\n", what);
                abort();
        }
}

static void ignore_problem(const char *file, unsigned line, const char *message, void *userdata)
{
        (void)line;
        (void)userdata;
        check(file && message && *message, "every problem has a file and a message");
}

/* The profile as text again: account, scopes, then every rule as written. */
static size_t print_profile(const struct policy_profile *p, char *out, size_t len)
{
        struct policy_rule_info info;
        char *const *scopes;
        size_t n, at;

        at = (size_t)snprintf(out, len, "account %s\n", policy_profile_account(p));
        scopes = policy_profile_scopes(p, &n);
        for (size_t i = 0; i < n && at < len; i++)
                at += (size_t)snprintf(out + at, len - at, "scope %s\n", scopes[i]);
        for (size_t i = 0; policy_profile_rule_info(p, i, &info) == 0 && at < len; i++)
                at += (size_t)snprintf(out + at, len - at, "%s %s %s %s\n", info.stack,
                                       info.control, info.module, info.arguments);
        check(at < len, "printed profile fits");
        return at;
}

static void check_warning(const char *where, const char *message, void *userdata)
{
        (void)userdata;
        check(where && *where && message && *message, "every warning has a rule and a message");
}

static void evaluate_some(const struct policy_profile *p, struct policy_limiter *limiter)
{
        static const gid_t groups[] = {4, 27, 65534};
        static char *const scopes[] = {(char *)"https://graph.microsoft.com/Mail.Send",
                                       (char *)"https://graph.microsoft.com/.default"};
        const struct policy_peer peers[] = {
            {.uid = 0, .gid = 0, .pid = 1, .exe = "/usr/bin/credbroker", .unit = "cron.service"},
            {.uid = 1000, .gid = 1000, .pid = 2, .groups = groups, .n_groups = 3},
            {.uid = 65534,
             .gid = 65534,
             .pid = 3,
             .exe = "/usr/lib/nagios/plugins/x",
             .unit = "nagios.service"},
            {.uid = 1000,
             .gid = 100,
             .pid = 4,
             .exe = "/usr/bin/backup",
             .unit = "user@1000.service/backup.service"},
        };
        const struct policy_request requests[] = {
            {0},
            {.scopes = scopes, .n_scopes = 1, .min_ttl = 300},
            {.scopes = scopes, .n_scopes = 2, .min_ttl = 86400},
        };

        for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++)
                for (size_t k = 0; k < sizeof(requests) / sizeof(requests[0]); k++) {
                        struct policy_decision d;
                        struct policy_time now = {.wall = (time_t)(1700000000 + 7919 * i * k),
                                                  .monotonic_usec = 1000000 * (i + k)};

                        policy_evaluate(p, &peers[i], &requests[k], &now, limiter, &d);
                        check(d.verdict == POLICY_ALLOW || d.verdict == POLICY_DENY ||
                                  d.verdict == POLICY_RATE_LIMITED,
                              "a verdict");
                        check(d.rule[0] && d.reason, "a decision names a rule and a reason");
                        check(d.verdict != POLICY_RATE_LIMITED || d.retry_after >= 1,
                              "rate limited comes with retry_after");
                        policy_evaluate_peer(p, &peers[i], &now, &d);
                        check(d.verdict != POLICY_RATE_LIMITED, "the peer stack has no rate");
                }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct policy_profile *p = NULL, *again = NULL;
        static char printed[2 * FUZZ_POLICY_MAX];
        static struct policy_limiter *limiter;
        size_t len;

        if (!limiter) {
                limiter = policy_limiter_new();
                check(limiter != NULL, "a limiter");
        }
        if (size > FUZZ_POLICY_MAX)
                return 0;
        if (policy_profile_parse_buffer("fuzz", (const char *)data, size, ignore_problem, NULL,
                                        &p) < 0) {
                check(p == NULL, "a failed parse returns nothing");
                return 0;
        }
        check(policy_profile_account(p) && policy_profile_scope_key(p), "account and scopes");
        len = print_profile(p, printed, sizeof(printed));
        check(policy_profile_parse_buffer("fuzz", printed, len, ignore_problem, NULL, &again) == 0,
              "a parsed profile prints back as text that parses");
        check(policy_profile_rule_count(again) == policy_profile_rule_count(p),
              "the same number of rules");
        for (size_t i = 0; i < policy_profile_rule_count(p); i++) {
                struct policy_rule_info a, b;
                policy_profile_rule_info(p, i, &a);
                policy_profile_rule_info(again, i, &b);
                check(strcmp(a.stack, b.stack) == 0 && strcmp(a.control, b.control) == 0 &&
                          strcmp(a.module, b.module) == 0 && strcmp(a.arguments, b.arguments) == 0,
                      "the same rules");
        }
        evaluate_some(p, limiter);
        check(policy_profile_lint(p, check_warning, NULL) <= 1, "at most one warning");
        check(policy_profile_lint(p, check_warning, NULL) ==
                  policy_profile_lint(again, check_warning, NULL),
              "the printed profile warns alike");
        policy_profile_free(again);
        policy_profile_free(p);
        return 0;
}
