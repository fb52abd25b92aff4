/* bench-loadgen: closed-loop load generator for the client socket protocol (design.md §3). Each of
 * N connections sends one request frame, waits for the whole reply, records the latency and
 * sends the next, for a fixed time; prints throughput and latency percentiles.
 *
 * One thread drives all connections through one epoll loop rather than one thread per
 * connection: the benchmark machine has 2 cores shared with the server under test, and a
 * thread per connection would spend that CPU on context switches and wake-ups of the load
 * generator itself, so the figures would measure the scheduler more than the server. One loop
 * costs at most one core, and the same core for the broker and for the echo server, so their
 * ratio stays fair. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "wire.h"

#define MAX_CONNECTIONS 4096
/* Latency samples kept; beyond this, reservoir sampling keeps a uniform sample of them all, so
 * percentiles stay unbiased at bounded memory (4 bytes a sample: 80 MB at most). */
#define MAX_SAMPLES (20u * 1000u * 1000u)
#define MAX_EVENTS  64
/* How much of a failing reply is shown. */
#define SHOW_MAX 512

struct options {
        const char *socket_path;
        unsigned connections;
        double seconds;
        double warmup;
        const char *profile;
        const char *profiles_file; /* --profiles: one name per line, asked for in turn */
        const char *request;
};

struct connection {
        int fd;
        struct buf *in;
        const struct buf *frame; /* the request being sent, framed */
        size_t sent;             /* bytes of it sent so far */
        uint64_t start_usec;
        bool want_out;
};

struct stats {
        uint32_t *samples;
        uint32_t max; /* over every sample, kept or not */
        size_t n_samples;
        size_t cap_samples;
        uint64_t measured; /* replies completed inside the measurement window */
        uint64_t measured_errors;
        uint64_t total; /* every reply, warm-up included */
        uint64_t total_errors;
        uint64_t rng;
};

/* The request frames, sent in turn: one, or one per name of --profiles. */
static struct buf **frames;
static size_t n_frames, next_frame;

static uint64_t now_monotonic_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t xorshift64(uint64_t *state)
{
        uint64_t x = *state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return *state = x;
}

static int stats_record(struct stats *s, uint64_t latency_usec)
{
        uint32_t v = latency_usec > UINT32_MAX ? UINT32_MAX : (uint32_t)latency_usec;

        if (v > s->max)
                s->max = v;
        /* s->measured already counts this sample. */
        if (s->n_samples < MAX_SAMPLES) {
                if (s->n_samples == s->cap_samples) {
                        size_t cap = s->cap_samples ? s->cap_samples * 2 : 65536;
                        uint32_t *p;

                        if (cap > MAX_SAMPLES)
                                cap = MAX_SAMPLES;
                        p = realloc(s->samples, cap * sizeof(*p));
                        if (!p)
                                return -ENOMEM;
                        s->samples = p;
                        s->cap_samples = cap;
                }
                s->samples[s->n_samples++] = v;
                return 0;
        }
        /* Algorithm R: the i-th sample replaces a random slot with probability MAX/i. */
        uint64_t slot = xorshift64(&s->rng) % s->measured;
        if (slot < MAX_SAMPLES)
                s->samples[slot] = v;
        return 0;
}

static int compare_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static uint32_t percentile(const uint32_t *sorted, size_t n, double p)
{
        size_t rank;

        if (n == 0)
                return 0;
        rank = (size_t)ceil(p / 100.0 * (double)n);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return sorted[rank - 1];
}

/* Prints a reply for a human with the value of "access_token" replaced, so a failing run never
 * leaks a token into a terminal or a CI log. Non-printable bytes are shown as '?'. */
static void show_reply(const char *what, const uint8_t *payload, size_t len)
{
        static const char key[] = "\"access_token\":\"";
        static const char redacted[] = "\"access_token\":\"<redacted>\"";
        char out[SHOW_MAX + sizeof(redacted)];
        size_t o = 0, i = 0;

        while (i < len && o < SHOW_MAX) {
                if (len - i >= sizeof(key) - 1 && memcmp(payload + i, key, sizeof(key) - 1) == 0) {
                        memcpy(out + o, redacted, sizeof(redacted) - 1);
                        o += sizeof(redacted) - 1;
                        /* Skip to the closing quote, stepping over escapes; an unterminated
                         * value hides the rest of the reply. */
                        for (i += sizeof(key) - 1; i < len && payload[i] != '"'; i++)
                                if (payload[i] == '\\')
                                        i++;
                        i++;
                        continue;
                }
                out[o++] = payload[i] >= 0x20 && payload[i] < 0x7f ? (char)payload[i] : '?';
                i++;
        }
        fprintf(stderr, "bench-loadgen: %s (%zu bytes): %.*s%s\n", what, len, (int)o, out,
                i < len ? "..." : "");
}

/* A cheap success test that needs no JSON parser: inside a JSON string every '"' is escaped, so
 * an unescaped "ok":true can only be the member itself. */
static bool reply_is_ok(const uint8_t *payload, size_t len)
{
        static const char ok[] = "\"ok\":true";

        return memmem(payload, len, ok, sizeof(ok) - 1) != NULL;
}

static int add_frame(const char *json)
{
        struct buf **p = reallocarray(frames, n_frames + 1, sizeof(*frames));
        int r;

        if (!p)
                return -ENOMEM;
        frames = p;
        r = buf_new(WIRE_HEADER_SIZE + strlen(json), &frames[n_frames]);
        if (r < 0)
                return r;
        n_frames++;
        return wire_frame_put(frames[n_frames - 1], json, strlen(json));
}

static int add_token_request(const char *profile)
{
        char request[1024];
        int n;

        /* Also keeps the name from breaking out of the JSON string it goes into. */
        if (!name_is_valid(profile))
                return log_error_errno(-EINVAL, "Invalid profile name: %s", profile);
        n = snprintf(request, sizeof(request), "{\"v\":1,\"op\":\"token\",\"profile\":\"%s\"}",
                     profile);
        if (n < 0 || (size_t)n >= sizeof(request))
                return -ENAMETOOLONG;
        return add_frame(request);
}

static int add_profiles_file(const char *path)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[256];
        int r;

        if (!f)
                return log_error_errno(-errno, "Failed to open %s", path);
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (!line[0])
                        continue;
                r = add_token_request(line);
                if (r < 0)
                        return r;
        }
        return n_frames > 0 ? 0 : log_error_errno(-EINVAL, "%s names no profile.", path);
}

static void frames_free(void)
{
        for (size_t i = 0; i < n_frames; i++)
                buf_free(frames[i]);
        free(frames);
}

static int build_requests(const struct options *o)
{
        if (o->request)
                return add_frame(o->request);
        if (o->profiles_file)
                return add_profiles_file(o->profiles_file);
        return add_token_request(o->profile);
}

static int connect_to(const char *path, int *ret_fd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        size_t len = strlen(path);
        int flags;

        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len + 1);
        /* Connect blocking: a non-blocking connect() to a Unix socket fails with EAGAIN when the
         * listen backlog is momentarily full, which is not worth a retry loop here. */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int set_want_out(int epoll_fd, struct connection *c, bool want)
{
        if (c->want_out == want)
                return 0;
        c->want_out = want;
        if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd,
                      &(struct epoll_event){.events = EPOLLIN | (want ? EPOLLOUT : 0),
                                            .data.ptr = c}) < 0)
                return -errno;
        return 0;
}

/* Sends what is left of the request; waits for EPOLLOUT only when the socket is full. */
static int send_request(int epoll_fd, struct connection *c)
{
        while (c->sent < buf_len(c->frame)) {
                ssize_t n = send(c->fd, buf_data(c->frame) + c->sent, buf_len(c->frame) - c->sent,
                                 MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return set_want_out(epoll_fd, c, true);
                        return -errno;
                }
                c->sent += (size_t)n;
        }
        return set_want_out(epoll_fd, c, false);
}

struct run {
        int epoll_fd;
        uint64_t measure_start; /* end of warm-up */
        uint64_t end;
        struct stats stats;
        bool shown_failure;
};

static int start_request(struct run *run, struct connection *c, uint64_t now)
{
        c->frame = frames[next_frame++ % n_frames];
        c->sent = 0;
        c->start_usec = now;
        return send_request(run->epoll_fd, c);
}

/* Reads what the server sent; on a whole reply records it and sends the next request. */
static int on_readable(struct run *run, struct connection *c)
{
        const uint8_t *payload;
        size_t len;
        uint64_t now;
        bool ok;
        int r;

        r = buf_read_fd(c->in, c->fd);
        if (r == -EAGAIN)
                return 0;
        if (r == 0)
                return log_error_errno(ECONNRESET, "The server closed a connection.");
        if (r < 0)
                return log_error_errno(r, "Failed to read from the server");

        r = wire_frame_peek(c->in, &payload, &len);
        if (r < 0)
                return log_error_errno(r, "The server sent a frame with a bad length");
        if (r == 0)
                return 0;

        now = now_monotonic_usec();
        ok = reply_is_ok(payload, len);
        run->stats.total++;
        if (!ok) {
                run->stats.total_errors++;
                if (run->stats.total == 1) {
                        show_reply("the first reply failed", payload, len);
                        return -EPROTO;
                }
                if (!run->shown_failure) {
                        show_reply("a reply failed (later failures are only counted)", payload,
                                   len);
                        run->shown_failure = true;
                }
        }
        if (now >= run->measure_start && now < run->end) {
                run->stats.measured++;
                if (!ok)
                        run->stats.measured_errors++;
                r = stats_record(&run->stats, now - c->start_usec);
                if (r < 0)
                        return log_error_errno(r, "Failed to record a sample");
        }
        r = wire_frame_consume(c->in, len);
        if (r < 0)
                return r;
        if (buf_len(c->in) > 0 || c->sent < buf_len(c->frame))
                return log_error_errno(EPROTO, "The server replied to a request not sent.");
        if (now >= run->end)
                return 0;
        r = start_request(run, c, now);
        if (r < 0)
                return log_error_errno(r, "Failed to send a request");
        return 0;
}

static int run_load(const struct options *o, struct run *run)
{
        _cleanup_close_ int epoll_fd = -1;
        struct epoll_event events[MAX_EVENTS];
        struct connection *conns;
        uint64_t now;
        int r = 0;

        conns = calloc(o->connections, sizeof(*conns));
        if (!conns)
                return log_error_errno(ENOMEM, "Out of memory.");
        for (unsigned i = 0; i < o->connections; i++)
                conns[i].fd = -1;

        epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0) {
                r = log_error_errno(errno, "epoll_create1() failed");
                goto finish;
        }
        run->epoll_fd = epoll_fd;

        for (unsigned i = 0; i < o->connections; i++) {
                struct connection *c = &conns[i];

                r = connect_to(o->socket_path, &c->fd);
                if (r < 0) {
                        log_error_errno(r, "Failed to connect to %s", o->socket_path);
                        goto finish;
                }
                r = buf_new(WIRE_HEADER_SIZE + WIRE_FRAME_MAX, &c->in);
                if (r < 0)
                        goto finish;
                if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, c->fd,
                              &(struct epoll_event){.events = EPOLLIN, .data.ptr = c}) < 0) {
                        r = log_error_errno(errno, "epoll_ctl() failed");
                        goto finish;
                }
        }

        now = now_monotonic_usec();
        run->measure_start = now + (uint64_t)(o->warmup * (double)USEC_PER_SEC);
        run->end = run->measure_start + (uint64_t)(o->seconds * (double)USEC_PER_SEC);
        for (unsigned i = 0; i < o->connections; i++) {
                r = start_request(run, &conns[i], now);
                if (r < 0) {
                        log_error_errno(r, "Failed to send a request");
                        goto finish;
                }
        }

        while (now < run->end) {
                int timeout = (int)((run->end - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
                int n = epoll_wait(epoll_fd, events, MAX_EVENTS, timeout);

                if (n < 0 && errno != EINTR) {
                        r = log_error_errno(errno, "epoll_wait() failed");
                        goto finish;
                }
                for (int i = 0; i < n; i++) {
                        struct connection *c = events[i].data.ptr;

                        if (events[i].events & EPOLLOUT) {
                                r = send_request(epoll_fd, c);
                                if (r < 0) {
                                        log_error_errno(r, "Failed to send a request");
                                        goto finish;
                                }
                        }
                        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                                r = on_readable(run, c);
                                if (r < 0)
                                        goto finish;
                        }
                }
                now = now_monotonic_usec();
        }
        r = 0;

finish:
        /* Requests still in flight at the end are dropped with their connections. */
        for (unsigned i = 0; i < o->connections; i++) {
                safe_close(conns[i].fd);
                buf_free(conns[i].in);
        }
        free(conns);
        return r;
}

static int parse_seconds(const char *s, bool allow_zero, double *ret)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0 ||
            (!allow_zero && v == 0) || v > 86400)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void usage(FILE *f, const char *argv0)
{
        fprintf(f,
                "Usage: %s --socket PATH --connections N --seconds T [--profile NAME]\n"
                "          [--profiles FILE] [--request JSON] [--warmup S]\n"
                "Closed-loop load on a credbroker-protocol socket. Each connection sends one\n"
                "request, waits for the reply, repeats. Defaults: --connections 8, --seconds 5,\n"
                "--warmup 1, --socket $CREDBROKER_SOCKET, --profile $CREDBROKER_PROFILE,\n"
                "--request {\"v\":1,\"op\":\"token\",\"profile\":\"<profile>\"}.\n"
                "--profiles FILE: a token request for each name in FILE (one per line), in\n"
                "turn across all connections.\n",
                argv0);
}

static int parse_options(int argc, char **argv, struct options *o)
{
        static const struct option long_options[] = {
            {"socket", required_argument, NULL, 's'},
            {"connections", required_argument, NULL, 'c'},
            {"seconds", required_argument, NULL, 't'},
            {"warmup", required_argument, NULL, 'w'},
            {"profile", required_argument, NULL, 'p'},
            {"request", required_argument, NULL, 'r'},
            {"profiles", required_argument, NULL, 'P'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        uint32_t n;
        int opt;

        *o = (struct options){
            .socket_path = secure_getenv("CREDBROKER_SOCKET"),
            .connections = 8,
            .seconds = 5,
            .warmup = 1,
            .profile = secure_getenv("CREDBROKER_PROFILE"),
        };
        while ((opt = getopt_long(argc, argv, "s:c:t:w:p:P:r:h", long_options, NULL)) >= 0) {
                switch (opt) {
                case 's':
                        o->socket_path = optarg;
                        break;
                case 'c':
                        if (parse_u32(optarg, &n) < 0 || n == 0 || n > MAX_CONNECTIONS)
                                return log_error_errno(EINVAL, "--connections must be 1..%d.",
                                                       MAX_CONNECTIONS);
                        o->connections = n;
                        break;
                case 't':
                        if (parse_seconds(optarg, false, &o->seconds) < 0)
                                return log_error_errno(EINVAL, "--seconds must be in (0, 86400].");
                        break;
                case 'w':
                        if (parse_seconds(optarg, true, &o->warmup) < 0)
                                return log_error_errno(EINVAL, "--warmup must be in [0, 86400].");
                        break;
                case 'p':
                        o->profile = optarg;
                        break;
                case 'r':
                        o->request = optarg;
                        break;
                case 'P':
                        o->profiles_file = optarg;
                        break;
                case 'h':
                        usage(stdout, argv[0]);
                        exit(0);
                default:
                        usage(stderr, argv[0]);
                        return -EINVAL;
                }
        }
        if (optind < argc)
                return log_error_errno(EINVAL, "Unexpected argument: %s", argv[optind]);
        if (!o->socket_path || !o->socket_path[0])
                return log_error_errno(EINVAL, "No socket: give --socket or CREDBROKER_SOCKET.");
        if (o->request) {
                _cleanup_json_ cJSON *json = NULL;

                if (json_parse(o->request, strlen(o->request), &json) < 0 || !cJSON_IsObject(json))
                        return log_error_errno(EINVAL, "--request is not a JSON object.");
        } else if (!o->profiles_file && (!o->profile || !o->profile[0])) {
                return log_error_errno(EINVAL, "No profile: give --profile, --profiles, --request "
                                               "or CREDBROKER_PROFILE.");
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct options o;
        struct run run = {.stats.rng = 0x9e3779b97f4a7c15ull};
        uint32_t p50, p99, p999, max;
        double rps;
        int r;

        log_set_ident("bench-loadgen");
        json_init();
        if (parse_options(argc, argv, &o) < 0)
                return 2;
        r = build_requests(&o);
        if (r < 0) {
                log_error_errno(r, "Failed to build the request");
                frames_free();
                return 2;
        }

        r = run_load(&o, &run);
        frames_free();
        if (r < 0) {
                free(run.stats.samples);
                return 1;
        }
        if (run.stats.measured == 0) {
                log_error("No reply completed in the measurement window.");
                free(run.stats.samples);
                return 1;
        }

        qsort(run.stats.samples, run.stats.n_samples, sizeof(uint32_t), compare_u32);
        p50 = percentile(run.stats.samples, run.stats.n_samples, 50);
        p99 = percentile(run.stats.samples, run.stats.n_samples, 99);
        p999 = percentile(run.stats.samples, run.stats.n_samples, 99.9);
        max = run.stats.max;
        free(run.stats.samples);
        rps = (double)run.stats.measured / o.seconds;

        printf("requests=%" PRIu64 " seconds=%.3f rps=%.1f p50_us=%" PRIu32 " p99_us=%" PRIu32
               " errors=%" PRIu64 " connections=%u\n",
               run.stats.measured, o.seconds, rps, p50, p99, run.stats.measured_errors,
               o.connections);
        printf("# %" PRIu64
               " requests in %.1f s over %u connections: %.0f req/s; latency p50 %" PRIu32
               " us, p99 %" PRIu32 " us, p99.9 %" PRIu32 " us, max %" PRIu32 " us; %" PRIu64
               " failed\n",
               run.stats.measured, o.seconds, o.connections, rps, p50, p99, p999, max,
               run.stats.measured_errors);
        fflush(stdout);

        /* More than 0.1% failures (warm-up included) means the figures are not about serving
         * tokens any more. */
        if (run.stats.total_errors * 1000 > run.stats.total) {
                log_error("%" PRIu64 " of %" PRIu64 " replies failed (more than 0.1%%); the "
                          "first failure is shown above.",
                          run.stats.total_errors, run.stats.total);
                return 1;
        }
        return 0;
}
