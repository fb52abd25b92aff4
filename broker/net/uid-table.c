/* Per-uid accounting; see uid-table.h. Entries are kept while their uid holds a connection and
 * reused least recently used first beyond that, so a uid cannot reset its budget by
 * reconnecting, and the table stays bounded whatever the peers do. */
#include "uid-table.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

#define UID_TABLE_BUCKETS 256
/* Far more uids than a host has users: entries of disconnected uids beyond it are reused. */
#define UID_TABLE_MAX 4096

struct uid_entry {
        uid_t uid;
        unsigned connections;
        /* Request budget: a token bucket in millionths of a request. */
        uint64_t request_tokens;
        uint64_t request_refilled_usec;
        /* Log budget, the same way. */
        uint64_t log_tokens;
        uint64_t log_refilled_usec;
        uint64_t log_suppressed;
        /* This loop turn's share. */
        uint64_t turn;
        uint32_t turn_frames;
        uint64_t turn_bytes;
        uint64_t used_usec; /* for reuse: least recently used first */
        struct uid_entry *next;
};

struct uid_table {
        struct uid_limits limits;
        uint64_t turn;
        unsigned n_entries;
        struct uid_entry *buckets[UID_TABLE_BUCKETS];
};

#define TOKEN_UNIT 1000000ULL

int uid_table_new(const struct uid_limits *limits, struct uid_table **ret)
{
        struct uid_table *t = calloc(1, sizeof(*t));

        if (!t)
                return -ENOMEM;
        t->limits = *limits;
        t->turn = 1;
        *ret = t;
        return 0;
}

void uid_table_free(struct uid_table *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < UID_TABLE_BUCKETS; i++)
                while (t->buckets[i]) {
                        struct uid_entry *e = t->buckets[i];
                        t->buckets[i] = e->next;
                        free(e);
                }
        free(t);
}

static struct uid_entry **bucket_of(struct uid_table *t, uid_t uid)
{
        return &t->buckets[(uid * 2654435761u) % UID_TABLE_BUCKETS];
}

static struct uid_entry *find(struct uid_table *t, uid_t uid)
{
        for (struct uid_entry *e = *bucket_of(t, uid); e; e = e->next)
                if (e->uid == uid)
                        return e;
        return NULL;
}

/* The least recently used entry of a uid with no connection, unlinked; NULL if every uid
 * holds one (then the table may grow: connections are bounded elsewhere). */
static struct uid_entry *unlink_reusable(struct uid_table *t)
{
        struct uid_entry **oldest = NULL;

        for (size_t i = 0; i < UID_TABLE_BUCKETS; i++)
                for (struct uid_entry **link = &t->buckets[i]; *link; link = &(*link)->next)
                        if ((*link)->connections == 0 &&
                            (!oldest || (*link)->used_usec < (*oldest)->used_usec))
                                oldest = link;
        if (!oldest)
                return NULL;
        struct uid_entry *e = *oldest;
        *oldest = e->next;
        t->n_entries--;
        return e;
}

static void entry_report_suppressed(struct uid_entry *e)
{
        if (e->log_suppressed == 0)
                return;
        log_notice("uid %u: %" PRIu64 " more log lines about its requests were suppressed.",
                   (unsigned)e->uid, e->log_suppressed);
        e->log_suppressed = 0;
}

/* Finds or creates uid's entry; NULL only when out of memory. */
static struct uid_entry *get(struct uid_table *t, uid_t uid)
{
        struct uid_entry *e = find(t, uid);
        uint64_t now = now_boottime_usec();

        if (e) {
                e->used_usec = now;
                return e;
        }
        e = t->n_entries >= UID_TABLE_MAX ? unlink_reusable(t) : NULL;
        if (e)
                entry_report_suppressed(e);
        else
                e = malloc(sizeof(*e));
        if (!e)
                return NULL;
        *e = (struct uid_entry){
            .uid = uid,
            .request_tokens = (uint64_t)t->limits.request_burst * TOKEN_UNIT,
            .request_refilled_usec = now,
            .log_tokens = (uint64_t)t->limits.log_burst * TOKEN_UNIT,
            .log_refilled_usec = now,
            .used_usec = now,
        };
        struct uid_entry **head = bucket_of(t, uid);
        e->next = *head;
        *head = e;
        t->n_entries++;
        return e;
}

struct uid_entry *uid_table_connect(struct uid_table *t, uid_t uid)
{
        struct uid_entry *e = get(t, uid);

        if (e)
                e->connections++;
        return e;
}

void uid_table_disconnect(struct uid_table *t, struct uid_entry *e)
{
        if (e && e->connections > 0) {
                e->connections--;
                e->used_usec = now_boottime_usec();
        }
}

unsigned uid_table_connections(struct uid_table *t, uid_t uid)
{
        struct uid_entry *e = find(t, uid);

        return e ? e->connections : 0;
}

/* A token bucket in millionths: adds what per_minute earned since the last refill (elapsed µs ×
 * per_minute / 60 millionths), up to burst. Elapsed time is capped before it can overflow. */
static void refill(uint64_t *tokens, uint64_t *refilled_usec, uint64_t per_minute, uint64_t burst,
                   uint64_t now)
{
        uint64_t elapsed = now > *refilled_usec ? now - *refilled_usec : 0;
        uint64_t max = burst * TOKEN_UNIT;

        if (elapsed > 3600 * USEC_PER_SEC)
                elapsed = 3600 * USEC_PER_SEC;
        *tokens += elapsed * per_minute / 60;
        if (*tokens > max)
                *tokens = max;
        *refilled_usec = now;
}

static bool exempt(uid_t uid)
{
        /* Root can do anything the broker can anyway, and the broker's uid is its own CLI. */
        return uid == 0 || uid == geteuid();
}

uint32_t uid_entry_take_request(struct uid_table *t, struct uid_entry *e)
{
        if (t->limits.request_rate == 0 || exempt(e->uid))
                return 0;
        refill(&e->request_tokens, &e->request_refilled_usec, 60 * (uint64_t)t->limits.request_rate,
               t->limits.request_burst, now_boottime_usec());
        if (e->request_tokens >= TOKEN_UNIT) {
                e->request_tokens -= TOKEN_UNIT;
                return 0;
        }
        /* Whole seconds until one request's worth has come back, at least one. */
        uint64_t missing = TOKEN_UNIT - e->request_tokens;
        uint64_t per_sec = (uint64_t)t->limits.request_rate * TOKEN_UNIT;
        return (uint32_t)((missing + per_sec - 1) / per_sec);
}

void uid_table_new_turn(struct uid_table *t)
{
        t->turn++;
}

/* The entry's share of the current turn, reset when the turn is new. */
static void turn_start(const struct uid_table *t, struct uid_entry *e)
{
        if (e->turn != t->turn) {
                e->turn = t->turn;
                e->turn_frames = 0;
                e->turn_bytes = 0;
        }
}

bool uid_entry_turn_spent(struct uid_table *t, struct uid_entry *e)
{
        turn_start(t, e);
        return e->turn_frames >= t->limits.frames_per_turn ||
               e->turn_bytes >= t->limits.bytes_per_turn;
}

bool uid_entry_take_turn(struct uid_table *t, struct uid_entry *e, size_t len)
{
        if (uid_entry_turn_spent(t, e))
                return false;
        e->turn_frames++;
        e->turn_bytes += len;
        return true;
}

static void log_refill(const struct uid_table *t, struct uid_entry *e, uint64_t now)
{
        refill(&e->log_tokens, &e->log_refilled_usec, t->limits.log_per_minute, t->limits.log_burst,
               now);
}

void uid_table_log(struct uid_table *t, uid_t uid, enum log_level level, const char *fmt, ...)
{
        struct uid_entry *e;
        va_list ap;

        if (!log_level_enabled(level))
                return;
        e = exempt(uid) ? NULL : get(t, uid);
        if (e) {
                log_refill(t, e, now_boottime_usec());
                if (e->log_tokens < TOKEN_UNIT) {
                        e->log_suppressed++;
                        return;
                }
                e->log_tokens -= TOKEN_UNIT;
                entry_report_suppressed(e);
        }
        va_start(ap, fmt);
        (void)log_internalv(level, 0, fmt, ap);
        va_end(ap);
}

void uid_table_tick(struct uid_table *t, uint64_t now_usec)
{
        for (size_t i = 0; i < UID_TABLE_BUCKETS; i++)
                for (struct uid_entry *e = t->buckets[i]; e; e = e->next) {
                        if (!e->log_suppressed)
                                continue;
                        log_refill(t, e, now_usec);
                        /* The summary waits until the uid could log again, so a steady flood
                         * yields one summary per refill, not one a second. */
                        if (e->log_tokens >= TOKEN_UNIT) {
                                e->log_tokens -= TOKEN_UNIT;
                                entry_report_suppressed(e);
                        }
                }
}
