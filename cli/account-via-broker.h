/* account list / show / remove (and secret / keygen / cert) through the running broker's admin
 * socket, so that the broker stays the only process with the PKCS#11 token open. Each prints what
 * the direct path prints (as far as the broker's reply tells) and returns 0 or a sysexits code. */
#pragma once

#include <stdbool.h>

#include "account-meta.h"
#include "admin-client.h"
#include "secret.h"
#include "store.h"

int broker_account_list(struct admin_conn *c, bool json);
int broker_account_show(struct admin_conn *c, const char *name, bool json);
int broker_account_remove(struct admin_conn *c, const char *name);

/* secret, keygen and cert return 0 (the caller prints what the direct path prints, from *ret),
 * a negative errno as the store function of the direct path would (-EEXIST, -EINVAL, -EBADMSG,
 * -ENOKEY) so that the caller reports it in the same words, or a sysexits code after printing
 * why. */
int broker_account_secret(struct admin_conn *c, const char *name, const struct secret *secret);
int broker_account_keygen(struct admin_conn *c, const char *name,
                          const struct store_keygen_options *o, struct store_certificate_info *ret,
                          char **ret_csr);
int broker_account_cert(struct admin_conn *c, const char *name, const void *data, size_t len,
                        struct store_certificate_info *ret);

/* account import as account.add with the refresh-token flow: 0 with *ret_generation set, or a
 * sysexits code after printing why. */
int broker_account_import(struct admin_conn *c, const char *name, const struct account_meta *m,
                          const struct secret *token, uint64_t *ret_generation);
