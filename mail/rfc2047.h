/* RFC 2047 encoded words (internal to libmail). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"

/* Whether text (NUL terminated) needs encoding in a header: bytes above 0x7e, controls other
 * than tab, or something that reads as an encoded word. */
bool rfc2047_needed(const char *text);
/* Unstructured text (Subject, X-…): the words that need it become UTF-8 encoded words of at
 * most 75 characters separated by spaces (so folding never cuts one). */
int rfc2047_encode_text(struct strbuf *out, const char *text);
/* A display name: as it is when it is atoms only, quoted when it has specials, encoded words
 * when it has 8-bit text. */
int rfc2047_encode_phrase(struct strbuf *out, const char *name);
/* in with its encoded words (UTF-8, US-ASCII, ISO-8859-1) decoded, as UTF-8; in itself when
 * that would not be valid UTF-8. */
int rfc2047_decode(const char *in, char **ret);
/* A copy of s that is valid UTF-8: s when it is, else s read as ISO-8859-1. */
char *text_to_utf8(const char *s);
