/* Judging one account of the broker's status reply as a monitoring check would: OK, WARNING
 * (an expiry within warn_days, backoff) or CRITICAL (an administrator is needed). */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes of credbroker status, as a Nagios plugin's. */
enum status_level {
        STATUS_OK = 0,
        STATUS_WARNING = 1,
        STATUS_CRITICAL = 2,
        STATUS_UNKNOWN = 3,
};

/* Microsoft drops a refresh token unused for 90 days. */
#define STATUS_REFRESH_TOKEN_LIFETIME_DAYS 90

const char *status_level_name(enum status_level level);

/* Whether the broker marked the account's needs_reauth as following a refresh the previous run
 * stopped in (the status row's "interrupted_refresh": true). */
bool status_interrupted_refresh(const cJSON *account);

/* The level of one account object of the status reply at now (unix seconds), and in reason a
 * short sentence on why when it is not OK. */
enum status_level status_check_account(const cJSON *account, uint64_t now, uint32_t warn_days,
                                       char *reason, size_t reason_size);
