/* What each Microsoft Entra error code (AADSTS number) means for the broker, and what an
 * administrator must change when it is not the broker's to fix (microsoft-identity.md). The
 * one table of it: the classifier in idp.c and the admin guidance both read it from here. */
#pragma once

#include <stdint.h>

#include "idp.h"

struct aadsts_entry {
        uint32_t code;
        enum idp_outcome outcome;
        /* One sentence for the log, the audit record and account status: what to do. */
        const char *guidance;
};

/* Entra's loop detection (AADSTS50196) answers a client that repeats one token request too
 * often; it lifts after minutes, not seconds, and each early retry counts as another repeat. */
#define AADSTS_LOOP_RETRY_AFTER_SEC 300

/* The entry for code, or NULL for a code the table does not know (then the OAuth "error" and
 * the HTTP status decide). */
const struct aadsts_entry *aadsts_find(uint32_t code);
/* Seconds to wait at least before the next request after code, whatever Retry-After said;
 * 0 for no floor. */
uint32_t aadsts_retry_after_min(uint32_t code);
