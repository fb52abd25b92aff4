/* Builds an admin request frame that carries a secret (a password, a client secret) entirely in
 * secret memory: the public members are printed by cJSON, the secret is escaped straight into
 * the frame, so no copy of it ever sits in ordinary heap memory. */
#pragma once

#include <cjson/cJSON.h>

#include "secret.h"

/* The longest secret a request may carry (a password or a client secret). */
#define ADMIN_SECRET_MAX 1024

/* Appends s (len bytes, valid UTF-8) to out as the body of a JSON string, escaping quotes,
 * backslashes and control characters. -ENOBUFS when out is too small, -EINVAL for bytes that
 * are not UTF-8 or a NUL. */
int admin_json_escape_into(struct secret *out, const char *s, size_t len);

/* The whole frame (4-byte big-endian length + JSON) of request with the member key set to the
 * value of secret. request must be an object without that member. */
int admin_frame_with_secret(const cJSON *request, const char *key, const struct secret *secret,
                            struct secret **ret_frame);

/* The same with the value given as len bytes (libcredbroker's credbroker_send_secret()). */
int admin_frame_with_bytes(const cJSON *request, const char *key, const char *value, size_t len,
                           struct secret **ret_frame);
