/* Unit tests for the AADSTS table: every code microsoft-identity.md names is there, in the right
 * class, with guidance that names what to change; and the one table still says, code for code,
 * what the two tables it replaced said (the classifier's and provisioning's). */
#include <stdio.h>
#include <string.h>

#include "aadsts.h"
#include "token-response.h"
#include "provision.h"
#include "tap.h"

/* The two tables as they stood before they were merged (commit 5a4c383), verbatim: the
 * classifier's (idp/aadsts.c) and provisioning's (admin/provision-errors.c). */
static const struct {
        uint32_t code;
        enum idp_outcome outcome;
        const char *guidance;
} old_classifier[] = {
    {50076, IDP_REAUTH,
     "multi-factor authentication is required: sign the account in again "
     "with the device code flow (ROPC cannot do MFA)"},
    {50079, IDP_REAUTH,
     "the user must enrol in multi-factor authentication, then sign in "
     "again with the device code flow"},
    {700082, IDP_REAUTH,
     "the refresh token expired after 90 days unused: sign the account in "
     "again"},
    {70008, IDP_REAUTH, "the refresh token expired or was revoked: sign the account in again"},
    {50173, IDP_REAUTH,
     "the grant was revoked (password change or session revocation): sign "
     "the account in again"},
    {70043, IDP_REAUTH,
     "a sign-in frequency policy requires a fresh sign-in: sign the account "
     "in again"},
    {50126, IDP_REAUTH,
     "wrong user name or password (a federated user also needs password "
     "hash sync and an HRD policy with AllowCloudPasswordValidation): "
     "provision the account again"},
    {50053, IDP_REAUTH, "the user is locked out: unlock the user, then sign in again"},
    {50055, IDP_REAUTH, "the user's password expired: reset it, then sign in again"},
    {50057, IDP_REAUTH, "the user is disabled: enable the user, then sign in again"},
    {65001, IDP_CONFIG,
     "no consent: grant admin consent for the app's API permissions in the "
     "app registration"},
    {53003, IDP_CONFIG,
     "blocked by conditional access: ask the tenant administrator to "
     "exclude this sign-in"},
    {7000218, IDP_CONFIG,
     "the app registration has no credential for this flow: enable \"Allow "
     "public client flows\" (Authentication) or give the account a secret "
     "or certificate"},
    {700025, IDP_CONFIG,
     "the app registration is a public client: remove the account's secret "
     "or certificate, or turn off \"Allow public client flows\""},
    {7000215, IDP_CONFIG,
     "the client secret is invalid: add a new secret (Certificates & "
     "secrets) and store its value, not its id"},
    {7000222, IDP_CONFIG,
     "the client secret expired: add a new secret (Certificates & secrets) "
     "and store it"},
    {700016, IDP_CONFIG,
     "application not found in the tenant: check the account's client id "
     "and tenant, and that the app is registered (or consented) there"},
    {90002, IDP_CONFIG, "tenant not found: check the account's tenant id or domain"},
    {9001023, IDP_CONFIG,
     "this grant is not supported on /common or /consumers: set the "
     "account's tenant to the tenant id or domain"},
    {700027, IDP_CONFIG,
     "client assertion refused: check that the account's certificate is the "
     "one in the app registration and still valid; PS256 is retried as "
     "RS256 (assertion_alg RS256 skips it)"},
    {50196, IDP_TRANSIENT,
     "Entra detected a request loop (the same token request repeated too "
     "often): backing off for minutes"},
};

static const struct {
        uint32_t code;
        const char *error;
        const char *text;
} old_sign_in[] = {
    {50076, "sign_in_failed",
     "this user needs multi-factor authentication, which the password flow "
     "cannot do: use --flow device"},
    {50079, "sign_in_failed",
     "this user must enrol in multi-factor authentication, which the "
     "password flow cannot do: use --flow device"},
    {50126, "sign_in_failed",
     "wrong user name or password (a federated user without password hash "
     "sync also gets this: use --flow device); not retried, so the account "
     "does not get locked"},
    {50034, "sign_in_failed", "no such user in this tenant: check the user name"},
    {50053, "sign_in_failed",
     "the user's account is locked: wait, or ask the tenant administrator"},
    {50055, "sign_in_failed", "the user's password has expired: change it, or use --flow device"},
    {50057, "sign_in_failed", "the user's account is disabled"},
    {53003, "needs_config",
     "blocked by conditional access: the tenant administrator must allow "
     "this sign-in"},
    {65001, "needs_config",
     "the app has no consent for these permissions: grant admin consent in "
     "the app registration"},
    {7000218, "needs_config",
     "the app registration must allow this flow: enable \"Allow public "
     "client flows\" (Authentication blade)"},
    {700025, "needs_config", "the app is a public client and must not be given a secret"},
    {7000215, "needs_config", "the client secret is wrong: give the secret's value, not its id"},
    {7000222, "needs_config", "the client secret has expired: create a new one"},
    {700027, "needs_config",
     "the client assertion was refused (also as RS256): check that the "
     "certificate in the app registration is the account's (compare "
     "thumbprints with credbroker account show) and still valid, or upload "
     "it"},
    {700016, "needs_config", "the application was not found in the tenant: check the client id"},
    {90002, "needs_config", "the tenant was not found: check the tenant"},
    {9001023, "needs_config",
     "this flow is not supported on /common or /consumers: give the tenant "
     "id or domain"},
    {70018, "sign_in_failed", "the device code was not recognised: start again"},
    {70020, "sign_in_failed",
     "the code expired before anyone signed in with it: run the command "
     "again"},
};

static const struct {
        uint32_t code;
        enum idp_outcome want;
        const char *guidance_mentions;
} cases[] = {
    {50076, IDP_REAUTH, "sign"},
    {50079, IDP_REAUTH, "enrol"},
    {700082, IDP_REAUTH, "90 days"},
    {70008, IDP_REAUTH, "sign"},
    {50173, IDP_REAUTH, "sign"},
    {70043, IDP_REAUTH, "sign"},
    {65001, IDP_CONFIG, "admin consent"},
    {53003, IDP_CONFIG, "conditional access"},
    {7000218, IDP_CONFIG, "Allow public client flows"},
    {700025, IDP_CONFIG, "public client"},
    {7000215, IDP_CONFIG, "add a new secret"},
    {7000222, IDP_CONFIG, "add a new secret"},
    {700016, IDP_CONFIG, "client id"},
    {90002, IDP_CONFIG, "tenant"},
    {9001023, IDP_CONFIG, "/common"},
    {50196, IDP_TRANSIENT, "backing off"},
    {50126, IDP_REAUTH, "password hash sync"},
    {50126, IDP_REAUTH, "AllowCloudPasswordValidation"},
    {700027, IDP_CONFIG, "RS256"},
};

static bool in_old_classifier(uint32_t code)
{
        for (size_t i = 0; i < sizeof(old_classifier) / sizeof(old_classifier[0]); i++)
                if (old_classifier[i].code == code)
                        return true;
        return false;
}

static bool in_old_sign_in(uint32_t code)
{
        for (size_t i = 0; i < sizeof(old_sign_in) / sizeof(old_sign_in[0]); i++)
                if (old_sign_in[i].code == code)
                        return true;
        return false;
}

static void parse_with_code(uint32_t code, const char *error, struct idp_result *r)
{
        char body[128];

        snprintf(body, sizeof(body), "{\"error\":\"%s\",\"error_codes\":[%u]}", error, code);
        *r = (struct idp_result){0};
        idp_parse_token_response(400, (const uint8_t *)body, strlen(body), 0, r);
}

/* Each code of the classifier's old table: the same outcome, the same sentence in the message,
 * the same backoff floor. */
static void test_merged_classifier(void)
{
        for (size_t i = 0; i < sizeof(old_classifier) / sizeof(old_classifier[0]); i++) {
                uint32_t code = old_classifier[i].code;
                char want[sizeof(((struct idp_result *)0)->message)];
                struct idp_result r;

                snprintf(want, sizeof(want), "HTTP 400, invalid_request (AADSTS%u): %s", code,
                         old_classifier[i].guidance);
                parse_with_code(code, "invalid_request", &r);
                is_int(r.outcome, old_classifier[i].outcome, "the old table's class");
                is_str(r.message, want, "the old table's guidance");
                is_int(r.retry_after, code == 50196 ? AADSTS_LOOP_RETRY_AFTER_SEC : 0,
                       "the old backoff floor");
                idp_result_clear(&r);
        }
}

/* The codes only provisioning knew stay unknown to the classifier: "error" decides. */
static void test_merged_provisioning_only(void)
{
        for (size_t i = 0; i < sizeof(old_sign_in) / sizeof(old_sign_in[0]); i++) {
                uint32_t code = old_sign_in[i].code;
                char want[64];
                struct idp_result r;

                if (in_old_classifier(code))
                        continue;
                snprintf(want, sizeof(want), "HTTP 400, invalid_scope (AADSTS%u)", code);
                parse_with_code(code, "invalid_scope", &r);
                is_int(r.outcome, IDP_SCOPES_REFUSED, "a provisioning-only code does not classify");
                is_str(r.message, want, "and adds no guidance");
                is_int(r.retry_after, 0, "and no backoff floor");
                idp_result_clear(&r);
        }
}

/* Each code of provisioning's old table, in both kinds of flow: the same admin error code and,
 * byte for byte, the same sentence. */
static void test_merged_sign_in(void)
{
        for (size_t i = 0; i < sizeof(old_sign_in) / sizeof(old_sign_in[0]); i++) {
                for (int password_flow = 0; password_flow <= 1; password_flow++) {
                        uint32_t code = old_sign_in[i].code;
                        struct idp_result r = {.outcome = IDP_TRANSIENT, .error_code = code};
                        bool mfa = code == 50076 || code == 50079;
                        char want[384], got[384];
                        const char *error;

                        snprintf(r.error, sizeof(r.error), "%s", "invalid_grant");
                        snprintf(r.message, sizeof(r.message), "%s", "the idp message");
                        if (mfa && !password_flow)
                                snprintf(want, sizeof(want), "Sign-in failed: the idp message.");
                        else
                                snprintf(want, sizeof(want), "Sign-in failed: %s (AADSTS%u).",
                                         old_sign_in[i].text, code);
                        error = provision_sign_in_error(&r, password_flow, got, sizeof(got));
                        is_str(error, mfa && !password_flow ? "unavailable" : old_sign_in[i].error,
                               "the old admin error code");
                        is_str(got, want, "the old sentence");
                }
        }
}

/* Codes added to the table after the two old tables were merged, with both sentences. */
static const uint32_t added_since_merge[] = {500011};

static bool added(uint32_t code)
{
        for (size_t i = 0; i < sizeof(added_since_merge) / sizeof(added_since_merge[0]); i++)
                if (added_since_merge[i] == code)
                        return true;
        return false;
}

/* Nothing else in the table: every row is one of the old tables' or a code added since. */
static void test_merged_rows(void)
{
        size_t n;
        const struct aadsts_entry *table = aadsts_table(&n);
        size_t union_n = sizeof(old_classifier) / sizeof(old_classifier[0]) +
                         sizeof(added_since_merge) / sizeof(added_since_merge[0]);

        for (size_t i = 0; i < sizeof(old_sign_in) / sizeof(old_sign_in[0]); i++)
                union_n += !in_old_classifier(old_sign_in[i].code);
        is_int(n, union_n, "one row per code of either old table, and the codes added since");
        for (size_t i = 0; i < n; i++) {
                if (added(table[i].code)) {
                        ok(table[i].guidance && table[i].sign_in && table[i].outcome == IDP_CONFIG,
                           "an added code has guidance, a sign-in sentence and needs_config");
                        continue;
                }
                bool classifies = table[i].guidance != NULL;
                is_int(classifies, in_old_classifier(table[i].code),
                       "a row has guidance exactly when the classifier knew the code");
                is_int(table[i].sign_in != NULL, in_old_sign_in(table[i].code),
                       "a row has a sign-in sentence exactly when provisioning had one");
        }
}

int main(void)
{
        test_merged_classifier();
        test_merged_provisioning_only();
        test_merged_sign_in();
        test_merged_rows();
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct aadsts_entry *e = aadsts_find(cases[i].code);

                ok(e != NULL, "the code is in the table");
                if (!e)
                        continue;
                is_int(e->code, cases[i].code, "the entry is the code's");
                is_int(e->outcome, cases[i].want, "classified as microsoft-identity.md says");
                ok(strstr(e->guidance, cases[i].guidance_mentions) != NULL,
                   cases[i].guidance_mentions);
                ok(strchr(e->guidance, '\n') == NULL && strlen(e->guidance) < 200,
                   "guidance is one line that fits an idp_result message");
        }
        /* Loop detection lifts after minutes: a one-second retry only extends it. */
        ok(aadsts_retry_after_min(50196) >= 120, "50196 waits minutes, not seconds");
        ok(aadsts_find(0) == NULL, "0 is no code");
        ok(aadsts_find(12345) == NULL, "an unknown code is left to the OAuth error");
        return done_testing();
}
