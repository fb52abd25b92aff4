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
#include "audit-aggregate.h"
#include "audit.h"
#include "config.h"
#include "wire.h"
#include "broker.h"
#include "listen.h"
#include "json.h"
#include "log.h"

/* Administrators are few; this bounds what a stuck script can hold. */
#define ADMIN_MAX_CONNECTIONS 16

static struct admin_connection *admin_connection_of(const struct stream *s)
{
        return container_of(s, struct admin_connection, stream);
}

/* Root, or the uid the broker runs as (its own CLI run by the service user). The file mode is
 * a second fence; this is the check. */
static bool admin_peer_allowed(const struct peer *p)
{
        return p->uid == 0 || p->uid == geteuid();
}

/* Tells a refused peer only that it was denied; the log and the audit have who it was. */
static bool admin_admit(struct stream *s, void *userdata)
{
        struct broker *b = userdata;

        admin_connection_of(s)->broker = b;
        if (admin_peer_allowed(&s->peer))
                return true;
        stream_log(s, LOG_LEVEL_WARNING,
                   "Admin socket: refusing uid %u pid %d: not root or the broker's uid.",
                   (unsigned)s->peer.uid, (int)s->peer.pid);
        (void)audit_write_denial(b->denials,
                                 &(struct audit_record){.event = "deny",
                                                        .peer = &s->peer,
                                                        .decision = "deny",
                                                        .reason = "admin socket: not root or "
                                                                  "the broker's uid"});
        (void)wire_reply_error(s->out, WIRE_DENIED, "Permission denied.", 0);
        return false;
}

/* The frame may hold a password or a client secret: admin_handle() wipes what it copies, and
 * the stream wipes the frame in its buffer once handled (buf.c). */
static void admin_stream_handle(struct stream *s, uint8_t *payload, size_t len)
{
        admin_handle(admin_connection_of(s), payload, len);
}

static bool admin_busy(const struct stream *s)
{
        return admin_connection_of(s)->operation != NULL;
}

static void admin_closing(struct stream *s)
{
        struct admin_connection *c = admin_connection_of(s);
        struct admin_operation *op = c->operation;

        if (!op)
                return;
        c->operation = NULL;
        op->connection = NULL;
        if (op->abandoned)
                op->abandoned(op);
}

static const struct stream_class admin_class = {
    .name = "admin",
    .size = sizeof(struct admin_connection),
    .admit = admin_admit,
    .handle = admin_stream_handle,
    .busy = admin_busy,
    .closing = admin_closing,
    .max_connections = ADMIN_MAX_CONNECTIONS,
};

int admin_listen(struct broker *b)
{
        /* Always bound here, also when systemd passes the client socket: the socket unit
         * carries only the client socket (docs/credbrokerd.8.md). 0600 from the start. */
        int fd = listen_unix(b->config->admin_socket_path, 0177, 16, &b->admin_socket_inode);
        int r;

        if (fd < 0)
                return fd;
        r = stream_server_new(b->streams, fd, &admin_class, b, &b->admin_server);
        if (r < 0) {
                close(fd);
                listen_unix_remove(b->config->admin_socket_path, b->admin_socket_inode);
                return log_error_errno(r, "Failed to watch %s", b->config->admin_socket_path);
        }
        return 0;
}

void admin_close_all(struct broker *b)
{
        if (!b->admin_server)
                return;
        stream_server_free(b->admin_server);
        b->admin_server = NULL;
        listen_unix_remove(b->config->admin_socket_path, b->admin_socket_inode);
}

void admin_send(struct admin_connection *c, cJSON *reply)
{
        if (!c)
                return;
        if (!reply || wire_put_json(c->stream.out, reply) < 0) {
                log_error("Admin socket: cannot queue a reply; closing the connection.");
                c->stream.closing = true;
        }
}

cJSON *admin_reply_new(void)
{
        return wire_reply_new(true);
}

void admin_send_error(struct admin_connection *c, enum admin_error code, const char *message)
{
        _cleanup_json_ cJSON *reply = wire_error_reply_new(admin_error_to_string(code), message);

        admin_send(c, reply);
}

enum admin_error admin_error_parse(const char *code)
{
        enum admin_error e;

        return admin_error_from_string(code, &e) < 0 ? ADMIN_INTERNAL : e;
}

void admin_operation_begin(struct admin_connection *c, struct admin_operation *op)
{
        op->connection = c;
        op->broker = c->broker;
        op->desc = c->handling;
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
        stream_flush_later(&c->stream);
}

static void admin_operation_end(struct admin_operation *op)
{
        struct admin_connection *c = op->connection;

        if (!c)
                return;
        op->connection = NULL;
        c->operation = NULL;
        /* Inside the stream's handling (an operation that ended at once) its loop goes on. */
        stream_resume(&c->stream);
}

void admin_operation_finish(struct admin_operation *op, cJSON *reply)
{
        if (op->connection)
                admin_send(op->connection, reply);
        admin_operation_end(op);
}

void admin_operation_fail(struct admin_operation *op, enum admin_error code, const char *message)
{
        if (op->connection)
                admin_send_error(op->connection, code, message);
        admin_operation_end(op);
}

void admin_operation_audit(struct admin_operation *op, const char *account)
{
        if (!op->desc || !op->desc->audit)
                return;
        (void)audit_write(op->broker->audit,
                          &(struct audit_record){.event = op->desc->audit, .account = account});
}
