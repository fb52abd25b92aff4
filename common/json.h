/* cJSON glue: wiping allocator hooks and checked accessors. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

/* Installs cJSON allocator hooks that wipe every block before freeing it: parsed upstream
 * responses and printed replies hold tokens. Call once at the start of main(). */
void json_init(void);

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete)
#define _cleanup_json_ _cleanup_(cJSON_Deletep)

/* Parses exactly len bytes as one JSON value: trailing non-space bytes are an error (-EBADMSG). */
int json_parse(const void *data, size_t len, cJSON **ret);

/* Frees a string printed by cJSON (wiped by the hooks). */
void json_free_string(char *s);

/* Whether an object has two members with the same name (ambiguous input is rejected). */
bool json_has_duplicate_keys(const cJSON *object);

/* Both adders take `key` by reference (it must be a string literal): the hot paths build a
 * tree per request and each copy is a malloc() and a wiping free(). */

/* Adds a string member without copying it: value must outlive the object. */
bool json_add_string_ref(cJSON *object, const char *key, const char *value);

/* An array of the strings, by reference: they must outlive the array. NULL when out of memory. */
cJSON *json_string_array_ref(char *const *strings, size_t n);

/* Adds an unsigned integer member. cJSON prints every number through "%1.15g" and re-parses it
 * with sscanf() to check the round trip; integers need neither, and this is on the hot path of
 * every token reply and audit line. Returns false when out of memory. */
bool json_add_uint(cJSON *object, const char *key, uint64_t value);

/* Adds member key as an array of the space-separated scopes in scopes (NULL: an empty
 * array). Empty pieces and pieces longer than SCOPE_MAX_LEN are left out: stored scopes were
 * validated before, and what a server granted is only shown. False when out of memory. */
bool json_add_scope_list(cJSON *object, const char *key, const char *scopes);

/* Member accessors: NULL / -ENOENT when absent, -EINVAL when of the wrong type. */
const char *json_get_string(const cJSON *object, const char *key);
int json_get_u64(const cJSON *object, const char *key, uint64_t *ret);
