/* Token endpoint replies; see token-response.h. The classification follows
 * microsoft-identity.md: the AADSTS code first (aadsts.c), then the HTTP status and the OAuth
 * "error". */
#include "token-response.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aadsts.h"
#include "json.h"
#include "util.h"

#define IDP_EXPIRES_IN_MAX  (7 * 24 * 3600)
#define IDP_RETRY_AFTER_MAX 3600

void idp_result_clear(struct idp_result *r)
{
        secret_free(r->access_token);
        secret_free(r->refresh_token);
        free(r->scope);
        memset(r, 0, sizeof(*r));
}

static enum idp_outcome classify_error(long status, const char *error, uint32_t code,
                                       const char **ret_hint)
{
        const struct aadsts_entry *known = aadsts_find(code);

        *ret_hint = NULL;
        /* AADSTS codes first (microsoft-identity.md): "error" is coarse, the code says what to
         * do (a code with no guidance leaves it to "error"). */
        if (known && known->guidance) {
                *ret_hint = known->guidance;
                return known->outcome;
        }
        if (status >= 500 || status == 429 || status == 408)
                return IDP_TRANSIENT;
        if (error) {
                if (strcmp(error, "temporarily_unavailable") == 0 ||
                    strcmp(error, "server_error") == 0 || strcmp(error, "slow_down") == 0)
                        return IDP_TRANSIENT;
                if (strcmp(error, "invalid_scope") == 0)
                        return IDP_SCOPES_REFUSED;
                if (strcmp(error, "invalid_grant") == 0 ||
                    strcmp(error, "interaction_required") == 0 ||
                    strcmp(error, "expired_token") == 0)
                        return IDP_REAUTH;
        }
        /* Anything else the server refused needs a person, not a retry loop. */
        return IDP_CONFIG;
}

static int take_token(const cJSON *json, const char *key, struct secret **ret)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
        const char *value = cJSON_IsString(item) ? item->valuestring : NULL;
        if (!item || cJSON_IsNull(item))
                return -ENOENT;
        if (!value || !token_is_valid(value, strnlen(value, TOKEN_MAX_LEN + 1)))
                return -EBADMSG;
        return secret_new_from(value, strlen(value), ret);
}

static int get_expires_in(const cJSON *json, uint64_t *ret)
{
        const char *text;
        uint64_t v;

        /* A number per RFC 6749; some older endpoints send a string. */
        if (json_get_u64(json, "expires_in", &v) < 0) {
                text = json_get_string(json, "expires_in");
                if (!text || parse_u64(text, &v) < 0)
                        return -EBADMSG;
        }
        if (v == 0 || v > IDP_EXPIRES_IN_MAX)
                return -EBADMSG;
        *ret = v;
        return 0;
}

void idp_result_fail(struct idp_result *r, enum idp_outcome outcome, const char *fmt, ...)
{
        va_list ap;

        secret_free(r->access_token);
        secret_free(r->refresh_token);
        free(r->scope);
        r->access_token = r->refresh_token = NULL;
        r->scope = NULL;
        r->outcome = outcome;
        va_start(ap, fmt);
        vsnprintf(r->message, sizeof(r->message), fmt, ap);
        va_end(ap);
}

static void parse_error_response(long status, const cJSON *json, struct idp_result *r)
{
        const char *error = json ? json_get_string(json, "error") : NULL;
        const cJSON *codes = json ? cJSON_GetObjectItemCaseSensitive(json, "error_codes") : NULL;
        const cJSON *first = cJSON_IsArray(codes) ? cJSON_GetArrayItem(codes, 0) : NULL;
        const char *hint;
        enum idp_outcome outcome;

        if (cJSON_IsNumber(first) && first->valuedouble >= 0 && first->valuedouble < 1e9)
                r->error_code = (uint32_t)first->valuedouble;
        if (error) {
                /* Only a safe, short token of the server's error goes to our logs. */
                size_t n = 0;
                for (; error[n] && n < sizeof(r->error) - 1; n++) {
                        char c = error[n];
                        r->error[n] = (c >= 'a' && c <= 'z') || c == '_' ? c : '?';
                }
                r->error[n] = 0;
        }
        outcome = classify_error(status, error ? r->error : NULL, r->error_code, &hint);
        /* A floor for codes whose cause outlasts a quick retry (loop detection). */
        if (aadsts_retry_after_min(r->error_code) > r->retry_after)
                r->retry_after = aadsts_retry_after_min(r->error_code);
        if (r->error_code)
                idp_result_fail(r, outcome, "HTTP %ld, %s (AADSTS%u)%s%s", status,
                                r->error[0] ? r->error : "error", r->error_code, hint ? ": " : "",
                                hint ? hint : "");
        else
                idp_result_fail(r, outcome, "HTTP %ld, %s%s%s", status,
                                r->error[0] ? r->error : "no OAuth error in the body",
                                hint ? ": " : "", hint ? hint : "");
}

void idp_parse_token_response(long status, const uint8_t *body, size_t len, uint32_t retry_after,
                              struct idp_result *r)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *type, *scope;

        r->http_status = status;
        r->retry_after = retry_after;
        if (len > 0 && json_parse(body, len, &json) == 0 && !cJSON_IsObject(json)) {
                cJSON_Delete(json);
                json = NULL;
        }

        if (status != 200) {
                parse_error_response(status, json, r);
                return;
        }
        if (!json) {
                idp_result_fail(r, IDP_TRANSIENT, "HTTP 200 with a body that is not a JSON object");
                return;
        }
        type = json_get_string(json, "token_type");
        if (!type || strcasecmp(type, "Bearer") != 0) {
                idp_result_fail(r, IDP_TRANSIENT, "token response without token_type Bearer");
                return;
        }
        if (take_token(json, "access_token", &r->access_token) < 0) {
                idp_result_fail(r, IDP_TRANSIENT, "token response without a usable access_token");
                return;
        }
        if (get_expires_in(json, &r->expires_in) < 0) {
                idp_result_fail(r, IDP_TRANSIENT, "token response without a usable expires_in");
                return;
        }
        switch (take_token(json, "refresh_token", &r->refresh_token)) {
        case 0:
        case -ENOENT:
                break;
        default:
                idp_result_fail(r, IDP_TRANSIENT, "token response with a malformed refresh_token");
                return;
        }
        scope = json_get_string(json, "scope");
        if (scope && strlen(scope) < 4096) {
                r->scope = strdup(scope);
                if (!r->scope) {
                        idp_result_fail(r, IDP_TRANSIENT, "out of memory");
                        return;
                }
        }
        r->outcome = IDP_OK;
}

uint32_t idp_parse_retry_after(const char *value, time_t now)
{
        uint32_t seconds;
        time_t when;

        /* Seconds, or an HTTP date (RFC 9110 §10.2.3); bounded either way, so a server cannot
         * park an account for days. */
        if (parse_u32(value, &seconds) == 0)
                return seconds < IDP_RETRY_AFTER_MAX ? seconds : IDP_RETRY_AFTER_MAX;
        when = curl_getdate(value, NULL);
        if (when == -1 || when <= now)
                return 0;
        return when - now < IDP_RETRY_AFTER_MAX ? (uint32_t)(when - now) : IDP_RETRY_AFTER_MAX;
}
