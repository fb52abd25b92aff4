/* malloc() and friends that wipe every block when it is freed or moved, for libraries that copy
 * secrets into memory of their own (libcurl through curl_global_init_mem(), GnuTLS). */
#pragma once

#include <stddef.h>

/* Blocks with a size header: only for allocators that see every block from the start
 * (curl_global_init_mem() before any other libcurl call). */
void *wiping_malloc(size_t size);
void *wiping_calloc(size_t nmemb, size_t size);
void *wiping_realloc(void *p, size_t size);
char *wiping_strdup(const char *s);
void wiping_free(void *p);

/* For blocks of the C library's malloc() (libraries that allocated before we could hook them):
 * the size comes from malloc_usable_size(). realloc() always moves, wiping the old block. */
void *wiping_libc_realloc(void *p, size_t size);
void wiping_libc_free(void *p);

/* Makes GnuTLS free and reallocate through wiping_libc_free() and wiping_libc_realloc(). Call
 * before any other thread runs. */
void wiping_hook_gnutls(void);
