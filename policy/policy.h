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

/* Buckets a limiter keeps at most; beyond, the least recently used one is reused, so a flood of
 * uids cannot grow memory. */
#define POLICY_LIMITER_MAX_BUCKETS 4096

struct policy_limiter *policy_limiter_new(void);
void policy_limiter_free(struct policy_limiter *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct policy_limiter *, policy_limiter_free)
size_t policy_limiter_bucket_count(const struct policy_limiter *l);
/* How many times a rate rule has looked at the buckets: a rule the evaluator did not run (after
 * a failed requisite rule, say) never does (tests). */
uint64_t policy_limiter_peeks(const struct policy_limiter *l);

/* Receives each problem found while loading: file is the name inside the policy directory ("" for
 * the directory itself), line is 0 when the problem is not on one line. */
typedef void (*policy_error_fn)(const char *file, unsigned line, const char *message,
                                void *userdata);

/* Parses every profile file in dir. Each problem is logged as "file:line: message"; any problem
 * fails the whole load so a reload can keep the previous set. */
int policy_set_load(const char *dir, struct policy_set **ret);
/* The same, handing every problem (all of them, not only the first) to on_error instead of the
 * log: for "credbroker policy check". */
int policy_set_load_reporting(const char *dir, policy_error_fn on_error, void *userdata,
                              struct policy_set **ret);
/* Parses one profile from memory with the same line parser, as if it were the file name (which
 * names it in messages and decisions); no file checks, and "include" is an error. Problems go to
 * on_error (NULL: the log). For the fuzzer, tests and benchmarks. */
int policy_profile_parse_buffer(const char *name, const char *text, size_t len,
                                policy_error_fn on_error, void *userdata,
                                struct policy_profile **ret);
/* Only for profiles from policy_profile_parse_buffer(); a set owns its profiles. */
void policy_profile_free(struct policy_profile *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct policy_profile *, policy_profile_free)
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
/* Whether every requested scope is one the profile may hand out, and a ".default" scope is not
 * mixed with others (the identity platform refuses that mix). */
bool policy_profile_allows_scopes(const struct policy_profile *p, char *const *scopes, size_t n);

/* One rule as written, for "credbroker policy show". */
struct policy_rule_info {
        const char *stack;     /* "peer" or "request" */
        const char *control;   /* "required", ... */
        const char *module;    /* "uid", ... */
        const char *arguments; /* words joined by one space; "" when none */
        const char *where;     /* "file:line" */
};
/* Rules in evaluation order: the peer stack, then the request stack. */
size_t policy_profile_rule_count(const struct policy_profile *p);
int policy_profile_rule_info(const struct policy_profile *p, size_t i,
                             struct policy_rule_info *ret);

/* Receives each warning of policy_profile_lint(): where is the "file:line" of the rule it is
 * about (the file may be a fragment the profile includes). */
typedef void (*policy_warning_fn)(const char *where, const char *message, void *userdata);
/* Finds what loads but does not do what it seems to: a peer stack that can let a peer in with an
 * exe rule as the only condition on who it is, that is on some way to an allow (a sufficient rule
 * with the required and requisite rules before it, or the required and requisite rules of the
 * whole stack) an exe rule must succeed and no uid, group, unit or permit rule must. exe narrows
 * within a uid and never authorizes on its own: any process of a uid can run the binary and
 * connect as it, or ptrace it. At most one warning per profile; returns how many (0 or 1). */
size_t policy_profile_lint(const struct policy_profile *p, policy_warning_fn fn, void *userdata);

/* Runs the peer stack, then (when it allows) checks the requested scopes, then runs the request
 * stack, with Linux-PAM's control semantics. An empty peer stack denies; an empty request stack
 * adds no condition. Rate rules take from limiter's buckets only when the whole decision allows;
 * a NULL limiter (a dry run) lets every rate rule pass and changes nothing. Allocates nothing. */
void policy_evaluate(const struct policy_profile *p, const struct policy_peer *peer,
                     const struct policy_request *req, const struct policy_time *now,
                     struct policy_limiter *limiter, struct policy_decision *ret);
/* Runs only the peer stack: which profiles a peer may use at all (the "profiles" op). */
void policy_evaluate_peer(const struct policy_profile *p, const struct policy_peer *peer,
                          const struct policy_time *now, struct policy_decision *ret);
