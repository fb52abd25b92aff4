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
        size_t map_size;          /* its own mapping's size; 0: a slot of a slab (slot_class) */
        size_t slot_class;        /* the slot's size class (slot_size()) */
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
 * mapping of their own, as before.
 *
 * Memory: the classes are close together (64 bytes apart up to 1 KiB, then an eighth of a power
 * of two), so a secret wastes at most an eighth of its slot; classes a power of two apart took
 * 3.8 MB for 1,000 accounts' cached tokens and replies where 2.0 MB do now (tests/bench/scale).
 * A slab is locked as it is touched (MLOCK_ONFAULT: a page is locked when it is first made
 * resident, before a secret is written to it) and handed out from its start, so the pages no
 * slot has reached yet stay out of memory: a class in use costs the pages its secrets take, not
 * a whole slab (with one slab touched whole per class, a broker with one account held 1.3 MB of
 * secret slabs, 24 kB now). */
#define SLOT_MIN     64u
#define SLOT_MAX     8192u
#define SLOT_CLASSES 40u /* 16 classes of 64 bytes up to 1 KiB, then 8 per doubling */
#define SLAB_SIZE    (64u * 1024)

static struct {
        pthread_mutex_t lock; /* the broker's loop and its store thread both make secrets */
        struct secret *free[SLOT_CLASSES];
        uint8_t *fresh[SLOT_CLASSES];    /* the class's newest slab: its first slot never used */
        size_t fresh_left[SLOT_CLASSES]; /* slots left there */
} slabs = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The size of class c's slots: 64, 128, ... 1024, then 1152, 1280, ... 2048, 2304, ... 8192. */
static size_t slot_size(size_t c)
{
        size_t k = c - 16, base;

        if (c < 16)
                return (c + 1) * SLOT_MIN;
        base = (size_t)1024 << (k / 8); /* 1024, 2048, 4096: where the doubling starts */
        return base + (k % 8 + 1) * (base / 8);
}

/* The smallest class whose slots hold need bytes; SLOT_CLASSES when none does. */
static size_t slot_class(size_t need)
{
        size_t c;

        if (need > SLOT_MAX)
                return SLOT_CLASSES;
        if (need <= 1024)
                return need <= SLOT_MIN ? 0 : (need - 1) / SLOT_MIN;
        for (c = 16; slot_size(c) < need; c++)
                ;
        return c;
}

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

/* mlock(), or with on_fault the pages as they are touched (mlock2(MLOCK_ONFAULT): each is locked
 * when it is first made resident, before anything is written to it; mlock() where the kernel
 * lacks it). */
static int lock_range(void *p, size_t size, bool on_fault)
{
        if (on_fault) {
                if (mlock2(p, size, MLOCK_ONFAULT) == 0)
                        return 0;
                if (errno != EINVAL && errno != ENOSYS)
                        return -errno;
        }
        return mlock(p, size) < 0 ? -errno : 0;
}

/* A locked, non-dumpable mapping of size bytes that forked children see zeroed. */
static void *map_locked(size_t size, bool on_fault)
{
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        (void)madvise(p, size, MADV_DONTDUMP);
        /* Also excluded from fork()ed children: they must never inherit a secret. */
        (void)madvise(p, size, MADV_WIPEONFORK);
        if (lock_range(p, size, on_fault) < 0) {
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

/* A free slot of class c: a freed one, else the next one of the class's newest slab, else the
 * first of a new slab (called with slabs.lock). */
static struct secret *slot_take(size_t c)
{
        struct secret *s = slabs.free[c];

        if (s) {
                slabs.free[c] = s->next_free;
                s->next_free = NULL;
        } else {
                if (slabs.fresh_left[c] == 0) {
                        slabs.fresh[c] = map_locked(SLAB_SIZE, true);
                        if (!slabs.fresh[c])
                                return NULL;
                        slabs.fresh_left[c] = SLAB_SIZE / slot_size(c);
                }
                s = (struct secret *)slabs.fresh[c];
                slabs.fresh[c] += slot_size(c);
                slabs.fresh_left[c]--;
        }
        s->map_size = 0;
        s->slot_class = c;
        return s;
}

int secret_new(size_t capacity, struct secret **ret)
{
        size_t page = page_size();
        size_t need, map_size, c;
        struct secret *s = NULL;

        if (capacity == 0 || capacity > 16u * 1024 * 1024)
                return -EINVAL;
        need = sizeof(struct secret) + capacity + 1;
        c = slot_class(need);
        if (c < SLOT_CLASSES) {
                pthread_mutex_lock(&slabs.lock);
                s = slot_take(c);
                pthread_mutex_unlock(&slabs.lock);
                if (!s)
                        return -ENOMEM;
        } else {
                map_size = (need + page - 1) / page * page;
                s = map_locked(map_size, false);
                if (!s)
                        return -errno;
                s->map_size = map_size;
                s->slot_class = 0;
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
                c = s->slot_class;
                explicit_bzero(s, slot_size(c));
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
