/* PAM-style policy (design.md §7): policy.d/<profile> files parsed into an immutable set, and a
 * pure evaluator: peer facts + request in, decision out. The only I/O is reading the files. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "cleanup.h"

#define POLICY_MAX_SCOPES   16
#define POLICY_MAX_INCLUDE  8
#define POLICY_RULE_MAX_LEN 300
#define POLICY_RATE_KEY_MAX 128

/* What the kernel told us about the peer when it connected (never the peer's own words). */
struct policy_peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        const gid_t *groups; /* supplementary groups (SO_PEERGROUPS) */
        size_t n_groups;
        /* Read through a pidfd-checked /proc/<pid> at accept. NULL when unknown (the peer
         * exited, its pid now names another process, or it could not be read): unknown
         * matches no exe or unit rule. */
        const char *exe;
        const char *unit;
};

/* What the peer asked for. */
struct policy_request {
        char *const *scopes; /* requested scopes; none: the profile's own */
        size_t n_scopes;
        uint32_t min_ttl; /* seconds; 0 when the request names none */
};

/* Both clocks of one instant: local wall time for the time module, a monotonic clock
 * (CLOCK_BOOTTIME) for the rate module's buckets. */
struct policy_time {
        time_t wall;
        uint64_t monotonic_usec;
};

enum policy_verdict {
        POLICY_ALLOW,
        POLICY_DENY,
        POLICY_RATE_LIMITED, /* a rate rule decided the denial; retry_after says when */
};

struct policy_decision {
        enum policy_verdict verdict;
        /* "file:line" of the rule that decided, or "file" when no rule did. */
        char rule[POLICY_RULE_MAX_LEN];
        /* Short reason for the audit log; never sent to a denied peer. */
        const char *reason;
        /* The bucket a rate rule drew on ("" when none did), for the audit log. */
        char rate_key[POLICY_RATE_KEY_MAX];
        uint32_t retry_after; /* seconds, with POLICY_RATE_LIMITED */
};

struct policy_profile;
struct policy_set;
/* Token buckets of the rate module. Mutable state kept apart from the immutable set, so it
 * survives a reload; owned by the caller. */
struct policy_limiter;

struct policy_limiter *policy_limiter_new(void);
void policy_limiter_free(struct policy_limiter *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct policy_limiter *, policy_limiter_free)

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

/* Runs the peer stack, then the request stack, with Linux-PAM's control semantics. Rate rules
 * take from limiter's buckets only when the whole decision allows; a NULL limiter (a dry run)
 * lets every rate rule pass and changes nothing. */
void policy_evaluate(const struct policy_profile *p, const struct policy_peer *peer,
                     const struct policy_request *req, const struct policy_time *now,
                     struct policy_limiter *limiter, struct policy_decision *ret);
/* Runs only the peer stack: which profiles a peer may use at all (the "profiles" op). */
void policy_evaluate_peer(const struct policy_profile *p, const struct policy_peer *peer,
                          const struct policy_time *now, struct policy_decision *ret);
