/* The evaluator: runs a profile's peer stack, checks the requested scopes, runs its request
 * stack, and says which rule decided. Pure apart from the caller's limiter, and it allocates
 * nothing, so it can run for every request. */
#include "policy-internal.h"

#include <string.h>

struct stack_result {
        bool allow;
        const struct rule *decider; /* NULL when no rule decided (nothing succeeded) */
        const char *reason;
        uint64_t rate_rules_passed; /* bit i: rule i is a rate rule that ran and had a token */
        uint32_t retry_after;       /* when the decider is a rate rule that had none */
};

static bool rule_succeeds(const struct policy_profile *p, enum policy_stack stack, size_t i,
                          const struct policy_peer *peer, const struct policy_request *req,
                          const struct policy_time *now, struct policy_limiter *limiter,
                          struct local_time *local, struct stack_result *res,
                          uint32_t *ret_retry_after)
{
        const struct rule *rule = &p->stacks[stack][i];
        char key[POLICY_RATE_KEY_MAX];

        if (stack == STACK_PEER)
                return policy_rule_matches_peer(rule, peer, now, local);
        if (rule->module != MODULE_RATE)
                return policy_rule_matches_request(rule, req);
        /* A dry run has no buckets: every rate rule passes. */
        if (!limiter)
                return true;
        policy_rate_key(p, rule, peer, key);
        if (!policy_rate_peek(limiter, rule, key, now->monotonic_usec, ret_retry_after))
                return false;
        res->rate_rules_passed |= UINT64_C(1) << i;
        return true;
}

/* Linux-PAM's controls, as pam.conf(5) documents them: required fails the stack but the rest
 * still runs; requisite fails it at once; sufficient succeeds at once unless an earlier rule
 * already failed, and its own failure is ignored; optional counts only when it is the only rule.
 * The stack allows only when some rule succeeded and none failed, so an empty stack denies. When
 * several rules fail, the first failure decides, as the first failing module's status is what
 * PAM returns. */
static void run_stack(const struct policy_profile *p, enum policy_stack stack,
                      const struct policy_peer *peer, const struct policy_request *req,
                      const struct policy_time *now, struct policy_limiter *limiter,
                      struct stack_result *res)
{
        const struct rule *rules = p->stacks[stack];
        size_t n = p->n_rules[stack];
        const struct rule *failed = NULL, *succeeded = NULL;
        uint32_t failed_retry_after = 0;
        struct local_time local = {0};

        *res = (struct stack_result){0};
        for (size_t i = 0; i < n; i++) {
                const struct rule *rule = &rules[i];
                uint32_t retry_after = 0;
                bool ok =
                    rule_succeeds(p, stack, i, peer, req, now, limiter, &local, res, &retry_after);

                switch (rule->control) {
                case CONTROL_REQUIRED:
                case CONTROL_REQUISITE:
                        if (ok) {
                                if (!succeeded)
                                        succeeded = rule;
                                break;
                        }
                        if (!failed) {
                                failed = rule;
                                failed_retry_after = retry_after;
                        }
                        if (rule->control == CONTROL_REQUISITE) {
                                *res = (struct stack_result){
                                    .decider = failed,
                                    .reason = failed == rule ? "requisite rule failed"
                                                             : "required rule failed",
                                    .retry_after = failed_retry_after,
                                };
                                return;
                        }
                        break;
                case CONTROL_SUFFICIENT:
                        if (ok && !failed) {
                                res->allow = true;
                                res->decider = rule;
                                res->reason = "sufficient rule succeeded";
                                return;
                        }
                        break;
                case CONTROL_OPTIONAL:
                        /* Among other rules an optional one neither lets a peer in nor keeps it
                         * out. */
                        if (n == 1) {
                                if (ok)
                                        succeeded = rule;
                                else {
                                        failed = rule;
                                        failed_retry_after = retry_after;
                                }
                        }
                        break;
                }
        }
        if (failed)
                *res = (struct stack_result){.decider = failed,
                                             .reason = failed->control == CONTROL_OPTIONAL
                                                           ? "optional rule failed"
                                                           : "required rule failed",
                                             .retry_after = failed_retry_after};
        else if (succeeded) {
                res->allow = true;
                res->decider = succeeded;
                res->reason = "stack succeeded";
        } else
                *res =
                    (struct stack_result){.reason = n == 0 ? "empty stack" : "no rule succeeded"};
}

static void decide(struct policy_decision *ret, enum policy_verdict verdict, const char *where,
                   const char *reason)
{
        ret->verdict = verdict;
        ret->reason = reason;
        ret->rate_key[0] = 0;
        ret->retry_after = 0;
        /* Not snprintf: this runs for every request. where is a file name and a line number,
         * far shorter than rule[], but stay bounded anyway. */
        size_t n = strlen(where);

        if (n > sizeof(ret->rule) - 1)
                n = sizeof(ret->rule) - 1;
        memcpy(ret->rule, where, n);
        ret->rule[n] = 0;
}

static void decide_from(struct policy_decision *ret, const struct policy_profile *p,
                        const struct stack_result *res)
{
        decide(ret, res->allow ? POLICY_ALLOW : POLICY_DENY,
               res->decider ? res->decider->where : p->name, res->reason);
}

void policy_evaluate_peer(const struct policy_profile *p, const struct policy_peer *peer,
                          const struct policy_time *now, struct policy_decision *ret)
{
        struct stack_result res;

        run_stack(p, STACK_PEER, peer, NULL, now, NULL, &res);
        decide_from(ret, p, &res);
        if (p->n_rules[STACK_PEER] == 0)
                ret->reason = "empty peer stack";
}

void policy_evaluate(const struct policy_profile *p, const struct policy_peer *peer,
                     const struct policy_request *req, const struct policy_time *now,
                     struct policy_limiter *limiter, struct policy_decision *ret)
{
        struct stack_result res;
        size_t first_rate = SIZE_MAX;

        policy_evaluate_peer(p, peer, now, ret);
        if (ret->verdict != POLICY_ALLOW)
                return;
        if (!policy_profile_allows_scopes(p, req->scopes, req->n_scopes)) {
                decide(ret, POLICY_DENY, p->name, "scope not allowed by the profile");
                return;
        }
        /* The request stack is optional: with no rules it adds no condition, and the peer
         * stack's deciding rule stands. */
        if (p->n_rules[STACK_REQUEST] == 0)
                return;
        run_stack(p, STACK_REQUEST, peer, req, now, limiter, &res);
        /* An allow keeps the peer stack's deciding rule: the one that says who may have the
         * token. The request stack only adds conditions, so it decides denials alone. */
        if (!res.allow) {
                decide_from(ret, p, &res);
                if (res.decider && res.decider->module == MODULE_RATE && limiter) {
                        ret->verdict = POLICY_RATE_LIMITED;
                        ret->reason = "rate limit reached";
                        ret->retry_after = res.retry_after;
                        policy_rate_key(p, res.decider, peer, ret->rate_key);
                }
                return;
        }
        /* Tokens are taken only now that the whole decision allows: a denied request costs
         * the peer nothing. */
        for (size_t i = 0; i < p->n_rules[STACK_REQUEST]; i++) {
                const struct rule *rule = &p->stacks[STACK_REQUEST][i];
                char key[POLICY_RATE_KEY_MAX];

                if (!(res.rate_rules_passed & (UINT64_C(1) << i)))
                        continue;
                policy_rate_key(p, rule, peer, key);
                policy_rate_take(limiter, rule, key, now->monotonic_usec);
                if (first_rate == SIZE_MAX) {
                        first_rate = i;
                        memcpy(ret->rate_key, key, sizeof(key));
                }
        }
}
