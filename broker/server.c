/* The client socket: accepting, reading frames, writing replies, closing. Request semantics
 * live in request.c. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "broker.h"
#include "log.h"

static void connection_free(void *p)
{
        struct connection *c = p;

        buf_free(c->in);
        buf_free(c->out);
        free(c);
}

static void connection_close(struct connection *c)
{
        struct broker *b = c->broker;

        if (c->watch.fd < 0)
                return;
        if (c->waiting) {
                account_remove_waiter(c->waiting->account, c->waiting);
                waiter_free(c->waiting);
                c->waiting = NULL;
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                b->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        b->n_connections--;
        int fd = c->watch.fd;
        event_release(b->epfd, &c->watch, c, connection_free);
        close(fd);
}

static void connection_update_events(struct connection *c)
{
        uint32_t events = 0;

        /* Read only while no request waits and the peer is reading its replies. */
        if (!c->closing && !c->eof && !c->waiting && buf_len(c->out) < CONNECTION_OUT_HIGH_WATER)
                events |= EPOLLIN;
        if (buf_len(c->out) > 0)
                events |= EPOLLOUT;
        if (events != c->events) {
                if (event_modify(c->broker->epfd, &c->watch, events) < 0) {
                        connection_close(c);
                        return;
                }
                c->events = events;
        }
}

void connection_flush(struct connection *c)
{
        int r;

        while (buf_len(c->out) > 0) {
                r = buf_write_fd(c->out, c->watch.fd);
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        connection_close(c);
                        return;
                }
        }
        /* After EOF, processing stopped with no waiter only when no whole frame is left. */
        if ((c->closing || (c->eof && !c->waiting)) && buf_len(c->out) == 0) {
                connection_close(c);
                return;
        }
        connection_update_events(c);
}

/* Handles every complete frame in c->in, in order, until one must wait for upstream. */
static void connection_process(struct connection *c)
{
        const uint8_t *payload;
        size_t len;
        int r;

        while (!c->waiting && !c->closing) {
                r = wire_frame_peek(c->in, &payload, &len);
                if (r == 0)
                        break;
                if (r < 0) {
                        /* A broken length means framing is lost: answer once, then hang up. */
                        log_info("Peer uid=%u pid=%d sent a frame of invalid length; closing.",
                                 (unsigned)c->peer.uid, (int)c->peer.pid);
                        (void)wire_reply_error(c->out, WIRE_BAD_REQUEST,
                                               "Frame length must be 1-65536 bytes.", 0);
                        c->closing = true;
                        break;
                }
                bool done = request_handle(c, payload, len);
                wire_frame_consume(c->in, len);
                if (!done)
                        break;
        }
        connection_flush(c);
}

void connection_resume(struct connection *c)
{
        connection_process(c);
}

static void on_connection_ready(struct watch *w, uint32_t events)
{
        struct connection *c = (struct connection *)w;
        int r;

        if (events & EPOLLIN) {
                r = buf_read_fd(c->in, w->fd);
                if (r < 0 && r != -EAGAIN && r != -EMSGSIZE) {
                        connection_close(c);
                        return;
                }
                /* A client may send its requests and shut down its side before reading the
                 * replies: answer what is complete, then close. */
                if (r == 0)
                        c->eof = true;
                connection_process(c);
                return;
        }
        if (events & (EPOLLERR | EPOLLHUP)) {
                connection_close(c);
                return;
        }
        if (events & EPOLLOUT)
                connection_flush(c);
}

static void on_accept(struct watch *w, uint32_t events)
{
        struct broker *b = (struct broker *)((char *)w - offsetof(struct broker, listener));

        for (;;) {
                struct connection *c;
                int fd, r;

                fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "accept() failed");
                        return;
                }
                if (b->n_connections >= BROKER_MAX_CONNECTIONS) {
                        log_warning("Too many connections; refusing one.");
                        close(fd);
                        continue;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        return;
                }
                c->broker = b;
                c->watch = (struct watch){.fd = fd, .fn = on_connection_ready};
                /* Identity is taken now, from the kernel, and never re-read from the peer. */
                r = peer_from_socket(fd, &c->peer);
                if (r == 0)
                        r = buf_new(CONNECTION_IN_MAX, &c->in);
                if (r == 0)
                        r = buf_new(CONNECTION_OUT_MAX, &c->out);
                if (r == 0) {
                        c->events = EPOLLIN;
                        r = event_add(b->epfd, &c->watch, c->events);
                }
                if (r < 0) {
                        log_warning_errno(r, "Refusing a connection");
                        close(fd);
                        connection_free(c);
                        continue;
                }
                c->next = b->connections;
                if (c->next)
                        c->next->prev = c;
                b->connections = c;
                b->n_connections++;
        }
}

static int listen_on_path(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);

        /* Replace a stale socket from an earlier run, but never another kind of file. */
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode)) {
                        log_error("%s exists and is not a socket; refusing to replace it.", path);
                        return -EEXIST;
                }
                if (unlink(path) < 0)
                        return -errno;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            /* Anyone may connect: authorization is the policy's job, never the file mode's. */
            chmod(path, 0666) < 0 || listen(fd, SOMAXCONN) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int server_listen(struct broker *b)
{
        int fd = -1;

#if HAVE_SYSTEMD
        int n = sd_listen_fds(1);
        if (n > 1) {
                log_error("Expected one socket from systemd, got %d.", n);
                return -EINVAL;
        }
        if (n == 1) {
                fd = SD_LISTEN_FDS_START;
                if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                        return -errno;
                log_info("Using the socket passed by systemd.");
        }
#endif
        if (fd < 0) {
                fd = listen_on_path(b->config->socket_path);
                if (fd < 0)
                        return log_error_errno(fd, "Failed to listen on %s",
                                               b->config->socket_path);
        }
        b->listener = (struct watch){.fd = fd, .fn = on_accept};
        return event_add(b->epfd, &b->listener, EPOLLIN);
}

void server_close_all(struct broker *b)
{
        while (b->connections)
                connection_close(b->connections);
        if (b->listener.fd >= 0) {
                event_remove(b->epfd, &b->listener);
                close(b->listener.fd);
                b->listener.fd = -1;
        }
}
