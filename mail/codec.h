/* Transfer encodings (internal to libmail): base64 with 76-column CRLF lines, quoted-printable,
 * and their decoders. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

/* base64 of data; line_len 0: one line, else CRLF after every line_len characters (multiple of
 * 4) and after the last line. */
int base64_encode(struct strbuf *out, const uint8_t *data, size_t len, size_t line_len);
/* Decodes, skipping CR, LF, spaces and tabs; -EBADMSG on another character or bad padding. */
int base64_decode(struct strbuf *out, const uint8_t *data, size_t len);
/* Quoted-printable of CRLF text (RFC 2045): lines of at most 76 characters with soft breaks. */
int qp_encode(struct strbuf *out, const uint8_t *data, size_t len);
/* Lenient decoder: soft breaks removed, =XX decoded, any other '=' kept as it is. */
int qp_decode(struct strbuf *out, const uint8_t *data, size_t len);
