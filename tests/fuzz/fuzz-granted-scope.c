/* Fuzz target for the "scope" a token endpoint grants (untrusted network input) as the broker
 * reports it: grant_granted_scope() maps Entra's short names ("Mail.Send") back to the
 * requested scopes and leaves the OpenID Connect ones out. The input is the requested scope key
 * (policy input), a newline, then the granted scope; without a newline the whole input is the
 * granted scope against Microsoft Graph scopes. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-granted-scope: invariant broken: %s\n", what);
                abort();
        }
}

/* Whether the space-separated list has word (len bytes) as one of its words. */
static bool has_word(const char *list, const char *word, size_t len)
{
        for (const char *s = list; *s;) {
                size_t n = strcspn(s, " ");
                if (n == len && memcmp(s, word, len) == 0)
                        return true;
                s += n;
                s += *s == ' ';
        }
        return false;
}

static bool is_openid(const char *w, size_t len)
{
        static const char *const names[] = {"openid", "profile", "email", "offline_access"};

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strlen(names[i]) == len && memcmp(w, names[i], len) == 0)
                        return true;
        return false;
}

/* The reported scope: NULL, or words each from the granted scope (kept as they are) or from the
 * scope key (a short name expanded), one space apart, no OpenID Connect scope. */
static void check_granted_scope(const char *scope_key, const char *granted)
{
        char *out = NULL;
        size_t words = 1;
        int r = grant_granted_scope(scope_key, granted, &out);

        check(r == 0 || r == -ENOMEM, "0 or -ENOMEM");
        if (r < 0 || !out) {
                check(!out, "nothing returned on failure");
                return;
        }
        check(granted != NULL, "a result only for a granted scope");
        check(out[0] != 0, "an empty result is NULL");
        check(out[0] != ' ' && out[strlen(out) - 1] != ' ', "no leading or trailing space");
        check(!strstr(out, "  "), "one space between words");
        for (const char *c = granted; *c; c++)
                words += *c == ' ';
        check(strlen(out) <= strlen(granted) + words * (strlen(scope_key) + 1),
              "bounded by the allocation");
        for (const char *w = out; *w;) {
                size_t n = strcspn(w, " ");
                check(!is_openid(w, n), "OpenID Connect scopes are left out");
                check(has_word(granted, w, n) || has_word(scope_key, w, n),
                      "each word granted or requested");
                w += n;
                w += *w == ' ';
        }
        free(out);
}

/* A NUL-terminated copy of len bytes: the input is not a C string (strndup() would read past it
 * under ASan's strict_string_checks). */
static char *copy_bytes(const uint8_t *data, size_t len)
{
        char *s = malloc(len + 1);

        if (s) {
                memcpy(s, data, len);
                s[len] = 0;
        }
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char graph[] =
            "https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/User.Read";
        const uint8_t *nl = memchr(data, '\n', size);
        char *key, *granted;

        if (nl) {
                key = copy_bytes(data, (size_t)(nl - data));
                granted = copy_bytes(nl + 1, size - (size_t)(nl - data) - 1);
        } else {
                key = strdup(graph);
                granted = copy_bytes(data, size);
        }
        if (key && granted) {
                check_granted_scope(key, granted);
                check_granted_scope(key, NULL);
        }
        free(key);
        free(granted);
        return 0;
}
