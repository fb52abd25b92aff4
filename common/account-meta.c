/* Account metadata JSON; see account-meta.h. */
#include "account-meta.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void account_meta_clear(struct account_meta *m)
{
        free(m->tenant);
        free(m->client_id);
        free(m->flow);
        free(m->username);
        free(m->authority);
        free(m->graph);
        free(m->mailbox);
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
        return s && strncmp(s, "https://", 8) == 0 && strlen(s) < 512 &&
               is_plain(s + 8, 500, ":/_~%");
}

int account_meta_validate(const struct account_meta *m)
{
        if (!is_plain(m->tenant, 128, NULL) || !is_plain(m->client_id, 128, NULL))
                return -EINVAL;
        if (!m->flow || strcmp(m->flow, "refresh_token") != 0)
                return -EINVAL;
        if (m->username && !is_plain(m->username, 256, "@_+"))
                return -EINVAL;
        if (m->mailbox && !is_plain(m->mailbox, 256, "@_+"))
                return -EINVAL;
        if ((m->authority && !is_https_url(m->authority)) || (m->graph && !is_https_url(m->graph)))
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
                r = take_string(json, "mailbox", false, &m.mailbox);
        if (r == 0 && cJSON_GetObjectItemCaseSensitive(json, "created"))
                r = json_get_u64(json, "created", &m.created) < 0 ? -EINVAL : 0;
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
            (m->mailbox && !cJSON_AddStringToObject(json, "mailbox", m->mailbox)) ||
            !json_add_uint(json, "created", m->created))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(json);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}
