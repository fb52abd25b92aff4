/* What each Microsoft Entra error code (AADSTS number) means for the broker, and what an
 * administrator must change when it is not the broker's to fix (microsoft-identity.md). The
 * one table of it: the classifier (token-response.c), the backoff floor and the sentence a
 * failed provisioning prints (admin/provision-errors.c) all read it from here. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outcome.h"

struct aadsts_entry {
        uint32_t code;
        /* What the code means. The classifier uses it when guidance is set; provisioning
         * reports IDP_CONFIG as needs_config and anything else as sign_in_failed. */
        enum idp_outcome outcome;
        /* One sentence for the log, the audit record and account status: what to do. NULL for
         * a code that does not decide the outcome (the OAuth "error" and the HTTP status do, as
         * for a code the table does not know). */
        const char *guidance;
        /* Seconds to wait at least before the next request, whatever Retry-After said; 0 for
         * no floor. */
        uint32_t retry_after_min;
        /* What a failed sign-in (account.add, account.login) tells the administrator, between
         * "Sign-in failed: " and " (AADSTS<code>)."; NULL when the code has no sentence of its
         * own there. */
        const char *sign_in;
        /* sign_in speaks of the password flow (ROPC) only: in any other flow the code gets the
         * generic sentence. */
        bool sign_in_password_only;
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
/* The whole table, for its unit test. */
const struct aadsts_entry *aadsts_table(size_t *ret_n);
