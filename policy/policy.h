/* PAM-style policy (design.md §7): policy.d/<profile> files parsed into an immutable set, and a
 * pure evaluator: peer facts + request in, decision out. The only I/O is reading the files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cleanup.h"

#define POLICY_MAX_SCOPES   16
#define POLICY_MAX_INCLUDE  8
#define POLICY_RULE_MAX_LEN 300

/* What the kernel told us about the peer when it connected (never the peer's own words). */
struct policy_peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        const gid_t *groups; /* supplementary groups (SO_PEERGROUPS) */
        size_t n_groups;
};

struct policy_decision {
        bool allow;
        /* "file:line" of the rule that decided, or "file" when no rule did. */
        char rule[POLICY_RULE_MAX_LEN];
        /* Short reason for the audit log; never sent to a denied peer. */
        const char *reason;
};

struct policy_profile;
struct policy_set;

/* Parses every profile file in dir. Each problem is logged as "file:line: message"; any problem
 * fails the whole load so a reload can keep the previous set. */
int policy_set_load(const char *dir, struct policy_set **ret);
void policy_set_free(struct policy_set *set);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct policy_set *, policy_set_free)

const struct policy_profile *policy_set_find(const struct policy_set *set, const char *name);
size_t policy_set_count(const struct policy_set *set);
const struct policy_profile *policy_set_get(const struct policy_set *set, size_t i);

const char *policy_profile_name(const struct policy_profile *p);
const char *policy_profile_account(const struct policy_profile *p);
char *const *policy_profile_scopes(const struct policy_profile *p, size_t *ret_n);
/* scope_key_build() of all the profile's scopes, computed once at load: the scope set of a
 * request that names none. */
const char *policy_profile_scope_key(const struct policy_profile *p);
/* Whether every requested scope is one the profile may hand out. */
bool policy_profile_allows_scopes(const struct policy_profile *p, char *const *scopes, size_t n);

/* Runs the peer stack with Linux-PAM's control semantics. */
void policy_evaluate(const struct policy_profile *p, const struct policy_peer *peer,
                     struct policy_decision *ret);
