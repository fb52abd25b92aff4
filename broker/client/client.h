/* The client socket's protocol (design.md §3): what a client connection holds besides its stream
 * (net/stream.h), and the requests it handles (request.c) on top of the token engine. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "audit.h"
#include "policy.h"
#include "stream.h"
#include "util.h"
#include "wire.h"

struct broker;
struct waiter;
struct spool_submission;

/* A connection's last issue record, prepared for reuse (request.c). */
struct issued_record {
        struct audit_prepared record;
        struct audit_part peer_part; /* this connection's (audit_issue_peer_part()) */
        uint64_t token_id;
        uint64_t expires_at;
        char profile[NAME_MAX_LEN + 1];
        char rule[POLICY_RULE_MAX_LEN];
};

/* A connection's last request, kept parsed for when the next one is the same (request.c). */
#define LAST_REQUEST_MAX 512
struct last_request {
        uint8_t payload[LAST_REQUEST_MAX];
        size_t len; /* 0: nothing to compare with */
        struct wire_request parsed;
};

/* A client connection: its stream and what request.c keeps for it. */
struct connection {
        struct stream stream; /* first: the connection itself */
        struct broker *broker;
        struct waiter *waiting; /* at most one: replies go out in request order */
        struct issued_record issued;
        struct last_request last_request;
        struct spool_submission *submission; /* mail.submit received, not yet committed */
        bool committing;                     /* its commit is on the disk: wait for it */
};

/* server.c */
int server_listen(struct broker *b);
void server_close_all(struct broker *b);

/* request.c: handles one frame from a connection. Either a reply is appended to its output, or
 * c->waiting is set and the reply comes when the account's refresh is done; the connection's
 * next requests are handled then (stream_resume()). */
void request_handle(struct connection *c, const uint8_t *payload, size_t len);
void request_reply_error(struct connection *c, enum wire_error e, const char *message,
                         uint32_t retry_after);
/* The policy's decision on using profile, as for a token request with the profile's scopes:
 * NULL when it is not an allow (audited and answered then). */
const struct policy_profile *request_authorize(struct connection *c, const char *profile,
                                               struct policy_decision *decision);

/* mail.c: token.drop and mail.submit / mail.chunk / mail.commit (docs/mail-spool.md), with
 * the frame's JSON object as wire_request_parse_json() handed it over (NULL only for a request
 * served from the connection's last parsed one, which is never a mail op). */
struct cJSON;
void mail_handle(struct connection *c, const struct wire_request *req, const struct cJSON *json);
/* The connection goes: its submission is abandoned. */
void mail_connection_closing(struct connection *c);
