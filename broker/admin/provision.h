/* account.add, account.login and account.test on the admin socket (docs/admin-protocol.md):
 * signing an account in with its flow, storing what the flow yields through the store worker,
 * and proving that a token can be had. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct admin_connection;
struct cJSON;
struct idp_result;

/* Starts account.add (login false) or account.login for the request; secrets in it are copied
 * into secret memory before this returns (the caller then wipes the request). */
void provision_start(struct admin_connection *c, const struct cJSON *request, bool login);
void provision_test(struct admin_connection *c, const struct cJSON *request);
/* Whether an account.add or account.login of the account is in progress. */
struct broker;
bool provision_busy(const struct broker *b, const char *account);

/* provision-errors.c: the admin error code (sign_in_failed, needs_config, unavailable) and a
 * sentence for a failed sign-in, saying what the administrator can do. */
const char *provision_sign_in_error(const struct idp_result *result, bool password_flow,
                                    char *message, size_t size);
