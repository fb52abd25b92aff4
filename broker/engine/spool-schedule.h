/* The spool's scheduling rules, pure functions of their arguments (tests/unit/test-spool.c):
 * when a message is tried next, when it has been kept long enough, and how many deliveries a
 * mailbox may have running and starting (Graph: 4 concurrent requests per app and mailbox;
 * Exchange: about 30 messages a minute). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Seconds to wait after the attempts-th failed attempt (1: the first): retry_min doubled per
 * attempt up to retry_max, and never less than what Graph asked for (retry_after, capped at
 * retry_max too: a hostile Retry-After cannot park a message for a year). */
uint64_t spool_backoff_sec(unsigned attempts, uint32_t retry_after, uint32_t retry_min,
                           uint32_t retry_max);

/* Whether a message queued at queued_at (unix seconds) is past its lifetime at now. */
bool spool_expired(uint64_t queued_at, uint64_t now, uint32_t lifetime);

/* One mailbox's gate: deliveries running, and a token bucket of starts (rate per minute, as
 * many at once at most). */
struct spool_gate {
        unsigned running;
        double tokens;
        uint64_t last_usec; /* boottime the bucket was last filled; 0: new (full) */
};
/* Admits one more delivery at now (boottime µs) when fewer than concurrency run and the bucket
 * has a start left; counts it then. */
bool spool_gate_admit(struct spool_gate *g, unsigned concurrency, unsigned rate_per_minute,
                      uint64_t now_usec);
/* A delivery admitted by the gate ended. */
void spool_gate_release(struct spool_gate *g);
