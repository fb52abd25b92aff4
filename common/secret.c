/* Secret buffers in locked, non-dumpable, wiped mappings; see secret.h. */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct secret {
        size_t map_size;          /* its own mapping's size; 0: a slot of a slab (slot_size) */
        size_t slot_size;         /* the slot's size, header included */
        struct secret *next_free; /* a free slot: the next one of its class */
        size_t capacity;
        size_t len;
        uint8_t data[];
};

/* Small secrets (an access token, its cached reply: a few KiB each, two per account and scope
 * set) share slabs: with one mapping each, 10,000 accounts took 40,000 mappings, near the
 * kernel's default limit of 65,530 (vm.max_map_count), and a page each. A slab is a mapping
 * made like a large secret's (locked, MADV_DONTDUMP, MADV_WIPEONFORK), cut into slots of one
 * size class; a freed slot is wiped whole and kept for the next secret of its class. Slabs are
 * never unmapped: their number follows the most secrets held at once. Larger secrets get a
 * mapping of their own, as before. */
static const size_t slot_sizes[] = {128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192};
#define SLAB_SIZE (256u * 1024)

static struct {
        pthread_mutex_t lock; /* the broker's loop and its store thread both make secrets */
        struct secret *free[ELEMENTSOF(slot_sizes)];
} slabs = {.lock = PTHREAD_MUTEX_INITIALIZER};

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

/* A locked, non-dumpable mapping of size bytes that forked children see zeroed. */
static void *map_locked(size_t size)
{
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        (void)madvise(p, size, MADV_DONTDUMP);
        /* Also excluded from fork()ed children: they must never inherit a secret. */
        (void)madvise(p, size, MADV_WIPEONFORK);
        if (mlock(p, size) < 0) {
                if (__atomic_load_n(&locked, __ATOMIC_RELAXED))
                        log_debug("Could not lock secret memory (RLIMIT_MEMLOCK?); "
                                  "it stays out of core dumps but may be swapped.");
                __atomic_store_n(&locked, false, __ATOMIC_RELAXED);
        } else if (!__atomic_load_n(&locked, __ATOMIC_RELAXED)) {
                /* Written only on a change, so threads that lock fine only ever read it. */
                __atomic_store_n(&locked, true, __ATOMIC_RELAXED);
        }
        return p;
}

/* A free slot of class c, cutting a new slab when there is none (called with slabs.lock). */
static struct secret *slot_take(size_t c)
{
        struct secret *s = slabs.free[c];
        uint8_t *slab;

        if (!s) {
                slab = map_locked(SLAB_SIZE);
                if (!slab)
                        return NULL;
                for (size_t at = SLAB_SIZE / slot_sizes[c] * slot_sizes[c]; at > 0;) {
                        at -= slot_sizes[c];
                        struct secret *slot = (struct secret *)(slab + at);
                        slot->next_free = slabs.free[c];
                        slabs.free[c] = slot;
                }
                s = slabs.free[c];
        }
        slabs.free[c] = s->next_free;
        s->next_free = NULL;
        s->map_size = 0;
        s->slot_size = slot_sizes[c];
        return s;
}

int secret_new(size_t capacity, struct secret **ret)
{
        size_t page = page_size();
        size_t need, map_size;
        struct secret *s = NULL;

        if (capacity == 0 || capacity > 16u * 1024 * 1024)
                return -EINVAL;
        need = sizeof(struct secret) + capacity + 1;
        for (size_t c = 0; c < ELEMENTSOF(slot_sizes); c++)
                if (need <= slot_sizes[c]) {
                        pthread_mutex_lock(&slabs.lock);
                        s = slot_take(c);
                        pthread_mutex_unlock(&slabs.lock);
                        if (!s)
                                return -ENOMEM;
                        break;
                }
        if (!s) {
                map_size = (need + page - 1) / page * page;
                s = map_locked(map_size);
                if (!s)
                        return -errno;
                s->map_size = map_size;
                s->slot_size = 0;
        }
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
        size_t map_size, c;

        if (!s)
                return;
        map_size = s->map_size;
        if (map_size == 0) {
                for (c = 0; slot_sizes[c] != s->slot_size; c++)
                        ;
                explicit_bzero(s, slot_sizes[c]);
                pthread_mutex_lock(&slabs.lock);
                s->next_free = slabs.free[c];
                slabs.free[c] = s;
                pthread_mutex_unlock(&slabs.lock);
                return;
        }
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
