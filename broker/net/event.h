/* The broker's single epoll loop: every fd (listener, clients, curl sockets, timers, signals)
 * is a `struct watch` whose callback runs when the fd is ready. */
#pragma once

#include <stdint.h>

struct watch;
typedef void (*watch_fn)(struct watch *w, uint32_t events);

struct watch {
        int fd;
        watch_fn fn;
};

int event_loop_new(int *ret_epfd);
int event_add(int epfd, struct watch *w, uint32_t events);
int event_modify(int epfd, struct watch *w, uint32_t events);
void event_remove(int epfd, struct watch *w);
/* Removes w from the loop, marks it dead and frees `owner` (the object holding w) with
 * free_fn after the current batch, so an event of the same batch never touches freed
 * memory. The caller closes the fd. */
void event_release(int epfd, struct watch *w, void *owner, void (*free_fn)(void *));
/* Frees what event_release() deferred; dispatch does it after each batch. */
void event_run_deferred(void);
/* Waits once and dispatches ready watches. timeout_ms -1 waits forever. */
int event_dispatch(int epfd, int timeout_ms);
