/* One framed, bounded, back-pressured connection, for the client and the admin socket alike,
 * and the listeners that accept them. Every limit a local peer can run into on either socket
 * lives here once (docs/security.md):
 *
 *   - a per-uid connection cap, and descriptors reserved for root and the admin socket; a full
 *     table evicts its oldest idle connection before it refuses one; a refused peer is told
 *     `rate_limited` with retry_after before the broker hangs up;
 *   - a frame must arrive within frame_timeout of its first byte; idle connections close;
 *   - a per-uid request budget, checked before a frame is parsed;
 *   - output above a high-water mark stops reading and handling that connection;
 *   - each loop turn handles a bounded number of frames and bytes per connection and per uid.
 *
 * What a frame means is the owner's business (client/request.c, admin/admin-ops.c): an owner's
 * connection object begins with a struct stream and its class says how to handle a frame.
 * This layer knows nothing above it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"
#include "peer.h"
#include "uid-table.h"

/* Frames handled per loop turn: for one connection, and for all connections of one uid. */
#define STREAM_FRAMES_PER_TURN     4
#define STREAM_UID_FRAMES_PER_TURN 64
#define STREAM_UID_BYTES_PER_TURN  (256 * 1024)

struct buf;
struct stream_hub;
struct stream_server;

struct stream {
        struct watch watch;
        struct stream_server *server;
        const struct stream_class *class;
        struct peer peer;      /* from the kernel at accept, never from the peer's own words */
        struct uid_entry *uid; /* its uid's limits and budgets (uid-table.h) */
        struct buf *in;
        struct buf *out;
        bool closing;         /* flush what is queued, then close */
        bool eof;             /* the peer shut down its side: answer what it sent, then close */
        bool processing;      /* inside stream_process(): answers must not re-enter it */
        uint32_t events;      /* what the watch is registered for */
        uint64_t active_usec; /* last byte read or written (idle timeout, eviction) */
        uint64_t frame_start_usec; /* first byte of the frame being received, 0 if none */
        uint64_t turn;             /* loop turn of turn_frames */
        uint32_t turn_frames;
        struct stream *prev, *next; /* the server's list, least recently active first */
        struct stream *backlog_prev, *backlog_next;
        bool backlogged; /* has whole frames left over for the next turn */
};

struct stream_class {
        const char *name; /* "client" or "admin", for log lines */
        size_t size;      /* of the owner's object, which begins with its struct stream */
        /* After the limits let s in, with s->peer complete: whether the peer may use this
         * socket. When not, the callback has queued its answer (it is sent, then s closes). */
        bool (*admit)(struct stream *s, void *userdata);
        /* One whole frame's payload; writable so a secret in it can be wiped. */
        void (*handle)(struct stream *s, uint8_t *payload, size_t len);
        /* While true, a request of s waits for an answer from elsewhere: its next frames wait. */
        bool (*busy)(const struct stream *s);
        /* s is closing: drop what the owner holds on to elsewhere (a waiter, an operation). */
        void (*closing)(struct stream *s);
        /* Frees what the owner's object holds besides the stream; may be NULL. */
        void (*free)(struct stream *s);
        /* The uid's request budget ran out before a frame of s was parsed: queue the answer
         * (rate_limited with retry_after). NULL: this socket has no request budget. */
        void (*over_budget)(struct stream *s, uint32_t retry_after);
        unsigned max_connections; /* on this socket; 0: only the table's limits */
};

struct stream_limits {
        uint32_t max_connections_per_uid;
        uint32_t idle_timeout_sec;
        uint32_t frame_timeout_sec;
        uint32_t request_rate_per_uid; /* per second; 0: no budget */
        uint32_t request_burst_per_uid;
};

/* The table both sockets share: descriptors, per-uid accounting, the backlog of frames left
 * for the next loop turn. */
int stream_hub_new(int epfd, const struct stream_limits *limits, struct stream_hub **ret);
void stream_hub_free(struct stream_hub *hub);
/* Starts a loop turn and handles frames left over from the last one. Returns whether frames
 * are still waiting (then the loop should not block). */
bool stream_hub_turn(struct stream_hub *hub);
/* About once a second: closes idle connections and frames that take too long, accepts again
 * after running out of descriptors, reports suppressed log lines. */
void stream_hub_tick(struct stream_hub *hub);

/* Listens on fd (already bound and listening, non-blocking). userdata goes to the class's
 * admit(). */
int stream_server_new(struct stream_hub *hub, int fd, const struct stream_class *class,
                      void *userdata, struct stream_server **ret);
/* Closes every connection and the listener. */
void stream_server_free(struct stream_server *server);
void *stream_server_userdata(const struct stream_server *server);

/* Writes what the owner queued in s->out now, as far as the peer reads. May close s. */
void stream_flush(struct stream *s);
/* The same from the loop once the socket is writable: for a caller that must not see s closed
 * under it (an operation's own callback). */
void stream_flush_later(struct stream *s);
/* The request that kept s busy has been answered: handle its next frames. Safe to call from
 * inside a handler (it then does nothing: the loop there goes on). */
void stream_resume(struct stream *s);
void stream_close(struct stream *s);

/* A log line about s's request, within its uid's log budget (uid-table.h). */
#define stream_log(s, level, ...) uid_table_log(stream_uids(s), (s)->peer.uid, (level), __VA_ARGS__)
struct uid_table *stream_uids(const struct stream *s);
