/* bench-echo-server: the floor the broker's throughput is compared with. A single-threaded epoll
 * server on a Unix socket that frames like the broker (common/wire) and answers every request
 * frame with one fixed, token-sized reply built once at start, without parsing the request. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "wire.h"

/* Same order of magnitude as the broker's limits, so neither side is favoured by its caps. */
#define MAX_CONNECTIONS 4096
#define OUT_MAX         (1024u * 1024u)
/* Past this many unsent bytes a connection stops being read: a client that pipelines and never
 * reads gets back-pressure instead of unbounded memory. */
#define OUT_HIGH_WATER   (64u * 1024u)
#define ACCESS_TOKEN_LEN 1500
#define MAX_EVENTS       64

struct connection {
        struct connection *prev, *next; /* every open connection, so exit can free them */
        int fd;
        struct buf *in;
        struct buf *out;
        bool closing; /* close once out is flushed (after a bad_request) */
        uint32_t events;
};

static struct buf *reply_frame;
static struct connection *connections;
static size_t n_connections;

/* A JWT-shaped string of base64url characters: looks and weighs like a real Entra access token
 * (header.payload.signature) but is a fixed fake, not a secret. */
static void fake_access_token(char *out, size_t len)
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        uint32_t x = 2463534242u;

        for (size_t i = 0; i < len; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                out[i] = alphabet[x % 64];
        }
        out[120] = '.';
        out[len - 350] = '.';
        out[len] = '\0';
}

/* Built with the broker's own encoder so the bytes on the wire have the real shape and size. */
static int build_reply_frame(void)
{
        static char token[ACCESS_TOKEN_LEN + 1];
        static char scope[] = "https://graph.microsoft.com/Mail.Send";
        char *scopes[] = {scope};
        uint64_t now = now_realtime_usec() / USEC_PER_SEC;
        int r;

        fake_access_token(token, ACCESS_TOKEN_LEN);
        r = buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &reply_frame);
        if (r < 0)
                return r;
        return wire_reply_token(reply_frame, &(struct wire_token_reply){
                                                 .access_token = token,
                                                 .expires_at = now + 3000,
                                                 .expires_in = 3000,
                                                 .scopes = scopes,
                                                 .n_scopes = 1,
                                                 .account = "demo",
                                                 .mailbox = "demo@contoso.com",
                                             });
}

static void connection_free(struct connection *c)
{
        if (!c)
                return;
        if (c->prev)
                c->prev->next = c->next;
        else
                connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        safe_close(c->fd);
        buf_free(c->in);
        buf_free(c->out);
        free(c);
        n_connections--;
}

static int connection_update_events(int epoll_fd, struct connection *c)
{
        uint32_t events = 0;

        if (!c->closing && buf_len(c->out) < OUT_HIGH_WATER)
                events |= EPOLLIN;
        if (buf_len(c->out) > 0)
                events |= EPOLLOUT;
        if (events == c->events)
                return 0;
        c->events = events;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd,
                      &(struct epoll_event){.events = events, .data.ptr = c}) < 0)
                return -errno;
        return 0;
}

/* Answers every whole frame in `in` while there is room to queue the reply. */
static int connection_process(struct connection *c)
{
        const uint8_t *payload;
        size_t len;
        int r;

        while (!c->closing && buf_len(c->out) < OUT_HIGH_WATER) {
                r = wire_frame_peek(c->in, &payload, &len);
                if (r == 0)
                        break;
                if (r < 0) {
                        /* design.md §3: bad_request if possible, then close. */
                        buf_reset(c->in);
                        c->closing = true;
                        return wire_reply_error(c->out, WIRE_BAD_REQUEST,
                                                "The frame length is out of range.", 0);
                }
                r = wire_frame_consume(c->in, len);
                if (r < 0)
                        return r;
                r = buf_put(c->out, buf_data(reply_frame), buf_len(reply_frame));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Returns < 0 when the connection is to be closed. */
static int connection_handle(int epoll_fd, struct connection *c, uint32_t events)
{
        int r;

        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                r = buf_read_fd(c->in, c->fd);
                if (r == 0)
                        return -ECONNRESET;
                if (r < 0 && r != -EAGAIN)
                        return r;
                r = connection_process(c);
                if (r < 0)
                        return r;
        }
        if (buf_len(c->out) > 0) {
                r = buf_write_fd(c->out, c->fd);
                if (r < 0 && r != -EAGAIN)
                        return r;
                /* Drained below the high-water mark: frames held back can be answered now. */
                r = connection_process(c);
                if (r < 0)
                        return r;
        }
        if (c->closing && buf_len(c->out) == 0)
                return -ECONNRESET;
        return connection_update_events(epoll_fd, c);
}

static void accept_all(int epoll_fd, int listen_fd)
{
        for (;;) {
                _cleanup_close_ int fd =
                    accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct connection *c;

                if (fd < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                            errno != ECONNABORTED)
                                log_warning_errno(-errno, "accept4() failed");
                        return;
                }
                if (n_connections >= MAX_CONNECTIONS) {
                        log_warning("Too many connections, refusing one.");
                        continue;
                }
                c = calloc(1, sizeof(*c));
                if (!c)
                        return;
                n_connections++;
                c->next = connections;
                if (connections)
                        connections->prev = c;
                connections = c;
                c->fd = TAKE_FD(fd);
                c->events = EPOLLIN;
                if (buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &c->in) < 0 ||
                    buf_new(OUT_MAX, &c->out) < 0 ||
                    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd,
                              &(struct epoll_event){.events = EPOLLIN, .data.ptr = c}) < 0) {
                        log_warning("Failed to set up a connection.");
                        connection_free(c);
                }
        }
}

/* Binds under a temporary name and renames into place once listening, so a client that sees
 * the path can connect at once (run-bench waits for the path to appear). */
static int listen_on(const char *path, int *ret_fd)
{
        struct sockaddr_un tmp = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        struct stat st;
        int n;

        n = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.%ld.tmp", path, (long)getpid());
        if (n < 0 || (size_t)n >= sizeof(tmp.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Socket path too long: %s", path);
        if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
                return log_error_errno(-EEXIST, "%s exists and is not a socket.", path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(-errno, "socket() failed");
        (void)unlink(tmp.sun_path);
        if (bind(fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0)
                return log_error_errno(-errno, "Failed to bind %s", tmp.sun_path);
        if (listen(fd, SOMAXCONN) < 0 || rename(tmp.sun_path, path) < 0) {
                int r = -errno;
                (void)unlink(tmp.sun_path);
                return log_error_errno(r, "Failed to listen on %s", path);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int serve(const char *path)
{
        _cleanup_close_ int listen_fd = -1, epoll_fd = -1, signal_fd = -1;
        struct epoll_event events[MAX_EVENTS];
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(-errno, "sigprocmask() failed");
        signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (signal_fd < 0)
                return log_error_errno(-errno, "signalfd() failed");
        epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0)
                return log_error_errno(-errno, "epoll_create1() failed");

        r = listen_on(path, &listen_fd);
        if (r < 0)
                return r;
        /* Connections carry their struct in data.ptr; the listener is tagged NULL and the
         * signalfd &signal_fd. */
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd,
                      &(struct epoll_event){.events = EPOLLIN, .data.ptr = NULL}) < 0 ||
            epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd,
                      &(struct epoll_event){.events = EPOLLIN, .data.ptr = &signal_fd}) < 0) {
                r = log_error_errno(-errno, "epoll_ctl() failed");
                goto finish;
        }
        log_info("Listening on %s, reply frame %zu bytes.", path, buf_len(reply_frame));

        for (;;) {
                int n = epoll_wait(epoll_fd, events, MAX_EVENTS, -1);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = log_error_errno(-errno, "epoll_wait() failed");
                        goto finish;
                }
                for (int i = 0; i < n; i++) {
                        void *ptr = events[i].data.ptr;

                        if (!ptr) {
                                accept_all(epoll_fd, listen_fd);
                        } else if (ptr == &signal_fd) {
                                r = 0;
                                goto finish;
                        } else if (connection_handle(epoll_fd, ptr, events[i].events) < 0) {
                                /* Closing the fd also removes it from the epoll set. Each fd
                                 * appears at most once per batch, so nothing later in this
                                 * batch points at the freed connection. */
                                connection_free(ptr);
                        }
                }
        }

finish:
        while (connections)
                connection_free(connections);
        (void)unlink(path);
        return r;
}

int main(int argc, char **argv)
{
        int r;

        log_set_ident("bench-echo-server");
        json_init();
        if (argc != 2 || argv[1][0] == '-') {
                fprintf(stderr, "Usage: %s SOCKET_PATH\n", argv[0]);
                return 2;
        }
        r = build_reply_frame();
        if (r < 0) {
                log_error_errno(r, "Failed to build the reply");
                return 1;
        }
        r = serve(argv[1]);
        buf_free(reply_frame);
        return r < 0 ? 1 : 0;
}
