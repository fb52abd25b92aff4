/* Gathering the store's view of accounts on the worker thread; see admin-inventory.h. */
#include "admin-inventory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

static void inventory_item_clear(struct account_inventory *item)
{
        free(item->name);
        account_meta_clear(&item->meta);
        store_certificate_info_clear(&item->certificate);
}

void inventory_request_free(struct inventory_request *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_items; i++)
                inventory_item_clear(&r->items[i]);
        free(r->items);
        free(r->wrapped_dir);
        free(r);
}

/* 0, -ENOENT when the account has no object at all, or another negative errno. */
static int gather_one(struct store *store, const char *name, struct account_inventory *item)
{
        _cleanup_free_ char *json = NULL;
        int r;

        item->name = strdup(name);
        if (!item->name)
                return -ENOMEM;
        r = store_get_meta(store, name, &json);
        if (r == 0) {
                item->has_meta = true;
                item->meta_valid = account_meta_from_json(json, &item->meta) == 0;
        } else if (r != -ENOENT) {
                return r;
        }
        r = store_refresh_token_info(store, name, &item->refresh_token);
        if (r == 0)
                item->has_refresh_token = true;
        else if (r != -ENOENT)
                return r;
        r = store_has_client_secret(store, name);
        if (r < 0)
                return r;
        item->has_secret = r > 0;
        r = store_get_certificate(store, name, &item->certificate);
        if (r == 0)
                item->has_certificate = true;
        else if (r != -ENOENT)
                return r;
        if (!item->has_meta && !item->has_refresh_token && !item->has_secret &&
            !item->has_certificate && item->refresh_token.n_generations == 0)
                return -ENOENT;
        return 0;
}

/* gather_one(), and which backends hold the account's data: one held only by the backend the
 * store was not opened with (an interrupted credbroker store migrate) is shown, not missing. */
static int gather_with_backends(struct store *store, const struct inventory_request *request,
                                struct account_inventory *item)
{
        int r = gather_one(store, request->account, item);

        if (r < 0 && r != -ENOENT)
                return r;
        if (store_account_backends(store, request->wrapped_dir, request->account, &item->backends) <
            0)
                item->backends = 0;
        return r == -ENOENT && item->backends == 0 ? -ENOENT : 0;
}

int inventory_gather(struct store *store, void *userdata)
{
        struct inventory_request *request = userdata;
        char **names = NULL;
        size_t n = 0;
        int r;

        /* A repeated call (the session was reopened) starts over. */
        for (size_t i = 0; i < request->n_items; i++)
                inventory_item_clear(&request->items[i]);
        free(request->items);
        request->items = NULL;
        request->n_items = 0;

        if (request->account[0]) {
                request->items = calloc(1, sizeof(*request->items));
                if (!request->items)
                        return -ENOMEM;
                request->n_items = 1;
                return request->backends_wanted
                           ? gather_with_backends(store, request, &request->items[0])
                           : gather_one(store, request->account, &request->items[0]);
        }
        r = store_list_all_accounts(store, &names, &n);
        if (r < 0)
                return r;
        if (n > 0) {
                request->items = calloc(n, sizeof(*request->items));
                if (!request->items) {
                        store_names_free(names, n);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < n; i++) {
                request->n_items = i + 1;
                r = gather_one(store, names[i], &request->items[i]);
                if (r < 0 && r != -ENOENT)
                        break;
                r = 0;
        }
        store_names_free(names, n);
        return r;
}
