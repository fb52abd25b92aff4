/* Fuzz target for the wrapped store's account file (pkcs11/store-wrapped-file.c), which someone
 * with the disk can write: the strict header parser, and what parses must print and parse back to
 * the same header. The sealed blob itself is authenticated by AES-GCM in the token, not here. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "store-wrapped.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-wrapped-header: invariant broken: %s\n", what);
                abort();
        }
}

static bool same_header(const struct p11_wrapped_header *a, const struct p11_wrapped_header *b)
{
        return a->generation == b->generation && memcmp(a->id, b->id, sizeof(a->id)) == 0 &&
               a->prev_generation == b->prev_generation &&
               memcmp(a->prev_id, b->prev_id, sizeof(a->prev_id)) == 0 && a->kinds == b->kinds &&
               a->refresh_token_generation == b->refresh_token_generation &&
               a->stored_at == b->stored_at &&
               memcmp(a->blob.kek_id, b->blob.kek_id, sizeof(a->blob.kek_id)) == 0 &&
               memcmp(a->blob.iv, b->blob.iv, sizeof(a->blob.iv)) == 0 &&
               a->blob.sealed_len == b->blob.sealed_len &&
               memcmp(a->blob.sealed, b->blob.sealed, a->blob.sealed_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct p11_wrapped_header h = {0}, again = {0};
        static bool initialised;
        char *printed;

        if (!initialised) {
                json_init();
                initialised = true;
        }
        if (size > 1 << 20)
                return 0;
        if (p11_wrapped_header_parse("alerts", (const char *)data, size, &h) < 0)
                return 0;
        check(h.generation > h.prev_generation, "a file's generation is past its prev");
        check(h.blob.sealed_len > WRAPPED_TAG_LEN, "a blob holds more than its tag");
        printed = p11_wrapped_header_print("alerts", &h);
        check(printed != NULL, "a parsed header prints");
        check(p11_wrapped_header_parse("alerts", printed, strlen(printed), &again) == 0,
              "a printed header parses");
        check(same_header(&h, &again), "and parses back to the same header");
        p11_wrapped_blob_clear(&again.blob);
        check(p11_wrapped_header_parse("other", printed, strlen(printed), &again) < 0,
              "the file of another account is refused");
        json_free_string(printed);
        p11_wrapped_blob_clear(&h.blob);
        return 0;
}
