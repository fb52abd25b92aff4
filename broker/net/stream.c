/* Framed connections for both sockets and the limits they live under; see stream.h. */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "util.h"
#include "wire.h"

#define STREAM_IN_MAX (WIRE_HEADER_SIZE + WIRE_FRAME_MAX)
/* Replies queued for a peer that stopped reading never exceed this much... */
#define STREAM_OUT_MAX (1024 * 1024)
/* ... because nothing more of that peer is read or handled above this. Low enough that many
 * such peers cost little memory, above a handful of token replies. */
#define STREAM_OUT_HIGH_WATER (4 * 1024)
/* Log lines one uid's requests may cause: a burst, then a few a minute. */
#define STREAM_LOG_BURST      20
#define STREAM_LOG_PER_MINUTE 6
/* Descriptors kept free for curl, the PKCS#11 module and the audit log ... */
#define STREAM_FD_RESERVE 32
/* ... and connections only root (and the broker's uid) may take, on either socket. */
#define STREAM_ROOT_RESERVE    16
#define STREAM_MAX_CONNECTIONS 4096
/* A connection quiet this long may be closed to make room for a new one. */
#define STREAM_EVICT_AFTER_USEC USEC_PER_SEC
/* What a peer refused for a limit is told to wait before it tries again. */
#define STREAM_REFUSED_RETRY_AFTER 1

struct stream_hub {
        int epfd;
        struct stream_limits limits;
        struct uid_table *uids;
        unsigned max_connections; /* from RLIMIT_NOFILE, less the descriptor reserve */
        unsigned n_connections;   /* on every socket */
        uint64_t turn;
        struct stream *backlog_head, *backlog_tail;
        unsigned n_backlogged;
        struct stream_server *servers;
        uint64_t last_refusal_log_usec;
        unsigned refusals_unlogged;
};

struct stream_server {
        struct watch listener;
        struct stream_hub *hub;
        const struct stream_class *class;
        void *userdata;
        struct stream *head, *tail; /* least recently active first */
        unsigned n_connections;
        bool paused; /* out of descriptors: accept again once one is free */
        uint64_t paused_usec;
        struct stream_server *next;
};

struct uid_table *stream_uids(const struct stream *s)
{
        return s->server->hub->uids;
}

void *stream_server_userdata(const struct stream_server *server)
{
        return server->userdata;
}

/* The connections' own timing (idle, frame and eviction clocks) needs no more than a few
 * milliseconds of precision, and is read at every read and write: the coarse clock costs
 * less. Suspended time does not count, which suits idle timeouts. */
static uint64_t stream_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static bool privileged(uid_t uid)
{
        return uid == 0 || uid == geteuid();
}

/* ---- the server's list, least recently active first ---------------------------------------- */

static void list_unlink(struct stream *s)
{
        struct stream_server *server = s->server;

        if (s->prev)
                s->prev->next = s->next;
        else
                server->head = s->next;
        if (s->next)
                s->next->prev = s->prev;
        else
                server->tail = s->prev;
        s->prev = s->next = NULL;
}

static void list_append(struct stream *s)
{
        struct stream_server *server = s->server;

        s->prev = server->tail;
        s->next = NULL;
        if (server->tail)
                server->tail->next = s;
        else
                server->head = s;
        server->tail = s;
}

static void mark_active(struct stream *s)
{
        s->active_usec = stream_now();
        if (s->server->tail != s) {
                list_unlink(s);
                list_append(s);
        }
}

/* ---- the backlog: connections left for the next turn, which serves them first ---------------- */

static void backlog_add(struct stream *s)
{
        struct stream_hub *hub = s->server->hub;

        if (s->backlogged)
                return;
        s->backlogged = true;
        hub->n_backlogged++;
        s->backlog_prev = hub->backlog_tail;
        s->backlog_next = NULL;
        if (hub->backlog_tail)
                hub->backlog_tail->backlog_next = s;
        else
                hub->backlog_head = s;
        hub->backlog_tail = s;
}

static void backlog_remove(struct stream *s)
{
        struct stream_hub *hub = s->server->hub;

        if (!s->backlogged)
                return;
        if (s->backlog_prev)
                s->backlog_prev->backlog_next = s->backlog_next;
        else
                hub->backlog_head = s->backlog_next;
        if (s->backlog_next)
                s->backlog_next->backlog_prev = s->backlog_prev;
        else
                hub->backlog_tail = s->backlog_prev;
        s->backlog_prev = s->backlog_next = NULL;
        s->backlogged = false;
        hub->n_backlogged--;
}

/* ---- one connection ------------------------------------------------------------------------- */

static void stream_free(void *p)
{
        struct stream *s = p;

        if (s->class->free)
                s->class->free(s);
        peer_clear(&s->peer);
        buf_free(s->in);
        buf_free(s->out);
        free(s);
}

static void resume_listener(struct stream_server *server)
{
        if (server->paused && event_modify(server->hub->epfd, &server->listener, EPOLLIN) == 0)
                server->paused = false;
}

void stream_close(struct stream *s)
{
        struct stream_server *server = s->server;
        struct stream_hub *hub = server->hub;
        int fd = s->watch.fd;

        if (fd < 0)
                return;
        if (server->class->closing)
                server->class->closing(s);
        backlog_remove(s);
        list_unlink(s);
        server->n_connections--;
        hub->n_connections--;
        uid_table_disconnect(hub->uids, s->uid);
        /* A descriptor is free again: accept again if we ran out. */
        for (struct stream_server *each = hub->servers; each; each = each->next)
                resume_listener(each);
        event_release(hub->epfd, &s->watch, s, stream_free);
        close(fd);
}

static bool busy(const struct stream *s)
{
        return s->server->class->busy && s->server->class->busy(s);
}

static void update_events(struct stream *s)
{
        uint32_t events = 0;

        /* Read only while no request waits and the peer reads its replies. */
        if (!s->closing && !s->eof && !busy(s) && buf_len(s->out) < STREAM_OUT_HIGH_WATER)
                events |= EPOLLIN;
        if (buf_len(s->out) > 0)
                events |= EPOLLOUT;
        if (events != s->events) {
                if (event_modify(s->server->hub->epfd, &s->watch, events) < 0) {
                        stream_close(s);
                        return;
                }
                s->events = events;
        }
}

void stream_flush(struct stream *s)
{
        bool wrote = false;

        if (s->watch.fd < 0)
                return;
        while (buf_len(s->out) > 0) {
                int r = buf_write_fd(s->out, s->watch.fd);
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        stream_close(s);
                        return;
                }
                wrote = true;
        }
        if (wrote)
                mark_active(s);
        /* Drained: give back what a burst of replies made the buffer grow to. */
        if (buf_len(s->out) == 0)
                buf_shrink(s->out);
        /* After EOF, handling stopped with no request pending only when no whole frame is
         * left. */
        if ((s->closing || (s->eof && !busy(s))) && buf_len(s->out) == 0) {
                stream_close(s);
                return;
        }
        update_events(s);
}

void stream_flush_later(struct stream *s)
{
        if (s->watch.fd < 0 || (s->events & EPOLLOUT))
                return;
        if (event_modify(s->server->hub->epfd, &s->watch, s->events | EPOLLOUT) == 0)
                s->events |= EPOLLOUT;
        else
                s->closing = true;
}

static void reply_error(struct stream *s, enum wire_error e, const char *message,
                        uint32_t retry_after)
{
        if (wire_reply_error(s->out, e, message, retry_after) < 0)
                s->closing = true;
}

/* Whether this turn may handle one more frame of len bytes for s, counting it if so. */
static bool take_turn(struct stream *s, size_t len)
{
        struct stream_hub *hub = s->server->hub;

        if (s->turn != hub->turn) {
                s->turn = hub->turn;
                s->turn_frames = 0;
        }
        if (s->turn_frames >= STREAM_FRAMES_PER_TURN ||
            !uid_entry_take_turn(hub->uids, s->uid, len))
                return false;
        s->turn_frames++;
        return true;
}

/* Whether the output is below the high-water mark, after trying to send it. Stopping with
 * whole frames left and everything sent would wait for an EPOLLOUT or EPOLLIN that never
 * comes: the peer may have sent all its requests already. */
static bool output_has_room(struct stream *s)
{
        if (buf_len(s->out) < STREAM_OUT_HIGH_WATER)
                return true;
        stream_flush(s);
        return s->watch.fd >= 0 && buf_len(s->out) < STREAM_OUT_HIGH_WATER;
}

/* Handles the whole frames in s->in, in order, while s may: not busy, output below the
 * high-water mark (else EPOLLOUT resumes it), its turn not spent (then it waits in the
 * backlog). */
static void stream_process(struct stream *s)
{
        const struct stream_class *class = s->server->class;
        const uint8_t *payload;
        size_t len;
        int r;

        if (s->processing)
                return;
        s->processing = true;
        while (s->watch.fd >= 0 && !s->closing && !busy(s) && output_has_room(s)) {
                r = wire_frame_peek(s->in, &payload, &len);
                if (r == 0)
                        break;
                if (r < 0) {
                        /* A broken length means framing is lost: answer once, then hang up. */
                        stream_log(s, LOG_LEVEL_INFO,
                                   "%s socket: uid=%u pid=%d sent a frame of invalid length; "
                                   "closing.",
                                   class->name, (unsigned)s->peer.uid, (int)s->peer.pid);
                        reply_error(s, WIRE_BAD_REQUEST, "Frame length must be 1-65536 bytes.", 0);
                        s->closing = true;
                        break;
                }
                if (!take_turn(s, len)) {
                        backlog_add(s);
                        break;
                }
                uint32_t retry_after =
                    class->over_budget ? uid_entry_take_request(s->server->hub->uids, s->uid) : 0;
                if (retry_after > 0)
                        class->over_budget(s, retry_after);
                else
                        class->handle(s, (uint8_t *)payload, len);
                /* Consuming wipes the frame in the buffer (it may hold a secret). */
                wire_frame_consume(s->in, len);
                s->frame_start_usec = buf_len(s->in) > 0 ? stream_now() : 0;
        }
        if (buf_len(s->in) == 0)
                buf_shrink(s->in);
        s->processing = false;
        stream_flush(s);
}

void stream_resume(struct stream *s)
{
        if (s->watch.fd >= 0)
                stream_process(s);
}

/* Reads what the peer sent and handles what is complete. A uid that used up this turn waits
 * in the backlog, which the next turn serves first: left to epoll, the same connections of
 * that uid would be reported first, and served, turn after turn. */
static void stream_read(struct stream *s)
{
        if (uid_entry_turn_spent(s->server->hub->uids, s->uid)) {
                backlog_add(s);
                return;
        }
        int r = buf_read_fd(s->in, s->watch.fd);
        if (r < 0 && r != -EAGAIN && r != -EMSGSIZE) {
                stream_close(s);
                return;
        }
        if (r > 0) {
                mark_active(s);
                if (s->frame_start_usec == 0)
                        s->frame_start_usec = s->active_usec;
        }
        /* A client may send its requests and shut down its side before reading the replies:
         * answer what is complete, then close. */
        if (r == 0)
                s->eof = true;
        stream_process(s);
}

static void on_stream_ready(struct watch *w, uint32_t events)
{
        struct stream *s = container_of(w, struct stream, watch);

        if (events & EPOLLIN) {
                stream_read(s);
                return;
        }
        if (events & (EPOLLERR | EPOLLHUP)) {
                stream_close(s);
                return;
        }
        if (events & EPOLLOUT) {
                stream_flush(s);
                /* Frames that waited for the peer to read its replies go on now. */
                if (s->watch.fd >= 0 && buf_len(s->in) > 0 &&
                    buf_len(s->out) < STREAM_OUT_HIGH_WATER)
                        stream_process(s);
        }
}

/* ---- accepting ------------------------------------------------------------------------------ */

/* At most one line a second: a flood must not also fill the disk. */
static void log_refused(struct stream_hub *hub, const char *socket, const char *why, uid_t uid)
{
        uint64_t now = now_boottime_usec();

        if (hub->last_refusal_log_usec && now - hub->last_refusal_log_usec < USEC_PER_SEC) {
                hub->refusals_unlogged++;
                return;
        }
        log_warning("%s socket: refusing a connection from uid %d: %s (%u more refused since the "
                    "last warning).",
                    socket, (int)uid, why, hub->refusals_unlogged);
        hub->last_refusal_log_usec = now;
        hub->refusals_unlogged = 0;
}

/* Tells a peer refused for a limit when to come back, so its client retries instead of taking
 * a reset for a failure. The socket is fresh: a short reply fits its buffer. */
static void send_refusal(int fd, const char *message)
{
        _cleanup_buf_ struct buf *out = NULL;

        if (buf_new(256, &out) == 0 &&
            wire_reply_error(out, WIRE_RATE_LIMITED, message, STREAM_REFUSED_RETRY_AFTER) == 0)
                (void)buf_write_fd(out, fd);
}

/* Nothing pending either way, and quiet for a while: a connection that has just been accepted
 * and not yet sent its request is not idle. */
static bool idle(const struct stream *s, uint64_t now)
{
        return !busy(s) && buf_len(s->in) == 0 && buf_len(s->out) == 0 &&
               now - s->active_usec >= STREAM_EVICT_AFTER_USEC;
}

/* Closes the least recently active idle connection of this server to make room. */
static bool evict_idle(struct stream_server *server)
{
        uint64_t now = stream_now();

        for (struct stream *s = server->head; s; s = s->next)
                if (idle(s, now)) {
                        log_debug("%s socket: closing the idle connection of uid=%u pid=%d to "
                                  "make room.",
                                  server->class->name, (unsigned)s->peer.uid, (int)s->peer.pid);
                        stream_close(s);
                        return true;
                }
        return false;
}

/* The limits, checked on the kernel's credentials alone so that a refused flood costs no
 * reads of /proc: the table (with its reserve for root), this socket's own cap, the uid's
 * cap. A full table makes room by evicting its oldest idle connection first. */
static int check_limits(struct stream_server *server, const struct peer *peer)
{
        struct stream_hub *hub = server->hub;
        unsigned table = privileged(peer->uid) ? hub->max_connections
                                               : hub->max_connections - STREAM_ROOT_RESERVE;

        if (hub->n_connections >= table && !evict_idle(server)) {
                log_refused(hub, server->class->name, "too many connections", peer->uid);
                return -EBUSY;
        }
        if (server->class->max_connections &&
            server->n_connections >= server->class->max_connections && !evict_idle(server)) {
                log_refused(hub, server->class->name, "too many connections on this socket",
                            peer->uid);
                return -EBUSY;
        }
        /* Root is trusted not to flood; its connections count only against the table. */
        if (privileged(peer->uid))
                return 0;
        /* Not by evicting its own: its connections of a moment ago are as legitimate. */
        if (uid_table_connections(hub->uids, peer->uid) >= hub->limits.max_connections_per_uid) {
                log_refused(hub, server->class->name, "too many connections from this uid",
                            peer->uid);
                return -EUSERS;
        }
        return 0;
}

static void accept_one(struct stream_server *server, int fd)
{
        struct stream_hub *hub = server->hub;
        const struct stream_class *class = server->class;
        struct stream *s;
        int r;

        s = calloc(1, class->size);
        if (!s) {
                close(fd);
                return;
        }
        s->server = server;
        s->class = class;
        s->watch = (struct watch){.fd = fd, .fn = on_stream_ready};
        r = peer_credentials_from_socket(fd, &s->peer);
        if (r < 0) {
                log_debug_errno(r, "%s socket: no peer credentials; closing", class->name);
                goto refuse;
        }
        r = check_limits(server, &s->peer);
        if (r < 0) {
                send_refusal(fd, r == -EUSERS ? "Too many connections from this user; try again."
                                              : "The broker is busy; try again.");
                goto refuse;
        }
        /* exe and unit last, still at accept (design.md §7). */
        r = peer_identify(fd, &s->peer);
        if (r < 0)
                log_debug_errno(r, "Peer uid=%u pid=%d: executable and unit unknown",
                                (unsigned)s->peer.uid, (int)s->peer.pid);
        if ((r = buf_new(STREAM_IN_MAX, &s->in)) < 0 || (r = buf_new(STREAM_OUT_MAX, &s->out)) < 0)
                goto refuse;
        s->uid = uid_table_connect(hub->uids, s->peer.uid);
        if (!s->uid)
                goto refuse;
        /* From here on s is counted: stream_close() undoes it all. */
        server->n_connections++;
        hub->n_connections++;
        list_append(s);
        s->active_usec = stream_now();
        s->events = EPOLLIN;
        r = event_add(hub->epfd, &s->watch, s->events);
        if (r < 0) {
                log_warning_errno(r, "%s socket: cannot watch a connection", class->name);
                stream_close(s);
                return;
        }
        if (class->admit && !class->admit(s, server->userdata)) {
                s->closing = true;
                stream_flush(s);
        }
        return;
refuse:
        close(fd);
        s->watch.fd = -1;
        stream_free(s);
}

static void on_accept(struct watch *w, uint32_t events)
{
        struct stream_server *server = container_of(w, struct stream_server, listener);

        for (;;) {
                int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE) {
                                /* The listener stays readable until a descriptor frees up:
                                 * stop watching it rather than spin on accept(). */
                                log_refused(server->hub, server->class->name,
                                            "out of file descriptors", (uid_t)-1);
                                if (event_modify(server->hub->epfd, w, 0) == 0) {
                                        server->paused = true;
                                        server->paused_usec = stream_now();
                                }
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                                log_warning_errno(-errno, "%s socket: accept() failed",
                                                  server->class->name);
                        }
                        return;
                }
                accept_one(server, fd);
        }
}

/* ---- the hub ------------------------------------------------------------------------------- */

/* What RLIMIT_NOFILE leaves after the reserve. A connection holds one descriptor: the peer's
 * pidfd and /proc descriptors taken at accept are closed before the next accept. */
static unsigned connections_allowed(void)
{
        struct rlimit nofile;
        unsigned max = STREAM_MAX_CONNECTIONS;

        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
                rlim_t usable = nofile.rlim_cur > 2 * STREAM_FD_RESERVE
                                    ? nofile.rlim_cur - STREAM_FD_RESERVE
                                    : nofile.rlim_cur / 2;
                if (usable < max)
                        max = (unsigned)usable;
        }
        return max > 2 * STREAM_ROOT_RESERVE ? max : 2 * STREAM_ROOT_RESERVE;
}

int stream_hub_new(int epfd, const struct stream_limits *limits, struct stream_hub **ret)
{
        struct uid_limits uid_limits = {
            .request_rate = limits->request_rate_per_uid,
            .request_burst = limits->request_burst_per_uid,
            .frames_per_turn = STREAM_UID_FRAMES_PER_TURN,
            .bytes_per_turn = STREAM_UID_BYTES_PER_TURN,
            .log_burst = STREAM_LOG_BURST,
            .log_per_minute = STREAM_LOG_PER_MINUTE,
        };
        struct stream_hub *hub = calloc(1, sizeof(*hub));
        int r;

        if (!hub)
                return -ENOMEM;
        r = uid_table_new(&uid_limits, &hub->uids);
        if (r < 0) {
                free(hub);
                return r;
        }
        hub->epfd = epfd;
        hub->limits = *limits;
        hub->max_connections = connections_allowed();
        hub->turn = 1;
        log_debug("Serving at most %u connections (%u reserved for root), %u per uid.",
                  hub->max_connections, STREAM_ROOT_RESERVE, limits->max_connections_per_uid);
        *ret = hub;
        return 0;
}

void stream_hub_free(struct stream_hub *hub)
{
        if (!hub)
                return;
        while (hub->servers)
                stream_server_free(hub->servers);
        uid_table_free(hub->uids);
        free(hub);
}

bool stream_hub_turn(struct stream_hub *hub)
{
        /* Only as many as were waiting when the turn began: one that goes back to the backlog
         * (its uid's turn spent again) waits for the next turn, and the count bounds the loop
         * even when connections leave the backlog by closing meanwhile. */
        unsigned n = hub->n_backlogged;

        hub->turn++;
        uid_table_new_turn(hub->uids);
        while (n-- > 0 && hub->backlog_head) {
                struct stream *s = hub->backlog_head;
                backlog_remove(s);
                /* Waiting either with whole frames left over, or unread (its uid's turn was
                 * spent): a read that finds nothing is harmless. */
                if (s->events & EPOLLIN)
                        stream_read(s);
                else
                        stream_process(s);
        }
        return hub->backlog_head != NULL;
}

static void check_timeouts(struct stream_server *server, uint64_t now)
{
        const struct stream_limits *limits = &server->hub->limits;
        struct stream *s = server->head, *next;
        const uint8_t *payload;
        size_t len;

        for (; s; s = next) {
                next = s->next;
                if (s->frame_start_usec &&
                    now - s->frame_start_usec > limits->frame_timeout_sec * USEC_PER_SEC &&
                    wire_frame_peek(s->in, &payload, &len) == 0) {
                        stream_log(s, LOG_LEVEL_INFO,
                                   "%s socket: uid=%u pid=%d did not complete a frame within "
                                   "%u s; closing.",
                                   server->class->name, (unsigned)s->peer.uid, (int)s->peer.pid,
                                   limits->frame_timeout_sec);
                        buf_reset(s->in);
                        reply_error(s, WIRE_BAD_REQUEST, "The frame did not arrive in time.", 0);
                        s->closing = true;
                        stream_flush(s);
                        continue;
                }
                /* Quiet, or not reading what it is sent. A request waiting for an answer
                 * from elsewhere is bounded there. */
                if (!busy(s) && now - s->active_usec > limits->idle_timeout_sec * USEC_PER_SEC) {
                        log_debug("%s socket: closing the idle connection of uid=%u pid=%d.",
                                  server->class->name, (unsigned)s->peer.uid, (int)s->peer.pid);
                        stream_close(s);
                }
        }
}

void stream_hub_tick(struct stream_hub *hub)
{
        uint64_t now = stream_now();

        for (struct stream_server *server = hub->servers; server; server = server->next) {
                check_timeouts(server, now);
                /* Descriptors may have been freed by curl or the PKCS#11 module rather than by a
                 * client, so closing a connection is not the only moment to try again. */
                if (server->paused && now - server->paused_usec >= USEC_PER_SEC) {
                        server->paused_usec = now;
                        resume_listener(server);
                }
        }
        uid_table_tick(hub->uids, now_boottime_usec());
}

/* ---- servers ------------------------------------------------------------------------------- */

int stream_server_new(struct stream_hub *hub, int fd, const struct stream_class *class,
                      void *userdata, struct stream_server **ret)
{
        struct stream_server *server = calloc(1, sizeof(*server));
        int r;

        if (!server)
                return -ENOMEM;
        server->hub = hub;
        server->class = class;
        server->userdata = userdata;
        server->listener = (struct watch){.fd = fd, .fn = on_accept};
        r = event_add(hub->epfd, &server->listener, EPOLLIN);
        if (r < 0) {
                free(server);
                return r;
        }
        server->next = hub->servers;
        hub->servers = server;
        *ret = server;
        return 0;
}

void stream_server_free(struct stream_server *server)
{
        struct stream_hub *hub;

        if (!server)
                return;
        hub = server->hub;
        while (server->head)
                stream_close(server->head);
        event_remove(hub->epfd, &server->listener);
        close(server->listener.fd);
        for (struct stream_server **link = &hub->servers; *link; link = &(*link)->next)
                if (*link == server) {
                        *link = server->next;
                        break;
                }
        free(server);
}
