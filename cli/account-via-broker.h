/* account list / show / remove through the running broker's admin socket, so that the broker
 * stays the only process with the PKCS#11 token open. Each prints what the direct path prints
 * (as far as the broker's reply tells) and returns 0 or a sysexits code. */
#pragma once

#include <stdbool.h>

#include "admin-client.h"

int broker_account_list(struct admin_conn *c, bool json);
int broker_account_show(struct admin_conn *c, const char *name, bool json);
int broker_account_remove(struct admin_conn *c, const char *name);
