/* Secret-carrying admin request frames; see admin-frame.h. Part of libcredbroker (internal). */
#include "admin-frame.h"

#include <errno.h>
#include <string.h>

#include "json.h"
#include "util.h"
#include "wire.h"

int admin_json_escape_into(struct secret *out, const char *s, size_t len)
{
        static const char hex[] = "0123456789abcdef";
        int r = 0;

        if (!utf8_is_valid((const uint8_t *)s, len) || memchr(s, 0, len))
                return -EINVAL;
        for (size_t i = 0; i < len && r == 0; i++) {
                unsigned char c = (unsigned char)s[i];

                if (c == '"' || c == '\\') {
                        char pair[2] = {'\\', (char)c};
                        r = secret_append(out, pair, 2);
                } else if (c < 0x20 || c == 0x7f) {
                        char escape[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                        r = secret_append(out, escape, 6);
                } else {
                        r = secret_append(out, &s[i], 1);
                }
        }
        return r;
}

int admin_frame_with_secret(const cJSON *request, const char *key, const struct secret *secret,
                            struct secret **ret_frame)
{
        return admin_frame_with_bytes(request, key, secret_str(secret), secret_len(secret),
                                      ret_frame);
}

int admin_frame_with_bytes(const cJSON *request, const char *key, const char *value, size_t len,
                           struct secret **ret_frame)
{
        _cleanup_secret_ struct secret *frame = NULL;
        char *public_part = NULL;
        size_t public_len, capacity, payload_len;
        uint8_t header[WIRE_HEADER_SIZE];
        int r;

        if (!cJSON_IsObject(request) || cJSON_GetObjectItemCaseSensitive(request, key) ||
            len > ADMIN_SECRET_MAX)
                return -EINVAL;
        public_part = cJSON_PrintUnformatted(request);
        if (!public_part)
                return -ENOMEM;
        public_len = strlen(public_part);
        /* Worst case every byte of the secret becomes a six-byte \u00XX escape. */
        capacity = WIRE_HEADER_SIZE + public_len + strlen(key) + 6 + 6 * len;
        if (public_len < 2 || public_part[public_len - 1] != '}' || capacity > WIRE_FRAME_MAX) {
                json_free_string(public_part);
                return -EMSGSIZE;
        }
        r = secret_new(capacity, &frame);
        if (r >= 0)
                r = secret_append(frame, "\0\0\0\0", WIRE_HEADER_SIZE);
        /* The public members without the closing brace, then ,"key":"secret"} or "key":"…"}
         * when the object was empty. */
        if (r >= 0)
                r = secret_append(frame, public_part, public_len - 1);
        if (r >= 0 && public_len > 2)
                r = secret_append(frame, ",", 1);
        json_free_string(public_part);
        if (r >= 0)
                r = secret_append(frame, "\"", 1);
        if (r >= 0)
                r = secret_append(frame, key, strlen(key));
        if (r >= 0)
                r = secret_append(frame, "\":\"", 3);
        if (r >= 0)
                r = admin_json_escape_into(frame, value, len);
        if (r >= 0)
                r = secret_append(frame, "\"}", 2);
        if (r < 0)
                return r;
        payload_len = secret_len(frame) - WIRE_HEADER_SIZE;
        header[0] = (uint8_t)(payload_len >> 24);
        header[1] = (uint8_t)(payload_len >> 16);
        header[2] = (uint8_t)(payload_len >> 8);
        header[3] = (uint8_t)payload_len;
        memcpy(secret_data(frame), header, WIRE_HEADER_SIZE);
        *ret_frame = TAKE_PTR(frame);
        return 0;
}
