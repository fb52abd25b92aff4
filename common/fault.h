/* Named crash points for tests of crash safety (reliability.md P1). Compiled in only with
 * -Dfault_points=true; then fault_point("x") kills the process with SIGKILL when the environment
 * variable CREDBROKER_FAULT equals "x". Production builds compile every call away. */
#pragma once

#include "build-config.h"

#ifndef ENABLE_FAULT_POINTS
/* Without the build configuration the points would silently compile away in test builds. */
#error "build-config.h must define ENABLE_FAULT_POINTS"
#endif

#if ENABLE_FAULT_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void fault_point(const char *name)
{
        const char *want = secure_getenv("CREDBROKER_FAULT");

        if (want && strcmp(want, name) == 0)
                raise(SIGKILL);
}
#else
static inline void fault_point(const char *name)
{
        (void)name;
}
#endif
