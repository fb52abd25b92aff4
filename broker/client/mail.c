/* The client socket's mail operations (docs/mail-spool.md, design.md §3):
 *
 *   token.drop   {"profile":P,"access_token":T}: Graph refused T (401); the broker drops it from
 *                its cache when it is the profile's cached token, at most once per account a
 *                minute, so the next token request brings a fresh one. Decided by the policy
 *                like a token request for P (a caller that may not have P's tokens cannot drop
 *                them) and audited.
 *   mail.submit  {"profile":P,"size":N,"message_id":M,"recipients":K}, then mail.chunk
 *                {"data":base64 ≤ 48 KiB} frames, then mail.commit: the message goes into the
 *                spool under the same policy decision as a token request for P, and commit is
 *                answered {"queue_id":ID} only once it is durable. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "audit.h"
#include "broker.h"
#include "client.h"
#include "json.h"
#include "log.h"
#include "spool.h"
#include "token-cache.h"

#define TOKEN_DROP_INTERVAL_USEC (60 * USEC_PER_SEC)

static void reply_ok(struct connection *c, const char *key, const char *value, bool flag)
{
        _cleanup_json_ cJSON *json = wire_reply_new(true);

        if (!json || (key && value && !cJSON_AddStringToObject(json, key, value)) ||
            (key && !value && !cJSON_AddBoolToObject(json, key, flag)) ||
            wire_put_json(c->stream.out, json) < 0)
                c->stream.closing = true;
}

/* Drops the token when it is cached for the account and the bound allows; "dropped" or why
 * not. */
static const char *drop(struct broker *b, const char *account, const char *token, size_t len)
{
        struct account *a = account_find(b->accounts, account);
        uint64_t now = now_boottime_usec();

        if (a && a->last_token_drop_usec &&
            now - a->last_token_drop_usec < TOKEN_DROP_INTERVAL_USEC)
                return "bounded: one drop per account a minute";
        if (token_cache_drop_token(&b->cache, account, token, len) <= 0)
                return "not cached";
        if (a)
                a->last_token_drop_usec = now;
        return "dropped";
}

static void handle_token_drop(struct connection *c, const struct wire_request *req,
                              const cJSON *json)
{
        const cJSON *token = cJSON_GetObjectItemCaseSensitive(json, "access_token");
        const struct policy_profile *p;
        struct policy_decision decision;
        const char *outcome;
        size_t len;

        if (!cJSON_IsString(token) || !token->valuestring ||
            !token_is_valid(token->valuestring, strlen(token->valuestring))) {
                request_reply_error(c, WIRE_BAD_REQUEST, "\"access_token\" must be a token.", 0);
                return;
        }
        len = strlen(token->valuestring);
        p = request_authorize(c, req->profile, &decision);
        if (!p)
                return;
        outcome = drop(c->broker, policy_profile_account(p), token->valuestring, len);
        struct audit_record record = {
            .event = "token.drop",
            .peer = &c->stream.peer,
            .profile = req->profile,
            .account = policy_profile_account(p),
            .decision = "allow",
            .rule = decision.rule,
            .reason = outcome,
        };
        if (audit_write(c->broker->audit, &record) < 0) {
                request_reply_error(c, WIRE_INTERNAL, "The broker cannot write its audit log.", 0);
                return;
        }
        stream_log(&c->stream, LOG_LEVEL_INFO, "token.drop uid=%u profile %s: %s.",
                   (unsigned)c->stream.peer.uid, req->profile, outcome);
        reply_ok(c, "dropped", NULL, strcmp(outcome, "dropped") == 0);
}

/* It goes into the logs and the audit log: printable ASCII, no space, as RFC 5322's msg-id. */
static bool message_id_is_valid(const char *id)
{
        size_t n = strlen(id);

        if (n == 0 || n > 998)
                return false;
        for (size_t i = 0; i < n; i++)
                if (id[i] < 0x21 || id[i] > 0x7e)
                        return false;
        return true;
}

static void handle_submit(struct connection *c, const struct wire_request *req, const cJSON *json)
{
        const char *message_id = json_get_string(json, "message_id");
        uint64_t size, recipients = 0;
        struct policy_decision decision;
        const char *refusal;
        int r;

        if (c->submission) {
                request_reply_error(c, WIRE_BAD_REQUEST, "A submission is already open.", 0);
                return;
        }
        if (json_get_u64(json, "size", &size) < 0 || size == 0 ||
            (cJSON_GetObjectItemCaseSensitive(json, "recipients") &&
             json_get_u64(json, "recipients", &recipients) < 0) ||
            (message_id && !message_id_is_valid(message_id))) {
                request_reply_error(c, WIRE_BAD_REQUEST,
                                    "mail.submit needs \"size\" > 0, a \"recipients\" count and "
                                    "an optional \"message_id\" of at most 998 printable ASCII "
                                    "characters without spaces.",
                                    0);
                return;
        }
        if (!request_authorize(c, req->profile, &decision))
                return;
        if (!c->broker->spool) {
                request_reply_error(c, WIRE_UNAVAILABLE, "The broker has no spool.", 0);
                return;
        }
        r = spool_submit_begin(c->broker->spool,
                               &(struct spool_submit_request){.uid = c->stream.peer.uid,
                                                              .profile = req->profile,
                                                              .message_id = message_id,
                                                              .size = size,
                                                              .n_recipients = recipients},
                               &c->submission, &refusal);
        if (r < 0) {
                stream_log(&c->stream, LOG_LEVEL_INFO, "mail.submit uid=%u refused: %s",
                           (unsigned)c->stream.peer.uid, refusal);
                request_reply_error(c, r == -EFBIG ? WIRE_BAD_REQUEST : WIRE_UNAVAILABLE, refusal,
                                    r == -ENOSPC ? 60 : 0);
                return;
        }
        reply_ok(c, NULL, NULL, false);
}

static void handle_chunk(struct connection *c, const cJSON *json)
{
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
        _cleanup_free_ uint8_t *bytes = NULL;
        size_t len, n;
        int r;

        if (!c->submission) {
                request_reply_error(c, WIRE_BAD_REQUEST, "mail.chunk without mail.submit.", 0);
                return;
        }
        if (!cJSON_IsString(data) || !data->valuestring || (len = strlen(data->valuestring)) == 0 ||
            len > WIRE_MAIL_CHUNK_MAX || !(bytes = malloc(len / 4 * 3 + 3)) ||
            wire_base64_decode(data->valuestring, len, bytes, &n) < 0) {
                request_reply_error(c, WIRE_BAD_REQUEST,
                                    "\"data\" must be base64 of at most 49152 characters.", 0);
                return;
        }
        r = spool_submit_append(c->submission, bytes, n);
        if (r < 0) {
                spool_submission_abort(c->submission);
                c->submission = NULL;
                request_reply_error(c, r == -EFBIG ? WIRE_BAD_REQUEST : WIRE_UNAVAILABLE,
                                    r == -EFBIG ? "More data than the size announced."
                                                : "The spool cannot take the message now.",
                                    0);
                return;
        }
        reply_ok(c, NULL, NULL, false);
}

static void committed(struct spool_submission *sub, int result, void *userdata)
{
        struct connection *c = userdata;
        struct audit_record record = {
            .event = "mail.queued",
            .peer = &c->stream.peer,
            .profile = spool_submission_profile(sub),
            .decision = "allow",
            .queue_id = spool_submission_id(sub),
            .message_id = spool_submission_message_id(sub),
            .size = spool_submission_size(sub),
            .n_recipients = spool_submission_recipients(sub),
        };

        c->committing = false;
        c->submission = NULL;
        if (result < 0) {
                log_error_errno(result, "Spool: cannot queue a message of uid %u",
                                (unsigned)c->stream.peer.uid);
                request_reply_error(c, WIRE_UNAVAILABLE, "The spool cannot take the message now.",
                                    60);
        } else if (audit_write(c->broker->audit, &record) < 0) {
                /* Queued all the same: it is delivered, and its outcome audited. */
                request_reply_error(c, WIRE_INTERNAL, "The broker cannot write its audit log.", 0);
        } else {
                stream_log(&c->stream, LOG_LEVEL_INFO, "Queued %s from uid=%u (profile %s).",
                           spool_submission_id(sub), (unsigned)c->stream.peer.uid, record.profile);
                reply_ok(c, "queue_id", spool_submission_id(sub), false);
        }
        stream_resume(&c->stream);
}

static void handle_commit(struct connection *c)
{
        int r;

        if (!c->submission) {
                request_reply_error(c, WIRE_BAD_REQUEST, "mail.commit without mail.submit.", 0);
                return;
        }
        r = spool_submit_commit(c->submission, committed, c);
        if (r == -EBADMSG) {
                spool_submission_abort(c->submission);
                c->submission = NULL;
                request_reply_error(c, WIRE_BAD_REQUEST, "Fewer bytes came than announced.", 0);
                return;
        }
        if (r < 0) {
                spool_submission_abort(c->submission);
                c->submission = NULL;
                request_reply_error(c, WIRE_UNAVAILABLE, "The spool cannot take the message now.",
                                    60);
                return;
        }
        c->committing = true;
}

void mail_handle(struct connection *c, const struct wire_request *req, const cJSON *json)
{
        if (!json) {
                request_reply_error(c, WIRE_BAD_REQUEST, "The request is not valid JSON.", 0);
                return;
        }
        switch (req->op) {
        case WIRE_OP_TOKEN_DROP:
                handle_token_drop(c, req, json);
                break;
        case WIRE_OP_MAIL_SUBMIT:
                handle_submit(c, req, json);
                break;
        case WIRE_OP_MAIL_CHUNK:
                handle_chunk(c, json);
                break;
        case WIRE_OP_MAIL_COMMIT:
                handle_commit(c);
                break;
        default:
                request_reply_error(c, WIRE_UNKNOWN_OP, "Unknown operation.", 0);
                break;
        }
}

void mail_connection_closing(struct connection *c)
{
        if (c->submission)
                spool_submission_abort(c->submission);
        c->submission = NULL;
        c->committing = false;
}
