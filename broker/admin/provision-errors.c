/* What a failed sign-in tells the administrator (microsoft-identity.md's error table, the
 * emulator's ROPC codes): which error code the admin reply carries and what to do about it. */
#include <stdio.h>
#include <string.h>

#include "idp.h"
#include "provision.h"

struct sign_in_failure {
        uint32_t code;
        const char *error; /* the admin protocol's error code */
        const char *text;
};

static const struct sign_in_failure failures[] = {
    {50076, "sign_in_failed",
     "this user needs multi-factor authentication, which the password flow cannot do: use "
     "--flow device"},
    {50079, "sign_in_failed",
     "this user must enrol in multi-factor authentication, which the password flow cannot do: "
     "use --flow device"},
    {50126, "sign_in_failed",
     "wrong user name or password (a federated user without password hash sync also gets this: "
     "use --flow device); not retried, so the account does not get locked"},
    {50034, "sign_in_failed", "no such user in this tenant: check the user name"},
    {50053, "sign_in_failed",
     "the user's account is locked: wait, or ask the tenant administrator"},
    {50055, "sign_in_failed", "the user's password has expired: change it, or use --flow device"},
    {50057, "sign_in_failed", "the user's account is disabled"},
    {53003, "needs_config",
     "blocked by conditional access: the tenant administrator must allow this sign-in"},
    {65001, "needs_config",
     "the app has no consent for these permissions: grant admin consent in the app registration"},
    {7000218, "needs_config",
     "the app registration must allow this flow: enable \"Allow public client flows\" "
     "(Authentication blade)"},
    {700025, "needs_config", "the app is a public client and must not be given a secret"},
    {7000215, "needs_config", "the client secret is wrong: give the secret's value, not its id"},
    {7000222, "needs_config", "the client secret has expired: create a new one"},
    {700027, "needs_config",
     "the client assertion was refused (also as RS256): check that the certificate in the "
     "app registration is the account's (compare thumbprints with credbroker account show) "
     "and still valid, or upload it"},
    {700016, "needs_config", "the application was not found in the tenant: check the client id"},
    {90002, "needs_config", "the tenant was not found: check the tenant"},
    {9001023, "needs_config",
     "this flow is not supported on /common or /consumers: give the tenant id or domain"},
    {70018, "sign_in_failed", "the device code was not recognised: start again"},
    {70020, "sign_in_failed",
     "the code expired before anyone signed in with it: run the command again"},
};

const char *provision_sign_in_error(const struct idp_result *result, bool password_flow,
                                    char *message, size_t size)
{
        const char *error = result->error;

        for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
                if (failures[i].code != result->error_code)
                        continue;
                /* Outside ROPC, MFA is a reason to sign in again, not to change the flow. */
                if (!password_flow && (result->error_code == 50076 || result->error_code == 50079))
                        break;
                snprintf(message, size, "Sign-in failed: %s (AADSTS%u).", failures[i].text,
                         result->error_code);
                return failures[i].error;
        }
        if (strcmp(error, "authorization_declined") == 0 || strcmp(error, "access_denied") == 0) {
                snprintf(message, size, "Sign-in failed: the user declined the sign-in.");
                return "sign_in_failed";
        }
        if (strcmp(error, "expired_token") == 0) {
                snprintf(message, size,
                         "Sign-in failed: the code expired before anyone signed in with it: run "
                         "the command again.");
                return "sign_in_failed";
        }
        if (strcmp(error, "bad_verification_code") == 0) {
                snprintf(message, size,
                         "Sign-in failed: the device code was not recognised: start again.");
                return "sign_in_failed";
        }
        snprintf(message, size, "Sign-in failed: %s.", result->message);
        switch (result->outcome) {
        case IDP_TRANSIENT:
                return "unavailable";
        case IDP_CONFIG:
                return "needs_config";
        default:
                return "sign_in_failed";
        }
}
