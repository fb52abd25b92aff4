/* Backoff with jitter for refusals under load; see retry.h. */
#include "retry.h"

#include <errno.h>

int retry_delay_ms(unsigned attempt, uint64_t retry_after_ms, uint64_t remaining_ms,
                   uint32_t random, uint64_t *ret_ms)
{
        uint64_t step = RETRY_CAP_MS, spread, delay;

        if (remaining_ms == 0 || retry_after_ms >= remaining_ms)
                return -ETIMEDOUT;
        if (attempt < 16 && ((uint64_t)RETRY_BASE_MS << attempt) < RETRY_CAP_MS)
                step = (uint64_t)RETRY_BASE_MS << attempt;
        if (retry_after_ms > 0) {
                spread = retry_after_ms / 2 > step ? retry_after_ms / 2 : step;
                delay = retry_after_ms + random % (spread + 1);
        } else
                delay = step / 2 + random % (step - step / 2 + 1);
        *ret_ms = delay < remaining_ms ? delay : remaining_ms;
        return 0;
}
