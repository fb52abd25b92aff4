/* The spool's scheduling rules (broker/engine/spool-schedule.c): backoff, lifetime, and the
 * per-mailbox gate of Graph's concurrency and Exchange's rate. */
#include "spool-schedule.h"
#include "tap.h"
#include "util.h"

static void test_backoff(void)
{
        /* 1 min doubling to 1 h */
        is_int(spool_backoff_sec(1, 0, 60, 3600), 60, "first retry after retry_min");
        is_int(spool_backoff_sec(2, 0, 60, 3600), 120, "then doubled");
        is_int(spool_backoff_sec(3, 0, 60, 3600), 240, "and doubled again");
        is_int(spool_backoff_sec(7, 0, 60, 3600), 3600, "capped at retry_max (3840 > 3600)");
        is_int(spool_backoff_sec(1000, 0, 60, 3600), 3600, "no overflow after many attempts");
        is_int(spool_backoff_sec(0, 0, 60, 3600), 60, "attempt 0 is treated as the first");
        is_int(spool_backoff_sec(1, 300, 60, 3600), 300,
               "Retry-After longer than the backoff wins");
        is_int(spool_backoff_sec(3, 30, 60, 3600), 240,
               "a shorter Retry-After does not shorten it");
        is_int(spool_backoff_sec(1, 86400, 60, 3600), 3600, "a huge Retry-After is capped");
        is_int(spool_backoff_sec(5, 0, 10, 5), 10, "retry_max below retry_min: retry_min");
}

static void test_lifetime(void)
{
        ok(!spool_expired(1000, 1000 + 432000 - 1, 432000), "not expired a second before");
        ok(spool_expired(1000, 1000 + 432000, 432000), "expired at the lifetime");
        ok(!spool_expired(1000, 500, 432000), "a clock set back never expires a message");
}

static void test_gate(void)
{
        struct spool_gate g = {0};
        uint64_t t = 1000 * USEC_PER_SEC;
        unsigned admitted = 0;

        for (int i = 0; i < 10; i++)
                admitted += spool_gate_admit(&g, 4, 30, t);
        is_int(admitted, 4, "at most 4 concurrent deliveries per mailbox");
        is_int(g.running, 4, "four running");
        spool_gate_release(&g);
        ok(spool_gate_admit(&g, 4, 30, t), "a slot freed: one more");
        spool_gate_release(&g);
        spool_gate_release(&g);
        spool_gate_release(&g);
        spool_gate_release(&g);
        spool_gate_release(&g); /* one too many: stays at 0 */
        is_int(g.running, 0, "releases never go below zero");

        /* The rate: 30 a minute. 5 started above; 25 more fit at once, then one per 2 s. */
        admitted = 0;
        for (int i = 0; i < 40; i++) {
                if (spool_gate_admit(&g, 1000, 30, t)) {
                        admitted++;
                }
        }
        is_int(admitted, 25, "30 starts per minute at most, as a burst");
        ok(!spool_gate_admit(&g, 1000, 30, t + 1 * USEC_PER_SEC), "none 1 s later");
        ok(spool_gate_admit(&g, 1000, 30, t + 2 * USEC_PER_SEC), "one 2 s later");
        ok(!spool_gate_admit(&g, 1000, 30, t + 2 * USEC_PER_SEC), "only one");
        admitted = 0;
        for (int i = 0; i < 100; i++)
                admitted += spool_gate_admit(&g, 1000, 30, t + 3600 * USEC_PER_SEC);
        is_int(admitted, 30, "after an idle hour the bucket holds a minute's worth, not more");
}

int main(void)
{
        test_backoff();
        test_lifetime();
        test_gate();
        return done_testing();
}
