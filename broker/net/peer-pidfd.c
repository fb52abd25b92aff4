/* The peer's pidfd: from the socket (SO_PEERPIDFD, Linux 6.5), or pidfd_open() of its pid
 * checked against the process start time, and whether that process is still alive. */
#include "build-config.h"

#include "peer.h"
#include "peer-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "util.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif
/* Linux 6.5; Debian 12's glibc headers predate it. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* /proc/<pid>/stat is well below this up to field 22 (comm is at most 64 bytes). */
#define PROC_STAT_MAX 4096

int peer_start_time_from_stat(const char *text, size_t len, uint64_t *ret)
{
        const char *p, *end = text + len;
        char digits[21];

        /* comm (field 2) is in parentheses and may itself hold ')' and spaces: the fields
         * after it start at the last ')'. */
        p = memrchr(text, ')', len);
        if (!p)
                return -EINVAL;
        p++;
        /* Fields 3 .. 22, each after one space. */
        for (unsigned field = 3;; field++) {
                const char *start;
                size_t n;

                if (p == end || *p != ' ')
                        return -EINVAL;
                start = ++p;
                while (p < end && *p != ' ' && *p != '\n')
                        p++;
                if (field < 22)
                        continue;
                n = (size_t)(p - start);
                if (n == 0 || n >= sizeof(digits))
                        return -EINVAL;
                memcpy(digits, start, n);
                digits[n] = 0;
                return parse_u64(digits, ret);
        }
}

static int start_time_of(pid_t pid, uint64_t *ret)
{
        char path[32], text[PROC_STAT_MAX];
        size_t len;
        int r;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        r = peer_read_small_file(AT_FDCWD, path, text, sizeof(text), &len);
        if (r < 0)
                return r;
        return peer_start_time_from_stat(text, len, ret);
}

int peer_pidfd_from_socket(int fd, int *ret)
{
        int pidfd = -1;
        socklen_t len = sizeof(pidfd);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0)
                return -errno;
        if (len != sizeof(pidfd) || pidfd < 0) {
                safe_close(pidfd);
                return -EIO;
        }
        *ret = pidfd;
        return 0;
}

/* Without SO_PEERPIDFD the pid is all we have: open a pidfd for it and make sure it refers to
 * the process that had that pid just before, by its start time. That alone cannot tell a pid
 * reused between the peer's connect() and this call (the peer exited and another process got
 * its number): peer_identify_with() also requires the process to hold the peer's socket. */
int peer_pidfd_by_pid(pid_t pid, int *ret)
{
        _cleanup_close_ int pidfd = -1;
        uint64_t before, after;
        int r;

        r = start_time_of(pid, &before);
        if (r < 0)
                return r;
        pidfd = pidfd_open(pid, 0);
        if (pidfd < 0)
                return -errno;
        r = start_time_of(pid, &after);
        if (r < 0 || after != before)
                return -ESRCH;
        *ret = TAKE_FD(pidfd);
        return 0;
}

/* A pidfd turns readable when its process has exited (pidfd_open(2)); while it has not, its pid
 * cannot name any other process. */
bool peer_process_is_alive(int pidfd)
{
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        int r;

        do
                r = poll(&pfd, 1, 0);
        while (r < 0 && errno == EINTR);
        return r == 0;
}
