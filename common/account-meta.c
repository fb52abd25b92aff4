/* Account metadata JSON; see account-meta.h. */
#include "account-meta.h"

#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "util.h"

static const char *const flow_names[] = {
    [ACCOUNT_FLOW_REFRESH_TOKEN] = "refresh-token",
    [ACCOUNT_FLOW_DEVICE] = "device",
    [ACCOUNT_FLOW_PASSWORD] = "password",
    [ACCOUNT_FLOW_CLIENT_SECRET] = "client-secret",
    [ACCOUNT_FLOW_CLIENT_CERTIFICATE] = "client-certificate",
};

int account_flow_from_string(const char *s, enum account_flow *ret)
{
        if (!s)
                return -EINVAL;
        /* Accounts imported before there were other flows say "refresh_token". */
        if (strcmp(s, "refresh_token") == 0) {
                *ret = ACCOUNT_FLOW_REFRESH_TOKEN;
                return 0;
        }
        for (size_t i = 0; i < sizeof(flow_names) / sizeof(flow_names[0]); i++)
                if (strcmp(s, flow_names[i]) == 0) {
                        *ret = (enum account_flow)i;
                        return 0;
                }
        return -EINVAL;
}

const char *account_flow_to_string(enum account_flow f)
{
        return (size_t)f < sizeof(flow_names) / sizeof(flow_names[0]) ? flow_names[f] : "unknown";
}

bool account_flow_is_app_only(enum account_flow f)
{
        return f == ACCOUNT_FLOW_CLIENT_SECRET || f == ACCOUNT_FLOW_CLIENT_CERTIFICATE;
}

void account_meta_clear(struct account_meta *m)
{
        free(m->tenant);
        free(m->client_id);
        free(m->flow);
        free(m->username);
        free(m->authority);
        free(m->graph);
        free(m->cloud);
        free(m->mailbox);
        free(m->token_endpoint);
        free(m->device_endpoint);
        free(m->scopes);
        free(m->assertion_alg);
        free(m->client_auth);
        memset(m, 0, sizeof(*m));
}

/* Letters, digits and the few punctuation marks tenant ids, client ids, domains and UPNs use:
 * they end up in URLs and JSON, so nothing else is accepted. */
static bool is_plain(const char *s, size_t max, const char *extra)
{
        size_t n = 0;

        if (!s || !*s)
                return false;
        for (; s[n]; n++) {
                char c = s[n];
                if (n >= max)
                        return false;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || (extra && c && strchr(extra, c))))
                        return false;
        }
        return true;
}

static bool is_https_url(const char *s)
{
        return s && strncmp(s, "https://", 8) == 0 && strlen(s) < ACCOUNT_META_URL_MAX &&
               is_plain(s + 8, ACCOUNT_META_URL_MAX - 12, ":/_~%");
}

/* Space-separated scopes, each valid, at most ACCOUNT_META_SCOPES_MAX. */
static bool scopes_are_valid(const char *s)
{
        char scope[SCOPE_MAX_LEN + 1];
        size_t n = 0;

        if (!*s)
                return false;
        while (*s) {
                size_t len = strcspn(s, " ");
                if (len == 0 || len > SCOPE_MAX_LEN || ++n > ACCOUNT_META_SCOPES_MAX)
                        return false;
                memcpy(scope, s, len);
                scope[len] = 0;
                if (!scope_is_valid(scope))
                        return false;
                s += len;
                if (*s == ' ' && *++s == 0)
                        return false;
        }
        return true;
}

int account_meta_validate(struct account_meta *m)
{
        if (!is_plain(m->tenant, 128, NULL) || !is_plain(m->client_id, 128, NULL))
                return -EINVAL;
        if (account_flow_from_string(m->flow, &m->flow_kind) < 0)
                return -EINVAL;
        if ((m->token_endpoint && !is_https_url(m->token_endpoint)) ||
            (m->device_endpoint && !is_https_url(m->device_endpoint)))
                return -EINVAL;
        /* A device endpoint belongs to the server of an explicit token endpoint. */
        if (m->device_endpoint && !m->token_endpoint)
                return -EINVAL;
        if (m->scopes && !scopes_are_valid(m->scopes))
                return -EINVAL;
        if (m->username && !is_plain(m->username, 256, "@_+"))
                return -EINVAL;
        if (m->mailbox && !is_plain(m->mailbox, 256, "@_+"))
                return -EINVAL;
        if ((m->authority && !is_https_url(m->authority)) || (m->graph && !is_https_url(m->graph)))
                return -EINVAL;
        m->cloud_kind = CLOUD_GLOBAL;
        if (m->cloud && cloud_from_string(m->cloud, &m->cloud_kind) < 0)
                return -EINVAL;
        m->assertion_alg_kind = ACCOUNT_ASSERTION_PS256;
        if (m->assertion_alg && strcmp(m->assertion_alg, "RS256") == 0)
                m->assertion_alg_kind = ACCOUNT_ASSERTION_RS256;
        else if (m->assertion_alg && strcmp(m->assertion_alg, "PS256") != 0)
                return -EINVAL;
        m->client_auth_kind = ACCOUNT_CLIENT_AUTH_POST;
        if (m->client_auth && strcmp(m->client_auth, "basic") == 0)
                m->client_auth_kind = ACCOUNT_CLIENT_AUTH_BASIC;
        else if (m->client_auth && strcmp(m->client_auth, "post") != 0)
                return -EINVAL;
        return 0;
}

static int take_string(const cJSON *json, const char *key, bool required, char **ret)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);

        if (!item || cJSON_IsNull(item))
                return required ? -EINVAL : 0;
        if (!cJSON_IsString(item))
                return -EINVAL;
        *ret = strdup(item->valuestring);
        return *ret ? 0 : -ENOMEM;
}

/* "scopes": an array of strings, kept joined with spaces (validated later). */
static int take_scopes(const cJSON *json, char **ret)
{
        const cJSON *array = cJSON_GetObjectItemCaseSensitive(json, "scopes"), *item;
        size_t len = 0, n = 0;
        char *joined;

        if (!array || cJSON_IsNull(array))
                return 0;
        if (!cJSON_IsArray(array))
                return -EINVAL;
        cJSON_ArrayForEach(item, array)
        {
                /* Each one checked alone: "a b" must not pass as two scopes once joined. */
                if (!cJSON_IsString(item) || ++n > ACCOUNT_META_SCOPES_MAX ||
                    !scope_is_valid(item->valuestring))
                        return -EINVAL;
                len += strlen(item->valuestring) + 1;
        }
        if (n == 0)
                return 0;
        joined = calloc(1, len);
        if (!joined)
                return -ENOMEM;
        len = 0;
        cJSON_ArrayForEach(item, array)
        {
                size_t n_item = strlen(item->valuestring);
                if (len > 0)
                        joined[len++] = ' ';
                memcpy(joined + len, item->valuestring, n_item);
                len += n_item;
        }
        joined[len] = 0;
        *ret = joined;
        return 0;
}

static int take_u64(const cJSON *json, const char *key, uint64_t *ret)
{
        if (!cJSON_GetObjectItemCaseSensitive(json, key))
                return 0;
        return json_get_u64(json, key, ret) < 0 ? -EINVAL : 0;
}

int account_meta_from_json(const char *text, struct account_meta *ret)
{
        _cleanup_json_ cJSON *json = NULL;
        struct account_meta m = {0};
        int r;

        r = json_parse(text, strlen(text), &json);
        if (r < 0)
                return -EINVAL;
        if (!cJSON_IsObject(json) || json_has_duplicate_keys(json))
                return -EINVAL;
        r = take_string(json, "tenant", true, &m.tenant);
        if (r == 0)
                r = take_string(json, "client_id", true, &m.client_id);
        if (r == 0)
                r = take_string(json, "flow", true, &m.flow);
        if (r == 0)
                r = take_string(json, "username", false, &m.username);
        if (r == 0)
                r = take_string(json, "authority", false, &m.authority);
        if (r == 0)
                r = take_string(json, "graph", false, &m.graph);
        if (r == 0)
                r = take_string(json, "cloud", false, &m.cloud);
        if (r == 0)
                r = take_string(json, "mailbox", false, &m.mailbox);
        if (r == 0)
                r = take_string(json, "token_endpoint", false, &m.token_endpoint);
        if (r == 0)
                r = take_string(json, "device_endpoint", false, &m.device_endpoint);
        if (r == 0)
                r = take_scopes(json, &m.scopes);
        if (r == 0)
                r = take_string(json, "assertion_alg", false, &m.assertion_alg);
        if (r == 0)
                r = take_string(json, "client_auth", false, &m.client_auth);
        if (r == 0)
                r = take_u64(json, "secret_expires_at", &m.secret_expires_at);
        if (r == 0)
                r = take_u64(json, "created", &m.created);
        if (r == 0)
                r = account_meta_validate(&m);
        if (r < 0) {
                account_meta_clear(&m);
                return r;
        }
        *ret = m;
        return 0;
}

int account_meta_to_json(const struct account_meta *m, char **ret)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char *text;

        if (!json || !cJSON_AddStringToObject(json, "tenant", m->tenant) ||
            !cJSON_AddStringToObject(json, "client_id", m->client_id) ||
            !cJSON_AddStringToObject(json, "flow", m->flow) ||
            (m->username && !cJSON_AddStringToObject(json, "username", m->username)) ||
            (m->authority && !cJSON_AddStringToObject(json, "authority", m->authority)) ||
            (m->graph && !cJSON_AddStringToObject(json, "graph", m->graph)) ||
            (m->cloud && !cJSON_AddStringToObject(json, "cloud", m->cloud)) ||
            (m->mailbox && !cJSON_AddStringToObject(json, "mailbox", m->mailbox)) ||
            (m->token_endpoint &&
             !cJSON_AddStringToObject(json, "token_endpoint", m->token_endpoint)) ||
            (m->device_endpoint &&
             !cJSON_AddStringToObject(json, "device_endpoint", m->device_endpoint)) ||
            (m->scopes && !json_add_scope_list(json, "scopes", m->scopes)) ||
            (m->assertion_alg &&
             !cJSON_AddStringToObject(json, "assertion_alg", m->assertion_alg)) ||
            (m->client_auth && !cJSON_AddStringToObject(json, "client_auth", m->client_auth)) ||
            (m->secret_expires_at &&
             !json_add_uint(json, "secret_expires_at", m->secret_expires_at)) ||
            !json_add_uint(json, "created", m->created))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(json);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* The authority the account signs in at: its own, its cloud's, else the default. */
static const char *authority_of(const struct account_meta *m, const char *default_authority)
{
        if (m->authority)
                return m->authority;
        return m->cloud ? cloud_authority(m->cloud_kind) : default_authority;
}

const char *account_meta_graph_url(const struct account_meta *m, const char *default_graph)
{
        if (m->graph)
                return m->graph;
        return m->cloud ? cloud_graph(m->cloud_kind) : default_graph;
}

const char *account_meta_graph_resource(const struct account_meta *m, const char *default_graph,
                                        enum cloud default_cloud)
{
        return cloud_graph_resource(account_meta_graph_url(m, default_graph),
                                    m->cloud ? m->cloud_kind : default_cloud);
}

bool account_meta_sends_as_other(const struct account_meta *m)
{
        return !account_flow_is_app_only(m->flow_kind) && m->mailbox && m->username &&
               strcasecmp(m->mailbox, m->username) != 0;
}

int account_meta_default_scopes(const struct account_meta *m, const char *resource, char **ret)
{
        char *scopes;

        *ret = NULL;
        if (m->scopes)
                scopes = strdup(m->scopes);
        else if (account_meta_is_generic_oauth(m))
                return 0;
        else if (account_flow_is_app_only(m->flow_kind)) {
                if (asprintf(&scopes, "%s/.default", resource) < 0)
                        scopes = NULL;
        } else if (account_meta_sends_as_other(m)) {
                /* /users/{mailbox}/sendMail for a user who is not the mailbox: Graph wants the
                 * delegated Mail.Send.Shared (plus Send As rights in Exchange). */
                if (asprintf(&scopes, "%s/Mail.Send %s/Mail.Send.Shared", resource, resource) < 0)
                        scopes = NULL;
        } else if (asprintf(&scopes, "%s/Mail.Send", resource) < 0)
                scopes = NULL;
        if (!scopes)
                return -ENOMEM;
        *ret = scopes;
        return 0;
}

bool account_meta_is_generic_oauth(const struct account_meta *m)
{
        return m->token_endpoint != NULL;
}

int account_meta_token_endpoint(const struct account_meta *m, const char *default_authority,
                                char **ret)
{
        char *url;

        if (m->token_endpoint)
                url = strdup(m->token_endpoint);
        else if (asprintf(&url, "%s/%s/oauth2/v2.0/token", authority_of(m, default_authority),
                          m->tenant) < 0)
                url = NULL;
        if (!url)
                return -ENOMEM;
        *ret = url;
        return 0;
}

int account_meta_device_endpoint(const struct account_meta *m, const char *default_authority,
                                 char **ret)
{
        char *url;

        /* A generic server without a device endpoint has no device flow. */
        if (m->token_endpoint && !m->device_endpoint)
                return -EOPNOTSUPP;
        if (m->device_endpoint)
                url = strdup(m->device_endpoint);
        else if (asprintf(&url, "%s/%s/oauth2/v2.0/devicecode", authority_of(m, default_authority),
                          m->tenant) < 0)
                url = NULL;
        if (!url)
                return -ENOMEM;
        *ret = url;
        return 0;
}
