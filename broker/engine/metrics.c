/* The broker's monitoring counters; see metrics.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#include "broker.h"
#include "policy.h"

#define METRICS_FIRST_CAPACITY 64

/* FNV-1a: profile names are the administrator's, short and few; nothing to defend against. */
static size_t name_hash(const char *name)
{
        uint64_t h = 14695981039346656037ULL;

        for (; *name; name++)
                h = (h ^ (uint8_t)*name) * 1099511628211ULL;
        return (size_t)h;
}

/* The slot of name, or the free slot where it would go. */
static uint32_t *slot_of(const struct metrics *m, const char *name)
{
        size_t i = name_hash(name) & (m->capacity - 1);

        while (m->slots[i] && strcmp(m->profiles[m->slots[i] - 1].name, name) != 0)
                i = (i + 1) & (m->capacity - 1);
        return &m->slots[i];
}

/* A table of capacity slots for the profiles that keep_in has (all of them when NULL), which
 * move down to fill the gaps of those dropped. */
static int reindex(struct metrics *m, size_t capacity, const struct policy_set *keep_in)
{
        uint32_t *slots = calloc(capacity, sizeof(*slots));
        size_t n = 0;

        if (!slots)
                return -ENOMEM;
        free(m->slots);
        m->slots = slots;
        m->capacity = capacity;
        for (size_t i = 0; i < m->n_profiles; i++) {
                if (keep_in && !policy_set_find(keep_in, m->profiles[i].name))
                        continue;
                if (n != i)
                        m->profiles[n] = m->profiles[i];
                *slot_of(m, m->profiles[n].name) = (uint32_t)(n + 1);
                n++;
        }
        m->n_profiles = n;
        return 0;
}

/* Room for one more name: more counters and a larger table while under the bound, else
 * without the names the current policy no longer has. */
static int make_room(struct metrics *m, const struct policy_set *policy)
{
        size_t capacity = m->capacity ? m->capacity : METRICS_FIRST_CAPACITY;

        if (m->n_profiles >= METRICS_PROFILES_MAX &&
            (!policy || reindex(m, m->capacity, policy) < 0 ||
             m->n_profiles >= METRICS_PROFILES_MAX))
                return -ENOSPC;
        if (m->n_profiles == m->allocated) {
                size_t allocated = m->allocated ? 2 * m->allocated : METRICS_FIRST_CAPACITY / 2;
                struct metrics_profile *grown;

                if (allocated > METRICS_PROFILES_MAX)
                        allocated = METRICS_PROFILES_MAX;
                grown = reallocarray(m->profiles, allocated, sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                m->profiles = grown;
                m->allocated = allocated;
        }
        if (2 * (m->n_profiles + 1) <= m->capacity)
                return 0;
        while (2 * (m->n_profiles + 1) > capacity)
                capacity *= 2;
        return reindex(m, capacity, NULL);
}

/* The counters of profile, created when missing; NULL when there is no room (the count is
 * lost: only after more than METRICS_PROFILES_MAX names were in use between reloads). */
static struct metrics_profile *profile_counters(struct metrics *m, const struct policy_set *policy,
                                                const char *profile)
{
        struct metrics_profile *p;
        uint32_t *slot;

        if (!name_is_valid(profile))
                return NULL;
        if (m->capacity) {
                slot = slot_of(m, profile);
                if (*slot)
                        return &m->profiles[*slot - 1];
        }
        if (make_room(m, policy) < 0)
                return NULL;
        p = &m->profiles[m->n_profiles];
        *p = (struct metrics_profile){0};
        memcpy(p->name, profile, strlen(profile) + 1);
        *slot_of(m, profile) = (uint32_t)++m->n_profiles;
        return p;
}

void metrics_token_issued(struct broker *b, const char *profile)
{
        struct metrics_profile *p = profile_counters(&b->metrics, b->policy, profile);

        if (p)
                p->issued++;
}

void metrics_token_denied(struct broker *b, const char *profile, enum metrics_denial why)
{
        struct metrics_profile *p = profile_counters(&b->metrics, b->policy, profile);

        if (p && (size_t)why < ELEMENTSOF(p->denied))
                p->denied[why]++;
}

const struct metrics_profile *metrics_profile_find(const struct metrics *m, const char *profile)
{
        const uint32_t *slot;

        if (!m->capacity || !name_is_valid(profile))
                return NULL;
        slot = slot_of(m, profile);
        return *slot ? &m->profiles[*slot - 1] : NULL;
}

const char *metrics_upstream_class(enum idp_outcome outcome)
{
        switch (outcome) {
        case IDP_OK:
                return "ok";
        case IDP_TRANSIENT:
                return "transient";
        case IDP_REAUTH:
                return "reauth";
        case IDP_CONFIG:
                return "config";
        case IDP_SCOPES_REFUSED:
                return "scopes_refused";
        }
        return "unknown";
}

void metrics_clear(struct metrics *m)
{
        free(m->profiles);
        free(m->slots);
        *m = (struct metrics){0};
}
