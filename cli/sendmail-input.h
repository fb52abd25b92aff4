/* Reading the message sendmail is handed on standard input. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reads a message from fd until end of input or, when dot_ends (sendmail without -i), until a
 * line holding a single "." (which is not part of the message; nothing after it is read). At most
 * max bytes: -EMSGSIZE beyond (the rest is not read). 0 with *ret (free()) and *ret_len, or a
 * negative errno of read(). */
int sendmail_read_message(int fd, bool dot_ends, size_t max, uint8_t **ret, size_t *ret_len);

/* True when line (len bytes, without its "\n") is "." or ".\r". */
bool sendmail_line_is_dot(const uint8_t *line, size_t len);
