/* The loaded policy set and its profiles as callers see them: lookup, accessors, scope checks
 * and rule descriptions. Parsing is in parse.c, deciding in evaluate.c. */
#include "policy-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

void policy_set_free(struct policy_set *set)
{
        if (!set)
                return;
        for (size_t i = 0; i < set->n; i++)
                policy_profile_free_internal(set->profiles[i]);
        free(set->profiles);
        hashmap_free(set->by_name);
        free(set);
}

const struct policy_profile *policy_set_find(const struct policy_set *set, const char *name)
{
        return hashmap_get(set->by_name, name);
}

size_t policy_set_count(const struct policy_set *set)
{
        return set->n;
}

const struct policy_profile *policy_set_get(const struct policy_set *set, size_t i)
{
        return i < set->n ? set->profiles[i] : NULL;
}

const char *policy_profile_name(const struct policy_profile *p)
{
        return p->name;
}

const char *policy_profile_account(const struct policy_profile *p)
{
        return p->account;
}

char *const *policy_profile_scopes(const struct policy_profile *p, size_t *ret_n)
{
        *ret_n = p->n_scopes;
        return p->scopes;
}

const char *policy_profile_scope_key(const struct policy_profile *p)
{
        return p->scope_key;
}

static bool scope_is_default(const char *scope)
{
        size_t len = strlen(scope);

        return len >= 9 && strcmp(scope + len - 9, "/.default") == 0;
}

bool policy_profile_allows_scopes(const struct policy_profile *p, char *const *scopes, size_t n)
{
        bool any_default = false;

        for (size_t i = 0; i < n; i++) {
                if (!strv_contains(p->scopes, p->n_scopes, scopes[i]))
                        return false;
                any_default = any_default || scope_is_default(scopes[i]);
        }
        /* The profile itself cannot mix them; a request asking for the same .default twice is
         * still one scope. */
        if (any_default)
                for (size_t i = 1; i < n; i++)
                        if (strcmp(scopes[i], scopes[0]) != 0)
                                return false;
        return true;
}

size_t policy_profile_rule_count(const struct policy_profile *p)
{
        return p->n_rules[STACK_PEER] + p->n_rules[STACK_REQUEST];
}

int policy_profile_rule_info(const struct policy_profile *p, size_t i, struct policy_rule_info *ret)
{
        enum policy_stack stack = STACK_PEER;
        const struct rule *rule;

        if (i >= p->n_rules[STACK_PEER]) {
                i -= p->n_rules[STACK_PEER];
                stack = STACK_REQUEST;
                if (i >= p->n_rules[STACK_REQUEST])
                        return -ENOENT;
        }
        rule = &p->stacks[stack][i];
        *ret = (struct policy_rule_info){
            .stack = stack == STACK_PEER ? "peer" : "request",
            .control = policy_control_name(rule->control),
            .module = policy_module_name(rule->module),
            .arguments = rule->arguments,
            .where = rule->where,
        };
        return 0;
}

/* Whether a peer module says who the peer is (or, permit, says on purpose that anyone may). */
static bool module_names_who(enum policy_module m)
{
        return m == MODULE_UID || m == MODULE_GROUP || m == MODULE_UNIT || m == MODULE_PERMIT;
}

/* Walks the ways the peer stack can allow, as run_stack() decides: a sufficient rule that
 * succeeds after every required and requisite rule before it did, or the end of the stack with
 * every required and requisite rule (or a lone optional one) succeeded. A way through a deny
 * rule never allows. */
size_t policy_profile_lint(const struct policy_profile *p, policy_warning_fn fn, void *userdata)
{
        const struct rule *rules = p->stacks[STACK_PEER];
        size_t n = p->n_rules[STACK_PEER];
        const struct rule *exe = NULL, *culprit = NULL;
        bool who = false, denied = false, any = false;
        char message[512];

        for (size_t i = 0; i < n && !culprit; i++) {
                const struct rule *r = &rules[i];
                bool counts = r->control == CONTROL_REQUIRED || r->control == CONTROL_REQUISITE ||
                              (r->control == CONTROL_OPTIONAL && n == 1);

                if (r->control == CONTROL_SUFFICIENT && !denied && r->module != MODULE_DENY &&
                    !who && !module_names_who(r->module))
                        culprit = exe ? exe : r->module == MODULE_EXE ? r : NULL;
                if (!counts)
                        continue;
                any = true;
                denied = denied || r->module == MODULE_DENY;
                who = who || module_names_who(r->module);
                if (!exe && r->module == MODULE_EXE)
                        exe = r;
        }
        if (!culprit && any && !denied && !who)
                culprit = exe;
        if (!culprit)
                return 0;
        snprintf(message, sizeof(message),
                 "profile %s lets a peer in on exe alone, with no uid, group, unit or permit "
                 "rule that must succeed too; exe never authorizes on its own (any local user "
                 "can run the binary, or ptrace it): add a required uid or group rule",
                 p->name);
        fn(culprit->where, message, userdata);
        return 1;
}
