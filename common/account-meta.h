/* An account's non-secret settings: the JSON kept in the "<account>/meta" PKCS#11 object
 * (design.md §4). Written by the CLI at provisioning, read by the broker. */
#pragma once

#include <stdint.h>

#define ACCOUNT_META_MAX 65536

struct account_meta {
        char *tenant;
        char *client_id;
        char *flow;       /* "refresh_token" for imported accounts */
        char *username;   /* delegated flows; may be NULL */
        char *authority;  /* NULL: the configured default */
        char *graph;      /* NULL: the configured default */
        char *mailbox;    /* UPN mail is sent as; may be NULL */
        uint64_t created; /* unix seconds */
};

void account_meta_clear(struct account_meta *m);
/* Strict: every field must have its type, tenant/client_id present and of sane characters,
 * URLs https://. -EINVAL otherwise. */
int account_meta_from_json(const char *json, struct account_meta *ret);
/* Returns a malloc()ed JSON text. */
int account_meta_to_json(const struct account_meta *m, char **ret);
/* Tenant: a GUID or a domain name; client id: a GUID-like token. */
int account_meta_validate(const struct account_meta *m);
