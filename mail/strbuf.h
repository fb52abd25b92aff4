/* A growable byte string with a hard maximum, for building messages (internal to libmail).
 * Unlike common/buf.h its storage can be handed out (strbuf_steal) without a copy, which
 * matters for 150 MB messages. Every append fails with -EMSGSIZE past the maximum. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

struct strbuf {
        uint8_t *data; /* always NUL terminated after the first append */
        size_t len, cap, max;
};

#define STRBUF_INIT(m) ((struct strbuf){.max = (m)})

int strbuf_put(struct strbuf *b, const void *data, size_t len);
int strbuf_puts(struct strbuf *b, const char *s);
int strbuf_putc(struct strbuf *b, char c);
int strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for len more bytes (for callers writing in place). */
int strbuf_reserve(struct strbuf *b, size_t len);
/* The data (NUL terminated, never NULL: "" when empty); the buffer is empty afterwards. */
char *strbuf_steal(struct strbuf *b, size_t *ret_len);
void strbuf_done(struct strbuf *b);
