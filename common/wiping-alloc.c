/* Wiping allocators; see wiping-alloc.h. */
#include "wiping-alloc.h"

#include <gnutls/gnutls.h>
#include <malloc.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The size in front of each block, padded so that the block keeps malloc()'s alignment. */
union header {
        size_t size;
        max_align_t align;
};

void *wiping_malloc(size_t size)
{
        union header *h;

        if (size > SIZE_MAX - sizeof(*h))
                return NULL;
        h = malloc(sizeof(*h) + size);
        if (!h)
                return NULL;
        h->size = size;
        return h + 1;
}

void *wiping_calloc(size_t nmemb, size_t size)
{
        void *p;

        if (size != 0 && nmemb > SIZE_MAX / size)
                return NULL;
        p = wiping_malloc(nmemb * size);
        if (p)
                memset(p, 0, nmemb * size);
        return p;
}

void wiping_free(void *p)
{
        union header *h;

        if (!p)
                return;
        h = (union header *)p - 1;
        explicit_bzero(h, sizeof(*h) + h->size);
        free(h);
}

/* Never realloc(): that would leave the old contents behind in a block we no longer own. */
void *wiping_realloc(void *p, size_t size)
{
        size_t old;
        void *q;

        if (!p)
                return wiping_malloc(size);
        q = wiping_malloc(size);
        if (!q)
                return NULL;
        old = ((union header *)p - 1)->size;
        memcpy(q, p, old < size ? old : size);
        wiping_free(p);
        return q;
}

char *wiping_strdup(const char *s)
{
        size_t len = strlen(s);
        char *copy = wiping_malloc(len + 1);

        if (copy)
                memcpy(copy, s, len + 1);
        return copy;
}

void wiping_libc_free(void *p)
{
        if (!p)
                return;
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
}

void *wiping_libc_realloc(void *p, size_t size)
{
        size_t old;
        void *q;

        if (!p)
                return malloc(size);
        q = malloc(size ? size : 1);
        if (!q)
                return NULL;
        old = malloc_usable_size(p);
        memcpy(q, p, old < size ? old : size);
        wiping_libc_free(p);
        return q;
}

void wiping_hook_gnutls(void)
{
        /* gnutls_global_set_mem_functions() is a no-op since GnuTLS 3.3, but the library still
         * frees and reallocates through these exported pointers (its record buffers hold the
         * decrypted token responses). They start out as the C library's, and every block stays
         * a C library block, so blocks allocated before the switch are freed correctly. */
        (gnutls_free) = wiping_libc_free;
        gnutls_realloc = wiping_libc_realloc;
}
