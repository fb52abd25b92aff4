/* Unit tests for common/buf: the maximum is a hard limit, growth and compaction keep the
 * contents, the front getters are bounds-checked, and the fd helpers report EOF, EAGAIN and a
 * full buffer the way the event loop expects. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "tap.h"

static void fill_pattern(uint8_t *p, size_t n, size_t start)
{
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)((start + i) * 131u + 7u);
}

static int check_pattern(const uint8_t *p, size_t n, size_t start)
{
        for (size_t i = 0; i < n; i++)
                if (p[i] != (uint8_t)((start + i) * 131u + 7u))
                        return 0;
        return 1;
}

static void set_nonblock(int fd)
{
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                abort();
}

static void test_new(void)
{
        struct buf *b = (struct buf *)0x1;

        is_int(buf_new(0, &b), -EINVAL, "buf_new refuses a zero maximum");
        ok(b == (struct buf *)0x1, "buf_new leaves ret untouched on failure");

        is_int(buf_new(10, &b), 0, "buf_new(10)");
        is_int(buf_len(b), 0, "a new buffer is empty");
        is_int(buf_max(b), 10, "buf_max reports the maximum");
        ok(buf_data(b) != NULL, "buf_data of an empty buffer is not NULL");
        buf_free(b);
        buf_free(NULL); /* must be a no-op */
        ok(1, "buf_free(NULL) is a no-op");
}

static void test_max(void)
{
        _cleanup_buf_ struct buf *b = NULL;
        uint8_t data[16];

        fill_pattern(data, sizeof(data), 0);
        if (buf_new(10, &b) < 0)
                abort();

        is_int(buf_put(b, data, 0), 0, "putting 0 bytes succeeds");
        is_int(buf_len(b), 0, "putting 0 bytes adds nothing");
        is_int(buf_put(b, data, 11), -EMSGSIZE, "put of max+1 bytes into an empty buffer");
        is_int(buf_len(b), 0, "failed put wrote nothing");
        is_int(buf_put(b, data, 8), 0, "put 8 of 10");
        is_int(buf_put(b, data + 8, 3), -EMSGSIZE, "put past max fails");
        is_int(buf_len(b), 8, "failed put left the length alone");
        ok(check_pattern(buf_data(b), 8, 0), "failed put left the contents alone");
        is_int(buf_put_u32be(b, 0xdeadbeef), -EMSGSIZE, "u32 past max fails");
        is_int(buf_len(b), 8, "failed u32 put wrote nothing");
        is_int(buf_put(b, data + 8, 2), 0, "put up to exactly max");
        is_int(buf_len(b), 10, "buffer holds exactly max");
        ok(check_pattern(buf_data(b), 10, 0), "contents at max are intact");
        is_int(buf_put(b, data, 1), -EMSGSIZE, "a full buffer takes not one more byte");
        is_int(buf_put(b, data, SIZE_MAX), -EMSGSIZE, "a huge length does not wrap around");

        /* Consuming makes room again, up to max unconsumed bytes. */
        is_int(buf_consume(b, 4), 0, "consume 4");
        is_int(buf_put(b, data + 10, 4), 0, "room freed by consume can be reused");
        is_int(buf_put(b, data, 1), -EMSGSIZE, "max counts unconsumed bytes");
        is_int(buf_len(b), 10, "length after refill");
        ok(check_pattern(buf_data(b), 10, 4), "contents after compaction");

        buf_reset(b);
        is_int(buf_len(b), 0, "buf_reset empties");
        is_int(buf_put(b, data, 10), 0, "a reset buffer takes max bytes again");
}

static void test_u32(void)
{
        _cleanup_buf_ struct buf *b = NULL;
        uint32_t v = 0x5a5a5a5a;

        if (buf_new(64, &b) < 0)
                abort();
        is_int(buf_peek_u32be(b, &v), -EBADMSG, "peek u32 on an empty buffer");
        is_int(v, 0x5a5a5a5a, "failed peek leaves ret untouched");
        for (uint8_t i = 1; i <= 3; i++) {
                buf_put(b, &i, 1);
                is_int(buf_peek_u32be(b, &v), -EBADMSG, "peek u32 with fewer than 4 bytes");
        }
        is_int(v, 0x5a5a5a5a, "failed peeks leave ret untouched");
        uint8_t four = 4;
        buf_put(b, &four, 1);
        is_int(buf_peek_u32be(b, &v), 0, "peek u32 with 4 bytes");
        is_int(v, 0x01020304, "peek reads big-endian");
        is_int(buf_len(b), 4, "peek does not consume");

        buf_reset(b);
        is_int(buf_put_u32be(b, 0xfffffffe), 0, "put u32");
        is_int(buf_len(b), 4, "u32 is 4 bytes");
        ok(memcmp(buf_data(b), "\xff\xff\xff\xfe", 4) == 0, "put u32 writes big-endian");
        is_int(buf_peek_u32be(b, &v), 0, "peek back");
        is_int(v, 0xfffffffe, "u32 round trip");
        is_int(buf_consume(b, 1), 0, "consume 1");
        is_int(buf_peek_u32be(b, &v), -EBADMSG, "peek after consume sees only 3 bytes");
}

static void test_consume(void)
{
        _cleanup_buf_ struct buf *b = NULL;
        const uint8_t *p;

        if (buf_new(64, &b) < 0)
                abort();
        is_int(buf_consume(b, 0), 0, "consume 0 of a never-used buffer");
        is_int(buf_consume(b, 1), -EBADMSG, "consume 1 of an empty buffer");
        buf_put(b, "abcdef", 6);
        is_int(buf_consume(b, 7), -EBADMSG, "consume past the end fails");
        is_int(buf_len(b), 6, "failed consume consumed nothing");
        is_int(buf_consume(b, SIZE_MAX), -EBADMSG, "consume SIZE_MAX fails");
        p = buf_data(b);
        is_int(buf_consume(b, 2), 0, "consume 2");
        is_int(buf_len(b), 4, "4 left");
        ok(memcmp(buf_data(b), "cdef", 4) == 0, "consume advances the front");
        /* The buffer memory is still ours: consumed bytes must have been wiped. */
        ok(p[0] == 0 && p[1] == 0, "consumed bytes are wiped");
        is_int(buf_consume(b, 0), 0, "consume 0");
        is_int(buf_len(b), 4, "consume 0 changes nothing");
        is_int(buf_consume(b, 4), 0, "consume exactly the rest");
        is_int(buf_len(b), 0, "empty after consuming everything");
        ok(p[2] == 0 && p[5] == 0, "everything consumed is wiped");
        is_int(buf_consume(b, 1), -EBADMSG, "consume from the drained buffer fails");
        is_int(buf_put(b, "xy", 2), 0, "put after draining");
        ok(memcmp(buf_data(b), "xy", 2) == 0 && buf_len(b) == 2, "contents after draining");
}

static void test_growth(void)
{
        _cleanup_buf_ struct buf *b = NULL;
        static uint8_t chunk[70000];
        size_t put = 0, consumed = 0;
        int good = 1;

        if (buf_new(1u << 20, &b) < 0)
                abort();
        /* Growing from the initial allocation through many doublings, chunk sizes of all
         * shapes. */
        for (size_t step = 1; put < 600000; step = step * 3 + 1) {
                size_t n = step % 65537 + 1;
                fill_pattern(chunk, n, put);
                if (buf_put(b, chunk, n) < 0) {
                        good = 0;
                        break;
                }
                put += n;
                if (buf_len(b) != put || !check_pattern(buf_data(b), put, 0))
                        good = 0;
        }
        ok(good, "growth preserves contents");

        /* Interleaved consume and put: exercises compaction (memmove) and growth with an
         * offset. */
        buf_reset(b);
        put = consumed = 0;
        good = 1;
        for (size_t i = 0; i < 400; i++) {
                size_t n = (i * 7919) % 5000 + 1;
                fill_pattern(chunk, n, put);
                if (buf_put(b, chunk, n) < 0) {
                        good = 0;
                        break;
                }
                put += n;
                size_t c = (i * 104729) % (buf_len(b) + 1);
                if (buf_consume(b, c) < 0)
                        good = 0;
                consumed += c;
                if (buf_len(b) != put - consumed ||
                    !check_pattern(buf_data(b), buf_len(b), consumed))
                        good = 0;
        }
        ok(good, "interleaved put/consume keeps the unconsumed bytes in order");

        /* Compaction within the current allocation. */
        _cleanup_buf_ struct buf *c = NULL;
        if (buf_new(256, &c) < 0)
                abort();
        fill_pattern(chunk, 200, 0);
        buf_put(c, chunk, 200);
        buf_consume(c, 150);
        fill_pattern(chunk, 206, 200);
        is_int(buf_put(c, chunk, 206), 0, "put that needs compaction to fit within max");
        is_int(buf_len(c), 256, "length after compaction");
        ok(check_pattern(buf_data(c), 256, 150), "compaction keeps contents");

        /* Growth while the front has been consumed: the unconsumed bytes move to the start of
         * the new allocation. */
        _cleanup_buf_ struct buf *g = NULL;
        if (buf_new(4096, &g) < 0)
                abort();
        fill_pattern(chunk, 200, 0);
        buf_put(g, chunk, 200);
        buf_consume(g, 100);
        fill_pattern(chunk, 300, 200);
        is_int(buf_put(g, chunk, 300), 0, "put that needs growth after a consume");
        is_int(buf_len(g), 400, "length after growth with an offset");
        ok(check_pattern(buf_data(g), 400, 100), "growth after a consume keeps the right bytes");

        /* A maximum that is not a power of two, below and above the initial size. */
        _cleanup_buf_ struct buf *d = NULL;
        if (buf_new(1000, &d) < 0)
                abort();
        fill_pattern(chunk, 1000, 0);
        for (size_t i = 0; i < 1000; i += 100)
                buf_put(d, chunk + i, 100);
        is_int(buf_len(d), 1000, "filled an odd maximum in steps");
        ok(check_pattern(buf_data(d), 1000, 0), "odd maximum contents");
        is_int(buf_put(d, chunk, 1), -EMSGSIZE, "odd maximum enforced");

        _cleanup_buf_ struct buf *e = NULL;
        if (buf_new(3, &e) < 0)
                abort();
        is_int(buf_put(e, "abc", 3), 0, "tiny maximum");
        is_int(buf_put(e, "d", 1), -EMSGSIZE, "tiny maximum enforced");
}

static void test_fd(void)
{
        _cleanup_buf_ struct buf *b = NULL;
        int sv[2];
        char tmp[64];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        set_nonblock(sv[0]);
        if (buf_new(8, &b) < 0)
                abort();

        is_int(buf_read_fd(b, sv[0]), -EAGAIN, "read of a non-blocking empty socket: -EAGAIN");
        is_int(buf_len(b), 0, "nothing added on EAGAIN");

        if (write(sv[1], "hello", 5) != 5)
                abort();
        is_int(buf_read_fd(b, sv[0]), 5, "read returns the bytes that were there");
        ok(buf_len(b) == 5 && memcmp(buf_data(b), "hello", 5) == 0, "read bytes are in order");
        is_int(buf_read_fd(b, sv[0]), -EAGAIN, "nothing more to read");

        if (write(sv[1], "0123456789", 10) != 10)
                abort();
        is_int(buf_read_fd(b, sv[0]), 3, "read stops at the maximum");
        ok(buf_len(b) == 8 && memcmp(buf_data(b), "hello012", 8) == 0,
           "read appends after existing bytes");
        is_int(buf_read_fd(b, sv[0]), -EMSGSIZE, "read into a full buffer: -EMSGSIZE");
        is_int(buf_len(b), 8, "full buffer unchanged");
        buf_consume(b, 5);
        is_int(buf_read_fd(b, sv[0]), 5, "read after consume fills the freed room");
        ok(buf_len(b) == 8 && memcmp(buf_data(b), "0123456", 7) == 0 && buf_data(b)[7] == '7',
           "read after consume keeps order");
        buf_consume(b, 8);
        is_int(buf_read_fd(b, sv[0]), 2, "rest of the stream");
        ok(memcmp(buf_data(b), "89", 2) == 0, "rest of the stream contents");

        close(sv[1]);
        is_int(buf_read_fd(b, sv[0]), 0, "EOF reads 0");
        is_int(buf_len(b), 2, "EOF adds nothing");
        close(sv[0]);

        is_int(buf_read_fd(b, -1), -EBADF, "read of a bad fd: -EBADF");

        /* Writing. */
        _cleanup_buf_ struct buf *w = NULL;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        if (buf_new(64, &w) < 0)
                abort();
        is_int(buf_write_fd(w, sv[0]), 0, "writing an empty buffer writes 0");
        buf_put(w, "hello world", 11);
        is_int(buf_write_fd(w, sv[0]), 11, "write sends everything");
        is_int(buf_len(w), 0, "what was sent is consumed");
        ok(read(sv[1], tmp, sizeof(tmp)) == 11 && memcmp(tmp, "hello world", 11) == 0,
           "peer reads what was written");

        close(sv[1]);
        buf_put(w, "x", 1);
        /* MSG_NOSIGNAL: a peer that went away is -EPIPE, not a SIGPIPE killing us. */
        is_int(buf_write_fd(w, sv[0]), -EPIPE, "write to a closed peer: -EPIPE, no SIGPIPE");
        is_int(buf_len(w), 1, "failed write consumes nothing");
        close(sv[0]);
        is_int(buf_write_fd(w, -1), -EBADF, "write to a bad fd: -EBADF");
}

/* Short writes: a non-blocking socket takes part of a large buffer; what was taken is
 * consumed, the rest waits, and the peer sees the exact stream. */
static void test_partial_write(void)
{
        enum { TOTAL = 1 << 20 };
        _cleanup_buf_ struct buf *w = NULL;
        static uint8_t data[TOTAL], got[TOTAL];
        size_t received = 0, sent = 0;
        int sv[2], r, saw_eagain = 0, good = 1;
        int sndbuf = 4096;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        set_nonblock(sv[0]);
        set_nonblock(sv[1]);
        if (buf_new(TOTAL, &w) < 0)
                abort();
        fill_pattern(data, TOTAL, 0);
        is_int(buf_put(w, data, TOTAL), 0, "put 1 MiB");

        /* Fill the socket first, without reading, until it takes nothing more. */
        for (int i = 0; i < 100000 && !saw_eagain; i++) {
                r = buf_write_fd(w, sv[0]);
                if (r == -EAGAIN)
                        saw_eagain = 1;
                else if (r <= 0)
                        break;
                else
                        sent += (size_t)r;
        }
        ok(saw_eagain, "a full socket reports -EAGAIN");
        ok(sent > 0 && sent < TOTAL, "a full socket took part of the buffer");
        is_int(buf_len(w), TOTAL - sent, "only what was sent is consumed");

        while (received < TOTAL) {
                r = buf_write_fd(w, sv[0]);
                if (r >= 0)
                        sent += (size_t)r;
                else if (r != -EAGAIN) {
                        good = 0;
                        break;
                }
                if (buf_len(w) != TOTAL - sent)
                        good = 0;
                ssize_t n = read(sv[1], got + received, TOTAL - received);
                if (n > 0)
                        received += (size_t)n;
                else if (n == 0 || errno != EAGAIN) {
                        good = 0;
                        break;
                }
        }
        ok(good, "partial writes consume exactly what was sent");
        is_int(buf_len(w), 0, "everything sent in the end");
        ok(received == TOTAL && memcmp(got, data, TOTAL) == 0, "peer got the exact stream");
        close(sv[0]);
        close(sv[1]);
}

int main(void)
{
        /* If MSG_NOSIGNAL were lost, SIGPIPE would kill the test: that is the failure mode. */
        test_new();
        test_max();
        test_u32();
        test_consume();
        test_growth();
        test_fd();
        test_partial_write();
        return done_testing();
}
