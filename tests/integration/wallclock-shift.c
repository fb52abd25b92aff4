/* Test helper, preloaded into credbrokerd by wallclock.test.js (reliability.md P9): shifts the
 * process's wall clock (CLOCK_REALTIME, time(), gettimeofday()) by the seconds written in the
 * file $CREDBROKER_TEST_WALL_OFFSET_FILE, read again on every call, so a test can step the
 * broker's wall clock both ways without touching the machine's. The monotonic and boot-time
 * clocks pass through untouched: they are what the broker's expiry must depend on. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long offset_seconds(void)
{
        const char *path = secure_getenv("CREDBROKER_TEST_WALL_OFFSET_FILE");
        char text[32];
        ssize_t n;
        int fd;

        if (!path)
                return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, text, sizeof(text) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        text[n] = 0;
        return strtoll(text, NULL, 10);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
        static int (*real)(clockid_t, struct timespec *);
        int r;

        /* POSIX's way to turn dlsym()'s object pointer into a function pointer. */
        if (!real)
                *(void **)&real = dlsym(RTLD_NEXT, "clock_gettime");
        r = real(id, ts);
        if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
                ts->tv_sec += (time_t)offset_seconds();
        return r;
}

time_t time(time_t *ret)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        if (ret)
                *ret = ts.tv_sec;
        return ts.tv_sec;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
        struct timespec ts;

        (void)tz;
        clock_gettime(CLOCK_REALTIME, &ts);
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
        return 0;
}
