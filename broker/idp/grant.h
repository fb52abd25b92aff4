/* Token requests for each flow (microsoft-identity.md, RFC 6749/8628/7523): every form body
 * (URL-encoded in secret memory) and the app-only credential read or signed on the store
 * worker (the scopes they ask for are scope.h's). Shared by the refresh path (refresh.c) and
 * provisioning (provision.c); the bodies are sent with http.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "account-meta.h"
#include "idp.h"
#include "scope.h"
#include "secret.h"
#include "store.h"
#include "util.h"

struct idp;
struct idp_result;

struct idp_refresh_grant {
        const char *token_endpoint;
        const char *client_id;
        const struct secret *refresh_token;
        const char *scope; /* space separated */
        bool generic;      /* not Microsoft: only RFC 6749 parameters */
};

/* grant_type=refresh_token: the form, and the request sent with it. */
int grant_form_refresh(const struct idp_refresh_grant *grant, struct secret **ret);
int idp_request_refresh(struct idp *idp, const struct idp_refresh_grant *grant, idp_done_fn done,
                        void *userdata);

/* grant_type=password (ROPC): the password is only read. */
int grant_form_password(const char *client_id, const char *username, const struct secret *password,
                        const char *scope, bool generic, struct secret **ret);
/* grant_type=urn:ietf:params:oauth:grant-type:device_code */
int grant_form_device_code(const char *client_id, const struct secret *device_code, bool generic,
                           struct secret **ret);
/* The device authorization request: client_id and scope. */
int grant_form_device_authorization(const char *client_id, const char *scope, struct secret **ret);

/* grant_type=client_credentials with a client secret, or with a JWT assertion (RFC 7523). */
enum grant_client_credential {
        GRANT_CLIENT_SECRET,
        GRANT_CLIENT_ASSERTION,
};
int grant_form_client_credentials(const char *client_id, const char *scope,
                                  enum grant_client_credential kind,
                                  const struct secret *credential, struct secret **ret);

/* An app-only account's credential, fetched on the store worker: its client secret, or a fresh
 * assertion signed in the token (new jti, aud = the token endpoint, exp = now + 600). */
struct grant_credential_call {
        enum account_flow flow;
        char account[NAME_MAX_LEN + 1];
        char audience[STORE_AUDIENCE_MAX + 1];
        char client_id[STORE_CLIENT_ID_MAX + 1];
        /* in: the assertion to sign; out: the one signed (RS256 when the token cannot PSS) */
        enum store_assertion_alg alg;
        bool pss_unsupported;      /* out: PS256 was asked for but the token has no PSS */
        struct secret *credential; /* out */
};
/* Fills call for account; -EINVAL when a field is too long or the flow is not app-only. */
int grant_credential_call_init(struct grant_credential_call *call, const char *account,
                               enum account_flow flow, const char *token_endpoint,
                               const char *client_id);
/* The assertion an account sends: its assertion_alg setting (PS256 by default), or RS256 once
 * this broker saw the server refuse its PS256 assertion or the token unable to sign one. */
void grant_credential_call_set_alg(struct grant_credential_call *call,
                                   const struct account_meta *m);
/* A STORE_JOB_CALL function (userdata: struct grant_credential_call). A PS256 assertion the
 * token cannot sign (no CKM_SHA256_RSA_PKCS_PSS) is signed RS256 instead. */
int grant_credential_fetch(struct store *store, void *userdata);

/* Sends the client_credentials request of an app-only account whose credential call is done:
 * the secret in the body, or in an HTTP Basic header when the account's client_auth is basic
 * (RFC 6749 §2.3.1); the assertion as client_assertion. Takes call->credential. */
int grant_post_client_credentials(struct idp *idp, const struct account_meta *m,
                                  const char *token_endpoint, const char *scope,
                                  struct grant_credential_call *call, idp_done_fn done,
                                  void *userdata);
/* After a failed answer to a PS256 assertion with AADSTS700027: remembers RS256 for the
 * account, logs it, and turns the result into a transient failure so that the next attempt
 * (with RS256) comes soon. True when it did. */
bool grant_credential_refused(struct grant_credential_call *call, struct idp_result *result);
/* Forgets what grant_credential_refused() remembered (tests). */
void grant_assertion_fallbacks_clear(void);

/* The "Authorization: Basic ..." header line of RFC 6749 §2.3.1: client_id and secret, each
 * application/x-www-form-urlencoded, joined by ":" and base64-encoded; in secret memory. */
int grant_basic_authorization(const char *client_id, const struct secret *client_secret,
                              struct secret **ret);
