/* Refreshing an account's access token: read the refresh token from the store, ask the token
 * endpoint, store the rotated refresh token (design.md §6), cache the access token, and answer
 * every request that waited. At most one refresh per account is in flight.
 *
 * The store steps run on the store worker's thread, never on the loop, so a slow or stalled
 * token delays only the requests that need it:
 *
 *   refresh_start ──(worker) read refresh token──▶ on_refresh_token_read
 *     ──(loop) HTTPS through idp──▶ on_refresh_done: access token cached
 *     ──(worker) store rotated refresh token──▶ on_rotated_token_stored: answer the waiters
 *
 * A request never waits on the store longer than STORE_WAIT_SEC: refresh_store_tick() answers
 * it from the cache when a token there fits, `unavailable` otherwise. The job itself goes on;
 * its result still lands (a late refresh fills the cache for the next request). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refresh.h"
#include "refresh-queue.h"

#include "accounts.h"
#include "audit.h"
#include "cleanup.h"
#include "broker.h"
#include "config.h"
#include "fault.h"
#include "grant.h"
#include "hashmap.h"
#include "idp.h"
#include "log.h"
#include "metrics.h"
#include "store-worker.h"
#include "token-cache.h"
#include "util.h"
#include "waiter.h"

struct refresh {
        struct broker *broker;
        struct account *account;
        char *scope_key;
        char *scope;                  /* what is asked for: the scope key and offline_access */
        enum refresh_outcome outcome; /* once the token endpoint answered */
        uint64_t generation; /* of the refresh token sent; 0: app-only, or not in the store */
        struct grant_credential_call credential; /* app-only accounts: secret or assertion */
        /* The place it holds among its authority's refreshes in flight, until the token
         * endpoint answered (NULL once given back). */
        struct refresh_authority *authority;
};

static struct refresh_authority *slot_take_back(struct refresh *r)
{
        return TAKE_PTR(r->authority);
}

static void refresh_free(struct refresh *r)
{
        if (!r)
                return;
        refresh_slot_release(slot_take_back(r));
        free(r->scope_key);
        free(r->scope);
        secret_free(r->credential.credential);
        free(r);
}

/* The end of a refresh outside the queue's dispatch: its place, if it still held one, goes to
 * the next refresh queued for its authority. */
static void refresh_end(struct refresh *r)
{
        struct broker *b = r->broker;
        struct refresh_authority *auth = slot_take_back(r);

        refresh_free(r);
        if (auth) {
                refresh_slot_release(auth);
                refresh_queue_dispatch(b, auth);
        }
}

static void audit_account_event(struct audit *audit, const struct account *a, const char *event,
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
        (void)audit_write(audit, &record);
}

static void set_state(struct audit *audit, struct account *a, enum account_state state,
                      const char *event, const char *message)
{
        a->reauth_interrupted = false;
        a->state = state;
        account_set_message(a, "%s", message);
        log_error("Account %s needs an administrator: %s", a->name, message);
        audit_account_event(audit, a, event, NULL, 0, message);
}

static void on_mark_cleared(struct store_job *job, void *userdata)
{
        (void)userdata;
        if (job->result < 0 && job->result != -ECANCELED)
                log_debug_errno(job->result, "Account %s: cannot clear the refresh marker",
                                job->account);
}

/* The token endpoint answered without rotating the refresh token sent: the marker written
 * before sending it (store_mark_refresh()) would otherwise say after a restart that this run
 * stopped during the refresh. Queued behind the account's other store jobs; best effort. */
static void clear_refresh_mark(struct store_worker *worker, const struct refresh *r)
{
        struct store_job *job = NULL;

        if (r->generation == 0)
                return;
        if (store_job_new(STORE_JOB_CLEAR_REFRESH_MARK, r->account->name, &job) < 0 ||
            store_worker_submit(worker, job, on_mark_cleared, NULL) < 0)
                store_job_free(job);
}

/* The token endpoint refused the refresh token (invalid_grant and the like). When the previous
 * run of the broker stopped during a refresh with this very token (its marker says so), a
 * server with strict rotation had already replaced it with one that died with that run: the
 * family was lost in a crash, not revoked. The audit record (reason "interrupted_refresh") and
 * the status (interrupted_refresh) say which, and the marker is kept so later runs say it too. */
static void reauth_required(struct broker *b, struct account *a, const struct refresh *r,
                            const char *message)
{
        bool interrupted = r->generation != 0 && a->interrupted_generation == r->generation;
        struct audit_record record = {
            .event = "reauth_required",
            .account = a->name,
            .generation = r->generation,
            .reason = interrupted ? "interrupted_refresh" : NULL,
        };

        if (!interrupted) {
                set_state(b->audit, a, ACCOUNT_NEEDS_REAUTH, "reauth_required", message);
                clear_refresh_mark(b->store_worker, r);
                return;
        }
        a->state = ACCOUNT_NEEDS_REAUTH;
        a->reauth_interrupted = true;
        account_set_message(a,
                            "the previous run stopped during a refresh with refresh token "
                            "generation %llu, whose rotated token was lost with it (not a "
                            "revocation): %.100s",
                            (unsigned long long)r->generation, message);
        record.error = account_message(a);
        log_error("Account %s needs an administrator: %s", a->name, record.error);
        (void)audit_write(b->audit, &record);
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

        uint64_t now = now_boottime_usec();

        while (list) {
                struct waiter *w = list;

                list = w->next;
                w->next = NULL;
                if (outcome != REFRESH_FAILED && strcmp(w->scope_key, scope_key) != 0) {
                        /* Waiting for min_ttl's sake, on a token that now may not be replaced
                         * for it (the account just asked upstream): that token, as it is. */
                        if (accounts_cached_token(&b->cache, a, w->scope_key, w->min_ttl,
                                                  b->config->min_refresh_interval_sec, now)) {
                                waiter_answer(b, w, REFRESH_FRESH);
                                continue;
                        }
                        *leftover_tail = w;
                        leftover_tail = &w->next;
                        continue;
                }
                waiter_answer(b, w, outcome);
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
static void transient_failure(struct audit *audit, struct account *a, const char *scope_key,
                              uint32_t retry_after, const char *message)
{
        uint32_t delay = account_backoff(a, retry_after, now_boottime_usec());

        account_set_message(a, "%s", message);
        log_warning("Account %s: cannot refresh (%s); retrying in %u s.", a->name, message, delay);
        audit_account_event(audit, a, "refresh_failed", scope_key, 0, message);
}

/* ---- the store steps ---- */

/* The store failed or is reopening its session: no request for the account is sent to it for
 * STORE_RETRY_AFTER_SEC. Not the upstream backoff: the store has its own, and an HSM that was
 * away for a while must not leave accounts backing off for minutes after it is back. */
static void store_failure(struct audit *audit, struct account *a, const char *scope_key, int error,
                          const char *message)
{
        log_warning_errno(error, "Account %s: %s; retrying in %d s", a->name, message,
                          STORE_RETRY_AFTER_SEC);
        audit_account_event(audit, a, "refresh_failed", scope_key, 0, message);
        a->retry_at_usec = now_boottime_usec() + STORE_RETRY_AFTER_SEC * USEC_PER_SEC;
}

/* Answers, with REFRESH_STORE_UNAVAILABLE, the waiters of accounts whose store job has kept
 * them STORE_WAIT_SEC or longer. (The cache still serves them when a token there fits.) */
void refresh_store_tick(void *userdata)
{
        struct broker *b = userdata;
        uint64_t now = now_boottime_usec(), limit = STORE_WAIT_SEC * USEC_PER_SEC;

        for (struct account *a = accounts_first(b->accounts); a; a = a->next) {
                struct waiter *list, *expired = NULL, **expired_tail = &expired;

                if (a->store_since_usec == 0 || !a->waiters || now - a->store_since_usec < limit)
                        continue;
                list = account_take_waiters(a);
                while (list) {
                        struct waiter *w = list;

                        list = w->next;
                        w->next = NULL;
                        if (now - w->since_usec >= limit) {
                                *expired_tail = w;
                                expired_tail = &w->next;
                        } else {
                                account_add_waiter(a, w);
                        }
                }
                if (expired)
                        log_warning(
                            "Account %s: the credential store has not answered for %llu "
                            "s; answering the requests that waited for it.",
                            a->name,
                            (unsigned long long)((now - a->store_since_usec) / USEC_PER_SEC));
                /* Answering may run the connections' next requests, which may add waiters to
                 * a: they were all taken out first. */
                while (expired) {
                        struct waiter *w = expired;

                        expired = w->next;
                        w->next = NULL;
                        waiter_answer(b, w, REFRESH_STORE_UNAVAILABLE);
                }
        }
}

/* A rotated refresh token the store did not take stays with the account: with a strict server
 * it is the only valid one. */
static void keep_unstored(struct account *a, struct secret **token)
{
        secret_free(a->unstored_refresh_token);
        a->unstored_refresh_token = TAKE_PTR(*token);
}

/* The rotated refresh token is stored (or failed to be): the refresh is over. */
static void on_rotated_token_stored(struct store_job *job, void *userdata)
{
        struct refresh *r = userdata;
        struct broker *b = r->broker;
        struct account *a = r->account;

        account_store_job_done(a);
        if (job->result < 0) {
                /* The previous generation is still in the store; Microsoft keeps it valid, a
                 * strict server may not. Say so loudly, and keep the new one for the next
                 * refresh. */
                log_error_errno(job->result,
                                "Account %s: failed to store the rotated refresh token; keeping "
                                "it in memory and storing it before the next refresh",
                                a->name);
                audit_account_event(b->audit, a, "rotation_failed", r->scope_key, 0,
                                    "the rotated refresh token could not be stored");
                keep_unstored(a, &job->refresh_token);
        } else {
                audit_account_event(b->audit, a, "refresh", r->scope_key, job->generation, NULL);
                secret_free(TAKE_PTR(a->unstored_refresh_token));
                a->refresh_token_stored_at = now_realtime_usec() / USEC_PER_SEC;
        }
        /* The access token is in the cache whatever happened to the refresh token. */
        answer_waiters(b, a, r->scope_key, r->outcome);
        refresh_end(r);
}

/* Hands the rotated refresh token to the worker; the refresh ends when it is stored. Returns
 * false (and has audited the loss) when it cannot even be queued. */
static bool store_rotated_refresh_token(struct broker *b, struct refresh *r, struct secret **token)
{
        struct account *a = r->account;
        struct store_job *job = NULL;
        int e;

        fault_point("after-receive");
        e = store_job_new(STORE_JOB_WRITE_REFRESH_TOKEN, a->name, &job);
        if (e == 0) {
                job->refresh_token = TAKE_PTR(*token);
                e = account_submit_store_job(b->store_worker, a, ACCOUNT_REFRESH_STORE, job,
                                             on_rotated_token_stored, r);
        }
        if (e < 0) {
                if (job && job->refresh_token)
                        keep_unstored(a, &job->refresh_token);
                else if (*token)
                        keep_unstored(a, token);
                store_job_free(job);
                log_error_errno(e, "Account %s: cannot store the rotated refresh token", a->name);
                audit_account_event(b->audit, a, "rotation_failed", r->scope_key, 0,
                                    "the rotated refresh token could not be stored");
                return false;
        }
        return true;
}

/* Caches the new access token. Returns whether a rotated refresh token is being stored: then
 * the refresh ends in on_rotated_token_stored(). */
static bool take_new_token(struct broker *b, struct refresh *r, struct idp_result *result)
{
        struct account *a = r->account;
        struct cached_token *t;
        int e;

        e = token_cache_put(&b->cache, a->name, r->scope_key, &result->access_token, result->scope,
                            result->sent_at_usec, result->expires_in, &t);
        if (e < 0) {
                transient_failure(b->audit, a, r->scope_key, 0,
                                  "the new token could not be cached");
                r->outcome = REFRESH_FAILED;
        } else {
                audit_fingerprint(b->audit, t->access_token, t->fingerprint);
                a->failures = 0;
                a->retry_at_usec = 0;
                account_clear_message(a);
                a->last_refresh_at = now_realtime_usec() / USEC_PER_SEC;
                log_info("Account %s: new access token for %s, valid %llu s.", a->name,
                         r->scope_key, (unsigned long long)result->expires_in);
                r->outcome = REFRESH_FRESH;
        }
        /* Kept even when the access token could not be: it may be the only valid one. */
        if (result->refresh_token)
                return store_rotated_refresh_token(b, r, &result->refresh_token);
        clear_refresh_mark(b->store_worker, r); /* a server that does not rotate */
        if (e == 0)
                audit_account_event(b->audit, a, "refresh", r->scope_key, 0, NULL);
        return false;
}

static void on_refresh_done(struct idp_result *result, void *userdata)
{
        struct refresh *r = userdata;
        struct broker *b = r->broker;
        struct account *a = r->account;
        enum refresh_outcome outcome = REFRESH_FAILED;
        /* The token endpoint answered: the next queued refresh may go, once this one's answer
         * has been acted on (refresh_queue_dispatch() below). */
        struct refresh_authority *auth = slot_take_back(r);

        refresh_slot_release(auth);
        /* The request is upstream (which may have rotated the token) and nothing of the answer
         * has been acted on: to the token store, the same as dying before the answer came. */
        fault_point("after-send");
        account_refresh_to(a, ACCOUNT_REFRESH_IDLE);
        (void)grant_credential_refused(&r->credential, result); /* PS256 refused: RS256 next */
        metrics_upstream(&b->metrics, result->outcome);
        switch (result->outcome) {
        case IDP_OK:
                if (take_new_token(b, r, result)) {
                        refresh_queue_dispatch(b, auth);
                        return; /* continues in on_rotated_token_stored() */
                }
                outcome = r->outcome;
                break;
        case IDP_TRANSIENT:
                transient_failure(b->audit, a, r->scope_key, result->retry_after, result->message);
                break;
        case IDP_SCOPES_REFUSED:
                /* One scope set is wrong, not the account: the others keep working. */
                clear_refresh_mark(b->store_worker, r);
                log_error("Account %s: scopes %s refused: %s", a->name, r->scope_key,
                          result->message);
                audit_account_event(b->audit, a, "refresh_failed", r->scope_key, 0,
                                    result->message);
                outcome = REFRESH_SCOPES_REFUSED;
                break;
        case IDP_REAUTH:
                reauth_required(b, a, r, result->message);
                break;
        case IDP_CONFIG:
                clear_refresh_mark(b->store_worker, r);
                set_state(b->audit, a, ACCOUNT_NEEDS_CONFIG, "needs_config", result->message);
                break;
        }
        answer_waiters(b, a, r->scope_key, outcome);
        refresh_free(r);
        refresh_queue_dispatch(b, auth);
}

/* No new HTTPS request while the broker shuts down: the waiters are answered and r is freed. */
static bool abandon_if_stopping(struct refresh *r)
{
        if (!r->broker->stopping)
                return false;
        answer_waiters(r->broker, r->account, r->scope_key, REFRESH_FAILED);
        refresh_end(r);
        return true;
}

/* The worker has read the refresh token: send it to the token endpoint. */
static void on_refresh_token_read(struct store_job *job, void *userdata)
{
        struct refresh *r = userdata;
        struct broker *b = r->broker;
        struct account *a = r->account;
        int e = job->result;

        account_store_job_done(a);
        if (abandon_if_stopping(r))
                return;
        if (e == -ENOENT) {
                set_state(b->audit, a, ACCOUNT_NEEDS_REAUTH, "reauth_required",
                          "no refresh token in the credential store");
                goto fail;
        }
        if (e < 0) {
                store_failure(b->audit, a, r->scope_key, e, "cannot read the refresh token");
                goto fail;
        }

        r->generation = job->generation;
        if (job->interrupted)
                a->interrupted_generation = job->generation;

        struct idp_refresh_grant grant = {
            .token_endpoint = a->token_endpoint,
            .client_id = a->meta.client_id,
            .refresh_token = job->refresh_token,
            .scope = r->scope,
            .generic = account_meta_is_generic_oauth(&a->meta),
        };
        e = idp_request_refresh(b->idp, &grant, on_refresh_done, r);
        if (e < 0) {
                log_error_errno(e, "Account %s: cannot start a refresh", a->name);
                transient_failure(b->audit, a, r->scope_key, 0,
                                  "the HTTPS request could not start");
                goto fail;
        }
        account_refresh_to(a, ACCOUNT_REFRESH_UPSTREAM);
        a->last_upstream_usec = now_boottime_usec();
        log_debug("Account %s: refreshing %s (refresh token generation %llu).", a->name,
                  r->scope_key, (unsigned long long)job->generation);
        return;
fail:
        answer_waiters(b, a, r->scope_key, REFRESH_FAILED);
        refresh_end(r);
}

/* A refresh token kept in memory (on_rotated_token_stored()) is written again before it is
 * used; whether or not that works, it is the one to send, never the older one in the store. */
static void on_unstored_token_written(struct store_job *job, void *userdata)
{
        struct refresh *r = userdata;
        struct account *a = r->account;

        if (job->result >= 0) {
                log_info("Account %s: the refresh token kept in memory is stored now "
                         "(generation %llu).",
                         a->name, (unsigned long long)job->generation);
                audit_account_event(r->broker->audit, a, "refresh_token_stored", r->scope_key,
                                    job->generation, NULL);
                secret_free(TAKE_PTR(a->unstored_refresh_token));
                a->refresh_token_stored_at = now_realtime_usec() / USEC_PER_SEC;
        } else {
                log_error_errno(job->result,
                                "Account %s: still cannot store the refresh token kept in memory",
                                a->name);
        }
        job->result = 0;
        on_refresh_token_read(job, userdata);
}

/* What a delegated account's refresh starts with: reading its refresh token from the store, or
 * writing the one kept in memory (a copy: the account keeps its own until it is stored). */
static int new_refresh_token_job(struct account *a, struct store_job **ret)
{
        struct store_job *job = NULL;
        int e;

        if (!a->unstored_refresh_token) {
                e = store_job_new(STORE_JOB_READ_REFRESH_TOKEN, a->name, ret);
                if (e == 0)
                        (*ret)->mark_refresh = true;
                return e;
        }
        e = store_job_new(STORE_JOB_WRITE_REFRESH_TOKEN, a->name, &job);
        if (e == 0)
                job->mark_refresh = true;
        if (e == 0)
                e = secret_new_from(secret_data(a->unstored_refresh_token),
                                    secret_len(a->unstored_refresh_token), &job->refresh_token);
        if (e < 0) {
                store_job_free(job);
                return e;
        }
        *ret = job;
        return 0;
}

/* An app-only account's secret was read, or its assertion signed: ask for a token with
 * client_credentials (a new request every time: there is no refresh token to use). */
static void on_credential_ready(struct store_job *job, void *userdata)
{
        struct refresh *r = userdata;
        struct broker *b = r->broker;
        struct account *a = r->account;
        int e = job->result;

        account_store_job_done(a);
        if (abandon_if_stopping(r))
                return;
        if (e == -ENOENT) {
                set_state(b->audit, a, ACCOUNT_NEEDS_CONFIG, "needs_config",
                          a->meta.flow_kind == ACCOUNT_FLOW_CLIENT_SECRET
                              ? "no client secret in the credential store"
                              : "no assertion key and certificate: run credbroker account keygen");
                goto fail;
        }
        if (e < 0) {
                store_failure(b->audit, a, r->scope_key, e,
                              a->meta.flow_kind == ACCOUNT_FLOW_CLIENT_SECRET
                                  ? "cannot read the client secret"
                                  : "cannot sign the client assertion");
                goto fail;
        }
        e = grant_post_client_credentials(b->idp, &a->meta, a->token_endpoint, r->scope,
                                          &r->credential, on_refresh_done, r);
        if (e < 0) {
                log_error_errno(e, "Account %s: cannot start a token request", a->name);
                transient_failure(b->audit, a, r->scope_key, 0,
                                  "the HTTPS request could not start");
                goto fail;
        }
        account_refresh_to(a, ACCOUNT_REFRESH_UPSTREAM);
        a->last_upstream_usec = now_boottime_usec();
        log_debug("Account %s: client_credentials for %s.", a->name, r->scope);
        return;
fail:
        answer_waiters(b, a, r->scope_key, REFRESH_FAILED);
        refresh_end(r);
}

static void start_app_only(struct broker *b, struct account *a, const char *scope_key,
                           struct refresh_authority *auth)
{
        struct store_job *job = NULL;
        struct refresh *r = calloc(1, sizeof(*r));
        int e;

        if (r)
                r->authority = auth;
        else
                refresh_slot_release(auth);
        if (!r ||
            grant_app_only_scope(
                scope_key,
                account_meta_graph_resource(&a->meta, b->config->graph_url, b->config->cloud),
                account_meta_is_generic_oauth(&a->meta), &r->scope) < 0 ||
            !(r->scope_key = strdup(scope_key)) ||
            store_job_new(STORE_JOB_CALL, a->name, &job) < 0) {
                refresh_free(r);
                transient_failure(b->audit, a, scope_key, 0, "out of memory");
                goto fail;
        }
        if (grant_credential_call_init(&r->credential, a->name, a->meta.flow_kind,
                                       a->token_endpoint, a->meta.client_id) < 0) {
                store_job_free(job);
                refresh_free(r);
                set_state(b->audit, a, ACCOUNT_NEEDS_CONFIG, "needs_config",
                          "the token endpoint or client id is too long for an assertion");
                goto fail;
        }
        grant_credential_call_set_alg(&r->credential, &a->meta);
        r->broker = b;
        r->account = a;
        job->call = grant_credential_fetch;
        job->call_arg = &r->credential;
        e = account_submit_store_job(b->store_worker, a, ACCOUNT_REFRESH_STORE, job,
                                     on_credential_ready, r);
        if (e < 0) {
                store_job_free(job);
                refresh_free(r);
                store_failure(b->audit, a, scope_key, e, "cannot queue the credential read");
                goto fail;
        }
        return;
fail:
        answer_waiters(b, a, scope_key, REFRESH_FAILED);
}

/* Whether a refresh of the account may be sent now: loaded, usable, not backing off. */
static bool account_ready(const struct account *a)
{
        return a->loaded && a->state == ACCOUNT_OK && now_boottime_usec() >= a->retry_at_usec;
}

/* Starts the refresh, holding a place among auth's refreshes in flight, which it gives back
 * (refresh_slot_release()) when it ends or cannot start. */
void refresh_begin(struct broker *b, struct account *a, const char *scope_key,
                   struct refresh_authority *auth)
{
        struct store_job *job = NULL;
        struct refresh *r = NULL;
        int e;

        /* Checked again: the account may have changed while it was queued. */
        if (!account_ready(a)) {
                refresh_slot_release(auth);
                goto fail;
        }
        if (account_flow_is_app_only(a->meta.flow_kind)) {
                start_app_only(b, a, scope_key, auth);
                return;
        }

        r = calloc(1, sizeof(*r));
        if (r)
                r->authority = auth;
        else
                refresh_slot_release(auth);
        /* offline_access asks for the rotated refresh token the next refresh needs; a
         * standards-only server (explicit token_endpoint) rotates without it. */
        if (r && account_meta_is_generic_oauth(&a->meta))
                r->scope = strdup(scope_key);
        else if (r && asprintf(&r->scope, "%s offline_access", scope_key) < 0)
                r->scope = NULL; /* asprintf() leaves it undefined on failure */
        if (!r || !r->scope || !(r->scope_key = strdup(scope_key)) ||
            new_refresh_token_job(a, &job) < 0) {
                refresh_free(r);
                transient_failure(b->audit, a, scope_key, 0, "out of memory");
                goto fail;
        }
        r->broker = b;
        r->account = a;
        e = account_submit_store_job(b->store_worker, a, ACCOUNT_REFRESH_STORE, job,
                                     job->kind == STORE_JOB_WRITE_REFRESH_TOKEN
                                         ? on_unstored_token_written
                                         : on_refresh_token_read,
                                     r);
        if (e < 0) {
                store_job_free(job);
                refresh_free(r);
                store_failure(b->audit, a, scope_key, e, "cannot queue the refresh token read");
                goto fail;
        }
        return;
fail:
        /* Nothing will complete for the waiters: answer them now. */
        answer_waiters(b, a, scope_key, REFRESH_FAILED);
}

void refresh_start(struct broker *b, struct account *a, const char *scope_key)
{
        struct refresh_authority *auth;

        if (a->refresh == ACCOUNT_REFRESH_QUEUED) {
                refresh_queue_hurry(b, a);
                return;
        }
        if (account_busy(a))
                return; /* its completion answers the waiters */
        if (!account_ready(a))
                goto fail;
        auth = refresh_authority_of(b, a->token_endpoint);
        if (!auth || refresh_queue_add(b, auth, a, scope_key) < 0) {
                transient_failure(b->audit, a, scope_key, 0, "out of memory");
                goto fail;
        }
        refresh_queue_dispatch(b, auth);
        return;
fail:
        /* Nothing will complete for the waiters: answer them now. */
        answer_waiters(b, a, scope_key, REFRESH_FAILED);
}
