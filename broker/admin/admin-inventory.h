/* What the store holds about accounts, gathered on the store worker's thread for account.list,
 * account.show and status: settings, refresh-token generation and age, whether a client secret
 * is stored, the assertion certificate. Never a secret's value. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "account-meta.h"
#include "store.h"
#include "util.h"

struct account_inventory {
        char *name;
        bool has_meta;
        bool meta_valid;
        struct account_meta meta;
        bool has_refresh_token;
        struct store_refresh_token_info refresh_token;
        bool has_secret;
        bool has_certificate;
        struct store_certificate_info certificate;
        unsigned backends; /* STORE_BACKEND_BIT()s holding its data, when the request asked */
};

struct inventory_request {
        char account[NAME_MAX_LEN + 1]; /* "": every account */
        struct account_inventory *items;
        size_t n_items;
        /* account.show: also ask which backends hold the account (store_account_backends());
         * wrapped_dir (malloc()ed, may be NULL) is where the wrapped one's files are. */
        bool backends_wanted;
        char *wrapped_dir;
};

/* A STORE_JOB_CALL function: fills request->items. -ENOENT for a named account that has no
 * object at all. */
int inventory_gather(struct store *store, void *request);
void inventory_request_free(struct inventory_request *r);
