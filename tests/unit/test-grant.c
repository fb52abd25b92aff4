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
                is_int(grant_app_only_scope(cases[i].key, cases[i].generic, &scope), 0,
                       cases[i].key);
                is_str(scope, cases[i].want, "the app-only scope");
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

int main(void)
{
        json_init();
        test_app_only_scope();
        test_forms();
        test_credential_call();
        return done_testing();
}
