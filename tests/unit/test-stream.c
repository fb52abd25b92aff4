/* Unit tests for the connection layer's per-turn budgets (broker/net/stream.c): a loop turn
 * handles at most a few frames of one connection and a bounded number of one uid, and frames
 * left over are handled in later turns without new input. The test process is the broker here:
 * its own loop, its own listener, its own clients, so the order of events is exact. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "event.h"
#include "stream.h"
#include "tap.h"

#define MAX_CONNECTIONS 40
#define MAX_HANDLED     4096

/* The world cannot be set up: TAP's way to stop. */
static void die(const char *what)
{
        printf("Bail out! %s: %s\n", what, strerror(errno));
        exit(1);
}

struct conn {
        struct stream stream; /* first: the layer's object is the owner's */
        int id;
};

/* What was handled, in order: which connection, in which loop turn. */
static struct {
        int conn;
        unsigned turn;
        size_t len;
} handled[MAX_HANDLED];
static unsigned n_handled, turn;
static int n_admitted;

static bool admit(struct stream *s, void *userdata)
{
        (void)userdata;
        ((struct conn *)s)->id = n_admitted++;
        return true;
}

static void handle(struct stream *s, uint8_t *payload, size_t len)
{
        (void)payload;
        if (n_handled < MAX_HANDLED) {
                handled[n_handled].conn = ((struct conn *)s)->id;
                handled[n_handled].turn = turn;
                handled[n_handled].len = len;
                n_handled++;
        }
}

static const struct stream_class test_class = {
    .name = "test",
    .size = sizeof(struct conn),
    .admit = admit,
    .handle = handle,
};

struct world {
        char dir[64];
        char path[96];
        int epfd;
        struct stream_hub *hub;
        struct stream_server *server;
        int clients[MAX_CONNECTIONS];
        int n_clients;
};

static int listen_at(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
                die("listen");
        return fd;
}

/* One loop turn as broker/main.c runs it: the backlog first, then what is ready. */
static void run_turn(struct world *w, int timeout_ms)
{
        bool more;

        turn++;
        more = stream_hub_turn(w->hub);
        event_dispatch(w->epfd, more ? 0 : timeout_ms);
}

static void world_open(struct world *w, int n_clients)
{
        const struct stream_limits limits = {
            .max_connections_per_uid = MAX_CONNECTIONS,
            .idle_timeout_sec = 60,
            .frame_timeout_sec = 60,
        };

        memset(w, 0, sizeof(*w));
        snprintf(w->dir, sizeof(w->dir), "/tmp/test-stream.XXXXXX");
        if (!mkdtemp(w->dir))
                die("mkdtemp");
        snprintf(w->path, sizeof(w->path), "%s/socket", w->dir);
        if (event_loop_new(&w->epfd) < 0 || stream_hub_new(w->epfd, &limits, &w->hub) < 0 ||
            stream_server_new(w->hub, listen_at(w->path), &test_class, NULL, &w->server) < 0)
                die("the hub");
        n_admitted = 0;
        n_handled = 0;
        for (int i = 0; i < n_clients; i++) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->path);
                if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        die("connect");
                w->clients[w->n_clients++] = fd;
                /* Admitted in the order they connected, so client i is connection i. */
                for (int tries = 0; n_admitted <= i; tries++) {
                        if (tries == 10)
                                die("a connection was not admitted");
                        run_turn(w, 1000);
                }
        }
}

static void world_close(struct world *w)
{
        for (int i = 0; i < w->n_clients; i++)
                close(w->clients[i]);
        stream_server_free(w->server);
        stream_hub_free(w->hub);
        close(w->epfd);
        unlink(w->path);
        rmdir(w->dir);
}

/* n frames of an empty JSON object, in one write(), so they are all there at once. */
static void send_frames(int fd, int n)
{
        static const uint8_t one[] = {0, 0, 0, 2, '{', '}'};
        uint8_t all[sizeof(one) * 256];

        if (n > 256)
                die("too many frames");
        for (int i = 0; i < n; i++)
                memcpy(all + i * sizeof(one), one, sizeof(one));
        if (write(fd, all, sizeof(one) * (size_t)n) != (ssize_t)(sizeof(one) * (size_t)n))
                die("write");
}

/* n frames of len bytes each (blanks: the layer does not look inside), in one write(). */
static void send_big_frames(int fd, int n, size_t len)
{
        size_t size = (4 + len) * (size_t)n;
        uint8_t *all = calloc(1, size);

        if (!all)
                die("calloc");
        for (int i = 0; i < n; i++) {
                uint8_t *f = all + (4 + len) * (size_t)i;
                f[0] = (uint8_t)(len >> 24);
                f[1] = (uint8_t)(len >> 16);
                f[2] = (uint8_t)(len >> 8);
                f[3] = (uint8_t)len;
                memset(f + 4, ' ', len);
        }
        if (write(fd, all, size) != (ssize_t)size)
                die("write");
        free(all);
}

/* Runs turns until want frames were handled or a turn passes without any. */
static void run_until(struct world *w, unsigned want)
{
        for (int idle = 0; n_handled < want && idle < 20;) {
                unsigned before = n_handled;
                run_turn(w, 50);
                idle = n_handled == before ? idle + 1 : 0;
        }
}

/* The most frames handled in one turn: for connection conn, or for all when conn is -1. */
static unsigned most_in_a_turn(int conn)
{
        unsigned most = 0, count = 0, at = 0;

        for (unsigned i = 0; i < n_handled; i++) {
                if (conn >= 0 && handled[i].conn != conn)
                        continue;
                if (handled[i].turn != at) {
                        at = handled[i].turn;
                        count = 0;
                }
                if (++count > most)
                        most = count;
        }
        return most;
}

static void test_connection_budget(void)
{
        struct world w;
        unsigned first_of_1 = MAX_HANDLED, last_of_0 = 0;

        world_open(&w, 2);
        send_frames(w.clients[0], 100);
        send_frames(w.clients[1], 100);
        run_until(&w, 200);
        is_int(n_handled, 200,
               "every frame of both connections is handled, the backlog without new input");
        is_int(most_in_a_turn(0), STREAM_FRAMES_PER_TURN,
               "one connection: at most 4 frames a turn");
        is_int(most_in_a_turn(1), STREAM_FRAMES_PER_TURN, "the other too");
        for (unsigned i = 0; i < n_handled; i++) {
                if (handled[i].conn == 1 && first_of_1 == MAX_HANDLED)
                        first_of_1 = i;
                if (handled[i].conn == 0)
                        last_of_0 = i;
        }
        ok(first_of_1 < 2 * STREAM_FRAMES_PER_TURN && last_of_0 > 190,
           "the two connections take turns: the second's first frame does not wait for the first's "
           "100");
        world_close(&w);
}

/* 32 connections' per-connection shares together exceed the uid's: the uid budget is what binds. */
_Static_assert(32 * STREAM_FRAMES_PER_TURN > STREAM_UID_FRAMES_PER_TURN, "32 connections");

static void test_uid_budget(void)
{
        struct world w;

        world_open(&w, 32);
        for (int i = 0; i < 32; i++)
                send_frames(w.clients[i], 8);
        run_until(&w, 256);
        is_int(n_handled, 256, "every frame of 32 connections of one uid is handled");
        is_int(most_in_a_turn(-1), STREAM_UID_FRAMES_PER_TURN,
               "one uid: at most 64 frames a turn over all its connections");
        world_close(&w);
}

/* The most frame bytes handled in one turn, over all connections. */
static size_t most_bytes_in_a_turn(void)
{
        size_t most = 0, count = 0;
        unsigned at = 0;

        for (unsigned i = 0; i < n_handled; i++) {
                if (handled[i].turn != at) {
                        at = handled[i].turn;
                        count = 0;
                }
                count += handled[i].len;
                if (count > most)
                        most = count;
        }
        return most;
}

#define BIG_FRAME (16 * 1024)
/* 32 connections' two big frames each are well over the uid's bytes, under its frame count. */
_Static_assert(32 * 2 * BIG_FRAME > 2 * STREAM_UID_BYTES_PER_TURN, "32 connections");
_Static_assert(32 * 2 <= STREAM_UID_FRAMES_PER_TURN, "the frame count does not bind");

static void test_uid_bytes_budget(void)
{
        struct world w;

        world_open(&w, 32);
        for (int i = 0; i < 32; i++)
                send_big_frames(w.clients[i], 2, BIG_FRAME);
        run_until(&w, 64);
        is_int(n_handled, 64, "every big frame of 32 connections of one uid is handled");
        /* The budget is checked before a frame is taken: one frame may cross it. */
        ok(most_bytes_in_a_turn() < STREAM_UID_BYTES_PER_TURN + BIG_FRAME,
           "one uid: at most 256 KiB of frames a turn (and the frame that crosses it)");
        world_close(&w);
}

int main(void)
{
        test_connection_budget();
        test_uid_budget();
        test_uid_bytes_budget();
        return done_testing();
}
