/* The epoll loop; see event.h. */
#include "event.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "log.h"

#define EVENT_BATCH 64

struct deferred {
        void *owner;
        void (*free_fn)(void *);
        struct deferred *next;
};

static struct deferred *deferred_list;

void event_run_deferred(void)
{
        while (deferred_list) {
                struct deferred *d = deferred_list;
                deferred_list = d->next;
                d->free_fn(d->owner);
                free(d);
        }
}

int event_loop_new(int *ret_epfd)
{
        int fd = epoll_create1(EPOLL_CLOEXEC);

        if (fd < 0)
                return -errno;
        *ret_epfd = fd;
        return 0;
}

int event_add(int epfd, struct watch *w, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.ptr = w};

        return epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0 ? -errno : 0;
}

int event_modify(int epfd, struct watch *w, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.ptr = w};

        return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

void event_remove(int epfd, struct watch *w)
{
        if (epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL) < 0 && errno != EBADF && errno != ENOENT)
                log_debug_errno(-errno, "epoll_ctl(DEL) failed");
}

void event_release(int epfd, struct watch *w, void *owner, void (*free_fn)(void *))
{
        struct deferred *d;

        if (w->fd >= 0)
                event_remove(epfd, w);
        w->fd = -1;
        d = malloc(sizeof(*d));
        if (!d) {
                /* Out of memory: leaking is safer than a use after free. */
                log_error("Out of memory releasing a watch.");
                return;
        }
        *d = (struct deferred){owner, free_fn, deferred_list};
        deferred_list = d;
}

int event_dispatch(int epfd, int timeout_ms)
{
        struct epoll_event events[EVENT_BATCH];
        int n;

        n = epoll_wait(epfd, events, EVENT_BATCH, timeout_ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        for (int i = 0; i < n; i++) {
                struct watch *w = events[i].data.ptr;
                if (w->fd >= 0) /* not released earlier in this batch */
                        w->fn(w, events[i].events);
        }
        event_run_deferred();
        return n;
}
