/* The NOTIFY_SOCKET of a service manager, for notify.test.js and socket-activation.test.js:
 * binds an AF_UNIX datagram socket at argv[1] and writes every datagram it receives to stdout,
 * each followed by a NUL byte (sd_notify messages are newline-separated assignments). Prints
 * "ready\0" once bound; runs until killed. Node's dgram module has no Unix datagram sockets. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        char buf[4096];
        int fd;

        if (argc != 2 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
                fprintf(stderr, "usage: notify-sink PATH\n");
                return 64;
        }
        memcpy(addr.sun_path, argv[1], strlen(argv[1]) + 1);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                perror("notify-sink");
                return 1;
        }
        fwrite("ready", 1, 6, stdout);
        fflush(stdout);
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n < 0)
                        return 1;
                fwrite(buf, 1, (size_t)n, stdout);
                fputc(0, stdout);
                fflush(stdout);
        }
}
