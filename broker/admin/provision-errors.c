/* What a failed sign-in tells the administrator: which error code the admin reply carries and
 * what to do about it. The sentence for an AADSTS code comes from the one AADSTS table
 * (idp/aadsts.c); the OAuth errors of the device flow and the fallback are here. */
#include <stdio.h>
#include <string.h>

#include "aadsts.h"
#include "idp.h"
#include "provision.h"

const char *provision_sign_in_error(const struct idp_result *result, bool password_flow,
                                    char *message, size_t size)
{
        const struct aadsts_entry *known = aadsts_find(result->error_code);
        const char *error = result->error;

        /* Outside ROPC, MFA is a reason to sign in again, not to change the flow. */
        if (known && known->sign_in && (password_flow || !known->sign_in_password_only)) {
                snprintf(message, size, "Sign-in failed: %s (AADSTS%u).", known->sign_in,
                         result->error_code);
                return known->outcome == IDP_CONFIG ? "needs_config" : "sign_in_failed";
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
