/* Peer facts captured at accept; see peer.h. Everything here comes from the kernel, never from
 * what the peer says, and whatever cannot be confirmed is left unknown rather than guessed. */
#include "build-config.h"

#include "peer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
/* The pidfd_open() path looks for the peer's socket among this many of its descriptors at most,
 * so that a client with a huge descriptor table cannot make every accept slow. */
#define PEER_FD_SCAN_MAX 4096

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
static int read_small_file(int dirfd, const char *name, char *buf, size_t size, size_t *ret_len)
{
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);

        if (fd < 0)
                return -errno;
        return read_bounded(fd, buf, size - 1, ret_len);
}

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
        r = read_small_file(AT_FDCWD, path, text, sizeof(text), &len);
        if (r < 0)
                return r;
        return peer_start_time_from_stat(text, len, ret);
}

static int pidfd_from_socket(int fd, int *ret)
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
static int pidfd_by_pid(pid_t pid, int *ret)
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

/* The inode of the socket at the other end of the connection fd, from the kernel's socket
 * diagnostics (sock_diag(7), unix_diag). */
static int peer_socket_inode(int fd, uint32_t *ret)
{
        struct stat st;
        _cleanup_close_ int nl = -1;
        struct {
                struct nlmsghdr header;
                struct unix_diag_req request;
        } query;
        union {
                struct nlmsghdr header;
                char bytes[8192];
        } reply;
        struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
        ssize_t n;

        if (fstat(fd, &st) < 0)
                return -errno;
        nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (nl < 0)
                return -errno;
        memset(&query, 0, sizeof(query));
        query.header.nlmsg_len = sizeof(query);
        query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        query.header.nlmsg_flags = NLM_F_REQUEST;
        query.request.sdiag_family = AF_UNIX;
        query.request.udiag_states = UINT32_MAX;
        query.request.udiag_ino = (uint32_t)st.st_ino;
        query.request.udiag_show = UDIAG_SHOW_PEER;
        /* No cookie: look the socket up by inode alone. */
        query.request.udiag_cookie[0] = UINT32_MAX;
        query.request.udiag_cookie[1] = UINT32_MAX;
        if (sendto(nl, &query, sizeof(query), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
                return -errno;
        do
                n = recv(nl, &reply, sizeof(reply), 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        /* Walked by hand: NLMSG_OK() compares signed with unsigned. */
        for (size_t off = 0, total = (size_t)n;
             off <= total && total - off >= sizeof(struct nlmsghdr);) {
                const struct nlmsghdr *h = (const struct nlmsghdr *)(reply.bytes + off);
                const struct unix_diag_msg *msg = NLMSG_DATA(h);
                struct rtattr *attr;
                int attr_left;

                if (h->nlmsg_len < sizeof(*h) || h->nlmsg_len > total - off)
                        break;
                off += NLMSG_ALIGN(h->nlmsg_len);
                if (h->nlmsg_type == NLMSG_ERROR) {
                        const struct nlmsgerr *e = NLMSG_DATA(h);
                        return h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error < 0 ? e->error
                                                                                        : -EIO;
                }
                if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                    h->nlmsg_len < NLMSG_LENGTH(sizeof(*msg)) ||
                    msg->udiag_ino != (uint32_t)st.st_ino)
                        continue;
                attr = (struct rtattr *)((char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(*msg)));
                attr_left = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
                for (; RTA_OK(attr, attr_left); attr = RTA_NEXT(attr, attr_left))
                        if (attr->rta_type == UNIX_DIAG_PEER &&
                            RTA_PAYLOAD(attr) >= sizeof(uint32_t)) {
                                memcpy(ret, RTA_DATA(attr), sizeof(uint32_t));
                                return 0;
                        }
        }
        return -ENOENT;
}

/* Whether the process of procfd holds the socket inode among its descriptors. */
static bool process_holds_socket(int procfd, uint32_t inode)
{
        _cleanup_close_ int fdfd = openat(procfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char want[32], target[32];
        struct dirent *de;
        unsigned seen = 0;
        bool found = false;
        DIR *d;

        if (fdfd < 0)
                return false;
        d = fdopendir(fdfd);
        if (!d)
                return false;
        TAKE_FD(fdfd);
        snprintf(want, sizeof(want), "socket:[%" PRIu32 "]", inode);
        while (!found && seen < PEER_FD_SCAN_MAX && (de = readdir(d))) {
                ssize_t n;

                if (de->d_name[0] == '.')
                        continue;
                seen++;
                n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
                if (n <= 0)
                        continue;
                target[n] = 0;
                found = strcmp(target, want) == 0;
        }
        closedir(d);
        return found;
}

/* A pidfd turns readable when its process has exited (pidfd_open(2)); while it has not, its pid
 * cannot name any other process. */
static bool process_is_alive(int pidfd)
{
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        int r;

        do
                r = poll(&pfd, 1, 0);
        while (r < 0 && errno == EINTR);
        return r == 0;
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

static bool unit_name_is_valid(const char *name, size_t len)
{
        static const char *const suffixes[] = {".service", ".scope"};
        bool suffix_ok = false;

        if (len == 0 || len >= PEER_UNIT_MAX)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t n = strlen(suffixes[i]);
                if (len > n && memcmp(name + len - n, suffixes[i], n) == 0)
                        suffix_ok = true;
        }
        if (!suffix_ok)
                return false;
        /* systemd's unit name alphabet (systemd.unit(5)); "\" for its escapes. */
        for (size_t i = 0; i < len; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr(":-_.\\@", c)))
                        return false;
        }
        return true;
}

static bool component_is(const char *s, size_t len, const char *word)
{
        return len == strlen(word) && memcmp(s, word, len) == 0;
}

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);

        return len > n && memcmp(s + len - n, suffix, n) == 0;
}

/* "user@<uid>.service": a user's service manager, whose own units are below it. */
static bool is_user_manager(const char *s, size_t len)
{
        static const char prefix[] = "user@", suffix[] = ".service";
        const size_t p = sizeof(prefix) - 1, q = sizeof(suffix) - 1;

        if (len <= p + q || memcmp(s, prefix, p) != 0 || !has_suffix(s, len, suffix))
                return false;
        for (size_t i = p; i < len - q; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* The unit of one cgroup path. Slices are skipped; the first component below them is the
 * unit. Deeper components are not looked at (but below a user manager, see there): a unit with
 * Delegate= creates its own sub-cgroups and may name them anything, "nagios.service"
 * included, so the innermost name would be the peer's own words. A user manager's unit is
 * named with its manager, "user@1000.service/backup.service": any user can start a unit
 * called nagios.service under their own manager, and it must never pass for the system's. */
static int unit_from_path(const char *path, size_t len, char ret[static PEER_UNIT_MAX])
{
        const char *p = path, *end = path + len;
        const char *unit = NULL, *manager = NULL;
        size_t unit_len = 0, manager_len = 0;
        bool below_user_manager = false, done = false;

        if (len == 0 || *p != '/')
                return -EINVAL;
        while (p < end) {
                const char *c;
                size_t n;

                p++; /* the '/' */
                c = p;
                while (p < end && *p != '/')
                        p++;
                n = (size_t)(p - c);
                if (n == 0 && p == end && c == path + 1)
                        break; /* "/": the root cgroup */
                /* A path outside our cgroup namespace shows as "/../.."; it is not one we can
                 * name. */
                if (n == 0 || component_is(c, n, ".") || component_is(c, n, ".."))
                        return -EINVAL;
                if (done)
                        continue; /* only checked: the kernel never writes such a path */
                if (has_suffix(c, n, ".slice"))
                        continue;
                if (!below_user_manager && is_user_manager(c, n)) {
                        unit = manager = c;
                        unit_len = manager_len = n;
                        below_user_manager = true;
                        continue;
                }
                if (below_user_manager) {
                        /* The manager's own process lives in init.scope below it. */
                        if (!component_is(c, n, "init.scope")) {
                                unit = c;
                                unit_len = n;
                        }
                        done = true;
                        continue;
                }
                unit = c;
                unit_len = n;
                done = true;
        }
        if (!unit)
                return -ENOENT;
        if (!unit_name_is_valid(unit, unit_len))
                return -ENOENT;
        if (manager && unit != manager) {
                if (manager_len + 1 + unit_len >= PEER_UNIT_MAX)
                        return -ENOENT;
                memcpy(ret, manager, manager_len);
                ret[manager_len] = '/';
                memcpy(ret + manager_len + 1, unit, unit_len);
                ret[manager_len + 1 + unit_len] = 0;
                return 0;
        }
        memcpy(ret, unit, unit_len);
        ret[unit_len] = 0;
        return 0;
}

int peer_unit_from_cgroup(const char *text, size_t len, char ret[static PEER_UNIT_MAX])
{
        const char *p = text, *end = text + len;
        const char *v2 = NULL, *v1 = NULL;
        size_t v2_len = 0, v1_len = 0;
        int r;

        while (p < end) {
                const char *line = p, *nl = memchr(p, '\n', (size_t)(end - p));
                const char *line_end = nl ? nl : end;
                const char *colon1, *colon2;

                p = nl ? nl + 1 : end;
                if (!nl)
                        return -EINVAL; /* the kernel ends every line; a torn file is not used */
                /* "hierarchy-ID:controller-list:cgroup-path" (proc(5)); the path may hold ':'. */
                colon1 = memchr(line, ':', (size_t)(line_end - line));
                if (!colon1)
                        return -EINVAL;
                colon2 = memchr(colon1 + 1, ':', (size_t)(line_end - colon1 - 1));
                if (!colon2)
                        return -EINVAL;
                /* One line per hierarchy: the kernel refuses '\n' in cgroup names so that no
                 * name can fake a line; a second one means the text is not the kernel's. */
                if (colon1 - line == 1 && line[0] == '0' && colon2 == colon1 + 1) {
                        if (v2)
                                return -EINVAL;
                        v2 = colon2 + 1;
                        v2_len = (size_t)(line_end - v2);
                } else if (component_is(colon1 + 1, (size_t)(colon2 - colon1 - 1),
                                        "name=systemd")) {
                        if (v1)
                                return -EINVAL;
                        v1 = colon2 + 1;
                        v1_len = (size_t)(line_end - v1);
                }
        }
        /* cgroup v2 is systemd's own on unified systems; on hybrid ones systemd keeps its tree
         * in name=systemd as well, and on legacy ones only there. */
        r = v2 ? unit_from_path(v2, v2_len, ret) : -ENOENT;
        if (r == -ENOENT && v1)
                r = unit_from_path(v1, v1_len, ret);
        return r;
}

static char *read_unit(int procfd)
{
        char text[PEER_CGROUP_FILE_MAX], unit[PEER_UNIT_MAX];
        size_t len;

        if (read_small_file(procfd, "cgroup", text, sizeof(text), &len) < 0 ||
            peer_unit_from_cgroup(text, len, unit) < 0)
                return NULL;
        return strdup(unit);
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
        r = method == PEER_PIDFD_FROM_SOCKET ? pidfd_from_socket(fd, &pidfd)
                                             : pidfd_by_pid(p->pid, &pidfd);
        if (r < 0)
                return r;
        /* /proc/<pid> opened while the pidfd's process is alive is that process's directory:
         * reads through it fail once the process is gone, even if the pid is reused. */
        snprintf(path, sizeof(path), "/proc/%d", (int)p->pid);
        procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (procfd < 0) {
                r = -errno;
                /* Alive but not in our /proc: hidepid (systemd's ProtectProc=) hides it. */
                if (r == -ENOENT && process_is_alive(pidfd)) {
                        static bool warned;
                        if (!warned)
                                log_warning("A live peer's /proc entry is hidden (hidepid, "
                                            "ProtectProc=): exe and unit stay unknown for "
                                            "processes the broker may not see.");
                        warned = true;
                }
                return r;
        }
        if (!process_is_alive(pidfd))
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
                if (!process_holds_socket(procfd, inode))
                        return -ESRCH;
        }
        exe = read_exe(procfd);
        unit = read_unit(procfd);
        /* Still the same process after the reads: what was read is its own. */
        if (!process_is_alive(pidfd))
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
