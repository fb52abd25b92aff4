/* What each local uid is spending right now: connections held, its request budget, its share
 * of the broker's log and of one loop turn. Every limit a peer can run into is kept here, per
 * uid, because a uid is what the kernel vouches for (docs/security.md). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"

struct uid_table;

struct uid_limits {
        uint32_t request_rate;    /* requests per second a uid may make; 0 = no budget */
        uint32_t request_burst;   /* requests a uid may make at once */
        uint32_t frames_per_turn; /* frames handled for one uid per loop turn */
        uint32_t bytes_per_turn;  /* frame bytes handled for one uid per loop turn */
        uint32_t log_burst;       /* log lines a uid may cause at once ... */
        uint32_t log_per_minute;  /* ... and then per minute */
};

int uid_table_new(const struct uid_limits *limits, struct uid_table **ret);
void uid_table_free(struct uid_table *t);

/* One uid's entry. A connection holds on to its uid's entry (so the hot path needs no lookup):
 * an entry is reused for another uid only once no connection holds it. */
struct uid_entry;

/* Connections held by uid: counted here, capped by the caller (it may evict one first).
 * uid_table_connect() returns the entry to pass to the calls below, NULL when out of memory. */
struct uid_entry *uid_table_connect(struct uid_table *t, uid_t uid);
void uid_table_disconnect(struct uid_table *t, struct uid_entry *e);
unsigned uid_table_connections(struct uid_table *t, uid_t uid);

/* Takes one request from the uid's budget. Returns 0, or the seconds until the next request
 * is allowed (> 0). Root and the broker's own uid have no budget. */
uint32_t uid_entry_take_request(struct uid_table *t, struct uid_entry *e);

/* Fairness within one loop turn: starts a new turn, and asks whether the uid may have one more
 * frame of len bytes handled in this one (counting it when it may). */
void uid_table_new_turn(struct uid_table *t);
bool uid_entry_take_turn(struct uid_table *t, struct uid_entry *e, size_t len);
/* Whether the uid has used up this turn already (nothing is read for it until the next). */
bool uid_entry_turn_spent(struct uid_table *t, struct uid_entry *e);

/* A log line caused by a peer's request: written while uid's log budget lasts, counted
 * otherwise; the next line written for that uid says how many were suppressed. Root and the
 * broker's uid have no log budget either. */
void uid_table_log(struct uid_table *t, uid_t uid, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Reports suppressed lines of uids whose budget has come back; called about once a second. */
void uid_table_tick(struct uid_table *t, uint64_t now_usec);
