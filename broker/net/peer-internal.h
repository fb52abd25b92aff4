/* What the peer files share (peer.c, peer-pidfd.c, peer-sockdiag.c, peer-unit.c). Not for use
 * outside broker/net/peer*.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* peer.c: reads a whole small file below dirfd (or an absolute path with AT_FDCWD). -EFBIG
 * unless it fits in size - 1 bytes: a caller must not act on a prefix, and a file that fills the
 * whole buffer counts as too large (PROC_STAT_MAX and PEER_CGROUP_FILE_MAX are exclusive
 * limits). */
int peer_read_small_file(int dirfd, const char *name, char *buf, size_t size, size_t *ret_len);

/* peer-pidfd.c */
/* SO_PEERPIDFD: the kernel's reference to the process that connected; -ENOPROTOOPT on a kernel
 * without it. */
int peer_pidfd_from_socket(int fd, int *ret);
/* pidfd_open(pid), checked against the process start time before and after. */
int peer_pidfd_by_pid(pid_t pid, int *ret);
/* Whether the pidfd's process has not exited: while it has not, its pid names no other. */
bool peer_process_is_alive(int pidfd);

/* peer-sockdiag.c */
/* The inode of the socket at the other end of the connection fd (unix_diag). */
int peer_socket_inode(int fd, uint32_t *ret);
/* Whether the process of procfd holds the socket inode among its first descriptors. */
bool peer_process_holds_socket(int procfd, uint32_t inode);

/* peer-unit.c: the unit of the process of procfd from its cgroup file, malloc()ed; NULL when
 * unknown. */
char *peer_read_unit(int procfd);
