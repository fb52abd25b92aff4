/* The admin socket's plumbing: listening (mode 0600), admitting only root or the broker's own
 * uid, framing requests and replies. What the requests do is admin-ops.c's job. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin.h"
#include "broker.h"
#include "json.h"
#include "log.h"

/* Administrators are few; this bounds what a stuck script can hold. */
#define ADMIN_MAX_CONNECTIONS 16

static void admin_connection_free(void *p)
{
        struct admin_connection *c = p;

        peer_clear(&c->peer);
        buf_free(c->in);
        buf_free(c->out);
        free(c);
}

static void admin_connection_close(struct admin_connection *c)
{
        struct broker *b = c->broker;
        int fd = c->watch.fd;

        if (fd < 0)
                return;
        if (c->operation) {
                struct admin_operation *op = c->operation;
                c->operation = NULL;
                op->connection = NULL;
                if (op->abandoned)
                        op->abandoned(op);
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                b->admin_connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        b->n_admin_connections--;
        event_release(b->epfd, &c->watch, c, admin_connection_free);
        close(fd);
}

static void admin_update_events(struct admin_connection *c)
{
        uint32_t events = 0;

        if (!c->closing && !c->eof && !c->operation && buf_len(c->out) < CONNECTION_OUT_HIGH_WATER)
                events |= EPOLLIN;
        if (buf_len(c->out) > 0)
                events |= EPOLLOUT;
        if (events != c->events) {
                if (event_modify(c->broker->epfd, &c->watch, events) < 0) {
                        admin_connection_close(c);
                        return;
                }
                c->events = events;
        }
}

static void admin_flush(struct admin_connection *c)
{
        while (buf_len(c->out) > 0) {
                int r = buf_write_fd(c->out, c->watch.fd);
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        admin_connection_close(c);
                        return;
                }
        }
        if ((c->closing || (c->eof && !c->operation)) && buf_len(c->out) == 0) {
                admin_connection_close(c);
                return;
        }
        admin_update_events(c);
}

static void admin_process(struct admin_connection *c)
{
        const uint8_t *payload;
        size_t len;
        int r;

        if (c->processing)
                return;
        c->processing = true;
        while (!c->operation && !c->closing) {
                r = wire_frame_peek(c->in, &payload, &len);
                if (r == 0)
                        break;
                if (r < 0) {
                        admin_send_error(c, "bad_request", "Frame length must be 1-65536 bytes.");
                        c->closing = true;
                        break;
                }
                /* The frame may hold a password or a client secret: admin_handle() wipes what
                 * it copies, and consuming the frame wipes it in the buffer (buf.c). */
                admin_handle(c, (uint8_t *)payload, len);
                wire_frame_consume(c->in, len);
        }
        c->processing = false;
        admin_flush(c);
}

static void on_admin_ready(struct watch *w, uint32_t events)
{
        struct admin_connection *c = (struct admin_connection *)w;

        if (events & EPOLLIN) {
                int r = buf_read_fd(c->in, w->fd);
                if (r < 0 && r != -EAGAIN && r != -EMSGSIZE) {
                        admin_connection_close(c);
                        return;
                }
                if (r == 0)
                        c->eof = true;
                admin_process(c);
                return;
        }
        if (events & (EPOLLERR | EPOLLHUP)) {
                admin_connection_close(c);
                return;
        }
        if (events & EPOLLOUT)
                admin_flush(c);
}

/* Root, or the uid the broker runs as (its own CLI run by the service user). The file mode is
 * a second fence; this is the check. */
static bool admin_peer_allowed(const struct peer *p)
{
        return p->uid == 0 || p->uid == geteuid();
}

/* Tells a refused peer only that it was denied, then hangs up; the log has who it was. */
static void refuse(struct broker *b, int fd, const struct peer *p)
{
        _cleanup_buf_ struct buf *out = NULL;

        log_warning("Admin socket: refusing uid %u pid %d: not root or the broker's uid.",
                    (unsigned)p->uid, (int)p->pid);
        (void)audit_write(b->audit,
                          &(struct audit_record){.event = "deny",
                                                 .peer = p,
                                                 .decision = "deny",
                                                 .reason = "admin socket: not root or the "
                                                           "broker's uid"});
        if (buf_new(256, &out) == 0 &&
            wire_reply_error(out, WIRE_DENIED, "Permission denied.", 0) == 0)
                (void)!write(fd, buf_data(out), buf_len(out));
}

static void on_admin_accept(struct watch *w, uint32_t events)
{
        struct broker *b = (struct broker *)((char *)w - offsetof(struct broker, admin_listener));

        for (;;) {
                struct admin_connection *c;
                int fd, r;

                fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(errno, "Admin socket: accept() failed");
                        return;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        return;
                }
                c->broker = b;
                c->watch = (struct watch){.fd = fd, .fn = on_admin_ready};
                r = peer_credentials_from_socket(fd, &c->peer);
                /* exe and unit for the log and the audit record; never part of the check. */
                if (r == 0)
                        (void)peer_identify(fd, &c->peer);
                if (r == 0 && !admin_peer_allowed(&c->peer)) {
                        refuse(b, fd, &c->peer);
                        r = -EPERM;
                }
                if (r == 0 && b->n_admin_connections >= ADMIN_MAX_CONNECTIONS) {
                        log_warning("Admin socket: too many connections; refusing one.");
                        r = -EBUSY;
                }
                if (r == 0)
                        r = buf_new(CONNECTION_IN_MAX, &c->in);
                if (r == 0)
                        r = buf_new(CONNECTION_OUT_MAX, &c->out);
                if (r == 0) {
                        c->events = EPOLLIN;
                        r = event_add(b->epfd, &c->watch, c->events);
                }
                if (r < 0) {
                        close(fd);
                        admin_connection_free(c);
                        continue;
                }
                c->next = b->admin_connections;
                if (c->next)
                        c->next->prev = c;
                b->admin_connections = c;
                b->n_admin_connections++;
        }
}

static int admin_listen_on_path(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        mode_t old_umask;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
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
        /* 0600 from the start: the umask applies at bind(), with no window and no chmod() of a
         * path that could be swapped for a symlink. */
        old_umask = umask(0177);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old_umask);
        if (r < 0 || listen(fd, 16) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int admin_listen(struct broker *b)
{
        /* Always bound here, also when systemd passes the client socket: the socket unit
         * carries only the client socket (docs/credbrokerd.8.md). */
        int fd = admin_listen_on_path(b->config->admin_socket_path);

        if (fd < 0)
                return log_error_errno(fd, "Failed to listen on %s", b->config->admin_socket_path);
        b->admin_listener = (struct watch){.fd = fd, .fn = on_admin_accept};
        return event_add(b->epfd, &b->admin_listener, EPOLLIN);
}

void admin_close_all(struct broker *b)
{
        while (b->admin_connections)
                admin_connection_close(b->admin_connections);
        if (b->admin_listener.fd >= 0) {
                event_remove(b->epfd, &b->admin_listener);
                close(b->admin_listener.fd);
                b->admin_listener.fd = -1;
                (void)unlink(b->config->admin_socket_path);
        }
}

void admin_send(struct admin_connection *c, cJSON *reply)
{
        if (!c)
                return;
        if (!reply || wire_put_json(c->out, reply) < 0) {
                log_error("Admin socket: cannot queue a reply; closing the connection.");
                c->closing = true;
        }
}

cJSON *admin_reply_new(void)
{
        cJSON *reply = cJSON_CreateObject();

        if (reply &&
            (!cJSON_AddNumberToObject(reply, "v", 1) || !cJSON_AddTrueToObject(reply, "ok"))) {
                cJSON_Delete(reply);
                return NULL;
        }
        return reply;
}

void admin_send_error(struct admin_connection *c, const char *code, const char *message)
{
        _cleanup_json_ cJSON *reply = cJSON_CreateObject();

        if (reply &&
            (!cJSON_AddNumberToObject(reply, "v", 1) || !cJSON_AddFalseToObject(reply, "ok") ||
             !cJSON_AddStringToObject(reply, "error", code) ||
             !cJSON_AddStringToObject(reply, "message", message))) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_send(c, reply);
}

void admin_operation_begin(struct admin_connection *c, struct admin_operation *op)
{
        op->connection = c;
        op->broker = c->broker;
        c->operation = op;
}

void admin_operation_send(struct admin_operation *op, cJSON *reply)
{
        struct admin_connection *c = op->connection;

        if (!c)
                return;
        admin_send(c, reply);
        /* Written when the socket is writable, not now: a write error here would close the
         * connection, and so end the operation, inside the operation's own callback. */
        if (event_modify(c->broker->epfd, &c->watch, c->events | EPOLLOUT) == 0)
                c->events |= EPOLLOUT;
        else
                c->closing = true;
}

static void admin_operation_end(struct admin_operation *op)
{
        struct admin_connection *c = op->connection;

        if (!c)
                return;
        op->connection = NULL;
        c->operation = NULL;
        /* Inside admin_process() (an operation that ended at once) the loop there goes on. */
        if (c->processing)
                return;
        admin_process(c);
}

void admin_operation_finish(struct admin_operation *op, cJSON *reply)
{
        if (op->connection)
                admin_send(op->connection, reply);
        admin_operation_end(op);
}

void admin_operation_fail(struct admin_operation *op, const char *code, const char *message)
{
        if (op->connection)
                admin_send_error(op->connection, code, message);
        admin_operation_end(op);
}
