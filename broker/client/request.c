/* What the broker does with each client request: ping, profiles, token. The token path decides
 * with the policy, answers from the cache when it can, and otherwise parks the request on its
 * account until refresh.c has an answer. Every issue and denial is audited before the reply. */
#include "build-config.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accounts.h"
#include "audit-aggregate.h"
#include "audit.h"
#include "broker.h"
#include "client.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "refresh.h"
#include "token-cache.h"
#include "util.h"
#include "waiter.h"

/* A token request waiting for its account: the engine's waiter (first, see waiter.h) and what
 * the reply and its audit record need. */
struct token_wait {
        struct waiter waiter;
        struct connection *connection;
        char profile[NAME_MAX_LEN + 1];
        char rule[POLICY_RULE_MAX_LEN]; /* the policy rule that allowed it, for the audit log */
};
static_assert(offsetof(struct token_wait, waiter) == 0, "waiter_free() frees a token_wait");

static void reply_error(struct connection *c, enum wire_error e, const char *message,
                        uint32_t retry_after)
{
        if (wire_reply_error(c->stream.out, e, message, retry_after) < 0)
                c->stream.closing = true;
}

/* A rate-limited peer is always told when to come back: wire_reply_error() leaves out a
 * retry_after of 0, and "now" would only invite a busy loop. */
static uint32_t rate_limit_retry_after(const struct policy_decision *d)
{
        return d->retry_after > 0 ? d->retry_after : 1;
}

static struct policy_peer policy_peer_of(const struct peer *p)
{
        return (struct policy_peer){
            .uid = p->uid,
            .gid = p->gid,
            .pid = p->pid,
            .groups = p->groups,
            .n_groups = p->n_groups,
            .exe = p->exe,
            .unit = p->unit,
        };
}

/* Writes the audit record of a denial; on failure queues an internal error and returns false.
 * The reason and the rule go to the audit log and the broker's own log, never to the peer. */
static bool audit_denial(struct connection *c, const char *profile, const char *account,
                         const char *scope_key, const struct policy_decision *d, const char *reason)
{
        bool rate_limited = d && d->verdict == POLICY_RATE_LIMITED;
        struct audit_record record = {
            .event = "deny",
            .peer = &c->stream.peer,
            .profile = profile,
            .account = account,
            .scope_key = scope_key,
            .decision = rate_limited ? "rate_limited" : "deny",
            .rule = d ? d->rule : NULL,
            .reason = reason,
            .rate_key = d ? d->rate_key : NULL,
            .retry_after = rate_limited ? rate_limit_retry_after(d) : 0,
        };

        /* Repeats of one kind are counted, not written one by one (audit-aggregate.h). */
        if (audit_write_denial(c->broker->denials, &record) < 0) {
                reply_error(c, WIRE_INTERNAL, "The broker cannot write its audit log.", 0);
                return false;
        }
        stream_log(&c->stream, LOG_LEVEL_INFO, "Denied uid=%u pid=%d profile %s: %s (%s).",
                   (unsigned)c->stream.peer.uid, (int)c->stream.peer.pid, profile, reason,
                   d ? d->rule : "-");
        return true;
}

/* Tells the peer nothing more than that it was denied: the audit log has the reason. */
static void deny(struct connection *c, const char *profile, const char *account,
                 const char *scope_key, const struct policy_decision *d, const char *reason)
{
        if (audit_denial(c, profile, account, scope_key, d, reason))
                reply_error(c, WIRE_DENIED, "Access denied.", 0);
}

/* Makes t->reply the framed reply for these expiry figures, rebuilding it only when they
 * changed since the last reply. */
static int token_reply_frame(struct cached_token *t, const struct wire_token_reply *reply)
{
        _cleanup_buf_ struct buf *frame = NULL;
        int r;

        if (t->reply && t->reply_expires_at == reply->expires_at &&
            t->reply_expires_in == reply->expires_in)
                return 0;
        secret_free(t->reply);
        t->reply = NULL;
        r = buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &frame);
        if (r == 0)
                r = wire_reply_token(frame, reply);
        if (r == 0)
                r = secret_new_from(buf_data(frame), buf_len(frame), &t->reply);
        if (r < 0)
                return r;
        t->reply_expires_at = reply->expires_at;
        t->reply_expires_in = reply->expires_in;
        return 0;
}

/* Whether key ("<profile> <rule>"; a profile name has no space) names profile and rule. */
static bool audit_key_is(const char *key, const char *profile, const char *rule)
{
        size_t n = strlen(profile);

        return key && strncmp(key, profile, n) == 0 && key[n] == ' ' &&
               strcmp(key + n + 1, rule) == 0;
}

/* The token's part of the issue record for this profile and rule (t->audit_part), printed
 * again only when they differ from the last time. */
static int token_part(struct cached_token *t, const struct audit_record *record)
{
        if (t->audit_part.text && audit_key_is(t->audit_key, record->profile, record->rule))
                return 0;
        audit_part_clear(&t->audit_part);
        free(t->audit_key);
        if (asprintf(&t->audit_key, "%s %s", record->profile, record->rule) < 0) {
                t->audit_key = NULL;
                return -ENOMEM;
        }
        return audit_issue_token_part(record, &t->audit_part);
}

/* Makes c->issued the prepared audit record for this issue. A client that asks again for the
 * same cached token under the same profile and rule within the same second gets the same
 * record but for its time and sequence number, so it is printed once, not per request; one
 * that asks for another token gets a record put together from parts printed once each: its
 * own and the token's. */
static int issue_record_prepare(struct connection *c, const struct audit_record *record,
                                struct cached_token *t)
{
        struct issued_record *p = &c->issued;
        int r;

        if (p->record.body && p->token_id == t->id && p->expires_at == record->expires_at &&
            strcmp(p->profile, record->profile) == 0 && strcmp(p->rule, record->rule) == 0)
                return 0;
        audit_prepared_clear(&p->record);
        if (!p->peer_part.text) {
                r = audit_issue_peer_part(record, &p->peer_part);
                if (r < 0)
                        return r;
        }
        r = token_part(t, record);
        if (r >= 0)
                r = audit_prepare_issue(c->broker->audit, &p->peer_part, &t->audit_part,
                                        record->expires_at, &p->record);
        if (r < 0)
                return r;
        p->token_id = t->id;
        p->expires_at = record->expires_at;
        snprintf(p->profile, sizeof(p->profile), "%s", record->profile);
        snprintf(p->rule, sizeof(p->rule), "%s", record->rule);
        return 0;
}

/* Audits the issue, then queues the token reply. Nothing is sent if the audit write fails. */
static void issue(struct connection *c, const char *profile, struct account *a, const char *rule,
                  struct cached_token *t, uint64_t now_usec)
{
        struct broker *b = c->broker;
        uint64_t ttl = cached_token_ttl(t, now_usec);
        uint64_t expires_at = now_realtime_usec() / USEC_PER_SEC + ttl;
        struct audit_record record = {
            .event = "issue",
            .peer = &c->stream.peer,
            .profile = profile,
            .account = a->name,
            .scopes = t->scopes,
            .n_scopes = t->n_scopes,
            .decision = "allow",
            .rule = rule,
            .fingerprint = t->fingerprint,
            .expires_at = expires_at,
        };
        struct wire_token_reply reply = {
            .access_token = secret_str(t->access_token),
            .expires_at = expires_at,
            .expires_in = ttl,
            .scopes = t->scopes,
            .n_scopes = t->n_scopes,
            .account = a->name,
            .mailbox = a->meta.mailbox,
            .graph = account_meta_graph_url(&a->meta, b->config->graph_url),
            .delegated = !account_flow_is_app_only(a->meta.flow_kind),
            .ca_file = b->config->ca_bundle,
        };

        if (issue_record_prepare(c, &record, t) < 0 ||
            audit_write_prepared(b->audit, &c->issued.record) < 0) {
                reply_error(c, WIRE_INTERNAL, "The broker cannot write its audit log.", 0);
                return;
        }
        if (token_reply_frame(t, &reply) < 0 ||
            buf_put(c->stream.out, secret_data(t->reply), secret_len(t->reply)) < 0)
                reply_error(c, WIRE_INTERNAL, "The token reply could not be built.", 0);
        else
                metrics_token_issued(b, profile);
}

static void reply_account_unusable(struct connection *c, const struct account *a)
{
        reply_error(c, WIRE_REAUTH_REQUIRED,
                    a->state == ACCOUNT_NEEDS_REAUTH
                        ? "The account must be signed in again by an administrator."
                        : "The account's configuration must be fixed by an administrator.",
                    0);
}

static void reply_unavailable(struct connection *c, const struct account *a, uint64_t now)
{
        uint64_t wait =
            a->retry_at_usec > now ? (a->retry_at_usec - now + USEC_PER_SEC - 1) / USEC_PER_SEC : 1;

        reply_error(c, WIRE_UNAVAILABLE, "The identity provider is unavailable; try again later.",
                    (uint32_t)wait);
}

static void reply_store_unavailable(struct connection *c)
{
        reply_error(c, WIRE_UNAVAILABLE, "The credential store is not answering; try again later.",
                    STORE_RETRY_AFTER_SEC);
}

/* Answers from the cache when the token there has enough life left, or when min_ttl asks for
 * more but the account may not be refreshed for it yet (account_token_serves()): then the reply
 * carries the token's real expires_in, shorter than min_ttl. Starts a refresh ahead of expiry
 * (at ~75% of the lifetime) while still answering from the cache. */
static bool try_cache(struct connection *c, const char *profile, struct account *a,
                      const char *scope_key, uint32_t min_ttl, const char *rule)
{
        struct broker *b = c->broker;
        uint64_t now = now_boottime_usec();
        struct cached_token *t = accounts_cached_token(&b->cache, a, scope_key, min_ttl,
                                                       b->config->min_refresh_interval_sec, now);

        if (!t)
                return false;
        issue(c, profile, a, rule, t, now);
        if (now >= t->refresh_usec)
                refresh_start(b, a, scope_key);
        return true;
}

/* The policy's decision on a token request, and the scope key it is for (*owned_key when the
 * request names scopes). Replies and returns NULL when the request goes no further. */
static const struct policy_profile *authorize(struct connection *c, const struct wire_request *req,
                                              struct policy_decision *decision,
                                              const char **ret_scope_key, char **owned_key)
{
        struct broker *b = c->broker;
        const struct policy_profile *profile = policy_set_find(b->policy, req->profile);
        struct policy_peer peer = policy_peer_of(&c->stream.peer);
        const char *account;

        if (!profile) {
                metrics_unknown_profile(&b->metrics);
                if (audit_denial(c, req->profile, NULL, NULL, NULL, "unknown profile"))
                        reply_error(c, WIRE_UNKNOWN_PROFILE, "No such profile.", 0);
                return NULL;
        }
        policy_evaluate(
            profile, &peer,
            &(struct policy_request){
                .scopes = req->scopes, .n_scopes = req->n_scopes, .min_ttl = req->min_ttl},
            &(struct policy_time){.wall = time(NULL), .monotonic_usec = now_boottime_usec()},
            b->limiter, decision);
        if (req->n_scopes > 0) {
                if (scope_key_build(req->scopes, req->n_scopes, owned_key) < 0) {
                        reply_error(c, WIRE_INTERNAL, "Out of memory.", 0);
                        return NULL;
                }
                *ret_scope_key = *owned_key;
        } else {
                *ret_scope_key = policy_profile_scope_key(profile);
        }
        account = policy_profile_account(profile);
        if (decision->verdict == POLICY_RATE_LIMITED) {
                metrics_token_denied(b, req->profile, METRICS_DENIED_RATE_LIMITED);
                if (audit_denial(c, req->profile, account, *ret_scope_key, decision,
                                 decision->reason))
                        reply_error(c, WIRE_RATE_LIMITED, "Too many requests; try again later.",
                                    rate_limit_retry_after(decision));
                return NULL;
        }
        /* policy_evaluate() allows only scopes the profile allows (policy_profile_allows_scopes()):
         * a request for others is denied there, with "scope not allowed by the profile". */
        if (decision->verdict != POLICY_ALLOW) {
                metrics_token_denied(b, req->profile, METRICS_DENIED_POLICY);
                deny(c, req->profile, account, *ret_scope_key, decision, decision->reason);
                return NULL;
        }
        return profile;
}

void request_reply_error(struct connection *c, enum wire_error e, const char *message,
                         uint32_t retry_after)
{
        reply_error(c, e, message, retry_after);
}

const struct policy_profile *request_authorize(struct connection *c, const char *profile,
                                               struct policy_decision *decision)
{
        struct wire_request req = {.op = WIRE_OP_TOKEN};
        _cleanup_free_ char *owned_key = NULL;
        const char *scope_key = NULL;

        snprintf(req.profile, sizeof(req.profile), "%s", profile);
        return authorize(c, &req, decision, &scope_key, &owned_key);
}

/* The engine's answer to a token request that waited (waiter.h): the reply, then the
 * connection's next requests. */
static void on_token_answer(struct broker *b, struct waiter *w, enum refresh_outcome outcome)
{
        struct token_wait *tw = container_of(w, struct token_wait, waiter);
        struct connection *c = tw->connection;
        struct account *a = w->account;
        uint64_t now = now_boottime_usec();
        struct cached_token *t = token_cache_get(&b->cache, a->name, w->scope_key);

        c->waiting = NULL;
        if (outcome == REFRESH_NOT_PROVISIONED)
                reply_error(c, WIRE_REAUTH_REQUIRED,
                            "The profile's account is not provisioned in the credential store.", 0);
        else if (!a->loaded)
                /* Its metadata never came: nothing can be issued for it. */
                reply_store_unavailable(c);
        else if (outcome == REFRESH_FRESH && t && cached_token_ttl(t, now) > 0)
                /* Just obtained: handed out even below min_ttl, as no better token exists. */
                issue(c, tw->profile, a, tw->rule, t, now);
        else if (t && cached_token_fits(t, w->min_ttl, now))
                /* REFRESH_CACHED, or the refresh failed but the cached token still meets the
                 * request. */
                issue(c, tw->profile, a, tw->rule, t, now);
        else if (outcome == REFRESH_SCOPES_REFUSED)
                reply_error(c, WIRE_REAUTH_REQUIRED,
                            "The identity provider refused these scopes for the account; an "
                            "administrator must fix the profile or the app's permissions.",
                            0);
        else if (outcome == REFRESH_STORE_UNAVAILABLE)
                reply_store_unavailable(c);
        else if (a->state != ACCOUNT_OK)
                reply_account_unusable(c, a);
        else
                reply_unavailable(c, a, now);
        waiter_free(w);
        stream_resume(&c->stream);
}

/* Parks the request on its account until the engine answers it (on_token_answer()). */
static void wait_for_token(struct connection *c, const struct wire_request *req, struct account *a,
                           const char *scope_key, char **owned_key,
                           const struct policy_decision *decision)
{
        struct token_wait *tw = calloc(1, sizeof(*tw));

        if (!tw) {
                reply_error(c, WIRE_INTERNAL, "Out of memory.", 0);
                return;
        }
        tw->connection = c;
        memcpy(tw->profile, req->profile, sizeof(tw->profile));
        memcpy(tw->rule, decision->rule, sizeof(tw->rule));
        tw->waiter.account = a;
        tw->waiter.scope_key = *owned_key ? TAKE_PTR(*owned_key) : strdup(scope_key);
        if (!tw->waiter.scope_key) {
                free(tw);
                reply_error(c, WIRE_INTERNAL, "Out of memory.", 0);
                return;
        }
        tw->waiter.min_ttl = req->min_ttl;
        tw->waiter.answer = on_token_answer;
        c->waiting = &tw->waiter;
        account_add_waiter(a, &tw->waiter);
        /* May answer it at once (and clear c->waiting) when the refresh cannot start. */
        refresh_start(c->broker, a, tw->waiter.scope_key);
}

static void handle_token(struct connection *c, const struct wire_request *req)
{
        struct broker *b = c->broker;
        const struct policy_profile *profile;
        struct policy_decision decision;
        _cleanup_free_ char *owned_key = NULL;
        const char *scope_key = NULL;
        struct account *a = NULL;
        uint64_t now;
        int r;

        profile = authorize(c, req, &decision, &scope_key, &owned_key);
        if (!profile)
                return;
        r = accounts_get(b, policy_profile_account(profile), &a);
        if (r < 0) {
                log_warning_errno(r, "Profile %s: account %s cannot be loaded", req->profile,
                                  policy_profile_account(profile));
                reply_error(c, WIRE_UNAVAILABLE, "The credential store cannot take more work.",
                            STORE_RETRY_AFTER_SEC);
                return;
        }
        if (try_cache(c, req->profile, a, scope_key, req->min_ttl, decision.rule))
                return;
        if (a->state != ACCOUNT_OK) {
                reply_account_unusable(c, a);
                return;
        }
        now = now_boottime_usec();
        if (!account_busy(a) && now < a->retry_at_usec) {
                reply_unavailable(c, a, now);
                return;
        }
        wait_for_token(c, req, a, scope_key, &owned_key, &decision);
}

static void handle_profiles(struct connection *c)
{
        struct broker *b = c->broker;
        struct policy_peer peer = policy_peer_of(&c->stream.peer);
        size_t n = policy_set_count(b->policy), allowed = 0;
        struct policy_time now = {.wall = time(NULL), .monotonic_usec = now_boottime_usec()};
        _cleanup_free_ char **names = calloc(n ? n : 1, sizeof(char *));

        if (!names) {
                reply_error(c, WIRE_INTERNAL, "Out of memory.", 0);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                const struct policy_profile *p = policy_set_get(b->policy, i);
                struct policy_decision d;

                policy_evaluate_peer(p, &peer, &now, &d);
                if (d.verdict == POLICY_ALLOW)
                        names[allowed++] = (char *)policy_profile_name(p);
        }
        if (wire_reply_profiles(c->stream.out, names, allowed) < 0)
                reply_error(c, WIRE_INTERNAL, "Out of memory.", 0);
}

/* A client usually repeats one request (same profile, same scopes): keeping the last one
 * parsed saves the JSON parse, the largest share of user-space work left on the cached-token
 * path. Requests hold no secrets, so the copy needs no care beyond its bound. */
static const struct wire_request *parse_request(struct connection *c, const uint8_t *payload,
                                                size_t len, cJSON **ret_json)
{
        struct last_request *last = &c->last_request;
        struct wire_request req;
        enum wire_error error;
        const char *message;

        if (last->len > 0 && last->len == len && memcmp(last->payload, payload, len) == 0)
                return &last->parsed;
        if (wire_request_parse_json(payload, len, &req, ret_json, &error, &message) < 0) {
                metrics_bad_request(&c->broker->metrics);
                struct audit_record record = {
                    .event = "bad_request",
                    .peer = &c->stream.peer,
                    .decision = "deny",
                    .reason = message, /* one of wire.c's fixed sentences */
                };
                if (audit_write_denial(c->broker->denials, &record) < 0) {
                        reply_error(c, WIRE_INTERNAL, "The broker cannot write its audit log.", 0);
                        return NULL;
                }
                stream_log(&c->stream, LOG_LEVEL_INFO, "Bad request from uid=%u pid=%d: %s",
                           (unsigned)c->stream.peer.uid, (int)c->stream.peer.pid, message);
                reply_error(c, error, message, 0);
                return NULL;
        }
        wire_request_clear(&last->parsed);
        last->parsed = req;
        /* Only ping, profiles and token repeat; a token.drop carries a token. */
        last->len = len <= sizeof(last->payload) && req.op <= WIRE_OP_PROFILES ? len : 0;
        memcpy(last->payload, payload, last->len);
        return &last->parsed;
}

void request_handle(struct connection *c, const uint8_t *payload, size_t len)
{
        /* The frame's JSON, parsed once: the mail ops read their other members from it. */
        _cleanup_json_ cJSON *json = NULL;
        const struct wire_request *req = parse_request(c, payload, len, &json);

        if (!req)
                return;
        switch (req->op) {
        case WIRE_OP_PING:
                if (wire_reply_ping(c->stream.out, PACKAGE_VERSION) < 0)
                        c->stream.closing = true;
                break;
        case WIRE_OP_PROFILES:
                handle_profiles(c);
                break;
        case WIRE_OP_TOKEN:
                handle_token(c, req);
                break;
        case WIRE_OP_TOKEN_DROP:
        case WIRE_OP_MAIL_SUBMIT:
        case WIRE_OP_MAIL_CHUNK:
        case WIRE_OP_MAIL_COMMIT:
                mail_handle(c, req, json);
                break;
        }
}
