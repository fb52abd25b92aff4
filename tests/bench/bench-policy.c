/* Policy evaluation latency: a realistic 20-rule profile (peer and request stacks, every module)
 * evaluated many times with a limiter, timed per call with clock_gettime. The budget is 5 µs
 * median per request (issue 4); this prints the figures, it does not pass or fail. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"
#include "util.h"

#define ITERATIONS 200000
#define WARMUP     10000

/* 15 peer rules and 5 request rules. The peer passes them all, and the failing sufficient rules
 * don't end the stack early, so every rule runs on every call: the worst case. */
static const char profile_text[] =
    "account alerts\n"
    "scope https://graph.microsoft.com/Mail.Send\n"
    "scope https://graph.microsoft.com/Mail.Read\n"
    "peer sufficient uid 0\n"
    "peer requisite unit nagios.service icinga2.service cron.service backup-*.service\n"
    "peer requisite exe /usr/bin/credbroker /usr/lib/nagios/plugins/* /usr/local/bin/*\n"
    "peer required group 4 27 100 4242\n"
    "peer required uid 1000 1001 1002 1003 1004 1005\n"
    "peer required time Mon-Fri 00:00-24:00 Sat,Sun 00:00-24:00\n"
    "peer sufficient group 0\n"
    "peer required group 1000\n"
    "peer required exe /usr/*/nagios/plugins/notify-by-*\n"
    "peer required unit nagios*.service\n"
    "peer optional time 22:00-06:00\n"
    "peer required permit\n"
    "peer sufficient exe /usr/sbin/*\n"
    "peer required time Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-24:00\n"
    "peer required uid 1000\n"
    "request required rate 1000000/s per-uid\n"
    "request required rate 1000000/s per-profile\n"
    "request required min_ttl max=900\n"
    "request optional permit\n"
    "request required permit\n";

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int compare_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

int main(void)
{
        static const gid_t groups[] = {4, 27, 4242};
        static char *const scopes[] = {(char *)"https://graph.microsoft.com/Mail.Send"};
        const struct policy_peer peer = {.uid = 1000,
                                         .gid = 1000,
                                         .pid = 4242,
                                         .groups = groups,
                                         .n_groups = 3,
                                         .exe = "/usr/lib/nagios/plugins/notify-by-mail",
                                         .unit = "nagios.service"};
        const struct policy_request req = {.scopes = scopes, .n_scopes = 1, .min_ttl = 300};
        struct policy_profile *p = NULL;
        struct policy_limiter *limiter = policy_limiter_new();
        struct policy_decision d;
        uint64_t *samples = calloc(ITERATIONS, sizeof(*samples));
        uint64_t start, total, overhead[1001];
        unsigned denied = 0;

        if (!samples || !limiter ||
            policy_profile_parse_buffer("bench", profile_text, sizeof(profile_text) - 1, NULL, NULL,
                                        &p) < 0) {
                fputs("bench-policy: setup failed\n", stderr);
                return EXIT_FAILURE;
        }
        if (policy_profile_rule_count(p) != 20) {
                fprintf(stderr, "bench-policy: %zu rules, want 20\n", policy_profile_rule_count(p));
                return EXIT_FAILURE;
        }

        for (int i = 0; i < WARMUP; i++)
                policy_evaluate(p, &peer, &req,
                                &(struct policy_time){.wall = time(NULL),
                                                      .monotonic_usec = now_boottime_usec()},
                                limiter, &d);
        for (int i = 0; i < ITERATIONS; i++) {
                struct policy_time t = {.wall = time(NULL), .monotonic_usec = now_boottime_usec()};
                uint64_t before = now_ns();

                policy_evaluate(p, &peer, &req, &t, limiter, &d);
                samples[i] = now_ns() - before;
                denied += d.verdict != POLICY_ALLOW;
        }
        /* The same loop without the call: what the two clock reads themselves cost. */
        for (int i = 0; i < 1001; i++) {
                uint64_t before = now_ns();
                overhead[i] = now_ns() - before;
        }
        start = now_ns();
        for (int i = 0; i < ITERATIONS; i++)
                policy_evaluate(p, &peer, &req,
                                &(struct policy_time){.wall = 1764324000,
                                                      .monotonic_usec = 1000000 + (uint64_t)i},
                                limiter, &d);
        total = now_ns() - start;

        qsort(samples, ITERATIONS, sizeof(*samples), compare_u64);
        qsort(overhead, 1001, sizeof(*overhead), compare_u64);
        printf("policy_evaluate, 20-rule profile (15 peer + 5 request, every rule runs), %d "
               "calls:\n",
               ITERATIONS);
        printf("  median %" PRIu64 " ns, p99 %" PRIu64 " ns, max %" PRIu64
               " ns per call (clock_gettime pair: %" PRIu64 " ns, included)\n",
               samples[ITERATIONS / 2], samples[ITERATIONS * 99 / 100], samples[ITERATIONS - 1],
               overhead[500]);
        printf("  back-to-back mean %" PRIu64 " ns per call\n", total / ITERATIONS);
        printf("  denied during the timed run: %u (want 0: every rule ran)\n", denied);
        printf("bench-policy median_ns=%" PRIu64 " p99_ns=%" PRIu64 " mean_ns=%" PRIu64 "\n",
               samples[ITERATIONS / 2], samples[ITERATIONS * 99 / 100], total / ITERATIONS);
        policy_profile_free(p);
        policy_limiter_free(limiter);
        free(samples);
        return denied == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
