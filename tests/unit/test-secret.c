/* Unit tests for common/secret: fixed capacity, constant NUL termination, reading from files
 * with their size limits, comparison, and the properties of the mapping itself (excluded from
 * core dumps, wiped in forked children, wiped before it is unmapped). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "secret.h"
#include "tap.h"

/* AddressSanitizer turns mlock() into a no-op that reports success. */
#if defined(__SANITIZE_ADDRESS__)
#define MLOCK_WORKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLOCK_WORKS 0
#endif
#endif
#ifndef MLOCK_WORKS
#define MLOCK_WORKS 1
#endif

static char tmpdir[] = "/tmp/test-secret-XXXXXX";

/* Whether secret_free() wipes: once a mapping is gone nothing can read it, so a missing wipe
 * would go unnoticed. This binary's munmap() (secret.c's calls bind to it) looks first. */
static struct {
        const void *watch; /* a byte inside the mapping secret_free() is about to release */
        bool seen;         /* munmap() was called on it */
        bool zero;         /* and all of it was zero then */
} unmap_check;

int munmap(void *addr, size_t len)
{
        static int (*real_munmap)(void *, size_t);
        const uint8_t *start = addr;

        if (unmap_check.watch && (const uint8_t *)unmap_check.watch >= start &&
            (const uint8_t *)unmap_check.watch < start + len) {
                unmap_check.seen = true;
                unmap_check.zero = true;
                for (size_t i = 0; i < len; i++)
                        if (start[i] != 0)
                                unmap_check.zero = false;
        }
        if (!real_munmap)
                *(void **)&real_munmap = dlsym(RTLD_NEXT, "munmap"); /* POSIX's way round ISO C */
        if (!real_munmap) /* then straight to the kernel */
                return (int)syscall(SYS_munmap, addr, len);
        return real_munmap(addr, len);
}

static const char *write_file(const char *name, const void *data, size_t len)
{
        static char path[256];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || (len > 0 && write(fd, data, len) != (ssize_t)len))
                abort();
        close(fd);
        return path;
}

/* Whether the mapping that holds addr has all of the given VmFlags (two-letter codes): 1, 0,
 * or -1 when the mapping or /proc/self/smaps is not found. */
static int vm_flags_have(const void *addr, const char *const *flags, size_t n_flags, int report)
{
        FILE *f = fopen("/proc/self/smaps", "re");
        char line[512];
        int in_range = 0, found = -1;
        uintptr_t a = (uintptr_t)addr;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                uintptr_t start, end;
                char dash;

                if (sscanf(line, "%" SCNxPTR "%c%" SCNxPTR, &start, &dash, &end) == 3 &&
                    dash == '-') {
                        in_range = a >= start && a < end;
                        continue;
                }
                if (!in_range || strncmp(line, "VmFlags:", 8) != 0)
                        continue;
                found = 1;
                for (size_t i = 0; i < n_flags; i++) {
                        char want[8];
                        snprintf(want, sizeof(want), " %s", flags[i]);
                        /* Flags are separated by spaces; the list ends with " \n". */
                        const char *p = line + 8;
                        int has = 0;
                        while ((p = strstr(p, want))) {
                                if (p[3] == ' ' || p[3] == '\n' || p[3] == 0) {
                                        has = 1;
                                        break;
                                }
                                p += 3;
                        }
                        if (!has) {
                                if (report)
                                        printf("# VmFlags lack \"%s\":%s", flags[i], line + 8);
                                found = 0;
                        }
                }
                break;
        }
        fclose(f);
        return found;
}

static void test_capacity(void)
{
        struct secret *s = (struct secret *)0x1;

        is_int(secret_new(0, &s), -EINVAL, "capacity 0 is refused");
        is_int(secret_new(16u * 1024 * 1024 + 1, &s), -EINVAL, "capacity above 16 MiB is refused");
        is_int(secret_new(SIZE_MAX, &s), -EINVAL, "capacity SIZE_MAX is refused");
        ok(s == (struct secret *)0x1, "ret untouched on failure");

        is_int(secret_new(10, &s), 0, "secret_new(10)");
        is_int(secret_capacity(s), 10, "capacity as asked");
        is_int(secret_len(s), 0, "new secret is empty");
        is_str(secret_str(s), "", "new secret is the empty string");

        is_int(secret_append(s, "0123456789", 10), 0, "append up to capacity");
        is_int(secret_len(s), 10, "full");
        is_str(secret_str(s), "0123456789", "contents at capacity");
        is_int(secret_data(s)[10], 0, "terminated right after capacity");
        is_int(secret_append(s, "x", 1), -ENOBUFS, "append past capacity fails");
        is_int(secret_append(s, "x", SIZE_MAX), -ENOBUFS, "huge append does not wrap");
        is_str(secret_str(s), "0123456789", "failed append changed nothing");
        is_int(secret_append(s, "", 0), 0, "appending nothing to a full secret is fine");
        secret_free(s);

        if (secret_new(10, &s) < 0)
                abort();
        is_int(secret_append(s, "abcdef", 6), 0, "append 6 of 10");
        is_int(secret_append(s, "ghijk", 5), -ENOBUFS, "append 5 more fails (11 > 10)");
        is_int(secret_len(s), 6, "length unchanged after refused append");
        is_str(secret_str(s), "abcdef", "contents unchanged after refused append");
        is_int(secret_data(s)[6], 0, "still terminated after refused append");
        is_int(secret_append(s, "ghij", 4), 0, "append exactly the rest");
        is_str(secret_str(s), "abcdefghij", "appends concatenate");

        /* Appending terminates even over stale bytes. */
        memset(secret_data(s), 'X', secret_capacity(s));
        secret_set_len(s, 0);
        memset(secret_data(s), 'X', secret_capacity(s));
        is_int(secret_append(s, "ab", 2), 0, "append over stale bytes");
        is_str(secret_str(s), "ab", "append terminates right after the new length");

        /* Writing directly, then declaring the length. */
        memset(secret_data(s), 'X', secret_capacity(s));
        is_int(secret_set_len(s, 2), 0, "set_len 2");
        is_str(secret_str(s), "XX", "set_len terminates");
        is_int(secret_set_len(s, 11), -ENOBUFS, "set_len past capacity fails");
        is_int(secret_len(s), 2, "failed set_len changed nothing");
        is_int(secret_set_len(s, 10), 0, "set_len to capacity");
        is_int(secret_data(s)[10], 0, "set_len to capacity terminates after it");
        is_int(secret_set_len(s, 0), 0, "set_len 0");
        is_str(secret_str(s), "", "set_len 0 is the empty string");
        secret_free(s);
        secret_free(NULL);
        ok(1, "secret_free(NULL) is a no-op");

        /* A capacity right at a page boundary and the maximum. */
        long page = sysconf(_SC_PAGESIZE);
        if (secret_new((size_t)page, &s) < 0)
                abort();
        memset(secret_data(s), 'p', (size_t)page);
        is_int(secret_set_len(s, (size_t)page), 0, "a page-sized secret fills up");
        is_int(strlen(secret_str(s)), page, "a page-sized secret is terminated");
        secret_free(s);
        is_int(secret_new(16u * 1024 * 1024, &s), 0, "capacity 16 MiB is allowed");
        if (s) {
                secret_data(s)[16u * 1024 * 1024 - 1] = 'z';
                is_int(secret_set_len(s, 16u * 1024 * 1024), 0, "16 MiB secret is writable");
                secret_free(s);
        }
}

static void test_new_from(void)
{
        _cleanup_secret_ struct secret *a = NULL, *b = NULL, *c = NULL;

        is_int(secret_new_from("hello", 5, &a), 0, "secret_new_from");
        is_str(secret_str(a), "hello", "secret_new_from contents");
        is_int(secret_len(a), 5, "secret_new_from length");
        is_int(secret_capacity(a), 5, "secret_new_from capacity is the length");
        is_int(secret_new_from("", 0, &b), 0, "secret_new_from empty");
        is_int(secret_len(b), 0, "empty secret length");
        is_str(secret_str(b), "", "empty secret string");
        is_int(secret_new_from(NULL, 0, &c), 0, "secret_new_from(NULL, 0)");
        is_int(secret_len(c), 0, "secret_new_from(NULL, 0) is empty");

        _cleanup_secret_ struct secret *bin = NULL;
        is_int(secret_new_from("a\0b", 3, &bin), 0, "binary secret with a NUL");
        is_int(secret_len(bin), 3, "binary length kept");
        ok(memcmp(secret_data(bin), "a\0b", 4) == 0, "binary contents kept and terminated");
}

static void test_equal(void)
{
        _cleanup_secret_ struct secret *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL,
                                       *f = NULL, *big = NULL;

        if (secret_new_from("token-1", 7, &a) < 0 || secret_new_from("token-1", 7, &b) < 0 ||
            secret_new_from("token-2", 7, &c) < 0 || secret_new_from("token", 5, &d) < 0 ||
            secret_new_from("", 0, &e) < 0 || secret_new_from("", 0, &f) < 0 ||
            secret_new(100, &big) < 0)
                abort();
        secret_append(big, "token-1", 7);

        ok(secret_equal(a, b), "equal contents are equal");
        ok(secret_equal(a, a), "a secret equals itself");
        ok(!secret_equal(a, c), "same length, last byte differs");
        ok(!secret_equal(a, d), "a prefix is not equal");
        ok(!secret_equal(d, a), "not equal to a longer secret");
        ok(secret_equal(e, f), "two empty secrets are equal");
        ok(!secret_equal(a, e), "not equal to empty");
        ok(secret_equal(a, big), "capacity does not matter");

        /* Bytes past the length must not count. */
        secret_set_len(big, 5);
        ok(secret_equal(d, big), "only bytes up to the length count");

        _cleanup_secret_ struct secret *x = NULL, *y = NULL;
        if (secret_new_from("\x80zzz", 4, &x) < 0 || secret_new_from("\x00zzz", 4, &y) < 0)
                abort();
        ok(!secret_equal(x, y), "first byte differs in the high bit only");
}

static void test_from_file(void)
{
        struct secret *s = NULL;
        const char *path;
        char big[200];

        if (!mkdtemp(tmpdir))
                abort();

        path = write_file("nl", "refresh-token\n", 14);
        is_int(secret_from_file(path, 100, &s), 0, "file with a trailing newline");
        if (s) {
                is_str(secret_str(s), "refresh-token", "trailing newline dropped");
                is_int(secret_len(s), 13, "length without the newline");
                is_int(secret_capacity(s), 100, "capacity is max");
                secret_free(s);
                s = NULL;
        }

        path = write_file("plain", "refresh-token", 13);
        is_int(secret_from_file(path, 100, &s), 0, "file without a newline");
        if (s) {
                is_str(secret_str(s), "refresh-token", "contents kept whole");
                secret_free(s);
                s = NULL;
        }

        path = write_file("crlf", "pin\r\n", 5);
        is_int(secret_from_file(path, 100, &s), 0, "file ending in CRLF");
        if (s) {
                is_str(secret_str(s), "pin", "CRLF dropped");
                secret_free(s);
                s = NULL;
        }

        path = write_file("two-nl", "pin\n\n", 5);
        is_int(secret_from_file(path, 100, &s), 0, "file ending in two newlines");
        if (s) {
                is_str(secret_str(s), "pin\n", "only one newline dropped");
                secret_free(s);
                s = NULL;
        }

        path = write_file("inner-nl", "a\nb\n", 4);
        is_int(secret_from_file(path, 100, &s), 0, "inner newline");
        if (s) {
                is_str(secret_str(s), "a\nb", "inner newline kept");
                secret_free(s);
                s = NULL;
        }

        memset(big, 'k', sizeof(big));
        path = write_file("exact", big, 64);
        is_int(secret_from_file(path, 64, &s), 0, "file of exactly max bytes");
        if (s) {
                is_int(secret_len(s), 64, "all max bytes read");
                is_int(secret_data(s)[64], 0, "terminated");
                secret_free(s);
                s = NULL;
        }

        big[63] = '\n';
        path = write_file("exact-nl", big, 64);
        is_int(secret_from_file(path, 64, &s), 0, "max bytes ending in a newline");
        if (s) {
                is_int(secret_len(s), 63, "newline at max dropped");
                secret_free(s);
                s = NULL;
        }
        big[63] = 'k';

        s = (struct secret *)0x1;
        path = write_file("toobig", big, 65);
        is_int(secret_from_file(path, 64, &s), -EFBIG, "file of max+1 bytes: -EFBIG");
        path = write_file("waytoobig", big, sizeof(big));
        is_int(secret_from_file(path, 64, &s), -EFBIG, "file far above max: -EFBIG");
        path = write_file("empty", "", 0);
        is_int(secret_from_file(path, 64, &s), -ENODATA, "empty file: -ENODATA");
        path = write_file("only-nl", "\n", 1);
        is_int(secret_from_file(path, 64, &s), -ENODATA, "file of just a newline: -ENODATA");
        is_int(secret_from_file("/nonexistent/credbroker/pin", 64, &s), -ENOENT,
               "missing file: -ENOENT");
        ok(secret_from_file(tmpdir, 64, &s) < 0, "a directory is refused");
        ok(s == (struct secret *)0x1, "ret untouched on every failure");

        /* /proc files claim size 0 but have contents: the read loop itself must stop at max. */
        s = NULL;
        is_int(secret_from_file("/proc/self/status", 16, &s), -EFBIG,
               "a file that grows past max while read: -EFBIG");
        is_int(secret_from_file("/proc/self/status", 64 * 1024, &s), 0,
               "a size-0 /proc file that fits is read");
        if (s) {
                ok(strncmp(secret_str(s), "Name:", 5) == 0, "/proc contents read");
                secret_free(s);
                s = NULL;
        }

        const char *names[] = {"nl",       "plain",  "crlf",      "two-nl", "inner-nl", "exact",
                               "exact-nl", "toobig", "waytoobig", "empty",  "only-nl"};
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                char p[256];
                snprintf(p, sizeof(p), "%s/%s", tmpdir, names[i]);
                unlink(p);
        }
        rmdir(tmpdir);
}

static void test_mapping(void)
{
        _cleanup_secret_ struct secret *s = NULL, *t = NULL;
        static const char *const dontdump[] = {"dd"};
        static const char *const wipeonfork[] = {"wf"};
        static const char *const locked[] = {"lo"};
        pid_t pid;
        int status;

        if (secret_new_from("access-token-value", 18, &s) < 0 ||
            secret_new_from("another-secret", 14, &t) < 0)
                abort();

        is_int(vm_flags_have(secret_data(s), dontdump, 1, 1), 1,
               "secret mapping is MADV_DONTDUMP (VmFlags dd)");
        is_int(vm_flags_have(secret_data(t), dontdump, 1, 1), 1,
               "a second secret is MADV_DONTDUMP too");
        is_int(vm_flags_have(secret_data(s) + secret_len(s), dontdump, 1, 1), 1,
               "the end of the secret is in the same non-dumpable mapping");
        is_int(vm_flags_have(secret_data(s), wipeonfork, 1, 1), 1,
               "secret mapping is MADV_WIPEONFORK (VmFlags wf)");
        if (MLOCK_WORKS && secret_memory_locked())
                is_int(vm_flags_have(secret_data(s), locked, 1, 1), 1,
                       "secret mapping is mlock()ed (VmFlags lo)");
        else
                ok(1, "# SKIP mlock not permitted here (or a no-op under ASan)");

        /* An ordinary heap allocation must not be dd: otherwise the check above proves
         * nothing. */
        char *heap = malloc(1 << 20);
        is_int(vm_flags_have(heap, dontdump, 1, 0), 0, "control: heap memory is dumpable");
        free(heap);

        /* A forked child must see zeroes, not the secret. */
        fflush(stdout);
        pid = fork();
        if (pid < 0)
                abort();
        if (pid == 0) {
                const uint8_t *p = secret_data(s);
                for (size_t i = 0; i < 18; i++)
                        if (p[i] != 0)
                                _exit(1);
                _exit(0);
        }
        if (waitpid(pid, &status, 0) != pid)
                abort();
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child sees the secret wiped");
        is_str(secret_str(s), "access-token-value", "the parent still has the secret");
}

static size_t count_mappings(void)
{
        FILE *f = fopen("/proc/self/maps", "re");
        size_t n = 0;
        int c;

        if (!f)
                abort();
        while ((c = fgetc(f)) != EOF)
                n += c == '\n';
        fclose(f);
        return n;
}

/* Small secrets share slabs: a freed slot is wiped whole and taken by the next secret of its
 * size, and a thousand secrets do not take a thousand mappings. */
static void test_slots(void)
{
        enum { N = 1000 };
        static struct secret *many[N];
        struct secret *s, *again;
        uint8_t *data;
        size_t cap, before, zero = 0;

        if (secret_new(1000, &s) < 0)
                abort();
        cap = secret_capacity(s);
        data = secret_data(s);
        memset(data, 'R', cap);
        if (secret_set_len(s, cap) < 0)
                abort();
        secret_free(s);
        /* The slot stays mapped (the slab is kept), so what free left in it can be looked at. */
        for (size_t i = 0; i <= cap; i++)
                zero += data[i] == 0;
        is_int(zero, cap + 1, "a freed slot is wiped");
        if (secret_new(1000, &again) < 0)
                abort();
        ok(secret_data(again) == data, "and the next secret of its size class takes it");
        is_int(secret_len(again), 0, "empty");
        secret_free(again);

        before = count_mappings();
        for (size_t i = 0; i < N; i++)
                if (secret_new(2000, &many[i]) < 0)
                        abort();
        ok(count_mappings() - before < 20, "1,000 secrets of 2,000 bytes take a few slabs");
        for (size_t i = 0; i < N; i++) {
                memset(secret_data(many[i]), 'A' + (int)(i % 26), 2000);
                if (secret_set_len(many[i], 2000) < 0)
                        abort();
        }
        zero = 0;
        for (size_t i = 0; i < N; i++)
                zero += secret_data(many[i])[0] == 'A' + (int)(i % 26) &&
                        secret_data(many[i])[1999] == 'A' + (int)(i % 26);
        is_int(zero, N, "none overlaps another");
        for (size_t i = 0; i < N; i++)
                secret_free(many[i]);
}

/* Whether mlock2(MLOCK_ONFAULT) works here (valgrind does not know it). */
static bool onfault_works(void)
{
        long page = sysconf(_SC_PAGESIZE);
        void *p =
            mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        bool works;

        if (p == MAP_FAILED)
                abort();
        works = mlock2(p, (size_t)page, MLOCK_ONFAULT) == 0 || errno == ENOMEM || errno == EPERM;
        munmap(p, (size_t)page);
        return works;
}

/* Memory: a slot is little larger than its secret, and the pages of a slab that no slot has
 * reached yet are not made resident. */
static void test_slab_memory(void)
{
        struct secret *a, *b, *lone;
        size_t need = 40 + 760 + 1, gap;
        unsigned char vec = 1;
        long page = sysconf(_SC_PAGESIZE);
        uintptr_t slab, far;

        /* An access token's size, which no other test takes: two slots side by side. */
        if (secret_new(760, &a) < 0 || secret_new(760, &b) < 0)
                abort();
        gap = secret_data(b) > secret_data(a) ? (size_t)(secret_data(b) - secret_data(a))
                                              : (size_t)(secret_data(a) - secret_data(b));
        if (!ok(gap >= need && gap <= need + need / 8,
                "a slot is at most an eighth larger than its secret (760 bytes)"))
                printf("# slots %zu bytes apart for %zu bytes\n", gap, need);
        secret_free(a);
        secret_free(b);

        /* The first secret of a class no one has used: the first slot of a new slab. */
        if (secret_new(7000, &lone) < 0)
                abort();
        memset(secret_data(lone), 'L', 7000);
        slab = ((uintptr_t)secret_data(lone)) & ~(uintptr_t)(page - 1);
        far = slab + 48 * 1024;
        is_int(mincore((void *)far, (size_t)page, &vec), 0, "mincore() on the slab");
        if (onfault_works())
                is_int(vec & 1, 0, "a slab's pages beyond its slots in use are not resident");
        else
                ok(1, "# SKIP no mlock2(MLOCK_ONFAULT) here (valgrind): secret.c uses mlock()");
        secret_free(lone);
}

static void test_free_wipes(void)
{
        struct secret *s;
        size_t cap;

        /* Larger than a slab slot: a mapping of its own. */
        if (secret_new(100000, &s) < 0)
                abort();
        cap = secret_capacity(s);
        memset(secret_data(s), 'R', cap);
        if (secret_set_len(s, cap) < 0)
                abort();
        unmap_check.watch = secret_data(s);
        unmap_check.seen = unmap_check.zero = false;
        secret_free(s);
        unmap_check.watch = NULL;
        ok(unmap_check.seen, "secret_free() unmaps the secret's mapping");
        ok(unmap_check.zero, "the whole mapping is zero when it is unmapped (wiped first)");

        /* Control: the check sees contents that were not wiped. */
        uint8_t *page =
            mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED)
                abort();
        page[100] = 'R';
        unmap_check.watch = page;
        unmap_check.seen = unmap_check.zero = false;
        munmap(page, 4096);
        unmap_check.watch = NULL;
        ok(unmap_check.seen && !unmap_check.zero, "control: an unwiped mapping is seen as such");
}

int main(void)
{
        test_capacity();
        test_new_from();
        test_equal();
        test_from_file();
        test_mapping();
        test_slots();
        test_slab_memory();
        test_free_wipes();
        return done_testing();
}
