/* Re-reading the policy: all or nothing, then the idle accounts are forgotten so that the next
 * request reads each one from the store again; see policy-reload.h. */
#include "policy-reload.h"

#include <errno.h>
#include <stdio.h>

#include "accounts.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "policy.h"

struct reload_errors {
        char *first;
        size_t size;
};

static void on_reload_error(const char *file, unsigned line, const char *message, void *userdata)
{
        struct reload_errors *errors = userdata;

        /* As policy_set_load() logs them: "file:line: message", "file: message" off a line. */
        if (line > 0) {
                log_error("%s:%u: %s", file, line, message);
                if (!errors->first[0])
                        snprintf(errors->first, errors->size, "%s:%u: %s", file, line, message);
        } else {
                log_error("%s%s%s", file, *file ? ": " : "", message);
                if (!errors->first[0])
                        snprintf(errors->first, errors->size, "%s%s%s", file, *file ? ": " : "",
                                 message);
        }
}

int broker_reload(struct broker *b, char *error, size_t error_size, size_t *ret_profiles)
{
        struct reload_errors errors = {.first = error, .size = error_size};
        struct policy_set *set;

        error[0] = 0;
        /* All or nothing: a broken file keeps the policy that works (P10). */
        if (policy_set_load_reporting(b->config->policy_dir, on_reload_error, &errors, &set) < 0) {
                if (!error[0])
                        snprintf(error, error_size, "%s: the policy could not be loaded",
                                 b->config->policy_dir);
                log_error("Reload failed; keeping the previous policy.");
                return -EINVAL;
        }
        policy_set_free(b->policy);
        b->policy = set;
        log_info("Policy reloaded: %zu profiles.", policy_set_count(set));
        /* Accounts are re-read from the PKCS#11 token on next use, so a reload picks up an
         * account an administrator re-provisioned (new metadata, or a fresh refresh token after
         * reauth_required). Accounts with work in flight are kept; their cached tokens stay. */
        accounts_forget_idle(&b->accounts);
        *ret_profiles = policy_set_count(set);
        return 0;
}
