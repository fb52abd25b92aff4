/* What the files of mail_build() share (internal to libmail). */
#pragma once

#include "mime.h"
#include "strbuf.h"

/* The MIME type for a file name's extension; application/octet-stream when unknown. */
const char *mime_type_for(const char *filename);
/* A caller's type: "type/subtype" of token characters, not multipart/ or message/. */
bool mime_type_is_valid(const char *type);
/* Appends one attachment part (headers, base64 body) of the file at path, read in pieces;
 * -EMSGSIZE when out would pass its maximum. */
int mime_write_attachment(struct strbuf *out, const struct mail_attachment_spec *a,
                          char **ret_error);
