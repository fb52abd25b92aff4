/* Whether a process holds the other end of a connection: the peer socket's inode from the
 * kernel's socket diagnostics (sock_diag(7), unix_diag), looked for among the process's
 * descriptors. Needed on the pidfd_open() path, where the pid alone may name a newer process. */
#include "build-config.h"

#include "peer.h"
#include "peer-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "util.h"

/* The pidfd_open() path looks for the peer's socket among this many of its descriptors at most,
 * so that a client with a huge descriptor table cannot make every accept slow. */
#define PEER_FD_SCAN_MAX 4096

/* The inode of the socket at the other end of the connection fd, from the kernel's socket
 * diagnostics (sock_diag(7), unix_diag). */
int peer_socket_inode(int fd, uint32_t *ret)
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
bool peer_process_holds_socket(int procfd, uint32_t inode)
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
