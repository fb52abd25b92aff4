/* Test-only access to the PKCS#11 session behind a store, so unit tests can list and plant raw
 * objects (a corrupt generation, stray labels) that the public API refuses to create. */
#pragma once

#include <p11-kit/pkcs11.h>

#include "store.h"

void store_private_session(struct store *s, CK_FUNCTION_LIST **ret_module,
                           CK_SESSION_HANDLE *ret_session);

/* Forgets the generations the store remembers (store-refresh-token.c), as a restart would: for
 * tests that plant objects behind the store's back through the raw session. */
void store_private_forget_generations(struct store *s);
