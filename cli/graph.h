/* Microsoft Graph sendMail (JSON variant) over libcurl, with a brokered bearer token. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "json.h"

struct graph_request {
        const char *graph_base; /* https://graph.microsoft.com */
        const char *ca_bundle;
        const char *mailbox; /* NULL: /me (delegated tokens) */
        const char *access_token;
        const char *body; /* the sendMail JSON document, or the MIME message in base64 */
        bool mime;        /* body is MIME (sent as text/plain, as Graph wants it) */
};

/* Where to send: the broker's token reply names the account's Graph (its cloud's, "graph"), an
 * older broker does not: then the configured one. */
const char *graph_base_of(const cJSON *token_reply, const char *configured);

/* POSTs the message. Returns 0 when Graph accepted it (202), else prints Graph's error in one
 * line and returns a sysexits.h code. */
int graph_send_mail(const struct graph_request *r);
