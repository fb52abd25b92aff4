/* cJSON glue; see json.h. */
#include "json.h"

#include "util.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void json_wiping_free(void *p)
{
        if (!p)
                return;
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
}

void json_init(void)
{
        /* With non-default hooks cJSON never realloc()s: it allocates, copies and frees,
         * so every intermediate copy passes through the wiping free. */
        cJSON_Hooks hooks = {.malloc_fn = malloc, .free_fn = json_wiping_free};

        cJSON_InitHooks(&hooks);
}

int json_parse(const void *data, size_t len, cJSON **ret)
{
        const char *end = NULL;
        cJSON *json;

        json = cJSON_ParseWithLengthOpts(data, len, &end, false);
        if (!json)
                return -EBADMSG;
        for (const char *p = end; p < (const char *)data + len; p++)
                if (!(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
                        cJSON_Delete(json);
                        return -EBADMSG;
                }
        *ret = json;
        return 0;
}

void json_free_string(char *s)
{
        cJSON_free(s);
}

bool json_has_duplicate_keys(const cJSON *object)
{
        for (const cJSON *a = object->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                        if (a->string && b->string && strcmp(a->string, b->string) == 0)
                                return true;
        return false;
}

const char *json_get_string(const cJSON *object, const char *key)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);

        return cJSON_IsString(item) ? item->valuestring : NULL;
}

int json_get_u64(const cJSON *object, const char *key, uint64_t *ret)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
        double v;

        if (!item)
                return -ENOENT;
        if (!cJSON_IsNumber(item))
                return -EINVAL;
        v = item->valuedouble;
        /* Integers only, and within what a double holds exactly. */
        if (!(v >= 0) || v > 9007199254740991.0 || floor(v) != v)
                return -EINVAL;
        *ret = (uint64_t)v;
        return 0;
}

bool json_add_uint(cJSON *object, const char *key, uint64_t value)
{
        char text[21];
        cJSON *item;

        format_u64(value, text);
        item = cJSON_CreateRaw(text);
        if (!item || !cJSON_AddItemToObjectCS(object, key, item)) {
                cJSON_Delete(item);
                return false;
        }
        return true;
}

bool json_add_string_ref(cJSON *object, const char *key, const char *value)
{
        cJSON *item = cJSON_CreateStringReference(value);

        if (!item || !cJSON_AddItemToObjectCS(object, key, item)) {
                cJSON_Delete(item);
                return false;
        }
        return true;
}

cJSON *json_string_array_ref(char *const *strings, size_t n)
{
        cJSON *array = cJSON_CreateArray();

        for (size_t i = 0; array && i < n; i++) {
                cJSON *item = cJSON_CreateStringReference(strings[i]);
                if (!item || !cJSON_AddItemToArray(array, item)) {
                        cJSON_Delete(item);
                        cJSON_Delete(array);
                        return NULL;
                }
        }
        return array;
}

bool json_add_scope_list(cJSON *object, const char *key, const char *scopes)
{
        cJSON *array = cJSON_AddArrayToObject(object, key);
        char scope[SCOPE_MAX_LEN + 1];

        while (array && scopes && *scopes) {
                size_t len = strcspn(scopes, " ");
                if (len > 0 && len <= SCOPE_MAX_LEN) {
                        memcpy(scope, scopes, len);
                        scope[len] = 0;
                        cJSON *item = cJSON_CreateString(scope);
                        if (!item || !cJSON_AddItemToArray(array, item)) {
                                cJSON_Delete(item);
                                return false;
                        }
                }
                scopes += len;
                scopes += *scopes == ' ';
        }
        return array != NULL;
}
