/* What admin-ops.c and admin-status.c share: the store inventory that account.list,
 * account.show and status read (admin-ops.c), and the monitoring operations, status and
 * metrics (admin-status.c), for the operation table. */
#pragma once

#include "account-view.h"
#include "admin-inventory.h"
#include "admin.h"

struct account_inventory;

/* An admin operation that reads the store's inventory on the store worker, then replies. */
/* One element of the "accounts" array that account.list and status reply with; NULL when out of
 * memory. */
typedef cJSON *(*admin_account_row_fn)(struct broker *b, const struct account_inventory *item);

struct inventory_operation {
        struct admin_operation op;
        struct inventory_request *request;
        void (*reply)(struct inventory_operation *io, int result);
        admin_account_row_fn row; /* admin_inventory_rows() */
};

/* Gathers every account's inventory on the store worker, then replies {"accounts":[row(item),
 * ...]} on the loop (unavailable when the store could not be read). */
void admin_inventory_rows(struct admin_connection *c, admin_account_row_fn row);

/* The state status, account.list and account.show report: what the store's objects imply,
 * and what the runtime account knows when the broker has one. */
void admin_account_status_of(struct broker *b, const struct account_inventory *item,
                             struct account_status *ret);

/* The operations "status" and "metrics" (docs/admin-protocol.md). */
void admin_status_handle(struct admin_connection *c, const struct cJSON *request,
                         const char *account);
void admin_metrics_handle(struct admin_connection *c, const struct cJSON *request,
                          const char *account);
