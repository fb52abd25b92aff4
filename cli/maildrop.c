/* The CLI's side of the maildrop; see maildrop.h. */
#include "maildrop.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static int write_file(int dirfd, const char *name, const char *profile, const uint8_t *msg,
                      size_t len)
{
        char header[128];
        int fd, r, n = snprintf(header, sizeof(header), "{\"v\":1,\"profile\":\"%s\"}\n", profile);

        if (!name_is_valid(profile) || n < 0 || (size_t)n >= sizeof(header))
                return -EINVAL;
        /* Group-readable: the directory's group (credbroker-mail, setgid) lets the broker's user
         * read it; others cannot list the directory to find it. */
        fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
                return -errno;
        r = write_all(fd, header, (size_t)n);
        if (r == 0)
                r = write_all(fd, msg, len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        return r;
}

int maildrop_write(const char *dir, const char *profile, const uint8_t *msg, size_t len)
{
        char tmp[128], final[96];
        uint64_t rnd;
        int dirfd, r;

        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
                return -EIO;
        snprintf(final, sizeof(final), "%u.%016" PRIx64, (unsigned)getuid(), rnd);
        snprintf(tmp, sizeof(tmp), ".%s.tmp", final);
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                /* A directory others cannot list is still writable: O_PATH is enough. */
                dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;
        r = write_file(dirfd, tmp, profile, msg, len);
        if (r == 0 && renameat(dirfd, tmp, dirfd, final) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(dirfd, tmp, 0);
        else if (fsync(dirfd) < 0 && errno != EBADF)
                r = -errno;
        close(dirfd);
        return r;
}
