/* The scopes of a token request and of its answer; see scope.h. */
#include "scope.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

int grant_app_only_scope(const char *scope_key, const char *graph_resource, bool generic,
                         char **ret)
{
        size_t first_len = strcspn(scope_key, " ");
        const char *scheme = strstr(scope_key, "://");
        char *scope;

        if (generic) {
                scope = strdup(scope_key);
        } else if (!scheme || (size_t)(scheme - scope_key) >= first_len) {
                /* A bare permission name ("Mail.Send") is Graph's, in the account's cloud. */
                if (asprintf(&scope, "%s/.default", graph_resource) < 0)
                        scope = NULL;
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

static bool is_openid_scope(const char *s, size_t len)
{
        static const char *const names[] = {"openid", "profile", "email", "offline_access"};

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strlen(names[i]) == len && strncmp(s, names[i], len) == 0)
                        return true;
        return false;
}

/* The requested scope (in scope_key) that the short name abbreviates: the one whose last
 * path segment it is ("https://graph.microsoft.com/Mail.Send" for "Mail.Send"). */
static const char *expand_short(const char *scope_key, const char *word, size_t len,
                                size_t *ret_len)
{
        for (const char *s = scope_key; *s;) {
                size_t n = strcspn(s, " ");
                const char *slash = memrchr(s, '/', n);

                if (slash && strstr(s, "://") && strstr(s, "://") < slash &&
                    (size_t)(s + n - slash - 1) == len && strncasecmp(slash + 1, word, len) == 0) {
                        *ret_len = n;
                        return s;
                }
                s += n;
                s += *s == ' ';
        }
        *ret_len = len;
        return word;
}

int grant_granted_scope(const char *scope_key, const char *granted, char **ret)
{
        _cleanup_free_ char *out = NULL;
        size_t used = 0;

        *ret = NULL;
        if (!granted)
                return 0;
        /* Each granted word becomes at most the whole scope key. */
        size_t words = 1;
        for (const char *c = granted; *c; c++)
                words += *c == ' ';
        out = malloc(strlen(granted) + words * (strlen(scope_key) + 1) + 1);
        if (!out)
                return -ENOMEM;
        for (const char *w = granted; *w;) {
                size_t len = strcspn(w, " "), n;
                const char *full;

                if (len > 0 && !is_openid_scope(w, len)) {
                        full = memchr(w, '/', len) ? w : expand_short(scope_key, w, len, &n);
                        if (full == w)
                                n = len;
                        if (used > 0)
                                out[used++] = ' ';
                        memcpy(out + used, full, n);
                        used += n;
                }
                w += len;
                w += *w == ' ';
        }
        if (used == 0)
                return 0;
        out[used] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}
