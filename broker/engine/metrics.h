/* The broker's counters for monitoring (docs/monitoring.md): tokens issued and denied by
 * profile, token requests for profiles the policy does not have, and what the token endpoint
 * answered the engine by class. The admin socket's `metrics` operation reads them and
 * `credbroker status --prometheus` prints them. Memory is bounded: a profile is counted only
 * under a name the policy has (every call site has found it there), and the table never holds
 * more than METRICS_PROFILES_MAX names; names the current policy lost are dropped when room is
 * needed. The counters start at zero with each broker run, as Prometheus counters may.
 *
 * A slot is kept for the mail spool's depth (credbroker_mail_spool_messages, a gauge): the mail
 * issue adds it here and to docs/monitoring.md. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"
#include "token-response.h"
#include "util.h"

struct broker;

/* The policy's own limit on profiles (policy/policy-internal.h, POLICY_MAX_PROFILES). */
#define METRICS_PROFILES_MAX 16384

enum metrics_denial {
        METRICS_DENIED_POLICY,       /* the policy's decision was deny */
        METRICS_DENIED_RATE_LIMITED, /* a rate rule refused it */
        _METRICS_DENIAL_MAX,
};

struct metrics_profile {
        char name[NAME_MAX_LEN + 1];
        uint64_t issued;
        uint64_t denied[_METRICS_DENIAL_MAX];
};

struct metrics {
        /* The counters, n_profiles of them side by side (room for allocated), found through
         * slots: open addressing, linear probing, capacity a power of two, at most half full,
         * each slot the index + 1 of a profile's counters (0: free). A slot of 4 bytes rather
         * than of a whole entry's 96: at two to four slots per profile, a table of entries took
         * 3 MB for 10,000 profiles. */
        struct metrics_profile *profiles;
        size_t n_profiles, allocated;
        uint32_t *slots;
        size_t capacity;
        uint64_t unknown_profile; /* token requests naming a profile the policy lacks */
        uint64_t bad_requests;    /* client requests that did not parse */
        /* The token endpoint's answers to the engine's refreshes, by enum idp_outcome (IDP_OK:
         * a token). */
        uint64_t upstream[IDP_SCOPES_REFUSED + 1];
};

/* One token issued, or denied for why, under profile (a name of the policy's). */
void metrics_token_issued(struct broker *b, const char *profile);
void metrics_token_denied(struct broker *b, const char *profile, enum metrics_denial why);

static inline void metrics_unknown_profile(struct metrics *m)
{
        m->unknown_profile++;
}

static inline void metrics_bad_request(struct metrics *m)
{
        m->bad_requests++;
}

/* What the token endpoint answered a refresh (refresh.c's on_refresh_done()). */
static inline void metrics_upstream(struct metrics *m, enum idp_outcome outcome)
{
        if ((size_t)outcome < ELEMENTSOF(m->upstream))
                m->upstream[outcome]++;
}

/* The counters of profile, or NULL when it has none yet. */
const struct metrics_profile *metrics_profile_find(const struct metrics *m, const char *profile);

/* The name of an upstream class as the metrics say it: "ok", "transient", "reauth", "config",
 * "scopes_refused". */
const char *metrics_upstream_class(enum idp_outcome outcome);

void metrics_clear(struct metrics *m);
