/* The one view of an account (docs/admin-protocol.md): the JSON objects of account.list and
 * account.show, built from what admin-inventory.c gathered from the store. The broker sends them
 * on its admin socket; the CLI, when no broker runs, builds the same objects from the token it
 * opened, so that "credbroker account show" and "list" print the same whichever path ran.
 * Linked into both (libaccountview): it needs only the store and common/, never the broker. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "admin-inventory.h"

/* The state account.list, account.show and status report. */
struct account_status {
        const char *state;
        uint64_t until;      /* unix seconds, backoff only */
        const char *message; /* NULL: none */
};

/* What the store's objects alone imply: needs_config without metadata or without the
 * credential its flow needs, needs_reauth for a delegated account without a refresh token,
 * else ok. The broker adds what its runtime account knows. */
void account_view_store_status(const struct account_inventory *item, struct account_status *ret);

struct account_view_options {
        /* The configuration's authority, for the effective endpoints of an account without its
         * own. */
        const char *default_authority;
        /* "flow" as stored ("refresh_token" for accounts imported before there were other
         * flows) instead of the canonical name: what the CLI's direct path has always shown. */
        bool stored_flow_name;
};

/* account.list's row, account.show's "account" object; NULL when out of memory. */
cJSON *account_view_list_row(const struct account_inventory *item,
                             const struct account_status *status,
                             const struct account_view_options *o);
cJSON *account_view_show(const struct account_inventory *item, const struct account_status *status,
                         const struct account_view_options *o);
