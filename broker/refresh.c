/* Refreshing an account's access token: read the refresh token from the store, ask the token
 * endpoint, store the rotated refresh token (design.md §6), cache the access token, and answer
 * every request that waited. At most one refresh per account is in flight. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "fault.h"
#include "log.h"
#include "util.h"

struct refresh {
        struct broker *broker;
        struct account *account;
        char *scope_key;
};

static void refresh_free(struct refresh *r)
{
        if (!r)
                return;
        free(r->scope_key);
        free(r);
}

static void audit_account_event(struct broker *b, const struct account *a, const char *event,
                                const char *scope_key, uint64_t generation, const char *error)
{
        struct audit_record record = {
            .event = event,
            .account = a->name,
            .scope_key = scope_key,
            .generation = generation,
            .error = error,
        };

        /* Account events describe what already happened upstream: a failed write is logged
         * but cannot undo it. Token issues and denials are the records that gate replies. */
        (void)audit_write(b->audit, &record);
}

static void set_state(struct broker *b, struct account *a, enum account_state state,
                      const char *event, const char *message)
{
        a->state = state;
        log_error("Account %s needs an administrator: %s", a->name, message);
        audit_account_event(b, a, event, NULL, 0, message);
}

/* Answers the waiters a refresh's outcome answers: after a failure of the account, all of them;
 * after a success or a refusal of one scope set, those that asked for that set (a cached token
 * for another set may be too short for their min_ttl, which is why they waited). The others
 * wait for a refresh of their own. */
static void answer_waiters(struct broker *b, struct account *a, const char *scope_key,
                           enum refresh_outcome outcome)
{
        struct waiter *list = account_take_waiters(a), *leftover = NULL,
                      **leftover_tail = &leftover;

        while (list) {
                struct waiter *w = list;
                list = w->next;
                w->next = NULL;
                if (outcome != REFRESH_FAILED && strcmp(w->scope_key, scope_key) != 0) {
                        *leftover_tail = w;
                        leftover_tail = &w->next;
                        continue;
                }
                request_answer_waiter(b, w, outcome);
        }
        while (leftover) {
                struct waiter *w = leftover;
                leftover = w->next;
                account_add_waiter(a, w);
        }
        if (a->waiters)
                refresh_start(b, a, a->waiters->scope_key);
}

/* A transient failure: back off, tell the log and the audit trail. */
static void transient_failure(struct broker *b, struct account *a, const char *scope_key,
                              uint32_t retry_after, const char *message)
{
        uint32_t delay = account_backoff(a, retry_after, now_boottime_usec());

        log_warning("Account %s: cannot refresh (%s); retrying in %u s.", a->name, message, delay);
        audit_account_event(b, a, "refresh_failed", scope_key, 0, message);
}

static void store_rotated_refresh_token(struct broker *b, struct account *a,
                                        const struct secret *token, const char *scope_key)
{
        uint64_t generation;
        int r;

        fault_point("after-receive");
        r = store_write_refresh_token(b->store, a->name, token, &generation);
        if (r < 0) {
                /* The previous generation is still in the store; Microsoft keeps it valid, a
                 * strict server may not. Say so loudly. */
                log_error_errno(r, "Account %s: failed to store the rotated refresh token",
                                a->name);
                audit_account_event(b, a, "rotation_failed", scope_key, 0,
                                    "the rotated refresh token could not be stored");
                return;
        }
        audit_account_event(b, a, "refresh", scope_key, generation, NULL);
}

static enum refresh_outcome take_new_token(struct broker *b, struct account *a,
                                           const char *scope_key, struct idp_result *result)
{
        struct cached_token *t;
        int e;

        if (result->refresh_token)
                store_rotated_refresh_token(b, a, result->refresh_token, scope_key);
        else
                audit_account_event(b, a, "refresh", scope_key, 0, NULL);
        e = token_cache_put(&b->cache, a->name, scope_key, &result->access_token, result->scope,
                            result->sent_at_usec, result->expires_in, &t);
        if (e < 0) {
                transient_failure(b, a, scope_key, 0, "the new token could not be cached");
                return REFRESH_FAILED;
        }
        audit_fingerprint(b->audit, t->access_token, t->fingerprint);
        a->failures = 0;
        a->retry_at_usec = 0;
        log_info("Account %s: new access token for %s, valid %llu s.", a->name, scope_key,
                 (unsigned long long)result->expires_in);
        return REFRESH_FRESH;
}

static void on_refresh_done(struct idp_result *result, void *userdata)
{
        struct refresh *r = userdata;
        struct broker *b = r->broker;
        struct account *a = r->account;
        enum refresh_outcome outcome = REFRESH_FAILED;

        /* The request is upstream (which may have rotated the token) and nothing of the answer
         * has been acted on: to the token store, the same as dying before the answer came. */
        fault_point("after-send");
        a->refreshing = false;
        switch (result->outcome) {
        case IDP_OK:
                outcome = take_new_token(b, a, r->scope_key, result);
                break;
        case IDP_TRANSIENT:
                transient_failure(b, a, r->scope_key, result->retry_after, result->message);
                break;
        case IDP_SCOPES_REFUSED:
                /* One scope set is wrong, not the account: the others keep working. */
                log_error("Account %s: scopes %s refused: %s", a->name, r->scope_key,
                          result->message);
                audit_account_event(b, a, "refresh_failed", r->scope_key, 0, result->message);
                outcome = REFRESH_SCOPES_REFUSED;
                break;
        case IDP_REAUTH:
                set_state(b, a, ACCOUNT_NEEDS_REAUTH, "reauth_required", result->message);
                break;
        case IDP_CONFIG:
                set_state(b, a, ACCOUNT_NEEDS_CONFIG, "needs_config", result->message);
                break;
        }
        answer_waiters(b, a, r->scope_key, outcome);
        refresh_free(r);
}

void refresh_start(struct broker *b, struct account *a, const char *scope_key)
{
        _cleanup_secret_ struct secret *refresh_token = NULL;
        _cleanup_free_ char *scope = NULL;
        struct refresh *r = NULL;
        uint64_t generation;
        int e;

        if (a->refreshing)
                return; /* its completion answers the waiters */
        if (a->state != ACCOUNT_OK || now_boottime_usec() < a->retry_at_usec)
                goto fail;

        e = store_read_refresh_token(b->store, a->name, &refresh_token, &generation);
        if (e == -ENOENT) {
                set_state(b, a, ACCOUNT_NEEDS_REAUTH, "reauth_required",
                          "no refresh token in the credential store");
                goto fail;
        }
        if (e < 0) {
                log_error_errno(e, "Account %s: cannot read the refresh token", a->name);
                transient_failure(b, a, scope_key, 0, "the credential store is unavailable");
                goto fail;
        }

        /* offline_access asks for the rotated refresh token the next refresh needs. */
        r = calloc(1, sizeof(*r));
        if (r && asprintf(&scope, "%s offline_access", scope_key) < 0)
                scope = NULL; /* asprintf() leaves it undefined on failure */
        if (!r || !scope || !(r->scope_key = strdup(scope_key))) {
                refresh_free(r);
                transient_failure(b, a, scope_key, 0, "out of memory");
                goto fail;
        }
        r->broker = b;
        r->account = a;

        struct idp_refresh_grant grant = {
            .token_endpoint = a->token_endpoint,
            .client_id = a->meta.client_id,
            .refresh_token = refresh_token,
            .scope = scope,
        };
        e = idp_request_refresh(b->idp, &grant, on_refresh_done, r);
        if (e < 0) {
                refresh_free(r);
                log_error_errno(e, "Account %s: cannot start a refresh", a->name);
                transient_failure(b, a, scope_key, 0, "the HTTPS request could not start");
                goto fail;
        }
        a->refreshing = true;
        log_debug("Account %s: refreshing %s (refresh token generation %llu).", a->name, scope_key,
                  (unsigned long long)generation);
        return;
fail:
        /* Nothing will complete for the waiters: answer them now. */
        answer_waiters(b, a, scope_key, REFRESH_FAILED);
}
