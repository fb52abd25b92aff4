/* Who is on the other end of a client socket, as the kernel says at accept time: credentials
 * from the socket, executable and systemd unit read through a pidfd-checked /proc/<pid>. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PEER_MAX_GROUPS 256 /* NGROUPS_MAX is 65536; directory users often have hundreds */
/* systemd's UNIT_NAME_MAX, NUL included. */
#define PEER_UNIT_MAX 256
/* /proc/<pid>/cgroup is read up to this size; a longer one leaves the unit unknown. */
#define PEER_CGROUP_FILE_MAX 16384

struct peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        gid_t groups[PEER_MAX_GROUPS];
        size_t n_groups;
        /* Read through the peer's pidfd at accept (malloc()ed); NULL when unknown: the peer
         * exited or its pid names another process by then, the binary was deleted or replaced,
         * the path is not one line of UTF-8, or /proc could not be read. Unknown matches no
         * exe or unit rule and is logged as null. */
        char *exe;
        char *unit;
};

/* How the pidfd of a peer is obtained. */
enum peer_pidfd_method {
        /* SO_PEERPIDFD: the kernel's own reference to the process that connected. */
        PEER_PIDFD_FROM_SOCKET,
        /* pidfd_open(pid) checked against the process start time: for kernels before 6.5. */
        PEER_PIDFD_BY_PID,
};

/* Fills uid, gid, pid and groups from SO_PEERCRED and SO_PEERGROUPS: cheap, so the connection
 * limits can be applied before anything is read from /proc. Fails only when the credentials
 * themselves are unavailable; the connection is refused then. */
int peer_credentials_from_socket(int fd, struct peer *ret);

/* Reads exe and unit of the peer whose credentials p holds, through a pidfd; never fails (what
 * cannot be confirmed stays NULL). Uses SO_PEERPIDFD and falls back to pidfd_open() for good
 * once the kernel refuses it. Returns the method used, or -errno when no pidfd was had. */
int peer_identify(int fd, struct peer *p);
/* peer_identify() with the given method, whatever the kernel offers (tests). */
int peer_identify_with(int fd, struct peer *p, enum peer_pidfd_method method);

/* Frees exe and unit. */
void peer_clear(struct peer *p);

/* The systemd unit of a process from the text of its /proc/<pid>/cgroup (exposed for tests):
 * the first unit below the slices of the cgroup v2 path ("0::/system.slice/foo.service" ->
 * "foo.service"), or of the name=systemd v1 hierarchy when there is no v2 unit. For a unit of a
 * user manager (".../user@1000.service/app.slice/foo.service") the user unit, "foo.service".
 * -ENOENT when the process is in no unit, -EINVAL when the text cannot be trusted. */
int peer_unit_from_cgroup(const char *text, size_t len, char ret[static PEER_UNIT_MAX]);

/* Field 22 of /proc/<pid>/stat, the start time in clock ticks after boot (exposed for tests). */
int peer_start_time_from_stat(const char *text, size_t len, uint64_t *ret);

/* Whether a /proc/<pid>/exe link target may name the peer's executable: absolute, not
 * " (deleted)", valid UTF-8 without control characters (exposed for tests). */
bool peer_exe_link_is_usable(const char *target, size_t len);
