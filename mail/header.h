/* Header blocks (internal to libmail): lines with any of CRLF, LF or a lone CR as their end,
 * fields with their continuation lines, folding at 78 columns, MIME parameters. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define HEADER_FOLD_AT    78
#define HEADER_LINE_HARD  998
#define HEADER_FIELDS_MAX 10000

struct mail_line {
        const uint8_t *p;
        size_t len;      /* without the line end */
        bool terminated; /* false for a last line without an end */
};

/* The line at *pos; false at the end of data. */
bool mail_next_line(const uint8_t *data, size_t len, size_t *pos, struct mail_line *ret);

struct header_field {
        char *name;        /* as written */
        char *value;       /* unfolded: continuation line ends removed, whitespace kept */
        char *raw;         /* the field as written, lines joined with CRLF, no final CRLF */
        size_t longest;    /* its longest physical line */
        char *replacement; /* set by the caller: the field to write instead ("Name: v"), unfolded */
        bool removed;
};

struct header_block {
        struct header_field *fields;
        size_t n;
};

/* Parses the header block at *pos up to and including the empty line that ends it (or up to the
 * first line that is not a header field, which then starts the body). -EBADMSG for a NUL byte,
 * -EMSGSIZE past max bytes or HEADER_FIELDS_MAX fields. */
int header_block_parse(const uint8_t *data, size_t len, size_t max, size_t *pos,
                       struct header_block *ret);
void header_block_done(struct header_block *b);
/* Index of the first field called name (case-insensitive) from index from on, or -1. */
long header_block_find(const struct header_block *b, const char *name, size_t from);
size_t header_block_count(const struct header_block *b, const char *name);
int header_block_add(struct header_block *b, const char *name, const char *value);

bool header_name_is_valid(const char *s, size_t n);
/* Appends "name: value" folded at 78 columns (only at whitespace already in value), with CRLF.
 * -EBADMSG when a line would stay over 998 characters. */
int header_fold(struct strbuf *out, const char *name, const char *value);
/* Writes the block (replacements folded, unchanged fields as written when no line is over 78,
 * refolded otherwise) and the empty line. */
int header_block_write(const struct header_block *b, struct strbuf *out);

/* A MIME parameter of a Content-Type / Content-Disposition value, with RFC 2231 continuations
 * and charset'lang'%XX values: 0 and *ret (malloc'ed), or -ENOENT. */
int header_param(const char *value, const char *name, char **ret);
/* "type/subtype" of a Content-Type value, lower case; "text/plain" when empty. */
int header_mime_type(const char *value, char **ret);
