/* An account's non-secret settings: the JSON kept in the "<account>/meta" PKCS#11 object
 * (design.md §4). Written by the CLI at provisioning, read by the broker. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cloud.h"

#define ACCOUNT_META_MAX 65536

#define ACCOUNT_META_URL_MAX    512
#define ACCOUNT_META_SCOPES_MAX 16

/* How the account signs in (design.md §5). The first three are delegated (a user's refresh
 * token in the store), the last two app-only (client_credentials, never a refresh token). */
enum account_flow {
        ACCOUNT_FLOW_REFRESH_TOKEN, /* "refresh-token", also the older "refresh_token" */
        ACCOUNT_FLOW_DEVICE,
        ACCOUNT_FLOW_PASSWORD,
        ACCOUNT_FLOW_CLIENT_SECRET,
        ACCOUNT_FLOW_CLIENT_CERTIFICATE,
};

/* Which JWT client assertion a client-certificate account sends (design.md §5): PS256 with
 * x5t#S256 unless the account says RS256 (x5t, SHA-1 thumbprint) for an older server. */
enum account_assertion_alg {
        ACCOUNT_ASSERTION_PS256,
        ACCOUNT_ASSERTION_RS256,
};

/* How a client secret travels (RFC 6749 §2.3.1): in the request body (client_secret_post, the
 * default and Microsoft's) or in an HTTP Basic Authorization header (client_secret_basic). */
enum account_client_auth {
        ACCOUNT_CLIENT_AUTH_POST,
        ACCOUNT_CLIENT_AUTH_BASIC,
};

struct account_meta {
        char *tenant;
        char *client_id;
        char *flow; /* as stored; see flow_kind */
        enum account_flow flow_kind;
        char *username;        /* delegated flows; may be NULL; never a secret */
        char *authority;       /* NULL: the configured default */
        char *token_endpoint;  /* any OAuth 2.0 server: used instead of the authority's */
        char *device_endpoint; /* RFC 8628 device authorization endpoint, with token_endpoint */
        char *graph;           /* NULL: the cloud's, else the configured default */
        char *cloud;           /* "global", "usgov", ...; NULL: the configured cloud */
        enum cloud cloud_kind; /* with cloud */
        char *mailbox;         /* UPN mail is sent as; may be NULL */
        char *scopes;          /* default scopes, space separated; NULL: none given */
        char *assertion_alg;   /* "PS256" or "RS256"; NULL: PS256 */
        enum account_assertion_alg assertion_alg_kind;
        char *client_auth; /* "post" or "basic"; NULL: post */
        enum account_client_auth client_auth_kind;
        uint64_t secret_expires_at; /* client secret's expiry as the admin gave it; 0: unknown */
        uint64_t created;           /* unix seconds */
};

void account_meta_clear(struct account_meta *m);
/* Strict: every field must have its type, tenant/client_id present and of sane characters,
 * URLs https://. -EINVAL otherwise. */
int account_meta_from_json(const char *json, struct account_meta *ret);
/* Returns a malloc()ed JSON text. */
int account_meta_to_json(const struct account_meta *m, char **ret);
/* Tenant: a GUID or a domain name; client id: a GUID-like token. Also sets flow_kind. */
int account_meta_validate(struct account_meta *m);

/* "device", "password", ... to the enum; -EINVAL for anything else. */
int account_flow_from_string(const char *s, enum account_flow *ret);
const char *account_flow_to_string(enum account_flow f);
bool account_flow_is_app_only(enum account_flow f);

/* The token endpoint the account talks to: its explicit token_endpoint, else
 * {authority}/{tenant}/oauth2/v2.0/token with the account's authority, its cloud's or the
 * default authority. The
 * device endpoint likewise ({authority}/{tenant}/oauth2/v2.0/devicecode). malloc()ed. */
int account_meta_token_endpoint(const struct account_meta *m, const char *default_authority,
                                char **ret);
int account_meta_device_endpoint(const struct account_meta *m, const char *default_authority,
                                 char **ret);
/* The account's Graph base URL: its graph, else its cloud's, else default_graph. */
const char *account_meta_graph_url(const struct account_meta *m, const char *default_graph);
/* The prefix of its default Graph scopes: cloud_graph_resource() of its Graph URL, falling back
 * on its cloud, else default_cloud. */
const char *account_meta_graph_resource(const struct account_meta *m, const char *default_graph,
                                        enum cloud default_cloud);
/* The scope set asked for when none is given (sign-in, account test): the account's scopes,
 * else {resource}/.default (app-only) or {resource}/Mail.Send (delegated); NULL (*ret) for a
 * generic OAuth server, which has no default. malloc()ed. */
/* A delegated account whose signed-in user (username) is not its mailbox: it sends through
 * /users/{mailbox}/sendMail, which needs Mail.Send.Shared besides Mail.Send. */
bool account_meta_sends_as_other(const struct account_meta *m);
int account_meta_default_scopes(const struct account_meta *m, const char *resource, char **ret);

/* Whether the account talks to a server other than Microsoft's (explicit endpoints): then only
 * RFC 6749/8628/7523 parameters are sent. */
bool account_meta_is_generic_oauth(const struct account_meta *m);
