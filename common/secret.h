/* Secret buffers: refresh tokens, access tokens, PINs, client secrets. Each lives in memory
 * that is mlock()ed (kept out of swap where the limit allows), MADV_DONTDUMP (kept out of core
 * dumps) and MADV_WIPEONFORK: a slot of a shared slab for up to 8 KiB, a mapping of its own
 * above. It has a fixed capacity set at creation (never realloc()ed, so never copied behind our
 * back), is always NUL-terminated, and is wiped when freed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

struct secret;

int secret_new(size_t capacity, struct secret **ret);
int secret_new_from(const void *data, size_t len, struct secret **ret);
void secret_free(struct secret *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct secret *, secret_free)
#define _cleanup_secret_ _cleanup_(secret_freep)

/* Reads a whole file (at most max bytes) into a secret, dropping one trailing newline.
 * -EFBIG when the file is larger than max, -ENODATA when it is empty. */
int secret_from_file(const char *path, size_t max, struct secret **ret);

uint8_t *secret_data(struct secret *s);
/* The contents as a C string (always NUL-terminated). */
const char *secret_str(const struct secret *s);
size_t secret_len(const struct secret *s);
size_t secret_capacity(const struct secret *s);

/* -ENOBUFS when the capacity would be exceeded; nothing is written then. */
int secret_append(struct secret *s, const void *data, size_t len);
/* For callers that wrote into secret_data() directly. */
int secret_set_len(struct secret *s, size_t len);
bool secret_equal(const struct secret *a, const struct secret *b);

/* Whether the last secret_new() could mlock() its memory (RLIMIT_MEMLOCK may forbid it). */
bool secret_memory_locked(void);
