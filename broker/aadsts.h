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

/* The entry for code, or NULL for a code the table does not know (then the OAuth "error" and
 * the HTTP status decide). */
const struct aadsts_entry *aadsts_find(uint32_t code);
