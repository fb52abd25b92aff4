/* Aggregated denials; see audit-aggregate.h. */
#include "audit-aggregate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Kinds remembered at once. Each uid can make only a bounded number (profiles × reasons), so
 * this is room for many uids; past it the oldest kind is written out and its slot reused. */
#define AGGREGATE_MAX 1024

struct kind {
        /* the key */
        uid_t uid;
        char *event, *decision, *reason, *rule, *profile;
        /* the pending repeats */
        uint64_t count;
        uint64_t first_usec, last_usec; /* realtime, for the record */
        uint64_t window_usec;           /* boottime the current interval began */
        struct peer last_peer;          /* who was denied last (its exe and unit owned) */
        char *last_profile, *last_account, *last_scope_key;
        uint32_t retry_after;
        struct kind *next;
};

struct audit_aggregator {
        struct audit *audit;
        uint64_t interval_usec;
        struct kind *kinds;
        unsigned n_kinds;
};

static bool same(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int set_copy(char **dst, const char *src)
{
        char *copy = NULL;

        if (same(*dst, src))
                return 0;
        if (src && !(copy = strdup(src)))
                return -ENOMEM;
        free(*dst);
        *dst = copy;
        return 0;
}

static void kind_free(struct kind *k)
{
        free(k->event);
        free(k->decision);
        free(k->reason);
        free(k->rule);
        free(k->profile);
        free(k->last_profile);
        free(k->last_account);
        free(k->last_scope_key);
        peer_clear(&k->last_peer);
        free(k);
}

/* The profile is part of the key only when it exists, which an account name shows. */
static const char *key_profile(const struct audit_record *r)
{
        return r->account ? r->profile : NULL;
}

static bool matches(const struct kind *k, const struct audit_record *r)
{
        return k->uid == r->peer->uid && same(k->event, r->event) &&
               same(k->decision, r->decision) && same(k->reason, r->reason) &&
               same(k->rule, r->rule) && same(k->profile, key_profile(r));
}

static int write_pending(struct audit_aggregator *g, struct kind *k)
{
        struct audit_record record = {
            .event = k->event,
            .peer = &k->last_peer,
            .profile = k->last_profile,
            .account = k->last_account,
            .scope_key = k->last_scope_key,
            .decision = k->decision,
            .rule = k->rule,
            .reason = k->reason,
            .retry_after = k->retry_after,
            .count = k->count,
            .first_usec = k->first_usec,
            .last_usec = k->last_usec,
        };
        int r;

        if (k->count == 0)
                return 0;
        r = audit_write(g->audit, &record);
        if (r < 0)
                return r; /* kept: tried again at the next tick */
        k->count = 0;
        return 0;
}

/* Remembers who was denied last, for the aggregated record. */
static int remember(struct kind *k, const struct audit_record *r)
{
        char *exe = NULL, *unit = NULL;

        k->retry_after = r->retry_after;
        /* A flood repeats one process's denial: nothing to copy again. */
        if (k->last_peer.pid == r->peer->pid && k->last_peer.uid == r->peer->uid &&
            same(k->last_peer.exe, r->peer->exe) && same(k->last_peer.unit, r->peer->unit) &&
            same(k->last_profile, r->profile) && same(k->last_account, r->account) &&
            same(k->last_scope_key, r->scope_key))
                return 0;
        if ((r->peer->exe && !(exe = strdup(r->peer->exe))) ||
            (r->peer->unit && !(unit = strdup(r->peer->unit)))) {
                free(exe);
                free(unit);
                return -ENOMEM;
        }
        peer_clear(&k->last_peer);
        k->last_peer = (struct peer){.uid = r->peer->uid,
                                     .gid = r->peer->gid,
                                     .pid = r->peer->pid,
                                     .exe = exe,
                                     .unit = unit};
        if (set_copy(&k->last_profile, r->profile) < 0 ||
            set_copy(&k->last_account, r->account) < 0 ||
            set_copy(&k->last_scope_key, r->scope_key) < 0)
                return -ENOMEM;
        return 0;
}

static int kind_new(const struct audit_record *r, struct kind **ret)
{
        struct kind *k = calloc(1, sizeof(*k));

        if (!k)
                return -ENOMEM;
        k->uid = r->peer->uid;
        if (set_copy(&k->event, r->event) < 0 || set_copy(&k->decision, r->decision) < 0 ||
            set_copy(&k->reason, r->reason) < 0 || set_copy(&k->rule, r->rule) < 0 ||
            set_copy(&k->profile, key_profile(r)) < 0) {
                kind_free(k);
                return -ENOMEM;
        }
        *ret = k;
        return 0;
}

/* Makes room for one more kind: the one whose interval began longest ago goes, its count
 * written first. */
static void make_room(struct audit_aggregator *g)
{
        struct kind **oldest = NULL;

        for (struct kind **link = &g->kinds; *link; link = &(*link)->next)
                if (!oldest || (*link)->window_usec < (*oldest)->window_usec)
                        oldest = link;
        if (!oldest)
                return;
        struct kind *k = *oldest;
        (void)write_pending(g, k);
        *oldest = k->next;
        kind_free(k);
        g->n_kinds--;
}

int audit_aggregator_new(struct audit *audit, uint32_t interval_sec, struct audit_aggregator **ret)
{
        struct audit_aggregator *g = calloc(1, sizeof(*g));

        if (!g)
                return -ENOMEM;
        g->audit = audit;
        g->interval_usec = (uint64_t)interval_sec * USEC_PER_SEC;
        *ret = g;
        return 0;
}

void audit_aggregator_free(struct audit_aggregator *g)
{
        if (!g)
                return;
        while (g->kinds) {
                struct kind *k = g->kinds;
                g->kinds = k->next;
                if (write_pending(g, k) < 0)
                        log_error("%" PRIu64 " repeated denials of uid %u could not be audited.",
                                  k->count, (unsigned)k->uid);
                kind_free(k);
        }
        free(g);
}

int audit_write_denial(struct audit_aggregator *g, const struct audit_record *r)
{
        uint64_t now = now_boottime_usec();
        struct kind *k;
        int e;

        /* Root and the broker's own uid could write the log directly: every one of their
         * denials keeps its own line. */
        if (r->peer->uid == 0 || r->peer->uid == geteuid())
                return audit_write(g->audit, r);
        for (k = g->kinds; k; k = k->next)
                if (matches(k, r))
                        break;
        if (k && (k->count > 0 || now - k->window_usec < g->interval_usec)) {
                /* A repeat within the interval: counted, written by the tick. */
                e = remember(k, r);
                if (e < 0)
                        return audit_write(g->audit, r); /* out of memory: no aggregation */
                if (k->count++ == 0)
                        k->first_usec = now_realtime_usec();
                k->last_usec = now_realtime_usec();
                return 0;
        }
        /* The first of its kind in an interval: on its own line, now. */
        e = audit_write(g->audit, r);
        if (e < 0)
                return e;
        if (!k) {
                if (g->n_kinds >= AGGREGATE_MAX)
                        make_room(g);
                if (kind_new(r, &k) < 0)
                        return 0; /* written; only the aggregation is lost */
                k->next = g->kinds;
                g->kinds = k;
                g->n_kinds++;
        }
        k->window_usec = now;
        return 0;
}

void audit_aggregator_tick(struct audit_aggregator *g)
{
        uint64_t now = now_boottime_usec();
        struct kind **link = &g->kinds;

        while (*link) {
                struct kind *k = *link;
                if (now - k->window_usec < g->interval_usec) {
                        link = &k->next;
                        continue;
                }
                if (k->count > 0) {
                        if (write_pending(g, k) == 0)
                                k->window_usec = now;
                        link = &k->next;
                        continue;
                }
                /* Quiet for a whole interval: forget it, its next denial is written at once. */
                *link = k->next;
                kind_free(k);
                g->n_kinds--;
        }
}
