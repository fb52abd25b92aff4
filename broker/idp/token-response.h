/* What a token endpoint answered, and what the broker makes of it (microsoft-identity.md): a
 * token (IDP_OK) or a failure classified by its AADSTS code (aadsts.c), its HTTP status and its
 * OAuth "error", with one sentence for logs and admins. Pure parsing: no I/O, no loop. */
#pragma once

#include <stdint.h>
#include <stddef.h>
#include <time.h>

#include "outcome.h"
#include "secret.h"

struct idp_result {
        enum idp_outcome outcome;
        /* IDP_OK only */
        struct secret *access_token;
        struct secret *refresh_token; /* NULL when the response carried none */
        uint64_t expires_in;          /* seconds */
        char *scope;                  /* as granted; NULL when absent */
        uint64_t sent_at_usec;        /* CLOCK_BOOTTIME when the request was sent */
        /* failures */
        long http_status;
        uint32_t retry_after; /* seconds, 0 when the server named none */
        char error[64];       /* OAuth "error", e.g. invalid_grant */
        uint32_t error_code;  /* first of "error_codes", e.g. 700082 (AADSTS) */
        char message[256];    /* one sentence for logs and admins; never holds a secret */
};

void idp_result_clear(struct idp_result *r);

/* Turns r into a failure: drops any secrets and sets outcome and message (for the transport's
 * own failures: network, TLS, an oversized body, cancellation). */
void idp_result_fail(struct idp_result *r, enum idp_outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Classifies one HTTP answer (status, headers already reduced to retry_after, body). Fills
 * result; ownership of secrets passes to result. Exposed for the unit test and the fuzzer. */
void idp_parse_token_response(long http_status, const uint8_t *body, size_t len,
                              uint32_t retry_after, struct idp_result *result);
/* A Retry-After header's value (after the name and leading blanks): seconds or an HTTP date,
 * as seconds from now, bounded to an hour; 0 for a date in the past or an unreadable value. */
uint32_t idp_parse_retry_after(const char *value, time_t now);
