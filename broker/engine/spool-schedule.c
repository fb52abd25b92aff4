/* The spool's scheduling rules; see spool-schedule.h. */
#include "spool-schedule.h"

#include "util.h"

uint64_t spool_backoff_sec(unsigned attempts, uint32_t retry_after, uint32_t retry_min,
                           uint32_t retry_max)
{
        uint64_t wait = retry_min;

        if (retry_max < retry_min)
                retry_max = retry_min;
        for (unsigned i = 1; i < attempts && wait < retry_max; i++)
                wait *= 2;
        if (wait > retry_max)
                wait = retry_max;
        if (retry_after > wait)
                wait = retry_after < retry_max ? retry_after : retry_max;
        return wait;
}

bool spool_expired(uint64_t queued_at, uint64_t now, uint32_t lifetime)
{
        return now >= queued_at && now - queued_at >= lifetime;
}

bool spool_gate_admit(struct spool_gate *g, unsigned concurrency, unsigned rate_per_minute,
                      uint64_t now_usec)
{
        if (g->last_usec == 0) {
                g->tokens = rate_per_minute;
        } else if (now_usec > g->last_usec) {
                g->tokens +=
                    (double)(now_usec - g->last_usec) * rate_per_minute / (60.0 * USEC_PER_SEC);
                if (g->tokens > rate_per_minute)
                        g->tokens = rate_per_minute;
        }
        g->last_usec = now_usec ? now_usec : 1;
        if (g->running >= concurrency || g->tokens < 1.0)
                return false;
        g->tokens -= 1.0;
        g->running++;
        return true;
}

void spool_gate_release(struct spool_gate *g)
{
        if (g->running > 0)
                g->running--;
}
