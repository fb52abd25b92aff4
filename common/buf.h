/* Length-checked byte buffer with a mandatory maximum size (the one buffer type of the project).
 * Every call that could grow past the maximum fails with -EMSGSIZE instead. Consumed and freed
 * bytes are wiped, because buffers carry replies that hold access tokens. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

struct buf;

int buf_new(size_t max, struct buf **ret);
void buf_free(struct buf *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct buf *, buf_free)
#define _cleanup_buf_ _cleanup_(buf_freep)

/* Unconsumed bytes. */
const uint8_t *buf_data(const struct buf *b);
size_t buf_len(const struct buf *b);
size_t buf_max(const struct buf *b);

int buf_put(struct buf *b, const void *data, size_t len);
int buf_put_u32be(struct buf *b, uint32_t v);

/* Reads what fd has, at most up to the maximum. Returns bytes read (> 0), 0 on EOF, -EAGAIN when
 * nothing is ready, -EMSGSIZE when the buffer is already full, or another negative errno. */
int buf_read_fd(struct buf *b, int fd);
/* Sends as much as the socket fd takes (MSG_NOSIGNAL) and consumes it. Returns bytes written or a
 * negative errno
 * (-EAGAIN when fd takes nothing). */
int buf_write_fd(struct buf *b, int fd);

/* Reading from the front: each getter fails with -EBADMSG if too few bytes are there. */
int buf_peek_u32be(const struct buf *b, uint32_t *ret);
int buf_consume(struct buf *b, size_t len);
void buf_reset(struct buf *b);
/* When empty, frees storage grown past a small size (the next put allocates again). */
void buf_shrink(struct buf *b);
