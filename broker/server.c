/* The client socket: accepting, reading frames, writing replies, closing. Request semantics
 * live in request.c. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "broker.h"
#include "json.h"
#include "log.h"
#include "util.h"

static void connection_free(void *p)
{
        struct connection *c = p;

        peer_clear(&c->peer);
        buf_free(c->in);
        buf_free(c->out);
        json_free_string(c->issued.body);
        wire_request_clear(&c->last_request.parsed);
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
        /* A descriptor is free again: resume accepting if we ran out. */
        if (b->listener_paused && event_modify(b->epfd, &b->listener, EPOLLIN) == 0)
                b->listener_paused = false;
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

/* Handles every complete frame in c->in, in order, until one must wait for upstream. A request
 * can be answered while it is being handled (a refresh that fails at once answers its waiter):
 * `processing` keeps that answer from re-entering this loop, which would handle the frame
 * twice and lose framing. */
static void connection_process(struct connection *c)
{
        const uint8_t *payload;
        size_t len;
        int r;

        if (c->processing)
                return;
        c->processing = true;
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
                request_handle(c, payload, len);
                wire_frame_consume(c->in, len);
        }
        c->processing = false;
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

/* At most one warning a second: a flood must not also fill the disk. */
static void warn_refused(const char *what, uid_t uid)
{
        static uint64_t last_usec;
        static unsigned suppressed;
        uint64_t now = now_boottime_usec();

        if (last_usec && now - last_usec < USEC_PER_SEC) {
                suppressed++;
                return;
        }
        log_warning("Refusing a connection from uid %d: %s (%u more refused since the last "
                    "warning).",
                    (int)uid, what, suppressed);
        last_usec = now;
        suppressed = 0;
}

static unsigned connections_of_uid(const struct broker *b, uid_t uid)
{
        unsigned n = 0;

        for (const struct connection *c = b->connections; c; c = c->next)
                n += c->peer.uid == uid;
        return n;
}

/* Takes the peer's identity from the kernel (never from its own words) and checks the
 * connection limits, which keep one uid from taking every slot (reliability.md P12). The
 * credentials come first and the limits are checked on them, so that a refused flood costs no
 * reads of /proc; exe and unit are read last, still at accept (design.md §7). */
static int admit(struct broker *b, int fd, struct peer *ret)
{
        int r = peer_credentials_from_socket(fd, ret);

        if (r < 0)
                return r;
        if (b->n_connections >= b->max_connections) {
                warn_refused("too many connections", ret->uid);
                return -EBUSY;
        }
        if (connections_of_uid(b, ret->uid) >= b->max_per_uid) {
                warn_refused("too many connections from this uid", ret->uid);
                return -EBUSY;
        }
        r = peer_identify(fd, ret);
        if (r < 0)
                log_debug_errno(r, "Peer uid=%u pid=%d: executable and unit unknown",
                                (unsigned)ret->uid, (int)ret->pid);
        return 0;
}

static void on_accept(struct watch *w, uint32_t events)
{
        struct broker *b = (struct broker *)((char *)w - offsetof(struct broker, listener));

        for (;;) {
                struct connection *c;
                int fd, r;

                fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE) {
                                /* The listener stays readable until a descriptor frees up:
                                 * stop watching it rather than spin on accept(). */
                                warn_refused("out of file descriptors", (uid_t)-1);
                                if (event_modify(b->epfd, w, 0) == 0) {
                                        b->listener_paused = true;
                                        b->listener_paused_usec = now_boottime_usec();
                                }
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                                log_warning_errno(errno, "accept() failed");
                        }
                        return;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        return;
                }
                c->broker = b;
                c->watch = (struct watch){.fd = fd, .fn = on_connection_ready};
                r = admit(b, fd, &c->peer);
                if (r == 0)
                        r = buf_new(CONNECTION_IN_MAX, &c->in);
                if (r == 0)
                        r = buf_new(CONNECTION_OUT_MAX, &c->out);
                if (r == 0) {
                        c->events = EPOLLIN;
                        r = event_add(b->epfd, &c->watch, c->events);
                }
                if (r < 0) {
                        if (r != -EBUSY)
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
        /* Anyone may connect: authorization is the policy's job, never the file mode's. The
         * mode is set through the umask at bind() rather than by a chmod() of the path, which
         * would follow a symlink swapped in between. */
        mode_t old_umask = umask(0111);
        int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_umask);
        if (r < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

void server_retry_paused_listener(struct broker *b)
{
        uint64_t now = now_boottime_usec();

        /* Descriptors may have been freed by curl or the PKCS#11 module rather than by a
         * client, so closing a connection is not the only moment to try again. */
        if (!b->listener_paused || now - b->listener_paused_usec < USEC_PER_SEC)
                return;
        if (event_modify(b->epfd, &b->listener, EPOLLIN) == 0)
                b->listener_paused = false;
        b->listener_paused_usec = now;
}

/* Connection limits from what RLIMIT_NOFILE leaves after the reserve. A connection holds one
 * descriptor: the peer's pidfd and /proc descriptors taken at accept are closed before
 * on_accept() moves on, so they are at most three at a time, taken from the reserve. */
static void set_connection_limits(struct broker *b)
{
        struct rlimit nofile;
        unsigned max = BROKER_MAX_CONNECTIONS;

        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
                rlim_t usable = nofile.rlim_cur > 2 * BROKER_FD_RESERVE
                                    ? nofile.rlim_cur - BROKER_FD_RESERVE
                                    : nofile.rlim_cur / 2;
                if (usable < max)
                        max = (unsigned)usable;
        }
        b->max_connections = max > 0 ? max : 1;
        /* A quarter each: a flooding uid leaves three quarters to everyone else, and a busy
         * uid (many cron jobs of one user) still has room. */
        b->max_per_uid = b->max_connections / 4 > 0 ? b->max_connections / 4 : 1;
        log_debug("Serving at most %u connections, %u per uid.", b->max_connections,
                  b->max_per_uid);
}

int server_listen(struct broker *b)
{
        int fd = -1;

        set_connection_limits(b);

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
