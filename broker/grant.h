/* Token requests for each flow (microsoft-identity.md, RFC 6749/8628/7523): the form bodies,
 * the scope an app-only request asks for, and the app-only credential read or signed on the
 * store worker. Shared by the refresh path (refresh.c) and provisioning (provision.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "account-meta.h"
#include "secret.h"
#include "store.h"
#include "util.h"

struct idp;

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

/* The scope of a client_credentials request for a scope set: Microsoft wants exactly one
 * {resource}/.default (the resource of the first scope; bare names are Graph's); a generic
 * server gets the scopes as they are. malloc()ed. */
int grant_app_only_scope(const char *scope_key, bool generic, char **ret);

/* An app-only account's credential, fetched on the store worker: its client secret, or a fresh
 * assertion signed in the token (new jti, aud = the token endpoint, exp = now + 600). */
struct grant_credential_call {
        enum account_flow flow;
        char account[NAME_MAX_LEN + 1];
        char audience[STORE_AUDIENCE_MAX + 1];
        char client_id[STORE_CLIENT_ID_MAX + 1];
        struct secret *credential; /* out */
};
/* Fills call for account; -EINVAL when a field is too long or the flow is not app-only. */
int grant_credential_call_init(struct grant_credential_call *call, const char *account,
                               enum account_flow flow, const char *token_endpoint,
                               const char *client_id);
/* A STORE_JOB_CALL function (userdata: struct grant_credential_call). */
int grant_credential_fetch(struct store *store, void *userdata);
