/* Unit tests for broker/grant: the scope an app-only request asks for, and the form bodies of
 * the password, device code and client credentials grants. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grant.h"
#include "json.h"
#include "tap.h"

static void test_app_only_scope(void)
{
        static const struct {
                const char *key;
                bool generic;
                const char *want;
        } cases[] = {
            {"https://graph.microsoft.com/Mail.Send", false,
             "https://graph.microsoft.com/.default"},
            {"Mail.Send", false, "https://graph.microsoft.com/.default"},
            {"https://graph.microsoft.com/.default", false, "https://graph.microsoft.com/.default"},
            {"https://graph.microsoft.com/Mail.Send https://outlook.office.com/SMTP.Send", false,
             "https://graph.microsoft.com/.default"},
            {"api://11111111-2222/access", false, "api://11111111-2222/.default"},
            {"https://outlook.office365.com", false, "https://outlook.office365.com/.default"},
            {"Mail.Send https://graph.microsoft.com/x", false,
             "https://graph.microsoft.com/.default"},
            {"mail.send openid", true, "mail.send openid"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *scope = NULL;
                is_int(grant_app_only_scope(cases[i].key, "https://graph.microsoft.com",
                                            cases[i].generic, &scope),
                       0, cases[i].key);
                is_str(scope, cases[i].want, "the app-only scope");
                free(scope);
        }
        /* A bare name is Graph's in the account's cloud; a full one keeps its own resource. */
        static const struct {
                const char *key, *resource, *want;
        } clouds[] = {
            {"Mail.Send", "https://graph.microsoft.us", "https://graph.microsoft.us/.default"},
            {"Mail.Send", "https://dod-graph.microsoft.us",
             "https://dod-graph.microsoft.us/.default"},
            {"Mail.Send", "https://microsoftgraph.chinacloudapi.cn",
             "https://microsoftgraph.chinacloudapi.cn/.default"},
            {"https://graph.microsoft.us/Mail.Send", "https://graph.microsoft.com",
             "https://graph.microsoft.us/.default"},
        };
        for (size_t i = 0; i < sizeof(clouds) / sizeof(clouds[0]); i++) {
                char *scope = NULL;
                is_int(grant_app_only_scope(clouds[i].key, clouds[i].resource, false, &scope), 0,
                       clouds[i].resource);
                is_str(scope, clouds[i].want, "the app-only scope in that cloud");
                free(scope);
        }
}

static bool has(const struct secret *form, const char *part)
{
        return strstr(secret_str(form), part) != NULL;
}

static void test_forms(void)
{
        struct secret *password = NULL, *form = NULL, *code = NULL, *assertion = NULL;

        secret_new_from("p&ss=word", 9, &password);
        is_int(grant_form_password("cid", "alice@contoso.com", password,
                                   "https://graph.microsoft.com/Mail.Send offline_access", false,
                                   &form),
               0, "password form");
        ok(has(form, "grant_type=password&client_id=cid&username=alice%40contoso.com"),
           "grant, client and user name, encoded");
        ok(has(form, "&password=p%26ss%3Dword"), "the password, encoded");
        ok(has(form, "scope=https%3A%2F%2Fgraph.microsoft.com%2FMail.Send%20offline_access"),
           "the scope");
        ok(has(form, "client_info=1"), "Microsoft gets client_info");
        secret_free(form);
        is_int(grant_form_password("cid", "u", password, "", true, &form), 0,
               "generic password form without a scope");
        ok(!has(form, "scope=") && !has(form, "client_info"), "no empty scope, no client_info");
        secret_free(form);

        secret_new_from("DC-123", 6, &code);
        is_int(grant_form_device_code("cid", code, false, &form), 0, "device code form");
        ok(has(form, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"),
           "the RFC 8628 grant type");
        ok(has(form, "device_code=DC-123"), "the device code");
        secret_free(form);

        secret_new_from("eyJ.a.b", 7, &assertion);
        is_int(grant_form_client_credentials("cid", "https://graph.microsoft.com/.default",
                                             GRANT_CLIENT_ASSERTION, assertion, &form),
               0, "client credentials with an assertion");
        ok(has(form, "grant_type=client_credentials"), "the grant");
        ok(has(form, "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type"
                     "%3Ajwt-bearer"),
           "the RFC 7523 assertion type");
        ok(has(form, "client_assertion=eyJ.a.b") && !has(form, "client_secret"),
           "the assertion, no secret");
        secret_free(form);
        is_int(grant_form_client_credentials("cid", "s", GRANT_CLIENT_SECRET, password, &form), 0,
               "client credentials with a secret");
        ok(has(form, "client_secret=p%26ss%3Dword") && !has(form, "client_assertion"),
           "the secret, no assertion");
        secret_free(form);

        secret_free(password);
        secret_free(code);
        secret_free(assertion);
}

/* The refresh request's body, byte for byte: the engine sends it every refresh. */
static void test_refresh_form(void)
{
        struct secret *rt = NULL, *form = NULL;
        struct idp_refresh_grant g = {
            .token_endpoint = "https://login.example/t",
            .client_id = "cid",
            .scope = "https://graph.microsoft.com/Mail.Send offline_access",
        };

        secret_new_from("RT/x+y", 6, &rt);
        g.refresh_token = rt;
        is_int(grant_form_refresh(&g, &form), 0, "refresh form");
        is_str(secret_str(form),
               "grant_type=refresh_token&client_id=cid&refresh_token=RT%2Fx%2By&scope=https%3A%2F%"
               "2Fgraph.microsoft.com%2FMail.Send%20offline_access&client_info=1",
               "grant, client, token and scope encoded; Microsoft gets client_info");
        secret_free(form);
        g.generic = true;
        g.scope = "";
        is_int(grant_form_refresh(&g, &form), 0, "generic refresh form");
        is_str(secret_str(form),
               "grant_type=refresh_token&client_id=cid&refresh_token=RT%2Fx%2By&scope=",
               "a generic server gets no client_info; an empty scope is still sent");
        secret_free(form);
        secret_free(rt);
}

static void test_credential_call(void)
{
        struct grant_credential_call call;
        char long_url[STORE_AUDIENCE_MAX + 16];

        is_int(grant_credential_call_init(&call, "app", ACCOUNT_FLOW_DEVICE, "https://x/t", "c"),
               -EINVAL, "a delegated flow has no app-only credential");
        memset(long_url, 'a', sizeof(long_url) - 1);
        long_url[sizeof(long_url) - 1] = 0;
        is_int(grant_credential_call_init(&call, "app", ACCOUNT_FLOW_CLIENT_CERTIFICATE, long_url,
                                          "c"),
               -EINVAL, "an audience over the bound is refused");
        is_int(grant_credential_call_init(&call, "app", ACCOUNT_FLOW_CLIENT_CERTIFICATE,
                                          "https://x/t", "c"),
               0, "a certificate account");
}

static void check_granted(const char *key, const char *granted, const char *want, const char *what)
{
        char *out = NULL;

        is_int(grant_granted_scope(key, granted, &out), 0, what);
        if (want)
                is_str(out, want, what);
        else
                ok(out == NULL, what);
        free(out);
}

/* Entra's "scope": Graph's short names, openid/profile/email added, offline_access left out. */
static void test_granted_scope(void)
{
        check_granted("https://graph.microsoft.com/Mail.Send", "Mail.Send openid profile email",
                      "https://graph.microsoft.com/Mail.Send", "a short Graph name is expanded");
        check_granted("https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/User.Read",
                      "User.Read Mail.Send",
                      "https://graph.microsoft.com/User.Read https://graph.microsoft.com/Mail.Send",
                      "each short name becomes its own requested scope");
        check_granted("https://graph.microsoft.us/Mail.Send", "mail.send email",
                      "https://graph.microsoft.us/Mail.Send",
                      "a national cloud's Graph, matched without case");
        check_granted("https://graph.microsoft.com/Mail.Send",
                      "https://graph.microsoft.com/Mail.Send",
                      "https://graph.microsoft.com/Mail.Send", "a full name stays as it is");
        check_granted("mail.send read", "read mail.send", "read mail.send",
                      "a generic server's plain scopes stay as they are");
        check_granted("https://graph.microsoft.com/Mail.Send",
                      "openid profile email offline_access", NULL,
                      "only OpenID scopes: the scope key is reported");
        check_granted("https://graph.microsoft.com/Mail.Send", NULL, NULL,
                      "no scope in the answer");
}

/* RFC 6749 §2.3.1: form-urlencode both parts, then base64 "id:secret". */
static void test_basic_authorization(void)
{
        struct secret *secret = NULL, *header = NULL;

        is_int(secret_new_from("s3cr:t +/%", 10, &secret), 0, "secret");
        is_int(grant_basic_authorization("my client", secret, &header), 0, "header built");
        /* base64("my+client:s3cr%3At+%2B%2F%25") */
        is_str(secret_str(header), "Authorization: Basic bXkrY2xpZW50OnMzY3IlM0F0KyUyQiUyRiUyNQ==",
               "client id and secret form-encoded, then base64");
        secret_free(header);
        secret_free(secret);
        is_int(secret_new_from("ab", 2, &secret), 0, "secret");
        is_int(grant_basic_authorization("c", secret, &header), 0, "short header built");
        is_str(secret_str(header), "Authorization: Basic YzphYg==", "padding");
        secret_free(header);
        secret_free(secret);
}

/* AADSTS700027 for a PS256 assertion: remembered, RS256 next, transient; not for RS256. */
static void test_assertion_fallback(void)
{
        struct account_meta meta = {.assertion_alg_kind = ACCOUNT_ASSERTION_PS256};
        struct grant_credential_call call;
        struct idp_result result = {.outcome = IDP_CONFIG, .error_code = 700027};

        grant_assertion_fallbacks_clear();
        is_int(grant_credential_call_init(&call, "app", ACCOUNT_FLOW_CLIENT_CERTIFICATE,
                                          "https://login.example/t/oauth2/v2.0/token", "cid"),
               0, "init");
        grant_credential_call_set_alg(&call, &meta);
        is_int(call.alg, STORE_ASSERTION_PS256, "PS256 by default");
        ok(grant_credential_refused(&call, &result), "700027 for PS256 falls back");
        is_int(result.outcome, IDP_TRANSIENT, "and is retried soon");
        is_int(call.alg, STORE_ASSERTION_RS256, "with RS256");
        result = (struct idp_result){.outcome = IDP_CONFIG, .error_code = 700027};
        ok(!grant_credential_refused(&call, &result), "700027 for RS256 is final");
        is_int(result.outcome, IDP_CONFIG, "and stays a configuration error");

        is_int(grant_credential_call_init(&call, "app", ACCOUNT_FLOW_CLIENT_CERTIFICATE,
                                          "https://login.example/t/oauth2/v2.0/token", "cid"),
               0, "init again");
        grant_credential_call_set_alg(&call, &meta);
        is_int(call.alg, STORE_ASSERTION_RS256, "the account keeps RS256 once refused");
        is_int(grant_credential_call_init(&call, "other", ACCOUNT_FLOW_CLIENT_CERTIFICATE,
                                          "https://login.example/t/oauth2/v2.0/token", "cid"),
               0, "another account");
        grant_credential_call_set_alg(&call, &meta);
        is_int(call.alg, STORE_ASSERTION_PS256, "another account still sends PS256");
        meta.assertion_alg_kind = ACCOUNT_ASSERTION_RS256;
        grant_credential_call_set_alg(&call, &meta);
        is_int(call.alg, STORE_ASSERTION_RS256, "the account setting selects RS256");
        result = (struct idp_result){.outcome = IDP_CONFIG, .error_code = 7000215};
        call.alg = STORE_ASSERTION_PS256;
        ok(!grant_credential_refused(&call, &result), "other codes do not fall back");
        grant_assertion_fallbacks_clear();
}

int main(void)
{
        json_init();
        test_app_only_scope();
        test_forms();
        test_refresh_form();
        test_credential_call();
        test_granted_scope();
        test_basic_authorization();
        test_assertion_fallback();
        return done_testing();
}
