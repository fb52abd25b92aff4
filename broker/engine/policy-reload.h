/* Re-reading the policy (SIGHUP and the admin socket's reload). */
#pragma once

#include <stddef.h>

struct broker;

/* Loads the policy anew and forgets idle accounts, so that they are read from the store again.
 * On failure the old policy is kept and error holds the first problem as "file:line: message". */
int broker_reload(struct broker *b, char *error, size_t error_size, size_t *ret_profiles);
