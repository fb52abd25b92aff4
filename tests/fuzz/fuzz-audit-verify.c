/* Fuzz target for credbroker audit verify's parser and chain checks (cli/audit-chain.c): the
 * input is a log file's bytes, fed line by line as audit-verify.c does. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit-chain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct chain_options o = {.checkpoint_records = 3};
        const char *p = (const char *)data, *end = p + size, *nl;
        struct chain *c;

        if (chain_new(&o, &c) < 0)
                abort();
        chain_begin_file(c, "fuzz");
        while (p < end) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (chain_line(c, p, (size_t)((nl ? nl : end) - p), nl != NULL) != 0)
                        break;
                p = nl ? nl + 1 : end;
        }
        (void)chain_end(c);
        (void)chain_message(c);
        chain_free(c);
        return 0;
}
