/* Status levels of accounts; see status-check.h. */
#include "status-check.h"

#include <stdio.h>
#include <string.h>

#include "json.h"

#define DAY 86400ULL

const char *status_level_name(enum status_level level)
{
        switch (level) {
        case STATUS_OK:
                return "OK";
        case STATUS_WARNING:
                return "WARNING";
        case STATUS_CRITICAL:
                return "CRITICAL";
        default:
                return "UNKNOWN";
        }
}

bool status_interrupted_refresh(const cJSON *account)
{
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(account, "interrupted_refresh"));
}

/* The certificate's or client secret's expiry: STATUS_OK when far enough away. */
static enum status_level check_credential(const cJSON *account, uint64_t now, uint64_t warn,
                                          char *reason, size_t reason_size)
{
        uint64_t credential, days;

        if (json_get_u64(account, "credential_expires_at", &credential) < 0)
                return STATUS_OK;
        if (credential <= now) {
                snprintf(reason, reason_size, "its certificate or client secret expired");
                return STATUS_CRITICAL;
        }
        if (credential - now > warn)
                return STATUS_OK;
        days = (credential - now) / DAY;
        if (days == 0)
                snprintf(reason, reason_size,
                         "its certificate or client secret expires in less than a day");
        else
                snprintf(reason, reason_size,
                         "its certificate or client secret expires in %llu day%s",
                         (unsigned long long)days, days == 1 ? "" : "s");
        return STATUS_WARNING;
}

/* The refresh token's age against Microsoft's 90 days: STATUS_OK when far enough away. */
static enum status_level check_refresh_token(const cJSON *account, uint64_t now, uint64_t warn,
                                             char *reason, size_t reason_size)
{
        uint64_t lifetime = STATUS_REFRESH_TOKEN_LIFETIME_DAYS * DAY;
        uint64_t stored, age;

        if (json_get_u64(account, "refresh_token_stored_at", &stored) < 0 || stored > now)
                return STATUS_OK;
        age = now - stored;
        if (age >= lifetime) {
                snprintf(reason, reason_size,
                         "its refresh token was unused for %llu days and has expired",
                         (unsigned long long)(age / DAY));
                return STATUS_CRITICAL;
        }
        if (lifetime - age > warn)
                return STATUS_OK;
        snprintf(reason, reason_size,
                 "its refresh token was unused for %llu day%s (Microsoft drops it after %d)",
                 (unsigned long long)(age / DAY), age / DAY == 1 ? "" : "s",
                 STATUS_REFRESH_TOKEN_LIFETIME_DAYS);
        return STATUS_WARNING;
}

enum status_level status_check_account(const cJSON *account, uint64_t now, uint32_t warn_days,
                                       char *reason, size_t reason_size)
{
        const char *state = json_get_string(account, "state");
        const char *message = json_get_string(account, "message");
        uint64_t warn = (uint64_t)warn_days * DAY;
        enum status_level level;
        uint64_t until;

        reason[0] = 0;
        if (!state) {
                snprintf(reason, reason_size, "the broker reports no state");
                return STATUS_UNKNOWN;
        }
        /* The broker's interrupted_refresh: not a revocation but a refresh-token family a strict
         * server rotated while the previous run died (docs/softhsm-torn-writes.md). */
        if (strcmp(state, "needs_reauth") == 0 && status_interrupted_refresh(account)) {
                snprintf(reason, reason_size,
                         "needs reauth: the previous run stopped during a refresh (the "
                         "refresh-token family may be lost on a strict server); sign in again");
                return STATUS_CRITICAL;
        }
        if (strcmp(state, "needs_reauth") == 0 || strcmp(state, "needs_config") == 0) {
                snprintf(reason, reason_size, "%s%s%.300s",
                         strcmp(state, "needs_reauth") == 0
                             ? "needs an administrator to sign in again"
                             : "needs an administrator to change its configuration",
                         message ? ": " : "", message ? message : "");
                return STATUS_CRITICAL;
        }
        level = check_credential(account, now, warn, reason, reason_size);
        if (level == STATUS_OK)
                level = check_refresh_token(account, now, warn, reason, reason_size);
        if (level != STATUS_OK)
                return level;
        if (strcmp(state, "backoff") == 0) {
                if (json_get_u64(account, "state_until", &until) == 0 && until > now)
                        snprintf(reason, reason_size,
                                 "refreshing fails, retrying in %llu s%s%.300s",
                                 (unsigned long long)(until - now), message ? ": " : "",
                                 message ? message : "");
                else
                        snprintf(reason, reason_size, "refreshing fails%s%.300s",
                                 message ? ": " : "", message ? message : "");
                return STATUS_WARNING;
        }
        if (strcmp(state, "ok") != 0 && strcmp(state, "refreshing") != 0) {
                snprintf(reason, reason_size, "unknown state \"%.40s\"", state);
                return STATUS_UNKNOWN;
        }
        return STATUS_OK;
}
