/* Parsing the dates an administrator types (--secret-expires 2027-06-30). */
#pragma once

#include <stdint.h>

/* "YYYY-MM-DD" (a real calendar date, 1970-9999) to unix seconds at 00:00 UTC. -EINVAL for
 * anything else. */
int parse_iso_date(const char *text, uint64_t *ret);
