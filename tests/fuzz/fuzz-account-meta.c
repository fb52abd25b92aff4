/* Fuzz target for account metadata JSON (read back from the PKCS#11 token, written by an
 * administrator's import): parse, and what parses must print and parse back the same. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account-meta.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-account-meta: invariant broken: %s\n", what);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct account_meta meta = {0}, again = {0};
        char *text, *printed = NULL;
        static bool initialised;

        if (!initialised) {
                json_init();
                initialised = true;
        }
        if (size > ACCOUNT_META_MAX)
                return 0;
        text = malloc(size + 1);
        if (!text)
                abort();
        memcpy(text, data, size);
        text[size] = 0;
        if (account_meta_from_json(text, &meta) == 0) {
                check(account_meta_validate(&meta) == 0, "parsed metadata is valid");
                check(account_meta_to_json(&meta, &printed) == 0, "valid metadata prints");
                check(account_meta_from_json(printed, &again) == 0, "printed metadata parses");
                check(strcmp(meta.tenant, again.tenant) == 0 &&
                          strcmp(meta.client_id, again.client_id) == 0 &&
                          meta.created == again.created && meta.flow_kind == again.flow_kind &&
                          meta.secret_expires_at == again.secret_expires_at &&
                          !meta.scopes == !again.scopes &&
                          (!meta.scopes || strcmp(meta.scopes, again.scopes) == 0),
                      "a round trip keeps the fields");
                free(printed);
                account_meta_clear(&again);
                account_meta_clear(&meta);
        }
        free(text);
        return 0;
}
