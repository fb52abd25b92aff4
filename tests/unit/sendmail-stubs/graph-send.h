/* TEST STUB COPY of mail/graph-send.h as mail-plan.md declares it (owner mail-graph), for
 * test-sendmail-deliver until the branches are merged. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRAPH_MIME_DIRECT_MAX (3u * 1024u * 1024u)

struct graph_mail_target {
        const char *graph_url;
        const char *ca_file;
        const char *mailbox;
        bool delegated;
        const char *from;
        bool save_to_sent_items;
};
enum graph_mail_result {
        GRAPH_MAIL_SENT,
        GRAPH_MAIL_TEMPORARY,
        GRAPH_MAIL_TOKEN_REJECTED,
        GRAPH_MAIL_DENIED,
        GRAPH_MAIL_PERMANENT,
};
struct graph_mail_outcome {
        enum graph_mail_result result;
        unsigned retry_after;
        long http_status;
        char reason[512];
};
typedef void graph_mail_progress_fn(uint64_t done, uint64_t total, void *userdata);
int graph_mail_send(const struct graph_mail_target *t, const char *access_token,
                    const uint8_t *message, size_t len, graph_mail_progress_fn *progress,
                    void *userdata, struct graph_mail_outcome *ret);
