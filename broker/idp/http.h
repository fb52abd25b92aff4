/* The identity provider's HTTP client: non-blocking HTTPS POSTs of form bodies through
 * libcurl's multi interface, driven by the broker's epoll loop (event.h). A token endpoint's
 * answer is handed to token-response.c for classification; any other answer (the device
 * authorization endpoint's) comes back unparsed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "secret.h"
#include "token-response.h"

struct idp;

struct idp_options {
        const char *ca_bundle;
        uint32_t connect_timeout_sec;
        uint32_t timeout_sec;
        /* [identity] proxy (may hold user:password@, never logged: messages name it without
         * them) and no_proxy; NULL: libcurl's https_proxy/no_proxy environment variables. */
        const char *proxy;
        const char *no_proxy;
};

int idp_new(int epfd, const struct idp_options *options, struct idp **ret);
/* Cancels every transfer in flight; each callback runs once with a transient failure. */
void idp_free(struct idp *idp);

/* Called once per request from the event loop; result is valid only during the call. */
typedef void (*idp_done_fn)(struct idp_result *result, void *userdata);

/* POSTs a token request body (taken, and wiped, whatever happens) to the token endpoint; the
 * answer is classified by idp_parse_token_response(). The bodies are built in grant.c. */
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
