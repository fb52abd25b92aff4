/* The PAM controls of the policy stacks, against an independent reference model: every
 * combination of control and outcome for stacks of one to four rules, in the peer stack and in
 * the request stack, plus cases worked by hand from the documentation.
 *
 * The meaning of the controls is Linux-PAM's, as documented in pam.conf(5) (pam.d(5)) and in
 * "The Linux-PAM System Administrators' Guide", section 4.1 "Configuration file syntax":
 *
 *   required   - failure of such a module will ultimately lead to the PAM-API returning
 *                failure, but only after the remaining stacked modules have been invoked.
 *   requisite  - like required, but in the case that such a module returns a failure, control
 *                is directly returned to the application; the return value is that of the first
 *                required or requisite module to fail.
 *   sufficient - if such a module succeeds and no prior required module has failed, the
 *                framework returns success immediately without calling any further modules; a
 *                failure of a sufficient module is ignored and processing continues unaffected.
 *   optional   - the success or failure of this module is only important if it is the only
 *                module in the stack associated with this service+type.
 *
 * And as everywhere in PAM, a stack where nothing succeeded fails: an empty stack denies.
 *
 * Linux-PAM's implementation goes beyond the documented optional in one corner: there an
 * optional success among other modules can carry a stack in which nothing else succeeded
 * (e.g. "sufficient fails, optional succeeds" passes). The policy follows the documentation
 * (credbroker-policy(5) says so): among other rules an optional rule never lets a peer in. */
#include <dlfcn.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "policy.h"
#include "tap.h"
#include "util.h"

/* The policy library is linked in statically, so its fnmatch() calls come here: a count of the
 * glob rules (exe, unit) that ran, to tell a rule that was skipped from one that failed. */
static unsigned fnmatch_calls;

int fnmatch(const char *pattern, const char *string, int flags)
{
        static int (*real)(const char *, const char *, int);

        fnmatch_calls++;
        if (!real) {
                /* POSIX's way to turn dlsym()'s object pointer into a function pointer. */
                *(void **)&real = dlsym(RTLD_NEXT, "fnmatch");
                if (!real)
                        abort();
        }
        return real(pattern, string, flags);
}

enum control { REQUIRED, REQUISITE, SUFFICIENT, OPTIONAL };
static const char *const control_names[] = {"required", "requisite", "sufficient", "optional"};

struct outcome {
        bool allow;
        int decider; /* index of the rule that decided, -1 when none did */
};

/* The reference model: a plain re-statement of the documentation above, written apart from the
 * evaluator. */
static struct outcome reference(const enum control *controls, const bool *succeeds, int n)
{
        int first_failure = -1, first_success = -1;

        for (int i = 0; i < n; i++) {
                if (controls[i] == OPTIONAL && n > 1)
                        continue; /* only important when it is the only module */
                if (succeeds[i]) {
                        if (controls[i] == SUFFICIENT) {
                                if (first_failure < 0) /* no prior required failure */
                                        return (struct outcome){true, i};
                                continue;
                        }
                        if (first_success < 0)
                                first_success = i;
                        continue;
                }
                if (controls[i] == SUFFICIENT)
                        continue; /* a failure of a sufficient module is ignored */
                if (first_failure < 0)
                        first_failure = i;
                if (controls[i] == REQUISITE) /* returned at once: the first failure's value */
                        return (struct outcome){false, first_failure};
        }
        if (first_failure >= 0)
                return (struct outcome){false, first_failure};
        if (first_success >= 0)
                return (struct outcome){true, first_success};
        return (struct outcome){false, -1}; /* nothing succeeded, or nothing at all */
}

static char last_error[512];

static void collect_error(const char *file, unsigned line, const char *message, void *userdata)
{
        (void)userdata;
        snprintf(last_error, sizeof(last_error), "%s:%u: %s", file, line, message);
}

/* Header lines: account, scope, and in request mode a peer stack that lets everyone through. */
#define HEADER_LINES(request) ((request) ? 3 : 2)

/* Evaluates a stack of permit/deny rules (permit always succeeds, deny always fails) in the peer
 * or the request stack and compares verdict and deciding line with the reference. */
static bool check_stack(bool request, const enum control *controls, const bool *succeeds, int n,
                        char *why, size_t why_len)
{
        char text[1024];
        size_t at;
        struct policy_profile *p = NULL;
        struct policy_decision d;
        struct outcome want = reference(controls, succeeds, n);
        char want_rule[64];
        static const struct policy_peer peer = {.uid = 1000, .gid = 1000, .pid = 2};

        at = (size_t)snprintf(text, sizeof(text), "account a\nscope s\n%s",
                              request ? "peer required permit\n" : "");
        for (int i = 0; i < n; i++)
                at += (size_t)snprintf(text + at, sizeof(text) - at, "%s %s %s\n",
                                       request ? "request" : "peer", control_names[controls[i]],
                                       succeeds[i] ? "permit" : "deny");
        if (policy_profile_parse_buffer("p", text, at, collect_error, NULL, &p) < 0) {
                snprintf(why, why_len, "parse failed: %.200s", last_error);
                return false;
        }
        policy_evaluate(p, &peer, &(struct policy_request){0}, &(struct policy_time){0}, NULL, &d);
        policy_profile_free(p);

        if (request && want.allow)
                /* An allow names the peer stack's rule, the header's last line: the request
                 * stack only adds conditions. */
                snprintf(want_rule, sizeof(want_rule), "p:%d", HEADER_LINES(request));
        else if (want.decider >= 0)
                snprintf(want_rule, sizeof(want_rule), "p:%d",
                         HEADER_LINES(request) + want.decider + 1);
        else
                snprintf(want_rule, sizeof(want_rule), "p"); /* nothing decided: the profile */
        if ((d.verdict == POLICY_ALLOW) != want.allow || strcmp(d.rule, want_rule) != 0) {
                at = (size_t)snprintf(why, why_len, "%s stack [", request ? "request" : "peer");
                for (int i = 0; i < n && at < why_len; i++)
                        at += (size_t)snprintf(why + at, why_len - at, "%s%s:%s", i ? " " : "",
                                               control_names[controls[i]],
                                               succeeds[i] ? "ok" : "fail");
                if (at < why_len)
                        snprintf(why + at, why_len - at, "] got %s %s, want %s %s",
                                 d.verdict == POLICY_ALLOW ? "allow" : "deny", d.rule,
                                 want.allow ? "allow" : "deny", want_rule);
                return false;
        }
        return true;
}

/* Every combination of 4 controls x success/failure for 1..4 rules: 8 + 64 + 512 + 4096. */
static void enumerate(bool request)
{
        for (int n = 1; n <= 4; n++) {
                int combinations = 1 << (3 * n), failures = 0;
                char why[512] = "", label[128];

                for (int code = 0; code < combinations; code++) {
                        enum control controls[4];
                        bool succeeds[4];
                        char this_why[512];

                        for (int i = 0; i < n; i++) {
                                int rule = (code >> (3 * i)) & 7;
                                controls[i] = (enum control)(rule >> 1);
                                succeeds[i] = rule & 1;
                        }
                        if (!check_stack(request, controls, succeeds, n, this_why,
                                         sizeof(this_why))) {
                                if (failures++ == 0)
                                        snprintf(why, sizeof(why), "%s", this_why);
                        }
                }
                snprintf(label, sizeof(label),
                         "%s stack, %d rule(s): all %d combinations agree with the reference",
                         request ? "request" : "peer", n, combinations);
                if (!ok(failures == 0, label))
                        printf("#   %d disagree; first: %s\n", failures, why);
        }
}

struct named_case {
        const char *what;
        const char *stack; /* the rules, one per line */
        bool allow;
        const char *rule;
};

/* Worked by hand from the documentation quoted at the top; lines 3.. are the rules. */
static const struct named_case named_cases[] = {
    {"empty stack: nothing succeeded, deny", "", false, "p"},
    {"required alone, success", "peer required permit\n", true, "p:3"},
    {"required alone, failure", "peer required deny\n", false, "p:3"},
    {"required failure still lets the rest run, then denies (first failure named)",
     "peer required permit\npeer required deny\npeer required permit\n", false, "p:4"},
    {"several required failures: the first one's value is returned",
     "peer required deny\npeer required deny\n", false, "p:3"},
    {"requisite failure returns at once", "peer requisite deny\npeer sufficient permit\n", false,
     "p:3"},
    {"requisite after a required failure returns the required failure's value",
     "peer required deny\npeer requisite deny\npeer sufficient permit\n", false, "p:3"},
    {"requisite success continues", "peer requisite permit\npeer required permit\n", true, "p:3"},
    {"sufficient success with no prior failure allows at once",
     "peer sufficient permit\npeer required deny\n", true, "p:3"},
    {"sufficient success after a required failure does not allow",
     "peer required deny\npeer sufficient permit\npeer required permit\n", false, "p:3"},
    {"sufficient failure is ignored", "peer sufficient deny\npeer required permit\n", true, "p:4"},
    {"sufficient failure alone: nothing succeeded", "peer sufficient deny\n", false, "p"},
    {"sufficient success after a requisite success allows",
     "peer requisite permit\npeer sufficient permit\npeer required deny\n", true, "p:4"},
    {"optional alone: its success counts", "peer optional permit\n", true, "p:3"},
    {"optional alone: its failure counts", "peer optional deny\n", false, "p:3"},
    {"optional failure among others is ignored", "peer optional deny\npeer required permit\n", true,
     "p:4"},
    {"optional success among others does not allow (documented meaning)",
     "peer sufficient deny\npeer optional permit\n", false, "p"},
    {"two optional rules: neither counts", "peer optional permit\npeer optional permit\n", false,
     "p"},
};

static int evaluate_text_as(const char *body, const struct policy_peer *peer,
                            const struct policy_request *req, struct policy_decision *d)
{
        struct policy_profile *p = NULL;
        char text[1024];
        int len = snprintf(text, sizeof(text), "account a\nscope s\n%s", body);

        if (policy_profile_parse_buffer("p", text, (size_t)len, collect_error, NULL, &p) < 0)
                return -1;
        policy_evaluate(p, peer, req, &(struct policy_time){0}, NULL, d);
        policy_profile_free(p);
        return 0;
}

static int evaluate_text(const char *body, const struct policy_request *req,
                         struct policy_decision *d)
{
        static const struct policy_peer peer = {.uid = 1000, .gid = 1000, .pid = 2};

        return evaluate_text_as(body, &peer, req, d);
}

/* A failing requisite rule ends its stack there (pam.conf(5): "control is directly returned to
 * the application"): the reason says requisite, it is the deciding rule, and no later rule runs.
 * A requisite that went on like required would give the same verdict and rule for permit/deny
 * stacks, so these look at the reason and at what later rules did. */
static void test_requisite_stops(void)
{
        static const struct policy_peer peer = {.uid = 1000,
                                                .gid = 1000,
                                                .pid = 2,
                                                .exe = "/usr/bin/true",
                                                .unit = "user@1000.service/backup.service"};
        struct policy_limiter *l = policy_limiter_new();
        struct policy_profile *p = NULL;
        struct policy_decision d;
        uint64_t t = 1000 * USEC_PER_SEC, peeks;
        const char *text = "account a\nscope s\n"
                           "peer required permit\n"
                           "request requisite min_ttl max=60\n"
                           "request required rate 2/hour per-uid\n";

        if (!l)
                abort();
        /* Peer stack: the reason, and a glob rule after the failed requisite never runs. */
        evaluate_text_as("peer requisite uid 0\npeer required unit user@*.service/backup.service\n",
                         &peer, &(struct policy_request){0}, &d);
        is_str(d.rule, "p:3", "peer: the failed requisite rule decides");
        is_str(d.reason, "requisite rule failed", "peer: the reason is the requisite's");
        fnmatch_calls = 0;
        evaluate_text_as("peer requisite uid 0\npeer required unit user@*.service/backup.service\n"
                         "peer required exe /usr/bin/*\n",
                         &peer, &(struct policy_request){0}, &d);
        is_int(fnmatch_calls, 0, "peer: the unit and exe rules after it are not run");
        evaluate_text_as(
            "peer requisite uid 1000\npeer required unit user@*.service/backup.service\n", &peer,
            &(struct policy_request){0}, &d);
        ok(fnmatch_calls > 0 && d.verdict == POLICY_ALLOW,
           "(control: after a requisite that succeeds, the unit rule runs and matches)");
        evaluate_text_as("peer required deny\npeer requisite uid 0\npeer required permit\n", &peer,
                         &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:3") == 0 &&
               strcmp(d.reason, "required rule failed") == 0,
           "peer: a requisite after a failed required rule stops with the required one's value");

        /* Request stack: a rate rule after a failed requisite is not consulted, and its bucket
         * keeps its whole budget. */
        if (policy_profile_parse_buffer("p", text, strlen(text), collect_error, NULL, &p) < 0)
                abort();
        peeks = policy_limiter_peeks(l);
        for (int i = 0; i < 5; i++)
                policy_evaluate(p, &peer, &(struct policy_request){.min_ttl = 3600},
                                &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:4") == 0,
           "request: the failed requisite min_ttl rule decides");
        is_str(d.reason, "requisite rule failed", "request: the reason is the requisite's");
        is_str(d.rate_key, "", "request: no bucket is named");
        is_int(policy_limiter_peeks(l) - peeks, 0,
               "request: the rate rule after it is not consulted");
        is_int(policy_limiter_bucket_count(l), 0, "request: no bucket was made");
        peeks = policy_limiter_peeks(l);
        for (int i = 0; i < 2; i++) {
                policy_evaluate(p, &peer, &(struct policy_request){.min_ttl = 30},
                                &(struct policy_time){.monotonic_usec = t}, l, &d);
                ok(d.verdict == POLICY_ALLOW,
                   i == 0 ? "the same uid then has its whole budget: 1 of 2"
                          : "the same uid then has its whole budget: 2 of 2");
        }
        ok(policy_limiter_peeks(l) - peeks == 2,
           "(control: a passing requisite lets the rate rule run)");
        policy_evaluate(p, &peer, &(struct policy_request){.min_ttl = 30},
                        &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED && strcmp(d.rule, "p:5") == 0,
           "and no more: the third is rate limited by the rate rule");
        /* With the bucket empty, a failing requisite still decides before the rate rule. */
        policy_evaluate(p, &peer, &(struct policy_request){.min_ttl = 3600},
                        &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:4") == 0 &&
               strcmp(d.reason, "requisite rule failed") == 0 && d.retry_after == 0,
           "an empty bucket behind a failed requisite: denied by the requisite, not rate limited");
        policy_profile_free(p);
        policy_limiter_free(l);
}

int main(void)
{
        struct policy_decision d;

        log_set_level(LOG_LEVEL_ERROR - 1);

        for (size_t i = 0; i < sizeof(named_cases) / sizeof(named_cases[0]); i++) {
                const struct named_case *c = &named_cases[i];
                char label[256];

                snprintf(label, sizeof(label), "%s", c->what);
                if (evaluate_text(c->stack, &(struct policy_request){0}, &d) < 0) {
                        ok(false, label);
                        printf("#   parse: %s\n", last_error);
                        continue;
                }
                if (!ok((d.verdict == POLICY_ALLOW) == c->allow && strcmp(d.rule, c->rule) == 0,
                        label))
                        printf("#   got %s %s\n", d.verdict == POLICY_ALLOW ? "allow" : "deny",
                               d.rule);
        }

        enumerate(false);
        enumerate(true);
        test_requisite_stops();

        /* How the two stacks combine: the peer stack first, then the request stack; both must
         * allow. A denying peer stack ends it: the request stack is not consulted. */
        evaluate_text("peer requisite deny\nrequest sufficient permit\n",
                      &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:3") == 0,
           "a requisite failure in the peer stack stops there");
        evaluate_text("peer required deny\nrequest sufficient permit\n",
                      &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:3") == 0,
           "a peer-stack denial is not undone by a sufficient request rule");
        evaluate_text("peer sufficient permit\nrequest required deny\n",
                      &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:4") == 0,
           "a sufficient peer rule ends the peer stack only; the request stack still runs");
        evaluate_text("peer required permit\n", &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_ALLOW && strcmp(d.rule, "p:3") == 0,
           "an empty request stack adds no condition; the peer rule decided");
        evaluate_text("request required permit\n", &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p") == 0 &&
               strcmp(d.reason, "empty peer stack") == 0,
           "an empty peer stack denies even when the request stack allows");
        evaluate_text("peer required permit\nrequest required permit\n",
                      &(struct policy_request){0}, &d);
        ok(d.verdict == POLICY_ALLOW && strcmp(d.rule, "p:3") == 0,
           "when both allow, the peer stack's rule is the one that decided who");
        return done_testing();
}
