/* Peer credentials captured at accept; see peer.h. */
#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int peer_from_socket(int fd, struct peer *ret)
{
        struct ucred cred;
        socklen_t len = sizeof(cred);
        gid_t groups[PEER_MAX_GROUPS];
        char path[64];
        ssize_t n;

        memset(ret, 0, sizeof(*ret));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        if (len != sizeof(cred) || cred.pid <= 0)
                return -EIO;
        ret->uid = cred.uid;
        ret->gid = cred.gid;
        ret->pid = cred.pid;

        /* Supplementary groups of the peer at connect time; a peer with more than we keep is
         * treated as having none of them rather than some. */
        len = sizeof(groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
                ret->n_groups = len / sizeof(gid_t);
                memcpy(ret->groups, groups, ret->n_groups * sizeof(gid_t));
        }

        /* For the audit log only: the policy does not match on it yet (a pidfd-checked read
         * replaces this with the policy engine's exe module). */
        snprintf(path, sizeof(path), "/proc/%d/exe", (int)cred.pid);
        n = readlink(path, ret->exe, sizeof(ret->exe) - 1);
        if (n <= 0) {
                snprintf(ret->exe, sizeof(ret->exe), "unknown");
                return 0;
        }
        ret->exe[n] = 0;
        /* A peer names its own executable: keep the audit log valid UTF-8 and one line. */
        if (!utf8_is_valid((const uint8_t *)ret->exe, (size_t)n))
                for (ssize_t i = 0; i < n; i++)
                        if ((unsigned char)ret->exe[i] >= 0x80)
                                ret->exe[i] = '?';
        return 0;
}
