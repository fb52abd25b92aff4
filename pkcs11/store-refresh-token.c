/* Refresh-token generations "<account>/refresh_token/<g>" and their rotation in the order of
 * design.md §6: a crash at any instant leaves at least one intact generation. */
#include "store-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "fault.h"
#include "log.h"
#include "util.h"

struct generation {
        CK_OBJECT_HANDLE handle;
        uint64_t generation;
};

static int compare_generation_desc(const void *a, const void *b)
{
        const struct generation *x = a, *y = b;

        return x->generation < y->generation ? 1 : x->generation > y->generation ? -1 : 0;
}

/* Every "<account>/refresh_token/<g>" object, whatever its value, newest first. */
static int list_generations(struct store *s, const char *account, struct generation **ret,
                            size_t *ret_n)
{
        struct data_object *objects = NULL;
        char prefix[NAME_MAX_LEN + sizeof(REFRESH_TOKEN_INFIX)];
        struct generation *generations;
        size_t n_objects, n = 0;
        int r;

        snprintf(prefix, sizeof(prefix), "%s" REFRESH_TOKEN_INFIX, account);
        r = list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        generations = calloc(n_objects ? n_objects : 1, sizeof(*generations));
        if (!generations) {
                data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objects; i++) {
                uint64_t g;

                if (!startswith(objects[i].label, prefix))
                        continue;
                if (!parse_generation(objects[i].label, prefix, &g)) {
                        log_warning("Ignoring object \"%s\" on token \"%s\": not a valid "
                                    "refresh token generation.",
                                    objects[i].label, s->token_label);
                        continue;
                }
                generations[n].handle = objects[i].handle;
                generations[n++].generation = g;
        }
        data_objects_free(objects, n_objects);
        qsort(generations, n, sizeof(*generations), compare_generation_desc);
        *ret = generations;
        *ret_n = n;
        return 0;
}

/* ---- refresh tokens ---- */

int store_read_refresh_token(struct store *s, const char *account, struct secret **ret_token,
                             uint64_t *ret_generation)
{
        _cleanup_free_ struct generation *generations = NULL;
        size_t n;
        int r;

        if (!s || !account_is_valid(account) || !ret_token)
                return -EINVAL;

        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 1)
                log_debug("Account %s has %zu refresh token generations (normal after an "
                          "interrupted rotation).",
                          account, n);

        for (size_t i = 0; i < n; i++) {
                _cleanup_secret_ struct secret *token = NULL;
                char what[LABEL_MAX];

                snprintf(what, sizeof(what), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i].generation);
                r = read_secret_value(s, generations[i].handle, TOKEN_MAX_LEN, what, &token);
                if (r == -ENOENT)
                        continue; /* destroyed by a concurrent rotation */
                if (r == -EFBIG) {
                        log_warning("Skipping refresh token object \"%s\" on token \"%s\": "
                                    "larger than %d bytes.",
                                    what, s->token_label, TOKEN_MAX_LEN);
                        continue;
                }
                if (r < 0)
                        return r;
                if (!token_is_valid(secret_str(token), secret_len(token))) {
                        log_warning("Skipping refresh token object \"%s\" on token \"%s\": its "
                                    "value is empty or not a refresh token.",
                                    what, s->token_label);
                        continue;
                }
                *ret_token = TAKE_PTR(token);
                if (ret_generation)
                        *ret_generation = generations[i].generation;
                return 0;
        }
        return -ENOENT;
}

int store_write_refresh_token(struct store *s, const char *account, const struct secret *token,
                              uint64_t *ret_generation)
{
        _cleanup_free_ struct generation *generations = NULL;
        _cleanup_secret_ struct secret *back = NULL;
        char label[LABEL_MAX];
        CK_OBJECT_HANDLE handle;
        uint64_t next;
        size_t n;
        int r;

        if (!s || !account_is_valid(account) || !token)
                return -EINVAL;
        /* Refuse what store_read_refresh_token() would skip as corrupt. */
        if (secret_len(token) > TOKEN_MAX_LEN ||
            !token_is_valid(secret_str(token), secret_len(token)))
                return -EINVAL;

        /* g is the highest generation present in any state: a corrupt newest one still
         * occupies its number, and reusing it would make two objects claim it. */
        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 0 && generations[0].generation == UINT64_MAX)
                return log_error_errno(EOVERFLOW,
                                       "Account %s has used up its refresh token "
                                       "generations; remove and re-add it.",
                                       account);
        next = n > 0 ? generations[0].generation + 1 : 1;
        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, next);

        r = create_data_object(s, label, secret_str(token), secret_len(token), &handle);
        if (r < 0)
                return r;
        fault_point("after-create");

        r = read_secret_value(s, handle, TOKEN_MAX_LEN, label, &back);
        if (r < 0 || !secret_equal(back, token)) {
                /* The old generations stay: they are the last token known to be intact. */
                if (destroy_object(s, handle, label) < 0)
                        log_warning("Could not destroy the unverified object \"%s\"; the next "
                                    "rotation removes it.",
                                    label);
                if (r >= 0 || r == -EFBIG)
                        r = log_error_errno(EIO,
                                            "Refresh token \"%s\" read back from token "
                                            "\"%s\" differs from what was written; "
                                            "keeping the previous generation.",
                                            label, s->token_label);
                return r;
        }
        fault_point("after-readback");

        /* Only now is the new token safely stored. A failure here leaves an extra old
         * generation, which the next rotation removes: no reason to fail the write. */
        for (size_t i = 0; i < n; i++) {
                char old[LABEL_MAX];

                snprintf(old, sizeof(old), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i].generation);
                r = destroy_object(s, generations[i].handle, old);
                if (r < 0 && r != -ENOENT)
                        log_warning("Could not destroy old refresh token \"%s\"; the next "
                                    "rotation retries.",
                                    old);
        }
        fault_point("after-destroy");

        if (ret_generation)
                *ret_generation = next;
        return 0;
}

/* The write time is not recorded yet: stored_at stays 0 ("unknown"). */
int store_refresh_token_info(struct store *s, const char *account,
                             struct store_refresh_token_info *ret)
{
        _cleanup_secret_ struct secret *token = NULL;
        _cleanup_free_ struct generation *generations = NULL;
        size_t n;
        int r;

        if (!account_is_valid(account))
                return -EINVAL;
        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        *ret = (struct store_refresh_token_info){.n_generations = n};
        return store_read_refresh_token(s, account, &token, &ret->generation);
}
