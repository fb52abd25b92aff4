/* Secret buffers in locked, non-dumpable, wiped mappings; see secret.h. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct secret {
        size_t map_size;
        size_t capacity;
        size_t len;
        uint8_t data[];
};

/* Set by whichever thread made a secret last (the broker's loop and its store thread both do):
 * relaxed atomics, as it is a diagnostic flag that orders nothing. */
static bool locked = true;

static size_t page_size(void)
{
        static size_t size;

        if (size == 0)
                size = (size_t)sysconf(_SC_PAGESIZE);
        return size;
}

int secret_new(size_t capacity, struct secret **ret)
{
        size_t page = page_size();
        size_t need, map_size;
        struct secret *s;

        if (capacity == 0 || capacity > 16u * 1024 * 1024)
                return -EINVAL;
        need = sizeof(struct secret) + capacity + 1;
        map_size = (need + page - 1) / page * page;

        s = mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (s == MAP_FAILED)
                return -errno;
        (void)madvise(s, map_size, MADV_DONTDUMP);
        /* Also excluded from fork()ed children: they must never inherit a secret. */
        (void)madvise(s, map_size, MADV_WIPEONFORK);
        if (mlock(s, map_size) < 0) {
                if (__atomic_load_n(&locked, __ATOMIC_RELAXED))
                        log_debug("Could not lock secret memory (RLIMIT_MEMLOCK?); "
                                  "it stays out of core dumps but may be swapped.");
                __atomic_store_n(&locked, false, __ATOMIC_RELAXED);
        } else if (!__atomic_load_n(&locked, __ATOMIC_RELAXED)) {
                /* Written only on a change, so threads that lock fine only ever read it. */
                __atomic_store_n(&locked, true, __ATOMIC_RELAXED);
        }
        s->map_size = map_size;
        s->capacity = capacity;
        s->len = 0;
        *ret = s;
        return 0;
}

int secret_new_from(const void *data, size_t len, struct secret **ret)
{
        struct secret *s;
        int r;

        r = secret_new(len ? len : 1, &s);
        if (r < 0)
                return r;
        r = secret_append(s, data, len);
        if (r < 0) {
                secret_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void secret_free(struct secret *s)
{
        size_t map_size;

        if (!s)
                return;
        map_size = s->map_size;
        explicit_bzero(s, map_size);
        (void)munlock(s, map_size);
        (void)munmap(s, map_size);
}

int secret_from_file(const char *path, size_t max, struct secret **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_secret_ struct secret *s = NULL;
        struct stat st;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;

        r = secret_new(max, &s);
        if (r < 0)
                return r;
        r = read_bounded(fd, s->data, s->capacity, &s->len);
        if (r < 0)
                return r;
        if (s->len > 0 && s->data[s->len - 1] == '\n')
                s->data[--s->len] = 0;
        if (s->len > 0 && s->data[s->len - 1] == '\r')
                s->data[--s->len] = 0;
        if (s->len == 0)
                return -ENODATA;
        *ret = TAKE_PTR(s);
        return 0;
}

uint8_t *secret_data(struct secret *s)
{
        return s->data;
}

const char *secret_str(const struct secret *s)
{
        return (const char *)s->data;
}

size_t secret_len(const struct secret *s)
{
        return s->len;
}

size_t secret_capacity(const struct secret *s)
{
        return s->capacity;
}

int secret_append(struct secret *s, const void *data, size_t len)
{
        if (len > s->capacity - s->len)
                return -ENOBUFS;
        if (len > 0) /* data may be NULL then, which memcpy() does not allow */
                memcpy(s->data + s->len, data, len);
        s->len += len;
        s->data[s->len] = 0;
        return 0;
}

int secret_set_len(struct secret *s, size_t len)
{
        if (len > s->capacity)
                return -ENOBUFS;
        s->len = len;
        s->data[len] = 0;
        return 0;
}

bool secret_equal(const struct secret *a, const struct secret *b)
{
        unsigned char diff = 0;

        if (a->len != b->len)
                return false;
        /* Constant time in the contents: callers compare tokens read back from the HSM. */
        for (size_t i = 0; i < a->len; i++)
                diff |= a->data[i] ^ b->data[i];
        return diff == 0;
}

bool secret_memory_locked(void)
{
        return __atomic_load_n(&locked, __ATOMIC_RELAXED);
}
