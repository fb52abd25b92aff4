/* The AADSTS table; see aadsts.h. Codes and meanings from microsoft-identity.md. The guidance
 * names the setting in the app registration or the tenant, so the administrator reading the
 * log knows where to click rather than what went wrong inside the broker. */
#include "aadsts.h"

#include <stddef.h>

#include "cleanup.h"

static const struct aadsts_entry entries[] = {
    /* The grant is dead: someone must sign in again (device code or a new provisioning). */
    {50076, IDP_REAUTH,
     "multi-factor authentication is required: sign the account in again with the device code "
     "flow (ROPC cannot do MFA)"},
    {50079, IDP_REAUTH,
     "the user must enrol in multi-factor authentication, then sign in again with the device "
     "code flow"},
    {700082, IDP_REAUTH,
     "the refresh token expired after 90 days unused: sign the account in again"},
    {70008, IDP_REAUTH, "the refresh token expired or was revoked: sign the account in again"},
    {50173, IDP_REAUTH,
     "the grant was revoked (password change or session revocation): sign the account in again"},
    {70043, IDP_REAUTH,
     "a sign-in frequency policy requires a fresh sign-in: sign the account in again"},
    {50126, IDP_REAUTH,
     "wrong user name or password (a federated user also needs password hash sync and an HRD "
     "policy with AllowCloudPasswordValidation): provision the account again"},
    {50053, IDP_REAUTH, "the user is locked out: unlock the user, then sign in again"},
    {50055, IDP_REAUTH, "the user's password expired: reset it, then sign in again"},
    {50057, IDP_REAUTH, "the user is disabled: enable the user, then sign in again"},
    /* The app registration or the tenant must change; retrying cannot help. */
    {65001, IDP_CONFIG,
     "no consent: grant admin consent for the app's API permissions in the app registration"},
    {53003, IDP_CONFIG,
     "blocked by conditional access: ask the tenant administrator to exclude this sign-in"},
    {7000218, IDP_CONFIG,
     "the app registration has no credential for this flow: enable \"Allow public client "
     "flows\" (Authentication) or give the account a secret or certificate"},
    {700025, IDP_CONFIG,
     "the app registration is a public client: remove the account's secret or certificate, or "
     "turn off \"Allow public client flows\""},
    {7000215, IDP_CONFIG,
     "the client secret is invalid: add a new secret (Certificates & secrets) and store its "
     "value, not its id"},
    {7000222, IDP_CONFIG,
     "the client secret expired: add a new secret (Certificates & secrets) and store it"},
    {700016, IDP_CONFIG,
     "application not found in the tenant: check the account's client id and tenant, and that "
     "the app is registered (or consented) there"},
    {90002, IDP_CONFIG, "tenant not found: check the account's tenant id or domain"},
    {9001023, IDP_CONFIG,
     "this grant is not supported on /common or /consumers: set the account's tenant to the "
     "tenant id or domain"},
    {700027, IDP_CONFIG,
     "client assertion refused: check that the account's certificate is the one in the app "
     "registration and still valid; PS256 is retried as RS256 (assertion_alg RS256 skips it)"},
    /* Microsoft's own throttle: wait, as for any transient failure. */
    {50196, IDP_TRANSIENT,
     "Entra detected a request loop (the same token request repeated too often): backing off "
     "for minutes"},
};

const struct aadsts_entry *aadsts_find(uint32_t code)
{
        for (size_t i = 0; code && i < ELEMENTSOF(entries); i++)
                if (entries[i].code == code)
                        return &entries[i];
        return NULL;
}

uint32_t aadsts_retry_after_min(uint32_t code)
{
        return code == 50196 ? AADSTS_LOOP_RETRY_AFTER_SEC : 0;
}
