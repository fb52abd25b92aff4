/* Who is on the other end of a client socket, as the kernel says at accept time. */
#pragma once

#include <limits.h>
#include <sys/types.h>

#define PEER_MAX_GROUPS 64

struct peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gid_t groups[PEER_MAX_GROUPS];
        size_t n_groups;
        char exe[256]; /* "unknown" when it cannot be read */
};

/* Fills p from SO_PEERCRED, SO_PEERGROUPS and /proc/<pid>/exe. Fails only when the credentials
 * themselves are unavailable; the connection is refused then. */
int peer_from_socket(int fd, struct peer *ret);
