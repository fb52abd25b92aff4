/* Token request bodies and app-only credentials; see grant.h. */
#include "grant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idp.h"

#define DEVICE_CODE_GRANT   "urn:ietf:params:oauth:grant-type:device_code"
#define JWT_BEARER_TYPE     "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define GRAPH_DEFAULT_SCOPE "https://graph.microsoft.com/.default"

/* Adds pairs until one fails; a NULL value ends the list. */
static int form_build(struct secret **ret, const char *const *pairs)
{
        struct secret *form = NULL;
        int r = idp_form_new(&form);

        /* An empty value is left out: a server without a default scope gets no "scope=". */
        for (size_t i = 0; r == 0 && pairs[i]; i += 2)
                if (*pairs[i + 1])
                        r = idp_form_add_string(form, pairs[i], pairs[i + 1]);
        if (r < 0) {
                secret_free(form);
                return r;
        }
        *ret = form;
        return 0;
}

static int form_finish(struct secret *form, int r, struct secret **ret)
{
        if (r < 0) {
                secret_free(form);
                return r;
        }
        *ret = form;
        return 0;
}

int grant_form_password(const char *client_id, const char *username, const struct secret *password,
                        const char *scope, bool generic, struct secret **ret)
{
        const char *pairs[] = {"grant_type", "password", "client_id", client_id, "username",
                               username,     "scope",    scope,       NULL};
        struct secret *form = NULL;
        int r = form_build(&form, pairs);

        if (r == 0)
                r = idp_form_add(form, "password", secret_str(password), secret_len(password));
        if (r == 0 && !generic)
                r = idp_form_add_string(form, "client_info", "1");
        return form_finish(form, r, ret);
}

int grant_form_device_code(const char *client_id, const struct secret *device_code, bool generic,
                           struct secret **ret)
{
        const char *pairs[] = {"grant_type", DEVICE_CODE_GRANT, "client_id", client_id, NULL};
        struct secret *form = NULL;
        int r = form_build(&form, pairs);

        if (r == 0)
                r = idp_form_add(form, "device_code", secret_str(device_code),
                                 secret_len(device_code));
        if (r == 0 && !generic)
                r = idp_form_add_string(form, "client_info", "1");
        return form_finish(form, r, ret);
}

int grant_form_device_authorization(const char *client_id, const char *scope, struct secret **ret)
{
        const char *pairs[] = {"client_id", client_id, "scope", scope, NULL};

        return form_build(ret, pairs);
}

int grant_form_client_credentials(const char *client_id, const char *scope,
                                  enum grant_client_credential kind,
                                  const struct secret *credential, struct secret **ret)
{
        const char *pairs[] = {
            "grant_type", "client_credentials", "client_id", client_id, "scope", scope, NULL};
        struct secret *form = NULL;
        int r = form_build(&form, pairs);

        if (r == 0 && kind == GRANT_CLIENT_SECRET)
                r = idp_form_add(form, "client_secret", secret_str(credential),
                                 secret_len(credential));
        if (r == 0 && kind == GRANT_CLIENT_ASSERTION) {
                r = idp_form_add_string(form, "client_assertion_type", JWT_BEARER_TYPE);
                if (r == 0)
                        r = idp_form_add(form, "client_assertion", secret_str(credential),
                                         secret_len(credential));
        }
        return form_finish(form, r, ret);
}

int grant_app_only_scope(const char *scope_key, bool generic, char **ret)
{
        size_t first_len = strcspn(scope_key, " ");
        const char *scheme = strstr(scope_key, "://");
        char *scope;

        if (generic) {
                scope = strdup(scope_key);
        } else if (!scheme || (size_t)(scheme - scope_key) >= first_len) {
                /* A bare permission name ("Mail.Send") is Graph's. */
                scope = strdup(GRAPH_DEFAULT_SCOPE);
        } else {
                /* https://graph.microsoft.com/Mail.Send -> https://graph.microsoft.com/.default */
                const char *host = scheme + 3;
                const char *slash = memchr(host, '/', first_len - (size_t)(host - scope_key));
                size_t resource_len = slash ? (size_t)(slash - scope_key) : first_len;
                if (asprintf(&scope, "%.*s/.default", (int)resource_len, scope_key) < 0)
                        scope = NULL;
        }
        if (!scope)
                return -ENOMEM;
        *ret = scope;
        return 0;
}

static int copy_bounded(char *dst, size_t size, const char *src)
{
        size_t len = strlen(src);

        if (len >= size)
                return -EINVAL;
        memcpy(dst, src, len + 1);
        return 0;
}

int grant_credential_call_init(struct grant_credential_call *call, const char *account,
                               enum account_flow flow, const char *token_endpoint,
                               const char *client_id)
{
        *call = (struct grant_credential_call){.flow = flow};
        if (!account_flow_is_app_only(flow))
                return -EINVAL;
        if (copy_bounded(call->account, sizeof(call->account), account) < 0 ||
            copy_bounded(call->audience, sizeof(call->audience), token_endpoint) < 0 ||
            copy_bounded(call->client_id, sizeof(call->client_id), client_id) < 0)
                return -EINVAL;
        return 0;
}

int grant_credential_fetch(struct store *store, void *userdata)
{
        struct grant_credential_call *call = userdata;

        secret_free(call->credential);
        call->credential = NULL;
        if (call->flow == ACCOUNT_FLOW_CLIENT_SECRET)
                return store_get_client_secret(store, call->account, &call->credential);
        /* Minted for this one request: assertions are never reused. */
        return store_sign_assertion(store, call->account, call->audience, call->client_id,
                                    STORE_ASSERTION_PS256, now_realtime_usec() / USEC_PER_SEC,
                                    &call->credential);
}
