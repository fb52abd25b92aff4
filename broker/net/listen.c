/* Binding the broker's Unix sockets; see listen.h. Two brokers on one machine (two demos, a
 * demo beside the system service) must never take each other's sockets: a socket is replaced
 * only when nobody answers on it any more. */
#include "build-config.h"

#include "listen.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

static int make_address(const char *path, struct sockaddr_un *ret)
{
        *ret = (struct sockaddr_un){.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(ret->sun_path))
                return -ENAMETOOLONG;
        memcpy(ret->sun_path, path, strlen(path) + 1);
        return 0;
}

/* Whether a process listens on the socket at sa; when one does, names it in the error. */
static int check_nobody_answers(const char *path, const struct sockaddr_un *sa)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct ucred cred = {0};
        socklen_t len = sizeof(cred);
        char comm[64] = "";

        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
                if (errno == ECONNREFUSED)
                        return 0; /* stale: left by a broker that is gone */
                /* EAGAIN: a listener with a full backlog is alive too. */
                if (errno != EAGAIN && errno != EINPROGRESS) {
                        int r = -errno;
                        log_error_errno(r, "Cannot tell whether %s is in use", path);
                        return r;
                }
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0) {
                char proc[64];
                _cleanup_fclose_ FILE *f = NULL;

                snprintf(proc, sizeof(proc), "/proc/%d/comm", (int)cred.pid);
                f = fopen(proc, "re");
                if (f && fgets(comm, sizeof(comm), f))
                        comm[strcspn(comm, "\n")] = 0;
        }
        log_error("Another process (pid %d%s%s, uid %u) is listening on %s: stop it first, or give "
                  "this broker its own socket paths ([broker] socket and admin_socket).",
                  (int)cred.pid, comm[0] ? " " : "", comm, (unsigned)cred.uid, path);
        return -EADDRINUSE;
}

/* The broker may create its own runtime directory (as systemd's RuntimeDirectory= would);
 * any other missing directory is the administrator's to make. */
static int ensure_directory(const char *path)
{
        char dir[PATH_MAX];
        const char *slash = strrchr(path, '/');
        struct stat st;

        if (!slash || (size_t)(slash - path) >= sizeof(dir))
                return -EINVAL;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = 0;
        if (stat(dir[0] ? dir : "/", &st) == 0)
                return 0;
        if (errno != ENOENT)
                return log_error_errno(-errno, "Cannot use the directory %s of %s", dir, path);
        if (strcmp(dir, RUNTIME_DIR) == 0) {
                /* 0755: the client socket in it is for every local user (the policy decides). */
                mode_t old = umask(022);
                int r = mkdir(dir, 0755);
                umask(old);
                if (r == 0 || errno == EEXIST)
                        return 0;
                return log_error_errno(-errno, "Failed to create the runtime directory %s", dir);
        }
        log_error("The directory %s for %s does not exist: create it (install -d -m 0755 %s) or "
                  "set another path in the configuration.",
                  dir, path, dir);
        return -ENOENT;
}

int listen_unix(const char *path, mode_t umask_bits, int backlog, ino_t *ret_inode)
{
        struct sockaddr_un sa;
        struct stat st;
        int fd, r;

        r = make_address(path, &sa);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s", path);
        r = ensure_directory(path);
        if (r < 0)
                return r;
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode)) {
                        log_error("%s exists and is not a socket; refusing to replace it.", path);
                        return -EEXIST;
                }
                r = check_nobody_answers(path, &sa);
                if (r < 0)
                        return r;
                if (unlink(path) < 0 && errno != ENOENT)
                        return log_error_errno(-errno, "Failed to remove the stale socket %s",
                                               path);
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to create a socket for %s", path);
        /* The mode comes from the umask at bind(), with no window and no chmod() of a path that
         * could be swapped for a symlink in between. */
        mode_t old_umask = umask(umask_bits);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_umask);
        if (r < 0 || listen(fd, backlog) < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return log_error_errno(r, "Failed to listen on %s", path);
        }
        /* fstat() of a socket descriptor gives the socket's inode, not the path's: take the
         * path's, which is what a later unlink() would remove. */
        if (lstat(path, &st) < 0) {
                r = -errno;
                close(fd);
                return log_error_errno(r, "Failed to listen on %s", path);
        }
        *ret_inode = st.st_ino;
        return fd;
}

void listen_unix_remove(const char *path, ino_t inode)
{
        struct stat st;

        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == inode)
                (void)unlink(path);
}
