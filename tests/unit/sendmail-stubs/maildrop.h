/* TEST STUB COPY of cli/maildrop.h as mail-plan.md declares it (owner mail-spool). */
#pragma once

#include <stddef.h>
#include <stdint.h>

int maildrop_write(const char *dir, const char *profile, const uint8_t *msg, size_t len);
