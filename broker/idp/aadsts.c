/* The AADSTS table; see aadsts.h. Codes and meanings from microsoft-identity.md (and the
 * emulator's ROPC and device codes). The guidance names the setting in the app registration or
 * the tenant, so the administrator reading the log knows where to click rather than what went
 * wrong inside the broker; the sign-in sentence says the same to whoever runs account add or
 * account login, in the terms of its command line. */
#include "aadsts.h"

#include <stddef.h>

#include "cleanup.h"

static const struct aadsts_entry entries[] = {
    /* The grant is dead: someone must sign in again (device code or a new provisioning). */
    {.code = 50076,
     .outcome = IDP_REAUTH,
     .guidance = "multi-factor authentication is required: sign the account in again with the "
                 "device code flow (ROPC cannot do MFA)",
     .sign_in = "this user needs multi-factor authentication, which the password flow cannot "
                "do: use --flow device",
     .sign_in_password_only = true},
    {.code = 50079,
     .outcome = IDP_REAUTH,
     .guidance = "the user must enrol in multi-factor authentication, then sign in again with "
                 "the device code flow",
     .sign_in = "this user must enrol in multi-factor authentication, which the password flow "
                "cannot do: use --flow device",
     .sign_in_password_only = true},
    {.code = 700082,
     .outcome = IDP_REAUTH,
     .guidance = "the refresh token expired after 90 days unused: sign the account in again"},
    {.code = 70008,
     .outcome = IDP_REAUTH,
     .guidance = "the refresh token expired or was revoked: sign the account in again"},
    {.code = 50173,
     .outcome = IDP_REAUTH,
     .guidance = "the grant was revoked (password change or session revocation): sign the "
                 "account in again"},
    {.code = 70043,
     .outcome = IDP_REAUTH,
     .guidance = "a sign-in frequency policy requires a fresh sign-in: sign the account in "
                 "again"},
    {.code = 50126,
     .outcome = IDP_REAUTH,
     .guidance = "wrong user name or password (a federated user also needs password hash sync "
                 "and an HRD policy with AllowCloudPasswordValidation): provision the account "
                 "again",
     .sign_in = "wrong user name or password (a federated user without password hash sync also "
                "gets this: use --flow device); not retried, so the account does not get "
                "locked"},
    {.code = 50053,
     .outcome = IDP_REAUTH,
     .guidance = "the user is locked out: unlock the user, then sign in again",
     .sign_in = "the user's account is locked: wait, or ask the tenant administrator"},
    {.code = 50055,
     .outcome = IDP_REAUTH,
     .guidance = "the user's password expired: reset it, then sign in again",
     .sign_in = "the user's password has expired: change it, or use --flow device"},
    {.code = 50057,
     .outcome = IDP_REAUTH,
     .guidance = "the user is disabled: enable the user, then sign in again",
     .sign_in = "the user's account is disabled"},
    /* The app registration or the tenant must change; retrying cannot help. */
    {.code = 65001,
     .outcome = IDP_CONFIG,
     .guidance = "no consent: grant admin consent for the app's API permissions in the app "
                 "registration",
     .sign_in = "the app has no consent for these permissions: grant admin consent in the app "
                "registration"},
    {.code = 53003,
     .outcome = IDP_CONFIG,
     .guidance = "blocked by conditional access: ask the tenant administrator to exclude this "
                 "sign-in",
     .sign_in = "blocked by conditional access: the tenant administrator must allow this "
                "sign-in"},
    {.code = 7000218,
     .outcome = IDP_CONFIG,
     .guidance = "the app registration has no credential for this flow: enable \"Allow public "
                 "client flows\" (Authentication) or give the account a secret or certificate",
     .sign_in = "the app registration must allow this flow: enable \"Allow public client "
                "flows\" (Authentication blade)"},
    {.code = 700025,
     .outcome = IDP_CONFIG,
     .guidance = "the app registration is a public client: remove the account's secret or "
                 "certificate, or turn off \"Allow public client flows\"",
     .sign_in = "the app is a public client and must not be given a secret"},
    {.code = 7000215,
     .outcome = IDP_CONFIG,
     .guidance = "the client secret is invalid: add a new secret (Certificates & secrets) and "
                 "store its value, not its id",
     .sign_in = "the client secret is wrong: give the secret's value, not its id"},
    {.code = 7000222,
     .outcome = IDP_CONFIG,
     .guidance = "the client secret expired: add a new secret (Certificates & secrets) and "
                 "store it",
     .sign_in = "the client secret has expired: create a new one"},
    {.code = 700016,
     .outcome = IDP_CONFIG,
     .guidance = "application not found in the tenant: check the account's client id and "
                 "tenant, and that the app is registered (or consented) there",
     .sign_in = "the application was not found in the tenant: check the client id"},
    {.code = 500011,
     .outcome = IDP_CONFIG,
     .guidance = "the requested resource is not in the tenant: the account's cloud or Graph URL "
                 "names another cloud's Microsoft Graph (GCC High, DoD and 21Vianet tenants "
                 "need their own cloud), or the profile asks for an API the tenant does not have",
     .sign_in = "the requested resource is not in this tenant: set --cloud (or --graph) to the "
                "tenant's own cloud"},
    {.code = 90002,
     .outcome = IDP_CONFIG,
     .guidance = "tenant not found: check the account's tenant id or domain",
     .sign_in = "the tenant was not found: check the tenant"},
    {.code = 9001023,
     .outcome = IDP_CONFIG,
     .guidance = "this grant is not supported on /common or /consumers: set the account's "
                 "tenant to the tenant id or domain",
     .sign_in = "this flow is not supported on /common or /consumers: give the tenant id or "
                "domain"},
    {.code = 700027,
     .outcome = IDP_CONFIG,
     .guidance = "client assertion refused: check that the account's certificate is the one in "
                 "the app registration and still valid; PS256 is retried as RS256 "
                 "(assertion_alg RS256 skips it)",
     .sign_in = "the client assertion was refused (also as RS256): check that the certificate "
                "in the app registration is the account's (compare thumbprints with credbroker "
                "account show) and still valid, or upload it"},
    /* Microsoft's own throttle: wait, as for any transient failure. */
    {.code = 50196,
     .outcome = IDP_TRANSIENT,
     .guidance = "Entra detected a request loop (the same token request repeated too often): "
                 "backing off for minutes",
     .retry_after_min = AADSTS_LOOP_RETRY_AFTER_SEC},
    /* Sign-in failures only provisioning names: the OAuth "error" that comes with them
     * (invalid_grant, bad_verification_code, expired_token) classifies them. */
    {.code = 50034,
     .outcome = IDP_REAUTH,
     .sign_in = "no such user in this tenant: check the user name"},
    {.code = 70018,
     .outcome = IDP_REAUTH,
     .sign_in = "the device code was not recognised: start again"},
    {.code = 70020,
     .outcome = IDP_REAUTH,
     .sign_in = "the code expired before anyone signed in with it: run the command again"},
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
        const struct aadsts_entry *e = aadsts_find(code);

        return e ? e->retry_after_min : 0;
}

const struct aadsts_entry *aadsts_table(size_t *ret_n)
{
        *ret_n = ELEMENTSOF(entries);
        return entries;
}
