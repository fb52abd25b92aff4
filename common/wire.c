/* Wire framing and message codec; see wire.h and design.md §3. */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static const char *const error_names[_WIRE_ERROR_MAX] = {
    [WIRE_BAD_REQUEST] = "bad_request",
    [WIRE_UNSUPPORTED_VERSION] = "unsupported_version",
    [WIRE_UNKNOWN_OP] = "unknown_op",
    [WIRE_UNKNOWN_PROFILE] = "unknown_profile",
    [WIRE_DENIED] = "denied",
    [WIRE_RATE_LIMITED] = "rate_limited",
    [WIRE_REAUTH_REQUIRED] = "reauth_required",
    [WIRE_UNAVAILABLE] = "unavailable",
    [WIRE_INTERNAL] = "internal",
};

const char *wire_error_to_string(enum wire_error e)
{
        return (unsigned)e < _WIRE_ERROR_MAX ? error_names[e] : "internal";
}

int wire_error_from_string(const char *s, enum wire_error *ret)
{
        for (unsigned i = 0; i < _WIRE_ERROR_MAX; i++)
                if (strcmp(s, error_names[i]) == 0) {
                        *ret = (enum wire_error)i;
                        return 0;
                }
        return -EINVAL;
}

static const char *const admin_error_names[_ADMIN_ERROR_MAX] = {
    [ADMIN_BAD_REQUEST] = "bad_request",
    [ADMIN_UNSUPPORTED_VERSION] = "unsupported_version",
    [ADMIN_UNKNOWN_OP] = "unknown_op",
    [ADMIN_DENIED] = "denied",
    [ADMIN_REAUTH_REQUIRED] = "reauth_required",
    [ADMIN_UNAVAILABLE] = "unavailable",
    [ADMIN_INTERNAL] = "internal",
    [ADMIN_NOT_FOUND] = "not_found",
    [ADMIN_EXISTS] = "exists",
    [ADMIN_NEEDS_CONFIG] = "needs_config",
    [ADMIN_SIGN_IN_FAILED] = "sign_in_failed",
};

const char *admin_error_to_string(enum admin_error e)
{
        return (unsigned)e < _ADMIN_ERROR_MAX ? admin_error_names[e] : "internal";
}

int admin_error_from_string(const char *s, enum admin_error *ret)
{
        for (unsigned i = 0; s && i < _ADMIN_ERROR_MAX; i++)
                if (strcmp(s, admin_error_names[i]) == 0) {
                        *ret = (enum admin_error)i;
                        return 0;
                }
        return -EINVAL;
}

int wire_frame_peek(const struct buf *in, const uint8_t **ret_payload, size_t *ret_len)
{
        uint32_t len;

        if (buf_peek_u32be(in, &len) < 0)
                return 0;
        /* Checked before anything is allocated or waited for. */
        if (len == 0)
                return -EBADMSG;
        if (len > WIRE_FRAME_MAX)
                return -EMSGSIZE;
        if (buf_len(in) - WIRE_HEADER_SIZE < len)
                return 0;
        *ret_payload = buf_data(in) + WIRE_HEADER_SIZE;
        *ret_len = len;
        return 1;
}

int wire_frame_consume(struct buf *in, size_t payload_len)
{
        return buf_consume(in, WIRE_HEADER_SIZE + payload_len);
}

int wire_frame_put(struct buf *out, const void *payload, size_t len)
{
        int r;

        if (len == 0 || len > WIRE_FRAME_MAX)
                return -EMSGSIZE;
        if (buf_max(out) - buf_len(out) < WIRE_HEADER_SIZE + len)
                return -EMSGSIZE;
        r = buf_put_u32be(out, (uint32_t)len);
        if (r < 0)
                return r;
        return buf_put(out, payload, len);
}

int wire_put_json(struct buf *out, const struct cJSON *message)
{
        char *text;
        int r;

        text = cJSON_PrintUnformatted(message);
        if (!text)
                return -ENOMEM;
        r = wire_frame_put(out, text, strlen(text));
        json_free_string(text);
        return r;
}

void wire_request_clear(struct wire_request *r)
{
        for (size_t i = 0; i < r->n_scopes; i++)
                free(r->scopes[i]);
        memset(r, 0, sizeof(*r));
}

/* cJSON decodes "\u0000" into a NUL that ends the C string early, so "ping\u0000junk" would
 * read as "ping" and "alerts\u0000x" as the profile "alerts". No member of a request can hold a
 * NUL, so the escape is refused outright. Outside strings a backslash is a syntax error anyway;
 * inside, skipping the escaped character keeps "\\u0000" (a backslash, then text) apart. */
static bool has_escaped_nul(const uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                if (p[i] != '\\')
                        continue;
                if (len - i > 5 && memcmp(p + i + 1, "u0000", 5) == 0)
                        return true;
                i++;
        }
        return false;
}

static int op_from_string(const char *s, enum wire_op *ret)
{
        static const struct {
                const char *name;
                enum wire_op op;
        } ops[] = {
            {"ping", WIRE_OP_PING},
            {"token", WIRE_OP_TOKEN},
            {"profiles", WIRE_OP_PROFILES},
            {"token.drop", WIRE_OP_TOKEN_DROP},
            {"mail.submit", WIRE_OP_MAIL_SUBMIT},
            {"mail.chunk", WIRE_OP_MAIL_CHUNK},
            {"mail.commit", WIRE_OP_MAIL_COMMIT},
        };

        for (size_t i = 0; i < ELEMENTSOF(ops); i++)
                if (strcmp(s, ops[i].name) == 0) {
                        *ret = ops[i].op;
                        return 0;
                }
        return -EINVAL;
}

#define FAIL(code, msg)                                                                            \
        do {                                                                                       \
                *ret_error = (code);                                                               \
                *ret_message = (msg);                                                              \
                wire_request_clear(&req);                                                          \
                return -EBADMSG;                                                                   \
        } while (0)

int wire_request_parse_json(const uint8_t *payload, size_t len, struct wire_request *ret,
                            cJSON **ret_json, enum wire_error *ret_error, const char **ret_message)
{
        _cleanup_json_ cJSON *json = NULL;
        struct wire_request req = {0};
        const cJSON *v, *op, *item;
        size_t members = 0;

        if (ret_json)
                *ret_json = NULL;
        if (!utf8_is_valid(payload, len))
                FAIL(WIRE_BAD_REQUEST, "The request is not valid UTF-8.");
        if (has_escaped_nul(payload, len))
                FAIL(WIRE_BAD_REQUEST, "The request contains an escaped NUL character.");
        if (json_parse(payload, len, &json) < 0)
                FAIL(WIRE_BAD_REQUEST, "The request is not valid JSON.");
        if (!cJSON_IsObject(json))
                FAIL(WIRE_BAD_REQUEST, "The request must be a JSON object.");
        cJSON_ArrayForEach(item, json) members++;
        if (members > WIRE_MAX_MEMBERS)
                FAIL(WIRE_BAD_REQUEST, "The request has too many members.");
        if (json_has_duplicate_keys(json))
                FAIL(WIRE_BAD_REQUEST, "The request has duplicate members.");

        v = cJSON_GetObjectItemCaseSensitive(json, "v");
        if (!cJSON_IsNumber(v))
                FAIL(WIRE_BAD_REQUEST, "The request must carry \"v\".");
        if (v->valuedouble != WIRE_VERSION)
                FAIL(WIRE_UNSUPPORTED_VERSION, "Only protocol version 1 is supported.");

        op = cJSON_GetObjectItemCaseSensitive(json, "op");
        if (!cJSON_IsString(op))
                FAIL(WIRE_BAD_REQUEST, "The request must carry \"op\".");
        if (op_from_string(op->valuestring, &req.op) < 0)
                FAIL(WIRE_UNKNOWN_OP, "Unknown operation.");

        if (req.op != WIRE_OP_TOKEN && req.op != WIRE_OP_TOKEN_DROP &&
            req.op != WIRE_OP_MAIL_SUBMIT)
                goto done;

        item = cJSON_GetObjectItemCaseSensitive(json, "profile");
        if (!cJSON_IsString(item) || !name_is_valid(item->valuestring))
                FAIL(WIRE_BAD_REQUEST, "\"profile\" must be a profile name ([a-z0-9._-], 1-64).");
        memcpy(req.profile, item->valuestring, strlen(item->valuestring) + 1);
        if (req.op != WIRE_OP_TOKEN)
                goto done;

        item = cJSON_GetObjectItemCaseSensitive(json, "scopes");
        if (item) {
                const cJSON *scope;

                if (!cJSON_IsArray(item))
                        FAIL(WIRE_BAD_REQUEST, "\"scopes\" must be an array of strings.");
                if ((size_t)cJSON_GetArraySize(item) > WIRE_MAX_SCOPES)
                        FAIL(WIRE_BAD_REQUEST, "Too many scopes.");
                cJSON_ArrayForEach(scope, item)
                {
                        if (!cJSON_IsString(scope) || !scope_is_valid(scope->valuestring))
                                FAIL(WIRE_BAD_REQUEST, "A scope is not a valid scope string.");
                        req.scopes[req.n_scopes] = strdup(scope->valuestring);
                        if (!req.scopes[req.n_scopes])
                                FAIL(WIRE_INTERNAL, "Out of memory.");
                        req.n_scopes++;
                }
        }

        item = cJSON_GetObjectItemCaseSensitive(json, "min_ttl");
        if (item) {
                uint64_t ttl;

                if (json_get_u64(json, "min_ttl", &ttl) < 0 || ttl > WIRE_MIN_TTL_MAX)
                        FAIL(WIRE_BAD_REQUEST, "\"min_ttl\" must be an integer 0-86400.");
                req.min_ttl = (uint32_t)ttl;
        }

done:
        *ret = req;
        if (ret_json)
                *ret_json = TAKE_PTR(json);
        return 0;
}

int wire_request_parse(const uint8_t *payload, size_t len, struct wire_request *ret,
                       enum wire_error *ret_error, const char **ret_message)
{
        return wire_request_parse_json(payload, len, ret, NULL, ret_error, ret_message);
}

cJSON *wire_reply_new(bool ok)
{
        cJSON *json = cJSON_CreateObject();

        if (!json)
                return NULL;
        if (!json_add_uint(json, "v", WIRE_VERSION) || !cJSON_AddBoolToObject(json, "ok", ok)) {
                cJSON_Delete(json);
                return NULL;
        }
        return json;
}

static int reply_send(struct buf *out, cJSON *json)
{
        int r;

        if (!json)
                return -ENOMEM;
        r = wire_put_json(out, json);
        cJSON_Delete(json);
        return r;
}

cJSON *wire_error_reply_new(const char *code, const char *message)
{
        cJSON *json = wire_reply_new(false);

        if (json && (!cJSON_AddStringToObject(json, "error", code) ||
                     !cJSON_AddStringToObject(json, "message", message))) {
                cJSON_Delete(json);
                return NULL;
        }
        return json;
}

int wire_reply_error(struct buf *out, enum wire_error e, const char *message, uint32_t retry_after)
{
        cJSON *json = wire_error_reply_new(wire_error_to_string(e), message);

        if (json && retry_after > 0 && !json_add_uint(json, "retry_after", retry_after)) {
                cJSON_Delete(json);
                json = NULL;
        }
        return reply_send(out, json);
}

int wire_reply_ping(struct buf *out, const char *version)
{
        cJSON *json = wire_reply_new(true);

        if (json && !cJSON_AddStringToObject(json, "version", version)) {
                cJSON_Delete(json);
                json = NULL;
        }
        return reply_send(out, json);
}

int wire_reply_token(struct buf *out, const struct wire_token_reply *t)
{
        cJSON *json = wire_reply_new(true);
        cJSON *scopes = json_string_array_ref(t->scopes, t->n_scopes);

        if (!json || !scopes || !cJSON_AddStringToObject(json, "token_type", "Bearer") ||
            !cJSON_AddStringToObject(json, "access_token", t->access_token) ||
            !json_add_uint(json, "expires_at", t->expires_at) ||
            !json_add_uint(json, "expires_in", t->expires_in) ||
            !cJSON_AddItemToObject(json, "scopes", scopes) ||
            !cJSON_AddStringToObject(json, "account", t->account) ||
            (t->mailbox && !cJSON_AddStringToObject(json, "mailbox", t->mailbox)) ||
            (t->graph && !cJSON_AddStringToObject(json, "graph", t->graph)) ||
            !cJSON_AddBoolToObject(json, "delegated", t->delegated) ||
            (t->ca_file && !cJSON_AddStringToObject(json, "ca_file", t->ca_file))) {
                if (!json || !cJSON_GetObjectItemCaseSensitive(json, "scopes"))
                        cJSON_Delete(scopes);
                cJSON_Delete(json);
                return -ENOMEM;
        }
        return reply_send(out, json);
}

int wire_reply_profiles(struct buf *out, char *const *names, size_t n)
{
        cJSON *json = wire_reply_new(true);
        cJSON *list = json_string_array_ref(names, n);

        if (!json || !list || !cJSON_AddItemToObject(json, "profiles", list)) {
                cJSON_Delete(list);
                cJSON_Delete(json);
                return -ENOMEM;
        }
        return reply_send(out, json);
}

static const char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t wire_base64_encode(const uint8_t *in, size_t len, char *out)
{
        size_t o = 0;

        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16;
                size_t n = len - i >= 3 ? 3 : len - i;

                if (n > 1)
                        v |= (uint32_t)in[i + 1] << 8;
                if (n > 2)
                        v |= in[i + 2];
                out[o++] = base64_alphabet[(v >> 18) & 63];
                out[o++] = base64_alphabet[(v >> 12) & 63];
                out[o++] = n > 1 ? base64_alphabet[(v >> 6) & 63] : '=';
                out[o++] = n > 2 ? base64_alphabet[v & 63] : '=';
        }
        out[o] = 0;
        return o;
}

/* The alphabet's inverse, by ranges: strchr() per character was most of a 48 KiB chunk's
 * handling. */
static int base64_value(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int wire_base64_decode(const char *in, size_t len, uint8_t *out, size_t *ret_len)
{
        size_t o = 0;

        if (len % 4 != 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i += 4) {
                bool last = i + 4 == len;
                int pad = (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=');
                int v[4];
                uint32_t q = 0;

                if (pad > 0 && !last)
                        return -EINVAL;
                for (int k = 0; k < 4 - pad; k++) {
                        v[k] = base64_value(in[i + k]);
                        if (v[k] < 0)
                                return -EINVAL;
                        q |= (uint32_t)v[k] << (18 - 6 * k);
                }
                out[o++] = (uint8_t)(q >> 16);
                if (pad < 2)
                        out[o++] = (uint8_t)(q >> 8);
                if (pad < 1)
                        out[o++] = (uint8_t)q;
        }
        *ret_len = o;
        return 0;
}
