/* Unit tests for token-response parsing and classification (microsoft-identity.md). */
#include <string.h>

#include "idp.h"
#include "json.h"
#include "tap.h"

static struct idp_result parse(long status, const char *body, uint32_t retry_after)
{
        struct idp_result r = {0};

        idp_parse_token_response(status, (const uint8_t *)body, strlen(body), retry_after, &r);
        return r;
}

static const char ok_body[] =
    "{\"token_type\":\"Bearer\",\"scope\":\"https://graph.microsoft.com/Mail.Send "
    "offline_access\",\"expires_in\":3599,\"ext_expires_in\":3599,"
    "\"access_token\":\"eyJ0.eyJ1.sig\",\"refresh_token\":\"0.AAAA-rt\"}";

static const struct {
        long status;
        const char *body;
        enum idp_outcome want;
        uint32_t code;
        const char *what;
} cases[] = {
    {400,
     "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS700082: The refresh token "
     "has expired due to inactivity.\\r\\nTrace ID: x\",\"error_codes\":[700082],"
     "\"suberror\":\"bad_token\"}",
     IDP_REAUTH, 700082, "700082 expired refresh token needs reauth"},
    {400, "{\"error\":\"invalid_grant\",\"error_codes\":[65001]}", IDP_CONFIG, 65001,
     "65001 consent is configuration, despite invalid_grant"},
    {401, "{\"error\":\"invalid_client\",\"error_codes\":[7000218]}", IDP_CONFIG, 7000218,
     "7000218 public client flows"},
    {400, "{\"error\":\"interaction_required\",\"error_codes\":[50076]}", IDP_REAUTH, 50076,
     "50076 MFA"},
    {400, "{\"error\":\"invalid_grant\"}", IDP_REAUTH, 0, "invalid_grant without codes"},
    {400, "{\"error\":\"temporarily_unavailable\"}", IDP_TRANSIENT, 0, "temporarily_unavailable"},
    {503, "<html>busy</html>", IDP_TRANSIENT, 0, "5xx with an HTML body"},
    {429, "", IDP_TRANSIENT, 0, "429 with no body"},
    {400, "{\"error\":\"invalid_request\",\"error_codes\":[90002]}", IDP_CONFIG, 90002,
     "90002 tenant not found"},
    {400, "[]", IDP_CONFIG, 0, "400 with a non-object body"},
    {200, "{\"token_type\":\"Bearer\",\"expires_in\":3599}", IDP_TRANSIENT, 0,
     "200 without access_token"},
    {200, "{\"token_type\":\"Bearer\",\"access_token\":\"a b\",\"expires_in\":3599}", IDP_TRANSIENT,
     0, "access_token with a space"},
    {200, "{\"token_type\":\"Bearer\",\"access_token\":\"a\\\"b\",\"expires_in\":3599}",
     IDP_TRANSIENT, 0, "access_token with a quote"},
    {200, "{\"token_type\":\"mac\",\"access_token\":\"abc\",\"expires_in\":3599}", IDP_TRANSIENT, 0,
     "token_type other than Bearer"},
    {200, "{\"token_type\":\"Bearer\",\"access_token\":\"abc\",\"expires_in\":-5}", IDP_TRANSIENT,
     0, "negative expires_in"},
    {200, "{\"token_type\":\"Bearer\",\"access_token\":\"abc\",\"expires_in\":1.5}", IDP_TRANSIENT,
     0, "fractional expires_in"},
    {200, "{\"token_type\":\"Bearer\",\"access_token\":\"abc\",\"expires_in\":99999999}",
     IDP_TRANSIENT, 0, "absurd expires_in"},
    {200, "{\"token_type\":\"Bearer\",\"access_token\":\"abc\"", IDP_TRANSIENT, 0,
     "truncated body"},
    {200,
     "{\"token_type\":\"Bearer\",\"access_token\":\"abc\",\"expires_in\":60,"
     "\"refresh_token\":7}",
     IDP_TRANSIENT, 0, "refresh_token of the wrong type"},
};

int main(void)
{
        struct idp_result r;

        json_init();

        r = parse(200, ok_body, 0);
        is_int(r.outcome, IDP_OK, "Microsoft's success response parses");
        is_str(secret_str(r.access_token), "eyJ0.eyJ1.sig", "access token taken");
        ok(r.refresh_token && strcmp(secret_str(r.refresh_token), "0.AAAA-rt") == 0,
           "rotated refresh token taken");
        is_int(r.expires_in, 3599, "expires_in");
        is_str(r.scope, "https://graph.microsoft.com/Mail.Send offline_access", "scope");
        idp_result_clear(&r);

        r = parse(200, "{\"token_type\":\"bearer\",\"access_token\":\"x\",\"expires_in\":\"3600\"}",
                  0);
        is_int(r.outcome, IDP_OK, "string expires_in and lower-case bearer are accepted");
        ok(r.refresh_token == NULL, "no refresh token when none is sent");
        idp_result_clear(&r);

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                r = parse(cases[i].status, cases[i].body, 7);
                is_int(r.outcome, cases[i].want, cases[i].what);
                if (cases[i].code)
                        is_int(r.error_code, cases[i].code, "error code kept");
                ok(r.access_token == NULL && r.refresh_token == NULL, "no secret kept on failure");
                ok(strlen(r.message) > 0, "a message for the log");
                is_int(r.retry_after, 7, "retry_after passed through");
                idp_result_clear(&r);
        }

        /* AADSTS50196 (loop detected, Entra's wording and shape; no Retry-After): transient,
         * but with a floor of minutes on the wait, and a longer Retry-After still wins. */
        static const char loop[] =
            "{\"error\":\"invalid_request\",\"error_description\":\"AADSTS50196: The server "
            "terminated an operation because it encountered a client request loop.\","
            "\"error_codes\":[50196]}";
        r = parse(400, loop, 0);
        is_int(r.outcome, IDP_TRANSIENT, "50196 is transient");
        ok(r.retry_after >= 120, "50196 waits minutes without a Retry-After");
        ok(strstr(r.message, "loop") != NULL, "50196's message names the loop");
        idp_result_clear(&r);
        r = parse(400, loop, 3000);
        is_int(r.retry_after, 3000, "a longer Retry-After than the floor is kept");
        idp_result_clear(&r);
        r = parse(400, "{\"error\":\"invalid_grant\",\"error_codes\":[50126]}", 0);
        is_int(r.retry_after, 0, "other codes get no floor");
        ok(strstr(r.message, "AllowCloudPasswordValidation") != NULL,
           "50126 names the HRD policy setting");
        idp_result_clear(&r);

        /* Retry-After: seconds or an HTTP date, bounded to an hour. */
        is_int(idp_parse_retry_after("30", 1000), 30, "Retry-After in seconds");
        is_int(idp_parse_retry_after("0", 1000), 0, "Retry-After 0");
        is_int(idp_parse_retry_after("999999", 1000), 3600, "Retry-After seconds are bounded");
        is_int(idp_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111757), 20,
               "Retry-After as an HTTP date, 20 s ahead");
        is_int(idp_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111797), 0,
               "Retry-After as an HTTP date in the past");
        is_int(idp_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784011797), 3600,
               "Retry-After as a far HTTP date is bounded");
        is_int(idp_parse_retry_after("soon", 1000), 0, "an unreadable Retry-After is ignored");
        is_int(idp_parse_retry_after("-5", 1000), 0, "a negative Retry-After is ignored");

        r = parse(400, "{\"error\":\"invalid_grant\\n<script>\",\"error_codes\":[1]}", 0);
        ok(strchr(r.message, '\n') == NULL && strchr(r.message, '<') == NULL,
           "hostile error strings are neutralised before they reach a log line");
        idp_result_clear(&r);
        return done_testing();
}
