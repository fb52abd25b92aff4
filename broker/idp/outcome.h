/* The five things a request to the identity provider can come to. Its own header because both
 * the AADSTS table (aadsts.h) and the token response classifier (token-response.h) speak it. */
#pragma once

enum idp_outcome {
        IDP_OK,
        IDP_TRANSIENT, /* network, TLS, 5xx, 429, temporarily_unavailable: retry later */
        IDP_REAUTH,    /* the grant is dead (expired, revoked, MFA): an administrator must act */
        IDP_CONFIG,    /* the app registration or account settings are wrong */
        IDP_SCOPES_REFUSED, /* invalid_scope: this scope set, not the account, is wrong */
};
