/* Unit tests for common/account-meta: every flow name (and the older "refresh_token"), the
 * endpoint and scope fields with their bounds, round trips, and endpoint resolution. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "account-meta.h"
#include "json.h"
#include "tap.h"

#define BASE "\"tenant\":\"contoso.onmicrosoft.com\",\"client_id\":\"11111111-2222\""

static int parse(const char *json, struct account_meta *m)
{
        *m = (struct account_meta){0};
        return account_meta_from_json(json, m);
}

static void test_flows(void)
{
        static const struct {
                const char *flow;
                int r;
                enum account_flow kind;
                bool app_only;
        } cases[] = {
            {"refresh_token", 0, ACCOUNT_FLOW_REFRESH_TOKEN, false},
            {"refresh-token", 0, ACCOUNT_FLOW_REFRESH_TOKEN, false},
            {"device", 0, ACCOUNT_FLOW_DEVICE, false},
            {"password", 0, ACCOUNT_FLOW_PASSWORD, false},
            {"client-secret", 0, ACCOUNT_FLOW_CLIENT_SECRET, true},
            {"client-certificate", 0, ACCOUNT_FLOW_CLIENT_CERTIFICATE, true},
            {"client_secret", -EINVAL, 0, false},
            {"Device", -EINVAL, 0, false},
            {"", -EINVAL, 0, false},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char json[256], what[128];
                struct account_meta m;
                int r;

                snprintf(json, sizeof(json), "{" BASE ",\"flow\":\"%s\"}", cases[i].flow);
                r = parse(json, &m);
                snprintf(what, sizeof(what), "flow \"%s\" parses as expected", cases[i].flow);
                is_int(r, cases[i].r, what);
                if (r == 0) {
                        is_int(m.flow_kind, cases[i].kind, "its kind");
                        ok(account_flow_is_app_only(m.flow_kind) == cases[i].app_only,
                           "app-only or delegated");
                }
                account_meta_clear(&m);
        }
}

static void test_fields(void)
{
        struct account_meta m, again;
        char *text = NULL, *url = NULL;

        is_int(parse("{" BASE ",\"flow\":\"device\",\"token_endpoint\":\"https://idp.example/"
                     "oauth/token\",\"device_endpoint\":\"https://idp.example/oauth/device\","
                     "\"scopes\":[\"mail.send\",\"openid\"],\"secret_expires_at\":1900000000}",
                     &m),
               0, "explicit endpoints, scopes and secret_expires_at parse");
        is_str(m.scopes, "mail.send openid", "scopes kept space separated");
        ok(account_meta_is_generic_oauth(&m), "an explicit token endpoint is a generic server");
        is_int(account_meta_token_endpoint(&m, "https://login.microsoftonline.com", &url), 0,
               "token endpoint");
        is_str(url, "https://idp.example/oauth/token", "the explicit one");
        free(url);
        is_int(account_meta_device_endpoint(&m, "https://login.microsoftonline.com", &url), 0,
               "device endpoint");
        is_str(url, "https://idp.example/oauth/device", "the explicit one");
        free(url);
        is_int(account_meta_to_json(&m, &text), 0, "prints");
        is_int(parse(text, &again), 0, "reparses");
        is_str(again.scopes, m.scopes, "scopes survive a round trip");
        is_int(again.secret_expires_at, 1900000000, "secret_expires_at survives a round trip");
        is_str(again.device_endpoint, m.device_endpoint, "device_endpoint survives");
        json_free_string(text);
        account_meta_clear(&again);
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"device\"}", &m), 0, "a Microsoft account");
        is_int(account_meta_token_endpoint(&m, "https://login.microsoftonline.com", &url), 0,
               "token endpoint from the authority");
        is_str(url, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
               "{authority}/{tenant}/oauth2/v2.0/token");
        free(url);
        is_int(account_meta_device_endpoint(&m, "https://login.microsoftonline.com", &url), 0,
               "device endpoint from the authority");
        is_str(url,
               "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
               "{authority}/{tenant}/oauth2/v2.0/devicecode");
        free(url);
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"device\",\"token_endpoint\":\"https://x/t\"}", &m), 0,
               "a generic server without a device endpoint");
        is_int(account_meta_device_endpoint(&m, "https://a", &url), -EOPNOTSUPP,
               "has no device flow");
        account_meta_clear(&m);
}

static void test_refused(void)
{
        static const char *const bad[] = {
            "{" BASE ",\"flow\":\"device\",\"token_endpoint\":\"http://x/t\"}",
            "{" BASE ",\"flow\":\"device\",\"device_endpoint\":\"https://x/d\"}",
            "{" BASE ",\"flow\":\"device\",\"token_endpoint\":\"https://x/t?a=b\"}",
            "{" BASE ",\"flow\":\"device\",\"scopes\":\"Mail.Send\"}",
            "{" BASE ",\"flow\":\"device\",\"scopes\":[\"a b\"]}",
            "{" BASE ",\"flow\":\"device\",\"scopes\":[\"a\\\"b\"]}",
            "{" BASE ",\"flow\":\"device\",\"scopes\":[1]}",
            "{" BASE ",\"flow\":\"device\",\"scopes\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\","
            "\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
            "{" BASE ",\"flow\":\"device\",\"secret_expires_at\":-1}",
            "{" BASE ",\"flow\":\"device\",\"secret_expires_at\":\"1\"}",
            "{" BASE ",\"flow\":\"device\",\"token_endpoint\":5}",
            "{" BASE ",\"flow\":\"client-certificate\",\"assertion_alg\":\"HS256\"}",
            "{" BASE ",\"flow\":\"client-certificate\",\"assertion_alg\":\"ps256\"}",
            "{" BASE ",\"flow\":\"client-secret\",\"client_auth\":\"digest\"}",
            "{" BASE ",\"flow\":\"client-secret\",\"client_auth\":true}",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct account_meta m;
                char what[64];
                snprintf(what, sizeof(what), "refused: case %zu", i);
                is_int(parse(bad[i], &m), -EINVAL, what);
        }
}

/* assertion_alg and client_auth: defaults, parsed values, and a round trip. */
static void test_credential_settings(void)
{
        struct account_meta m, again;
        char *text = NULL;

        is_int(parse("{" BASE ",\"flow\":\"client-certificate\"}", &m), 0, "no settings");
        is_int(m.assertion_alg_kind, ACCOUNT_ASSERTION_PS256, "PS256 by default");
        is_int(m.client_auth_kind, ACCOUNT_CLIENT_AUTH_POST, "secret in the body by default");
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"client-certificate\",\"assertion_alg\":\"RS256\","
                     "\"client_auth\":\"basic\"}",
                     &m),
               0, "RS256 and basic");
        is_int(m.assertion_alg_kind, ACCOUNT_ASSERTION_RS256, "RS256 parsed");
        is_int(m.client_auth_kind, ACCOUNT_CLIENT_AUTH_BASIC, "basic parsed");
        is_int(account_meta_to_json(&m, &text), 0, "prints");
        is_int(parse(text, &again), 0, "reads back");
        is_int(again.assertion_alg_kind, ACCOUNT_ASSERTION_RS256, "RS256 survives a round trip");
        is_int(again.client_auth_kind, ACCOUNT_CLIENT_AUTH_BASIC, "basic survives a round trip");
        free(text);
        account_meta_clear(&again);
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"client-certificate\",\"assertion_alg\":\"PS256\","
                     "\"client_auth\":\"post\"}",
                     &m),
               0, "PS256 and post named");
        is_int(m.assertion_alg_kind, ACCOUNT_ASSERTION_PS256, "PS256 parsed");
        is_int(m.client_auth_kind, ACCOUNT_CLIENT_AUTH_POST, "post parsed");
        account_meta_clear(&m);
}

/* An account's cloud: stored and read back, its endpoints and default scopes, and its
 * precedence (explicit URLs, then the account's cloud, then the configured defaults). */
static void test_cloud(void)
{
        struct account_meta m;
        char *url = NULL, *scopes = NULL, *json = NULL;

        is_int(parse("{" BASE ",\"flow\":\"device\",\"cloud\":\"usgov-high\"}", &m), 0,
               "cloud usgov-high");
        is_int(m.cloud_kind, CLOUD_USGOV_HIGH, "its kind");
        is_int(account_meta_token_endpoint(&m, "https://login.microsoftonline.com", &url), 0,
               "token endpoint");
        is_str(url, "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token",
               "the cloud's authority beats the configured one");
        free(url);
        is_str(account_meta_graph_url(&m, "https://graph.microsoft.com"),
               "https://graph.microsoft.us", "the cloud's Graph");
        is_str(account_meta_graph_resource(&m, "https://graph.microsoft.com", CLOUD_GLOBAL),
               "https://graph.microsoft.us", "the cloud's scope prefix");
        is_int(account_meta_default_scopes(&m, "https://graph.microsoft.us", &scopes), 0,
               "default scopes");
        is_str(scopes, "https://graph.microsoft.us/Mail.Send", "delegated: Mail.Send");
        free(scopes);
        is_int(account_meta_to_json(&m, &json), 0, "to JSON");
        ok(json && strstr(json, "\"cloud\":\"usgov-high\""), "the cloud is stored");
        free(json);
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"client-secret\",\"cloud\":\"china\","
                     "\"graph\":\"https://127.0.0.1:9\",\"authority\":\"https://127.0.0.1:9\"}",
                     &m),
               0, "cloud with explicit URLs");
        is_str(account_meta_graph_url(&m, "https://graph.microsoft.com"), "https://127.0.0.1:9",
               "explicit graph wins");
        is_str(account_meta_graph_resource(&m, "https://graph.microsoft.com", CLOUD_GLOBAL),
               "https://microsoftgraph.chinacloudapi.cn", "scopes of the account's cloud");
        is_int(account_meta_default_scopes(&m, "https://microsoftgraph.chinacloudapi.cn", &scopes),
               0, "app-only default");
        is_str(scopes, "https://microsoftgraph.chinacloudapi.cn/.default", "app-only: .default");
        free(scopes);
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"password\",\"username\":\"alice@contoso.com\","
                     "\"mailbox\":\"alerts@contoso.com\"}",
                     &m),
               0, "a user who sends as another mailbox");
        is_int(account_meta_default_scopes(&m, "https://graph.microsoft.com", &scopes), 0,
               "its default scopes");
        is_str(scopes,
               "https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/Mail.Send.Shared",
               "Mail.Send.Shared for /users/{mailbox}");
        free(scopes);
        account_meta_clear(&m);
        is_int(parse("{" BASE ",\"flow\":\"password\",\"username\":\"Alerts@Contoso.com\","
                     "\"mailbox\":\"alerts@contoso.com\"}",
                     &m),
               0, "a user who is the mailbox");
        is_int(account_meta_default_scopes(&m, "https://graph.microsoft.com", &scopes), 0,
               "its default scopes");
        is_str(scopes, "https://graph.microsoft.com/Mail.Send", "Mail.Send only");
        free(scopes);
        account_meta_clear(&m);

        is_int(parse("{" BASE ",\"flow\":\"device\"}", &m), 0, "no cloud");
        is_str(account_meta_graph_resource(&m, "https://127.0.0.1:9", CLOUD_DOD),
               "https://dod-graph.microsoft.us", "the configured cloud");
        is_str(account_meta_graph_resource(&m, "https://graph.microsoft.us", CLOUD_GLOBAL),
               "https://graph.microsoft.us", "the configured Graph host");
        account_meta_clear(&m);

        ok(parse("{" BASE ",\"flow\":\"device\",\"cloud\":\"gcc\"}", &m) == -EINVAL,
           "an unknown cloud is refused");
        ok(parse("{" BASE ",\"flow\":\"device\",\"cloud\":1}", &m) == -EINVAL,
           "a cloud that is no string is refused");
}

int main(void)
{
        json_init();
        test_flows();
        test_fields();
        test_refused();
        test_credential_settings();
        test_cloud();
        return done_testing();
}
