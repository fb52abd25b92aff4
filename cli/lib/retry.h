/* When to try again after the broker refused for load: a framed rate_limited reply (a
 * connection cap or the per-uid request budget, with retry_after) or a connect() the kernel
 * could not queue. Pure arithmetic, unit-tested in tests/unit/test-cli-admin.c. */
#pragma once

#include <stdint.h>

#define RETRY_BASE_MS 50   /* the first backoff step */
#define RETRY_CAP_MS  2000 /* the backoff stops doubling here */

/* The wait in milliseconds before attempt number attempt + 1 (attempt counts from 0):
 * exponential backoff from RETRY_BASE_MS doubling up to RETRY_CAP_MS with jitter (a random
 * point in the upper half of the step, so a burst of clients spreads out); when the broker
 * named retry_after_ms (> 0), at least that plus a random spread of up to half of it (or of
 * the step, whichever is larger). Never longer than remaining_ms. Returns -ETIMEDOUT and
 * leaves *ret_ms alone when nothing remains, or when the broker's retry_after reaches past
 * remaining_ms (a policy's rate rule saying "in an hour": waiting would only delay the
 * answer). random is any uniformly distributed value. */
int retry_delay_ms(unsigned attempt, uint64_t retry_after_ms, uint64_t remaining_ms,
                   uint32_t random, uint64_t *ret_ms);
