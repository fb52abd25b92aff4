/* Talking to the identity provider's token endpoint: non-blocking HTTPS through libcurl's multi
 * interface driven by the broker's epoll loop, and the one place where token responses are
 * parsed and classified (microsoft-identity.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cleanup.h"
#include "secret.h"

struct idp;

struct idp_options {
        const char *ca_bundle;
        uint32_t connect_timeout_sec;
        uint32_t timeout_sec;
};

int idp_new(int epfd, const struct idp_options *options, struct idp **ret);
/* Cancels every transfer in flight; each callback runs once with a transient failure. */
void idp_free(struct idp *idp);

enum idp_outcome {
        IDP_OK,
        IDP_TRANSIENT, /* network, TLS, 5xx, 429, temporarily_unavailable: retry later */
        IDP_REAUTH,    /* the grant is dead (expired, revoked, MFA): an administrator must act */
        IDP_CONFIG,    /* the app registration or account settings are wrong */
        IDP_SCOPES_REFUSED, /* invalid_scope: this scope set, not the account, is wrong */
};

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

struct idp_refresh_grant {
        const char *token_endpoint;
        const char *client_id;
        const struct secret *refresh_token;
        const char *scope; /* space separated */
        bool generic;      /* not Microsoft: only RFC 6749 parameters */
};

/* Called once per request from the event loop; result is valid only during the call. */
typedef void (*idp_done_fn)(struct idp_result *result, void *userdata);

int idp_request_refresh(struct idp *idp, const struct idp_refresh_grant *grant, idp_done_fn done,
                        void *userdata);

/* Form bodies in secret memory (they carry refresh tokens, passwords, client secrets). */
int idp_form_new(struct secret **ret);
int idp_form_add(struct secret *form, const char *key, const char *value, size_t len);
int idp_form_add_string(struct secret *form, const char *key, const char *value);

/* POSTs a token request body (taken, and wiped, whatever happens) to the token endpoint; the
 * answer is classified as for a refresh. */
int idp_post_token_request(struct idp *idp, const char *token_endpoint, struct secret **form,
                           idp_done_fn done, void *userdata);

/* The same with one extra request header line in secret memory ("Authorization: Basic ...",
 * RFC 6749 §2.3.1), taken and wiped like the form. */
int idp_post_token_request_auth(struct idp *idp, const char *token_endpoint, struct secret **form,
                                struct secret **authorization, idp_done_fn done, void *userdata);

/* An answer handed over unparsed (the device authorization endpoint's is not a token). */
struct idp_raw_response {
        long http_status;    /* 0 when the request failed */
        const uint8_t *body; /* valid during the callback only */
        size_t len;
        uint32_t retry_after; /* seconds, 0 when none */
        const char *failure;  /* set when no answer came (network, TLS, cancelled) */
};
typedef void (*idp_raw_done_fn)(const struct idp_raw_response *response, void *userdata);
int idp_post_form_raw(struct idp *idp, const char *url, struct secret **form, idp_raw_done_fn done,
                      void *userdata);

/* Exposed for the unit test and fuzzer: classify one HTTP answer (status, headers already
 * reduced to retry_after, body). Fills result; ownership of secrets passes to result. */
void idp_parse_token_response(long http_status, const uint8_t *body, size_t len,
                              uint32_t retry_after, struct idp_result *result);
/* A Retry-After header's value (after the name and leading blanks): seconds or an HTTP date,
 * as seconds from now, bounded to an hour; 0 for a date in the past or an unreadable value. */
uint32_t idp_parse_retry_after(const char *value, time_t now);
