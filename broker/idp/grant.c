/* Token request bodies and the app-only credentials in them; see grant.h. */
#include "grant.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "idp.h"
#include "log.h"

#define DEVICE_CODE_GRANT "urn:ietf:params:oauth:grant-type:device_code"
#define JWT_BEARER_TYPE   "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define GRANT_FORM_MAX    (32 * 1024)

/* --- form bodies (application/x-www-form-urlencoded, in secret memory) ------------------- */

static int form_new(struct secret **ret)
{
        return secret_new(GRANT_FORM_MAX, ret);
}

/* Appends "&key=value" (URL-encoded) to a secret form body. */
static int form_add(struct secret *form, const char *key, const char *value, size_t len)
{
        char *escaped;
        int r;

        if (len > GRANT_FORM_MAX)
                return -E2BIG;
        escaped = curl_easy_escape(NULL, value, (int)len);
        if (!escaped)
                return -ENOMEM;
        r = secret_len(form) > 0 ? secret_append(form, "&", 1) : 0;
        if (r == 0)
                r = secret_append(form, key, strlen(key));
        if (r == 0)
                r = secret_append(form, "=", 1);
        if (r == 0)
                r = secret_append(form, escaped, strlen(escaped));
        explicit_bzero(escaped, strlen(escaped));
        curl_free(escaped);
        return r;
}

static int form_add_string(struct secret *form, const char *key, const char *value)
{
        return form_add(form, key, value, strlen(value));
}

/* Adds pairs until one fails; a NULL value ends the list. */
static int form_build(struct secret **ret, const char *const *pairs)
{
        struct secret *form = NULL;
        int r = form_new(&form);

        /* An empty value is left out: a server without a default scope gets no "scope=". */
        for (size_t i = 0; r == 0 && pairs[i]; i += 2)
                if (*pairs[i + 1])
                        r = form_add_string(form, pairs[i], pairs[i + 1]);
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
                r = form_add(form, "password", secret_str(password), secret_len(password));
        if (r == 0 && !generic)
                r = form_add_string(form, "client_info", "1");
        return form_finish(form, r, ret);
}

int grant_form_device_code(const char *client_id, const struct secret *device_code, bool generic,
                           struct secret **ret)
{
        const char *pairs[] = {"grant_type", DEVICE_CODE_GRANT, "client_id", client_id, NULL};
        struct secret *form = NULL;
        int r = form_build(&form, pairs);

        if (r == 0)
                r = form_add(form, "device_code", secret_str(device_code), secret_len(device_code));
        if (r == 0 && !generic)
                r = form_add_string(form, "client_info", "1");
        return form_finish(form, r, ret);
}

int grant_form_device_authorization(const char *client_id, const char *scope, struct secret **ret)
{
        const char *pairs[] = {"client_id", client_id, "scope", scope, NULL};

        return form_build(ret, pairs);
}

int grant_form_refresh(const struct idp_refresh_grant *g, struct secret **ret)
{
        struct secret *form = NULL;
        int r;

        /* Not form_build: an empty value is sent as it is. */
        r = form_new(&form);
        if (r == 0)
                r = form_add_string(form, "grant_type", "refresh_token");
        if (r == 0)
                r = form_add_string(form, "client_id", g->client_id);
        if (r == 0)
                r = form_add(form, "refresh_token", secret_str(g->refresh_token),
                             secret_len(g->refresh_token));
        if (r == 0)
                r = form_add_string(form, "scope", g->scope);
        /* Microsoft's addition (MSAL sends it); a standards-only server is not sent it. */
        if (r == 0 && !g->generic)
                r = form_add_string(form, "client_info", "1");
        return form_finish(form, r, ret);
}

int idp_request_refresh(struct idp *idp, const struct idp_refresh_grant *g, idp_done_fn done,
                        void *userdata)
{
        struct secret *form = NULL;
        int r = grant_form_refresh(g, &form);

        if (r < 0)
                return r;
        return idp_post_token_request(idp, g->token_endpoint, &form, done, userdata);
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
                r = form_add(form, "client_secret", secret_str(credential), secret_len(credential));
        if (r == 0 && kind == GRANT_CLIENT_ASSERTION) {
                r = form_add_string(form, "client_assertion_type", JWT_BEARER_TYPE);
                if (r == 0)
                        r = form_add(form, "client_assertion", secret_str(credential),
                                     secret_len(credential));
        }
        return form_finish(form, r, ret);
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
        *call = (struct grant_credential_call){.flow = flow, .alg = STORE_ASSERTION_PS256};
        if (!account_flow_is_app_only(flow))
                return -EINVAL;
        if (copy_bounded(call->account, sizeof(call->account), account) < 0 ||
            copy_bounded(call->audience, sizeof(call->audience), token_endpoint) < 0 ||
            copy_bounded(call->client_id, sizeof(call->client_id), client_id) < 0)
                return -EINVAL;
        return 0;
}

/* Accounts whose PS256 assertion this broker saw refused, or unsignable: they send RS256
 * from then on (until the broker restarts: the next PS256 attempt then finds out again). Only
 * the event loop's thread reads and writes it. */
#define FALLBACKS_MAX 64
static char fallbacks[FALLBACKS_MAX][NAME_MAX_LEN + 1];
static size_t n_fallbacks;

static bool fallback_known(const char *account)
{
        for (size_t i = 0; i < n_fallbacks; i++)
                if (strcmp(fallbacks[i], account) == 0)
                        return true;
        return false;
}

static void fallback_remember(const char *account)
{
        if (fallback_known(account) || strlen(account) > NAME_MAX_LEN)
                return;
        /* Full: the oldest goes; it finds out again with one refused request. */
        if (n_fallbacks == FALLBACKS_MAX) {
                memmove(fallbacks[0], fallbacks[1], sizeof(fallbacks[0]) * (FALLBACKS_MAX - 1));
                n_fallbacks--;
        }
        memcpy(fallbacks[n_fallbacks++], account, strlen(account) + 1); /* length checked above */
}

void grant_assertion_fallbacks_clear(void)
{
        n_fallbacks = 0;
}

void grant_credential_call_set_alg(struct grant_credential_call *call, const struct account_meta *m)
{
        call->alg =
            m->assertion_alg_kind == ACCOUNT_ASSERTION_RS256 || fallback_known(call->account)
                ? STORE_ASSERTION_RS256
                : STORE_ASSERTION_PS256;
}

int grant_credential_fetch(struct store *store, void *userdata)
{
        struct grant_credential_call *call = userdata;
        uint64_t now = now_realtime_usec() / USEC_PER_SEC;
        int r;

        secret_free(call->credential);
        call->credential = NULL;
        if (call->flow == ACCOUNT_FLOW_CLIENT_SECRET)
                return store_get_client_secret(store, call->account, &call->credential);
        /* Minted for this one request: assertions are never reused. */
        r = store_sign_assertion(store, call->account, call->audience, call->client_id, call->alg,
                                 now, &call->credential);
        if (r == -EOPNOTSUPP && call->alg == STORE_ASSERTION_PS256) {
                /* The token has no RSA-PSS: the older RS256 + x5t form works everywhere. */
                call->pss_unsupported = true;
                call->alg = STORE_ASSERTION_RS256;
                r = store_sign_assertion(store, call->account, call->audience, call->client_id,
                                         call->alg, now, &call->credential);
        }
        return r;
}

static bool is_unreserved(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '*';
}

/* application/x-www-form-urlencoded (WHATWG URL, as RFC 6749 Appendix B): space as "+". */
static int append_form_encoded(struct secret *out, const char *s, size_t len)
{
        static const char hex[] = "0123456789ABCDEF";
        int r = 0;

        for (size_t i = 0; r == 0 && i < len; i++) {
                char c = s[i];
                if (is_unreserved(c))
                        r = secret_append(out, &c, 1);
                else if (c == ' ')
                        r = secret_append(out, "+", 1);
                else {
                        char esc[3] = {'%', hex[(unsigned char)c >> 4], hex[c & 15]};
                        r = secret_append(out, esc, 3);
                        explicit_bzero(esc, sizeof(esc));
                }
        }
        return r;
}

static int append_base64(struct secret *out, const uint8_t *in, size_t len)
{
        static const char table[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int r = 0;

        for (size_t i = 0; r == 0 && i < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16;
                size_t n = len - i < 3 ? len - i : 3;
                char quad[4];

                if (n > 1)
                        v |= (uint32_t)in[i + 1] << 8;
                if (n > 2)
                        v |= in[i + 2];
                quad[0] = table[(v >> 18) & 63];
                quad[1] = table[(v >> 12) & 63];
                quad[2] = n > 1 ? table[(v >> 6) & 63] : '=';
                quad[3] = n > 2 ? table[v & 63] : '=';
                r = secret_append(out, quad, 4);
                explicit_bzero(quad, sizeof(quad));
                v = 0;
        }
        return r;
}

int grant_basic_authorization(const char *client_id, const struct secret *client_secret,
                              struct secret **ret)
{
        static const char prefix[] = "Authorization: Basic ";
        _cleanup_secret_ struct secret *pair = NULL, *header = NULL;
        size_t pair_max = 3 * (strlen(client_id) + secret_len(client_secret)) + 1;
        int r;

        r = secret_new(pair_max, &pair);
        if (r == 0)
                r = append_form_encoded(pair, client_id, strlen(client_id));
        if (r == 0)
                r = secret_append(pair, ":", 1);
        if (r == 0)
                r = append_form_encoded(pair, secret_str(client_secret), secret_len(client_secret));
        if (r == 0)
                r = secret_new(sizeof(prefix) + 4 * (pair_max / 3 + 1), &header);
        if (r == 0)
                r = secret_append(header, prefix, sizeof(prefix) - 1);
        if (r == 0)
                r = append_base64(header, secret_data(pair), secret_len(pair));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(header);
        return 0;
}

int grant_post_client_credentials(struct idp *idp, const struct account_meta *m,
                                  const char *token_endpoint, const char *scope,
                                  struct grant_credential_call *call, idp_done_fn done,
                                  void *userdata)
{
        _cleanup_secret_ struct secret *credential = TAKE_PTR(call->credential);
        struct secret *form = NULL, *authorization = NULL;
        int r;

        if (call->pss_unsupported) {
                log_warning("Account %s: the token cannot sign RSA-PSS (no "
                            "CKM_SHA256_RSA_PKCS_PSS): sending an RS256 client assertion "
                            "(x5t) instead of PS256.",
                            call->account);
                fallback_remember(call->account);
                call->pss_unsupported = false;
        }
        if (call->flow == ACCOUNT_FLOW_CLIENT_SECRET &&
            m->client_auth_kind == ACCOUNT_CLIENT_AUTH_BASIC) {
                /* client_secret_basic: the credentials go in the header only. */
                const char *pairs[] = {"grant_type", "client_credentials", "scope", scope, NULL};
                r = grant_basic_authorization(m->client_id, credential, &authorization);
                if (r == 0)
                        r = form_build(&form, pairs);
                if (r < 0) {
                        secret_free(authorization);
                        return r;
                }
                return idp_post_token_request_auth(idp, token_endpoint, &form, &authorization, done,
                                                   userdata);
        }
        r = grant_form_client_credentials(
            m->client_id, scope,
            call->flow == ACCOUNT_FLOW_CLIENT_SECRET ? GRANT_CLIENT_SECRET : GRANT_CLIENT_ASSERTION,
            credential, &form);
        if (r < 0)
                return r;
        return idp_post_token_request(idp, token_endpoint, &form, done, userdata);
}

bool grant_credential_refused(struct grant_credential_call *call, struct idp_result *result)
{
        if (call->flow != ACCOUNT_FLOW_CLIENT_CERTIFICATE || call->alg != STORE_ASSERTION_PS256 ||
            result->outcome == IDP_OK || result->error_code != 700027)
                return false;
        log_warning("Account %s: the server refused the PS256 client assertion (AADSTS700027); "
                    "trying RS256 (x5t). If RS256 works, set the account's assertion_alg to "
                    "RS256.",
                    call->account);
        fallback_remember(call->account);
        call->alg = STORE_ASSERTION_RS256;
        result->outcome = IDP_TRANSIENT;
        result->retry_after = 0;
        snprintf(result->message, sizeof(result->message),
                 "the PS256 client assertion was refused (AADSTS700027): retrying with RS256");
        return true;
}
