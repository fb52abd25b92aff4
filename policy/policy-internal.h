/* What the parser builds and the evaluator reads: rules, profiles, sets and the limiter's
 * buckets. Shared by the files of policy/ only; callers see policy.h. */
#pragma once

#include "policy.h"
#include "util.h"

#define POLICY_MAX_IDS       32    /* uids or gids in one rule */
#define POLICY_MAX_PATTERNS  16    /* exe paths or unit names in one rule */
#define POLICY_PATTERN_MAX   256   /* bytes of one exe path, unit name or glob */
#define POLICY_GLOB_MAX_STAR 8     /* '*' in one glob: keeps fnmatch's backtracking small */
#define POLICY_MAX_WINDOWS   8     /* day/hour windows in one time rule */
#define POLICY_MAX_RULES     64    /* rules in one profile, both stacks together */
#define POLICY_MAX_PROFILES  16384 /* an MSP host: a profile per customer mailbox */
#define POLICY_LINE_MAX      1024
#define POLICY_MAX_WORDS     (POLICY_MAX_IDS + 3)
#define POLICY_RATE_MAX      1000000             /* tokens per period */
#define POLICY_WHERE_MAX     (NAME_MAX_LEN + 12) /* "file:line" */

enum policy_stack {
        STACK_PEER,
        STACK_REQUEST,
};

enum policy_control {
        CONTROL_REQUIRED,
        CONTROL_REQUISITE,
        CONTROL_SUFFICIENT,
        CONTROL_OPTIONAL,
};

enum policy_module {
        MODULE_UID,
        MODULE_GROUP,
        MODULE_EXE,
        MODULE_UNIT,
        MODULE_TIME,
        MODULE_RATE,
        MODULE_MIN_TTL,
        MODULE_DENY,
        MODULE_PERMIT,
};

/* One day/hour window of the time module, in local time. A window whose end is not after its
 * start crosses midnight: it starts on one of days and ends on the next day. */
struct time_window {
        uint8_t days;          /* bit n: tm_wday n (0 = Sunday) */
        uint16_t start_minute; /* 0..1439 */
        uint16_t end_minute;   /* 1..1440 */
};

enum rate_key_kind {
        RATE_PER_PROFILE,
        RATE_PER_UID,
};

/* The lists of ids and patterns are allocated to their length (at most POLICY_MAX_IDS and
 * POLICY_MAX_PATTERNS): inline at their bounds they made a rule 248 bytes, for the one uid of
 * most rules, 2.5 MB for the 10,000 profiles of an MSP host. */
struct rule {
        enum policy_control control;
        enum policy_module module;
        char *where;     /* "file:line" (at most POLICY_WHERE_MAX - 1 bytes) */
        char *arguments; /* as written, words joined by one space (for show) */
        union {
                struct {
                        uint32_t *ids;
                        size_t n_ids;
                } id;
                struct {
                        char **patterns;
                        bool *globs;
                        size_t n_patterns;
                } match;
                struct {
                        struct time_window windows[POLICY_MAX_WINDOWS];
                        size_t n_windows;
                } time;
                struct {
                        uint32_t tokens;       /* bucket capacity and refill per period */
                        uint64_t period_usec;  /* 1 s, 1 min or 1 h */
                        const char *unit_name; /* "s", "min", "hour" */
                        enum rate_key_kind key;
                } rate;
                struct {
                        uint32_t max;
                } min_ttl;
        } u;
};

struct policy_profile {
        char *name;
        char *account;
        /* Allocated as they come (at most POLICY_MAX_SCOPES): most profiles have one, and 16
         * pointers inline took 128 of a profile's 192 bytes, 1.3 MB for 10,000 profiles. */
        char **scopes;
        size_t n_scopes;
        char *scope_key;
        struct rule *stacks[2]; /* indexed by enum policy_stack */
        size_t n_rules[2];
};

struct policy_set {
        struct policy_profile **profiles; /* sorted by name, for listing */
        size_t n, allocated;
        /* name → profile: every token request looks its profile up, and a binary search over
         * 10,000 profiles touched a dozen of them, each a cache miss. Keys are the profiles' own
         * names. */
        struct hashmap *by_name;
};

/* Reports one problem; file "" for the directory itself, line 0 for a whole file. */
struct policy_reporter {
        policy_error_fn fn;
        void *userdata;
        unsigned errors;
        uint64_t seen[256]; /* hashes of problems reported, so each is reported once */
        size_t n_seen;
};

void policy_report(struct policy_reporter *rep, const char *file, unsigned line, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

void policy_profile_free_internal(struct policy_profile *p);

/* modules.c: turns "CONTROL MODULE ARGUMENTS..." into a rule, reporting what is wrong; and
 * decides whether a peer or request rule succeeds. */
int policy_rule_parse(struct rule *rule, enum policy_stack stack, char **words, size_t n,
                      const char *file, unsigned line, struct policy_reporter *rep);
void policy_rule_clear(struct rule *rule);
/* The local time of one evaluation, converted once however many time rules there are. */
struct local_time {
        bool known;
        bool valid;
        unsigned minute; /* of the day */
        int wday;        /* 0 = Sunday */
};
bool policy_rule_matches_peer(const struct rule *rule, const struct policy_peer *peer,
                              const struct policy_time *now, struct local_time *local);
bool policy_rule_matches_request(const struct rule *rule, const struct policy_request *req);
const char *policy_module_name(enum policy_module m);
const char *policy_control_name(enum policy_control c);

/* rate.c: the limiter's buckets. A key names one bucket; the evaluator builds it into a caller
 * buffer so that nothing is allocated while deciding. */
void policy_rate_key(const struct policy_profile *p, const struct rule *rule,
                     const struct policy_peer *peer, char out[static POLICY_RATE_KEY_MAX]);
/* Whether the bucket holds a token now; when not, *ret_retry_after = whole seconds (>= 1) until
 * it will. Changes no bucket (it only counts the look), allocates nothing. */
bool policy_rate_peek(struct policy_limiter *l, const struct rule *rule, const char *key,
                      uint64_t now_usec, uint32_t *ret_retry_after);
/* Takes one token, creating the bucket (full) or reusing the least recently used one. */
void policy_rate_take(struct policy_limiter *l, const struct rule *rule, const char *key,
                      uint64_t now_usec);
