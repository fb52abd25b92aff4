/* Peer facts captured at accept; see peer.h. Everything here comes from the kernel, never from
 * what the peer says, and whatever cannot be confirmed is left unknown rather than guessed. */
#include "build-config.h"

#include "peer.h"
#include "peer-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "util.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* Set once the kernel answers ENOPROTOOPT: it will not learn SO_PEERPIDFD while we run. */
static bool peerpidfd_refused;

int peer_credentials_from_socket(int fd, struct peer *ret)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        gid_t groups[PEER_MAX_GROUPS];

        memset(ret, 0, sizeof(*ret));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        if (len != sizeof(cred) || cred.pid <= 0)
                return -EIO;
        ret->uid = cred.uid;
        ret->gid = cred.gid;
        ret->pid = cred.pid;

        /* Supplementary groups of the peer at connect time; a peer with more than we keep is
         * treated as having none of them rather than some (fail closed), and the first such
         * peer is logged so that a group rule that never matches has an explanation. */
        len = sizeof(groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
                ret->n_groups = len / sizeof(gid_t);
                memcpy(ret->groups, groups, ret->n_groups * sizeof(gid_t));
        } else if (errno == ERANGE) {
                static bool logged;

                if (!logged)
                        log_warning("Peer uid=%u pid=%d is in more than %d groups; its "
                                    "supplementary groups are ignored (group rules match only its "
                                    "primary group).",
                                    (unsigned)cred.uid, (int)cred.pid, PEER_MAX_GROUPS);
                logged = true;
        }
        return 0;
}

void peer_clear(struct peer *p)
{
        if (!p)
                return;
        free(p->exe);
        free(p->unit);
        p->exe = NULL;
        p->unit = NULL;
}

/* Reads a whole small file below dirfd (or an absolute path with AT_FDCWD). -EFBIG unless it
 * fits in size - 1 bytes: a caller must not act on a prefix, and a file that fills the whole
 * buffer counts as too large (PROC_STAT_MAX and PEER_CGROUP_FILE_MAX are exclusive limits). */
int peer_read_small_file(int dirfd, const char *name, char *buf, size_t size, size_t *ret_len)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);

        if (fd < 0)
                return -errno;
        return read_bounded(fd, buf, size - 1, ret_len);
}

bool peer_exe_link_is_usable(const char *target, size_t len)
{
        static const char deleted[] = " (deleted)";
        const size_t deleted_len = sizeof(deleted) - 1;

        if (len == 0 || target[0] != '/' || memchr(target, 0, len))
                return false;
        /* The kernel marks a binary unlinked since it was executed (replaced by an update or
         * removed) this way; such a path names some other file now, or none. */
        if (len >= deleted_len && memcmp(target + len - deleted_len, deleted, deleted_len) == 0)
                return false;
        /* The audit log and the policy want one line of text. */
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)target[i] < 0x20 || target[i] == 0x7f)
                        return false;
        return utf8_is_valid((const uint8_t *)target, len);
}

/* The executable, if the path the kernel gives still names the very file the process runs.
 * That also refuses a path that means something else in our mount namespace than in the
 * peer's (a process in its own namespace that put a file at /usr/bin/something). The stats
 * take cached attributes (AT_STATX_DONT_SYNC), so a network or FUSE file system is not asked
 * for fresh ones while every client waits; looking the path up may still ask it for names it
 * has not cached, so a peer running a binary from a FUSE mount it serves can delay the broker
 * (a known gap: the lookup would need a worker thread or a time limit to close it). */
static char *read_exe(int procfd)
{
        char target[PATH_MAX];
        struct statx running, named;
        ssize_t n;

        n = readlinkat(procfd, "exe", target, sizeof(target));
        if (n < 0 && (errno == EACCES || errno == EPERM)) {
                static bool warned;
                if (!warned)
                        log_warning("Reading a peer's executable was refused (ptrace access "
                                    "mode): exe stays unknown for other users' processes, so "
                                    "exe rules cannot match them unless the broker has "
                                    "CAP_SYS_PTRACE.");
                warned = true;
        }
        if (n <= 0 || (size_t)n >= sizeof(target))
                return NULL;
        target[n] = 0;
        if (!peer_exe_link_is_usable(target, (size_t)n))
                return NULL;
        if (statx(procfd, "exe", AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &running) < 0 ||
            statx(AT_FDCWD, target, AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &named) < 0)
                return NULL;
        if (!S_ISREG(named.stx_mode) || running.stx_ino != named.stx_ino ||
            running.stx_dev_major != named.stx_dev_major ||
            running.stx_dev_minor != named.stx_dev_minor)
                return NULL;
        return strdup(target);
}

/* Test builds can pretend the kernel refuses SO_PEERPIDFD (CREDBROKER_FAULT=no-peerpidfd), so
 * that the integration tests run the pidfd_open() path on a kernel that has both. */
static bool peerpidfd_refused_by_test(void)
{
#if ENABLE_FAULT_POINTS
        const char *fault = secure_getenv("CREDBROKER_FAULT");

        return fault && strcmp(fault, "no-peerpidfd") == 0;
#else
        return false;
#endif
}

int peer_identify_with(int fd, struct peer *p, enum peer_pidfd_method method)
{
        _cleanup_close_ int pidfd = -1, procfd = -1;
        _cleanup_free_ char *exe = NULL, *unit = NULL;
        char path[32];
        int r;

        peer_clear(p);
        r = method == PEER_PIDFD_FROM_SOCKET ? peer_pidfd_from_socket(fd, &pidfd)
                                             : peer_pidfd_by_pid(p->pid, &pidfd);
        if (r < 0)
                return r;
        /* /proc/<pid> opened while the pidfd's process is alive is that process's directory:
         * reads through it fail once the process is gone, even if the pid is reused. */
        snprintf(path, sizeof(path), "/proc/%d", (int)p->pid);
        procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (procfd < 0) {
                r = -errno;
                /* Alive but not in our /proc: hidepid (systemd's ProtectProc=) hides it. */
                if (r == -ENOENT && peer_process_is_alive(pidfd)) {
                        static bool warned;
                        if (!warned)
                                log_warning("A live peer's /proc entry is hidden (hidepid, "
                                            "ProtectProc=): exe and unit stay unknown for "
                                            "processes the broker may not see.");
                        warned = true;
                }
                return r;
        }
        if (!peer_process_is_alive(pidfd))
                return -ESRCH;
        if (method == PEER_PIDFD_BY_PID) {
                /* The pid may have gone to another process since the connect(): believe it
                 * only if it holds the other end of this very connection. A peer that handed
                 * its socket to another process and closed it is unknown then, which
                 * SO_PEERPIDFD would still identify. */
                uint32_t inode;

                r = peer_socket_inode(fd, &inode);
                if (r < 0) {
                        static bool warned;
                        if (!warned)
                                log_warning_errno(r, "Cannot ask the kernel for the peer socket "
                                                     "(unix_diag); peers' exe and unit stay "
                                                     "unknown");
                        warned = true;
                        return r;
                }
                if (!peer_process_holds_socket(procfd, inode))
                        return -ESRCH;
        }
        exe = read_exe(procfd);
        unit = peer_read_unit(procfd);
        /* Still the same process after the reads: what was read is its own. */
        if (!peer_process_is_alive(pidfd))
                return -ESRCH;
        p->exe = TAKE_PTR(exe);
        p->unit = TAKE_PTR(unit);
        /* The pidfd is closed here, not kept for the connection: every fact is taken now, at
         * accept (design.md §7), so keeping it would only cost a descriptor per client. */
        return (int)method;
}

/* Whether /proc shows our own pid namespace, checked once: the pids SO_PEERCRED gives are of
 * our namespace, and a /proc mounted for another one would name other processes by them. */
static bool proc_is_ours(void)
{
        static int ours = -1;
        char link[32], expect[32];
        ssize_t n;

        if (ours < 0) {
                n = readlink("/proc/self", link, sizeof(link) - 1);
                link[n > 0 ? n : 0] = 0;
                snprintf(expect, sizeof(expect), "%d", (int)getpid());
                ours = strcmp(link, expect) == 0;
                if (!ours)
                        log_warning("/proc is not of the broker's pid namespace: peers' exe "
                                    "and unit stay unknown.");
        }
        return ours;
}

int peer_identify(int fd, struct peer *p)
{
        int r;

        if (!proc_is_ours()) {
                peer_clear(p);
                return -ENXIO;
        }
        if (!peerpidfd_refused) {
                r = peerpidfd_refused_by_test() ? -ENOPROTOOPT
                                                : peer_identify_with(fd, p, PEER_PIDFD_FROM_SOCKET);
                if (r != -ENOPROTOOPT)
                        return r;
                peerpidfd_refused = true;
                log_info("The kernel does not offer SO_PEERPIDFD; identifying peers with "
                         "pidfd_open() and a start-time check instead.");
        }
        return peer_identify_with(fd, p, PEER_PIDFD_BY_PID);
}
