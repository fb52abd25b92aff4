/* A journald that never reads, for audit-journal.test.js: binds an AF_UNIX datagram socket at
 * argv[1], prints "ready\n" and leaves every datagram sent to it queued, so that once the
 * receive queue is full a blocking sender blocks. When its stdin ends it reads what is queued,
 * prints the number of datagrams ("N\n") and exits. Node's dgram module has no Unix datagram
 * sockets. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        static char buf[1 << 16];
        unsigned long n = 0;
        int fd;

        if (argc != 2 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
                fprintf(stderr, "usage: dgram-hole PATH\n");
                return 64;
        }
        memcpy(addr.sun_path, argv[1], strlen(argv[1]) + 1);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                perror("dgram-hole");
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                ;
        while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
                n++;
        printf("%lu\n", n);
        return 0;
}
