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
static struct metrics_profile *slot_of(struct metrics_profile *table, size_t capacity,
                                       const char *name)
{
        size_t i = name_hash(name) & (capacity - 1);

        while (table[i].name[0] && strcmp(table[i].name, name) != 0)
                i = (i + 1) & (capacity - 1);
        return &table[i];
}

/* Moves every profile the keep function keeps into a table of capacity slots. */
static int rehash(struct metrics *m, size_t capacity, const struct policy_set *keep_in)
{
        struct metrics_profile *table = calloc(capacity, sizeof(*table));
        size_t n = 0;

        if (!table)
                return -ENOMEM;
        for (size_t i = 0; i < m->capacity; i++) {
                const struct metrics_profile *p = &m->profiles[i];

                if (!p->name[0] || (keep_in && !policy_set_find(keep_in, p->name)))
                        continue;
                *slot_of(table, capacity, p->name) = *p;
                n++;
        }
        free(m->profiles);
        m->profiles = table;
        m->capacity = capacity;
        m->n_profiles = n;
        return 0;
}

/* Room for one more name: a larger table while under the bound, else without the names the
 * current policy no longer has. */
static int make_room(struct metrics *m, const struct policy_set *policy)
{
        size_t capacity = m->capacity ? m->capacity : METRICS_FIRST_CAPACITY;

        if (2 * (m->n_profiles + 1) <= m->capacity)
                return 0;
        if (m->n_profiles < METRICS_PROFILES_MAX) {
                while (2 * (m->n_profiles + 1) > capacity)
                        capacity *= 2;
                return rehash(m, capacity, NULL);
        }
        if (!policy || rehash(m, m->capacity, policy) < 0 || m->n_profiles >= METRICS_PROFILES_MAX)
                return -ENOSPC;
        return 0;
}

/* The counters of profile, created when missing; NULL when there is no room (the count is
 * lost: only after more than METRICS_PROFILES_MAX names were in use between reloads). */
static struct metrics_profile *profile_counters(struct metrics *m, const struct policy_set *policy,
                                                const char *profile)
{
        struct metrics_profile *p;

        if (!name_is_valid(profile))
                return NULL;
        if (m->capacity) {
                p = slot_of(m->profiles, m->capacity, profile);
                if (p->name[0])
                        return p;
        }
        if (make_room(m, policy) < 0)
                return NULL;
        p = slot_of(m->profiles, m->capacity, profile);
        memcpy(p->name, profile, strlen(profile) + 1);
        m->n_profiles++;
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
        const struct metrics_profile *p;

        if (!m->capacity || !name_is_valid(profile))
                return NULL;
        p = slot_of(m->profiles, m->capacity, profile);
        return p->name[0] ? p : NULL;
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
        *m = (struct metrics){0};
}
