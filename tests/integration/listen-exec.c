/* A hand-made socket activation, for socket-activation.test.js on machines without
 * systemd-socket-activate: listens on the Unix stream socket argv[1] (mode 0666) as fd 3, sets
 * LISTEN_FDS=1, LISTEN_PID=<own pid>, LISTEN_FDNAMES=client as systemd does, and execs
 * argv[2...] (which keeps the pid).
 *
 *   listen-exec SOCKET COMMAND [ARG...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        char pid[32];
        int fd;

        if (argc < 3 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
                fprintf(stderr, "usage: listen-exec SOCKET COMMAND [ARG...]\n");
                return 64;
        }
        memcpy(addr.sun_path, argv[1], strlen(argv[1]) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
            chmod(argv[1], 0666) < 0 || listen(fd, 128) < 0) {
                perror("listen-exec");
                return 1;
        }
        if (fd != 3) {
                if (dup2(fd, 3) < 0) {
                        perror("listen-exec: dup2");
                        return 1;
                }
                close(fd);
        }
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if (setenv("LISTEN_FDS", "1", 1) < 0 || setenv("LISTEN_PID", pid, 1) < 0 ||
            setenv("LISTEN_FDNAMES", "client", 1) < 0)
                return 1;
        execvp(argv[2], argv + 2);
        perror("listen-exec: exec");
        return 127;
}
