/* The spool's disk thread; see spool-sync.h. One mutex guards two lists: `queue` (submitted)
 * and `done` (finished, not yet delivered); the eventfd tells the loop that `done` has jobs. */
#include "spool-sync.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "util.h"

struct sync_job {
        spool_sync_run_fn *run;
        spool_sync_done_fn *done;
        void *arg;
        int result;
        struct sync_job *next;
};

struct spool_sync {
        int epfd;
        struct watch wake;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t changed;
        struct sync_job *queue, **queue_tail;
        struct sync_job *done, **done_tail;
        bool stopping;
};

static struct sync_job *take_first(struct sync_job **head, struct sync_job ***tail)
{
        struct sync_job *j = *head;

        *head = j->next;
        if (!*head)
                *tail = head;
        j->next = NULL;
        return j;
}

static void *sync_main(void *userdata)
{
        struct spool_sync *s = userdata;

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->queue && !s->stopping)
                        pthread_cond_wait(&s->changed, &s->lock);
                if (!s->queue)
                        break;
                struct sync_job *j = take_first(&s->queue, &s->queue_tail);
                pthread_mutex_unlock(&s->lock);
                j->result = j->run(j->arg);
                pthread_mutex_lock(&s->lock);
                *s->done_tail = j;
                s->done_tail = &j->next;
                (void)eventfd_write(s->wake.fd, 1);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void deliver_done(struct spool_sync *s)
{
        struct sync_job *list;
        eventfd_t count;

        (void)eventfd_read(s->wake.fd, &count);
        pthread_mutex_lock(&s->lock);
        list = s->done;
        s->done = NULL;
        s->done_tail = &s->done;
        pthread_mutex_unlock(&s->lock);
        while (list) {
                struct sync_job *j = list;
                list = j->next;
                j->done(j->arg, j->result);
                free(j);
        }
}

static void on_wake(struct watch *w, uint32_t events)
{
        (void)events;
        deliver_done(container_of(w, struct spool_sync, wake));
}

int spool_sync_start(int epfd, struct spool_sync **ret)
{
        struct spool_sync *s = calloc(1, sizeof(*s));
        sigset_t all, saved;
        int r;

        if (!s)
                return -ENOMEM;
        s->epfd = epfd;
        s->queue_tail = &s->queue;
        s->done_tail = &s->done;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->changed, NULL);
        s->wake = (struct watch){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = on_wake};
        if (s->wake.fd < 0 || event_add(epfd, &s->wake, EPOLLIN) < 0) {
                r = -errno;
                spool_sync_stop(s);
                return r ? r : -EIO;
        }
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&s->thread, NULL, sync_main, s);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                spool_sync_stop(s);
                return r;
        }
        s->started = true;
        *ret = s;
        return 0;
}

int spool_sync_submit(struct spool_sync *s, spool_sync_run_fn *run, spool_sync_done_fn *done,
                      void *arg)
{
        struct sync_job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        *j = (struct sync_job){.run = run, .done = done, .arg = arg};
        pthread_mutex_lock(&s->lock);
        if (s->stopping) {
                pthread_mutex_unlock(&s->lock);
                free(j);
                return -ECANCELED;
        }
        *s->queue_tail = j;
        s->queue_tail = &j->next;
        pthread_cond_signal(&s->changed);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

void spool_sync_stop(struct spool_sync *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->changed);
        pthread_mutex_unlock(&s->lock);
        if (s->started)
                pthread_join(s->thread, NULL);
        if (s->wake.fd >= 0) {
                deliver_done(s);
                event_remove(s->epfd, &s->wake);
                close(s->wake.fd);
        }
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->changed);
        free(s);
}
