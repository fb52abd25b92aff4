/* MIME for credbroker send (mail_build) and for the large-message path (mail_split). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mail_attachment_spec {
        const char *path;
        const char *content_type; /* NULL: by extension */
};

struct mail_build_spec {
        const char *from, *reply_to, *subject, *text, *html; /* UTF-8 */
        char *const *to;
        size_t n_to;
        char *const *cc;
        size_t n_cc;
        char *const *bcc;
        size_t n_bcc;
        char *const *headers; /* "X-Foo: bar" */
        size_t n_headers;
        const struct mail_attachment_spec *attachments;
        size_t n_attachments;
};

/* Builds a complete RFC 5322 MIME message (CRLF). 0, or -errno with *ret_error one sentence. */
int mail_build(const struct mail_build_spec *s, uint8_t **ret, size_t *ret_len, char **ret_error);

/* Splitting (large messages): the message without the parts bigger than threshold bytes
 * (decoded), and those parts decoded. */
struct mail_part {
        char *filename;
        char *content_type;
        char *content_id;
        bool is_inline;
        uint8_t *data;
        size_t len;
};

struct mail_split {
        uint8_t *rest;
        size_t rest_len;
        struct mail_part *parts;
        size_t n_parts;
};

int mail_split(const uint8_t *message, size_t len, size_t threshold, struct mail_split *ret);
void mail_split_free(struct mail_split *s);
