/* Force-included (-include) into test-sendmail-deliver: what mail-spool adds to credbroker.h
 * , as mail-plan.md declares it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct credbroker_error;
int credbroker_token_drop(const char *socket, const char *profile, const char *access_token,
                          struct credbroker_error *err);
int credbroker_mail_submit(const char *socket, const char *profile, const uint8_t *msg, size_t len,
                           const char *message_id, size_t n_recipients, char **ret_queue_id,
                           struct credbroker_error *err);
