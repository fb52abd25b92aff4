/* Sending one RFC 5322 message through Microsoft Graph: MIME sendMail up to GRAPH_MIME_DIRECT_MAX,
 * above that a draft + attachment upload sessions + send. Blocking libcurl; shared by the CLI
 * (credbroker send / sendmail) and the broker's delivery helper. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest raw message sent as one MIME sendMail: its base64 (4 MiB) stays within Graph's 4 MB
 * request cap. */
#define GRAPH_MIME_DIRECT_MAX (3u * 1024 * 1024)
/* One upload-session chunk: 12 x 320 KiB (3.75 MiB), under Graph's 4 MB per PUT and a multiple
 * of 320 KiB as chunked uploads want. */
#define GRAPH_UPLOAD_CHUNK (12u * 320 * 1024)
/* Largest message taken at all (Graph's 150 MB per attachment and message). */
#define GRAPH_MESSAGE_MAX (150u * 1024 * 1024)

struct graph_mail_target {
        const char *graph_url; /* the token reply's "graph" */
        const char *ca_file;   /* NULL: the system's */
        const char *mailbox;   /* the account's mailbox (token reply "mailbox"), may be NULL */
        bool delegated;        /* token of a signed-in user: /me/sendMail unless from differs */
        const char *from;      /* the message's From address (plain addr-spec) */
        /* false: the message goes as a draft marked PidTagDeleteAfterSubmit, so that Exchange
         * keeps no copy in Sent Items (MIME sendMail has no saveToSentItems). */
        bool save_to_sent_items;
};

enum graph_mail_result {
        GRAPH_MAIL_SENT,
        GRAPH_MAIL_TEMPORARY, /* 5xx, 429, timeout, network: retry (retry_after set when known) */
        GRAPH_MAIL_TOKEN_REJECTED, /* 401 InvalidAuthenticationToken: drop the token, retry once */
        GRAPH_MAIL_DENIED,         /* 403: reason names the missing permission / send-as right */
        GRAPH_MAIL_PERMANENT,      /* 400/413 etc: the message will never go */
};

struct graph_mail_outcome {
        enum graph_mail_result result;
        unsigned retry_after; /* seconds, 0 unknown */
        long http_status;
        char reason[512]; /* one human sentence, no secrets */
};

typedef void graph_mail_progress_fn(uint64_t done, uint64_t total, void *userdata);

/* Sends one complete RFC 5322 message (CRLF, as mail_prepare() leaves it). Up to
 * GRAPH_MIME_DIRECT_MAX (3 MiB raw, i.e. < 4 MB base64) as MIME sendMail; larger as a draft +
 * upload sessions for the large attachments + send (needs Mail.ReadWrite: the reason says so).
 * Returns 0 and fills *ret for every Graph answer; < 0 (-errno) only for local failures. */
int graph_mail_send(const struct graph_mail_target *t, const char *access_token,
                    const uint8_t *message, size_t len, graph_mail_progress_fn *progress,
                    void *userdata, struct graph_mail_outcome *ret);

/* The path graph_mail_send() posts to for a target, e.g. "/v1.0/me/sendMail" or
 * "/v1.0/users/ops%40contoso.com/sendMail" (without the Graph URL): malloc()ed, for logs and
 * tests. -EINVAL when an app-only target has no mailbox. */
int graph_mail_send_path(const struct graph_mail_target *t, char **ret);

/* The proxy libcurl takes from the environment for an https:// URL (https_proxy, HTTPS_PROXY,
 * all_proxy, ALL_PROXY), and the variable's name; NULL when none. */
const char *graph_environment_proxy(const char **ret_name);
