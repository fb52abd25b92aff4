/* The client socket: what a client connection holds besides its stream (net/stream.c), and
 * how the stream layer hands its frames to request.c. Request semantics live in request.c. */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "accounts.h"
#include "audit-aggregate.h"
#include "broker.h"
#include "client.h"
#include "config.h"
#include "json.h"
#include "listen.h"
#include "log.h"
#include "waiter.h"

static struct connection *connection_of(const struct stream *s)
{
        return container_of(s, struct connection, stream);
}

static bool client_admit(struct stream *s, void *userdata)
{
        connection_of(s)->broker = userdata;
        return true;
}

static void client_handle(struct stream *s, uint8_t *payload, size_t len)
{
        request_handle(connection_of(s), payload, len);
}

static bool client_busy(const struct stream *s)
{
        return connection_of(s)->waiting != NULL || connection_of(s)->committing;
}

static void client_closing(struct stream *s)
{
        struct connection *c = connection_of(s);

        if (c->waiting) {
                account_remove_waiter(c->waiting->account, c->waiting);
                waiter_free(c->waiting);
                c->waiting = NULL;
        }
}

static void client_free(struct stream *s)
{
        struct connection *c = connection_of(s);

        mail_connection_closing(c);
        audit_prepared_clear(&c->issued.record);
        audit_part_clear(&c->issued.peer_part);
        wire_request_clear(&c->last_request.parsed);
}

/* The uid's request budget ran out: audited like a denial (so aggregated), answered with when
 * to come back, and never parsed. */
static void client_over_budget(struct stream *s, uint32_t retry_after)
{
        struct connection *c = connection_of(s);
        struct audit_record record = {
            .event = "deny",
            .peer = &s->peer,
            .decision = "rate_limited",
            .reason = "request budget of the uid exhausted",
            .retry_after = retry_after,
        };

        if (audit_write_denial(c->broker->denials, &record) < 0) {
                if (wire_reply_error(s->out, WIRE_INTERNAL,
                                     "The broker cannot write its audit log.", 0) < 0)
                        s->closing = true;
                return;
        }
        stream_log(s, LOG_LEVEL_INFO, "Rate-limited uid=%u pid=%d: request budget exhausted.",
                   (unsigned)s->peer.uid, (int)s->peer.pid);
        if (wire_reply_error(s->out, WIRE_RATE_LIMITED, "Too many requests; try again later.",
                             retry_after) < 0)
                s->closing = true;
}

static const struct stream_class client_class = {
    .name = "client",
    .size = sizeof(struct connection),
    .admit = client_admit,
    .handle = client_handle,
    .busy = client_busy,
    .closing = client_closing,
    .free = client_free,
    .over_budget = client_over_budget,
};

/* The socket systemd passed, if any: -1 when none, a negative errno when unusable. */
static int socket_from_systemd(void)
{
#if HAVE_SYSTEMD
        int n = sd_listen_fds(1);
        if (n > 1) {
                log_error("Expected one socket from systemd, got %d.", n);
                return -EINVAL;
        }
        if (n == 1) {
                int fd = SD_LISTEN_FDS_START;
                if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                        return -errno;
                log_info("Using the socket passed by systemd.");
                return fd;
        }
#endif
        return -1;
}

int server_listen(struct broker *b)
{
        int fd = socket_from_systemd(), r;

        if (fd < -1)
                return fd;
        if (fd == -1) {
                /* Anyone may connect: authorization is the policy's job, never the file
                 * mode's. */
                fd = listen_unix(b->config->socket_path, 0111, SOMAXCONN, &b->socket_inode);
                if (fd < 0)
                        return fd;
        }
        r = stream_server_new(b->streams, fd, &client_class, b, &b->client_server);
        if (r < 0) {
                close(fd);
                return log_error_errno(r, "Failed to watch %s", b->config->socket_path);
        }
        return 0;
}

void server_close_all(struct broker *b)
{
        stream_server_free(b->client_server);
        b->client_server = NULL;
}
