/* A client whose identity changes under the broker, for peer.test.js and policy-broker.test.js:
 *
 *   peer-helper request SOCKET         connect (then say "connected" on stderr), send the JSON
 *                                      line read from stdin as one frame, print the reply on
 *                                      stdout
 *   peer-helper handoff SOCKET         a child connects, passes the socket to this process and
 *                                      exits; once it is reaped, print "pid CHILD" and go on as
 *                                      "request" on that socket
 *   peer-helper exec SOCKET PROG ARG…  connect, ping (so the broker has accepted), then exec PROG
 *                                      with the socket as descriptor 3
 *   peer-helper reuse SOCKET PROG ARG… as "handoff", but before printing the pid, start PROG with
 *                                      the connecting child's pid (through ns_last_pid: run it in
 *                                      a pid namespace of its own); PROG is killed at the end
 *
 * Exit status 0 when a reply was printed (or PROG was executed), 111 on any failure. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define FRAME_MAX 65536

static int fail(const char *what)
{
        fprintf(stderr, "peer-helper: %s: %s\n", what, strerror(errno));
        return 111;
}

static int connect_to(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                errno = ENAMETOOLONG;
                return -1;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0); /* not CLOEXEC: "exec" hands it on */
        if (fd < 0)
                return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static int write_all(int fd, const void *data, size_t len)
{
        const char *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int read_all(int fd, void *data, size_t len)
{
        char *p = data;

        while (len > 0) {
                ssize_t n = read(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (n == 0)
                                errno = ECONNRESET;
                        return -1;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int send_frame(int fd, const char *json, size_t len)
{
        uint8_t head[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                           (uint8_t)len};

        if (write_all(fd, head, sizeof(head)) < 0)
                return -1;
        return write_all(fd, json, len);
}

/* Reads one reply frame into buf (FRAME_MAX + 1 bytes) as a string. */
static int read_frame(int fd, char *buf)
{
        uint8_t head[4];
        uint32_t len;

        if (read_all(fd, head, sizeof(head)) < 0)
                return -1;
        len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
        if (len == 0 || len > FRAME_MAX) {
                errno = EPROTO;
                return -1;
        }
        if (read_all(fd, buf, len) < 0)
                return -1;
        buf[len] = 0;
        return 0;
}

/* One request from stdin, its reply to stdout. */
static int request_on(int fd)
{
        static char line[FRAME_MAX + 2], reply[FRAME_MAX + 1];
        size_t len;

        if (!fgets(line, sizeof(line), stdin)) {
                errno = EINVAL;
                return fail("no request on stdin");
        }
        len = strcspn(line, "\n");
        if (len == 0 || len > FRAME_MAX) {
                errno = EINVAL;
                return fail("request line");
        }
        if (send_frame(fd, line, len) < 0)
                return fail("send");
        if (read_frame(fd, reply) < 0)
                return fail("reply");
        printf("%s\n", reply);
        return fflush(stdout) == 0 ? 0 : 111;
}

static int send_fd(int channel, int fd)
{
        char byte = 'x';
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        struct cmsghdr *cmsg;

        memset(&control, 0, sizeof(control));
        cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
        return sendmsg(channel, &msg, 0) == 1 ? 0 : -1;
}

static int receive_fd(int channel)
{
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int))];
        } control;
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf)};
        struct cmsghdr *cmsg;
        int fd;

        if (recvmsg(channel, &msg, MSG_CMSG_CLOEXEC) != 1)
                return -1;
        cmsg = CMSG_FIRSTHDR(&msg);
        if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
            cmsg->cmsg_len != CMSG_LEN(sizeof(int))) {
                errno = EPROTO;
                return -1;
        }
        memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
        return fd;
}

/* Has a child connect and hand the socket over, then reaps it: the socket's peer is gone. */
static int connect_by_child(const char *socket_path, pid_t *ret_child)
{
        int channel[2], fd, status;
        pid_t child;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, channel) < 0) {
                fail("socketpair");
                return -1;
        }
        child = fork();
        if (child < 0) {
                fail("fork");
                return -1;
        }
        if (child == 0) {
                int c = connect_to(socket_path);
                _exit(c >= 0 && send_fd(channel[1], c) == 0 ? 0 : 1);
        }
        close(channel[1]);
        fd = receive_fd(channel[0]);
        if (fd < 0) {
                fail("receive the socket");
                return -1;
        }
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -1;
        close(channel[0]);
        *ret_child = child;
        return fd;
}

static int handoff(const char *socket_path)
{
        pid_t child;
        int fd = connect_by_child(socket_path, &child);

        if (fd < 0)
                return fail("the connecting child");
        printf("pid %d\n", (int)child);
        fflush(stdout);
        return request_on(fd);
}

static int set_last_pid(pid_t pid)
{
        char text[16];
        int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
        int n = snprintf(text, sizeof(text), "%d", (int)pid);
        int r = fd >= 0 && write(fd, text, (size_t)n) == n ? 0 : -1;

        if (fd >= 0)
                close(fd);
        return r;
}

/* Starts argv at pid, which must be free; returns once it has been executed. */
static int exec_at_pid(pid_t pid, char **argv)
{
        for (int attempt = 0; attempt < 100; attempt++) {
                int executed[2];
                pid_t child;
                char byte;

                if (pipe2(executed, O_CLOEXEC) < 0 || set_last_pid(pid - 1) < 0)
                        return -1;
                child = fork();
                if (child < 0)
                        return -1;
                if (child == 0) {
                        if (getpid() == pid)
                                execv(argv[0], argv);
                        _exit(127);
                }
                close(executed[1]);
                if (child == pid) {
                        /* The pipe closes on exec; a byte would mean it failed. */
                        ssize_t n = read(executed[0], &byte, 1);
                        close(executed[0]);
                        return n == 0 ? 0 : -1;
                }
                close(executed[0]);
                (void)waitpid(child, NULL, 0);
        }
        errno = EAGAIN;
        return -1;
}

static int reuse(const char *socket_path, char **argv)
{
        pid_t child;
        int fd = connect_by_child(socket_path, &child), r;

        if (fd < 0)
                return fail("the connecting child");
        if (exec_at_pid(child, argv) < 0)
                return fail("starting a process at the gone peer's pid");
        printf("pid %d\n", (int)child);
        fflush(stdout);
        r = request_on(fd);
        kill(child, SIGKILL);
        (void)waitpid(child, NULL, 0);
        return r;
}

static int exec_after_ping(const char *socket_path, char **argv)
{
        static const char ping[] = "{\"v\":1,\"op\":\"ping\"}";
        static char reply[FRAME_MAX + 1];
        int fd = connect_to(socket_path);

        if (fd < 0)
                return fail("connect");
        /* The reply proves the broker has accepted, and so taken the facts, before the exec. */
        if (send_frame(fd, ping, sizeof(ping) - 1) < 0 || read_frame(fd, reply) < 0)
                return fail("ping");
        if (fd != 3) {
                if (dup2(fd, 3) < 0)
                        return fail("dup2");
                close(fd);
        }
        execv(argv[0], argv);
        return fail("execv");
}

int main(int argc, char **argv)
{
        int fd;

        if (argc >= 3 && strcmp(argv[1], "request") == 0) {
                fd = connect_to(argv[2]);
                if (fd < 0)
                        return fail("connect");
                /* For a test that changes things between the connect and the request. */
                fprintf(stderr, "connected\n");
                return request_on(fd);
        }
        if (argc >= 3 && strcmp(argv[1], "handoff") == 0)
                return handoff(argv[2]);
        if (argc >= 4 && strcmp(argv[1], "exec") == 0)
                return exec_after_ping(argv[2], argv + 3);
        if (argc >= 4 && strcmp(argv[1], "reuse") == 0)
                return reuse(argv[2], argv + 3);
        fprintf(stderr, "usage: peer-helper request|handoff SOCKET, or exec|reuse SOCKET PROGRAM "
                        "ARGS\n");
        return 111;
}
