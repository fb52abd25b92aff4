/* The aliases file: "local: address" lines (e.g. "root: ops@contoso.com"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

struct mail_aliases_entry {
        char *local;
        char *target;
};

struct mail_aliases {
        struct mail_aliases_entry *entries;
        size_t n;
};

void mail_aliases_free(struct mail_aliases *a)
{
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++) {
                free(a->entries[i].local);
                free(a->entries[i].target);
        }
        free(a->entries);
        free(a);
}
