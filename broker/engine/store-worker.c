/* The store worker thread and its hand-over to the event loop; see store-worker.h.
 *
 * Two lists under one mutex: `queue` (submitted, not yet started; FIFO) and `done` (finished,
 * not yet delivered). The thread takes jobs from the queue one at a time and runs them without
 * the lock, so a stalled token blocks only the thread. Each finished job goes on `done` and
 * bumps the eventfd; the loop drains `done` and runs the callbacks. The loop never waits for
 * the thread except in store_worker_stop(), and then only for a bounded time. */
#include "store-worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "log.h"

/* Each account has at most one job outstanding (refresh.c's single flight), so this bounds the
 * number of accounts in use at once rather than the rate of anything. */
#define STORE_QUEUE_MAX   4096
#define TICK_MSEC         500
#define STORE_WORKER_NICE 5

struct store_worker {
        struct store *store;
        int epfd;
        struct watch wake;  /* eventfd: results are waiting in `done` */
        struct watch timer; /* timerfd: ticks while jobs are outstanding */
        void (*tick)(void *userdata);
        void *tick_userdata;
        pthread_t thread;

        pthread_mutex_t lock;
        pthread_cond_t changed; /* the queue got a job, stopping was set, or the thread exited */
        struct store_job *queue, **queue_tail;
        size_t queued;
        struct store_job *done, **done_tail;
        struct store_job *running; /* the job the thread is in, for the log when it is stuck */
        bool stopping;
        bool exited;

        /* loop thread only */
        size_t outstanding; /* submitted and not yet delivered */
        bool timer_armed;
};

int store_job_new(enum store_job_kind kind, const char *account, struct store_job **ret)
{
        struct store_job *job;

        if (strlen(account) > NAME_MAX_LEN)
                return -EINVAL;
        job = calloc(1, sizeof(*job));
        if (!job)
                return -ENOMEM;
        job->kind = kind;
        memcpy(job->account, account, strlen(account) + 1);
        *ret = job;
        return 0;
}

void store_job_free(struct store_job *job)
{
        if (!job)
                return;
        secret_free(job->refresh_token);
        free(job->meta_json);
        store_names_free(job->names, job->n_names);
        free(job);
}

/* ---- the worker thread ---- */

static int list_accounts(struct store *s, struct store_job *job)
{
        store_names_free(job->names, job->n_names);
        job->names = NULL;
        job->n_names = 0;
        return store_list_accounts(s, &job->names, &job->n_names);
}

/* Keeps in job->names the accounts whose refresh token was written before job->stale_before. An
 * account without a refresh token (app-only) has nothing to keep alive; one whose write time is
 * unknown is refreshed to be safe. */
static int keep_stale(struct store *s, struct store_job *job)
{
        size_t kept = 0;

        for (size_t i = 0; i < job->n_names; i++) {
                struct store_refresh_token_info info;

                if (store_refresh_token_info(s, job->names[i], &info) == 0 &&
                    info.stored_at < job->stale_before)
                        job->names[kept++] = job->names[i];
                else
                        free(job->names[i]);
        }
        job->n_names = kept;
        return 0;
}

/* The marker only explains a later reauth_required: a refresh goes ahead without it. */
static void mark_refresh(struct store *s, struct store_job *job)
{
        int r = store_mark_refresh(s, job->account, job->generation, &job->interrupted);

        if (r < 0) {
                job->interrupted = false;
                log_warning_errno(r, "Account %s: cannot write the refresh marker", job->account);
        }
}

static int run_job_once(struct store *s, struct store_job *job)
{
        int r;

        switch (job->kind) {
        case STORE_JOB_LIST_ACCOUNTS:
                return list_accounts(s, job);
        case STORE_JOB_KEEP_STALE:
                return keep_stale(s, job);
        case STORE_JOB_GET_META:
                return store_get_meta(s, job->account, &job->meta_json);
        case STORE_JOB_READ_REFRESH_TOKEN:
                r = store_read_refresh_token(s, job->account, &job->refresh_token,
                                             &job->generation);
                if (r >= 0 && job->mark_refresh)
                        mark_refresh(s, job);
                return r;
        case STORE_JOB_WRITE_REFRESH_TOKEN:
                r = store_write_refresh_token(s, job->account, job->refresh_token,
                                              &job->generation);
                if (r >= 0 && job->mark_refresh)
                        mark_refresh(s, job);
                return r;
        case STORE_JOB_CLEAR_REFRESH_MARK:
                return store_mark_refresh(s, job->account, 0, NULL);
        case STORE_JOB_CALL:
                return job->call ? job->call(s, job->call_arg) : -EINVAL;
        }
        return -EINVAL;
}

static int run_job(struct store *s, struct store_job *job)
{
        int r = run_job_once(s, job);

        /* The session went away in the middle of the job (a search at its start would have
         * reopened it already): open it again and run the job once more. Each job is safe to
         * repeat; a write that got as far as creating its generation leaves an unverified
         * object that the repeated write numbers past and destroys (design.md §6). */
        if (r < 0 && store_session_lost(s) && store_ensure_session(s) == 0)
                r = run_job_once(s, job);
        return r;
}

static void *worker_main(void *userdata)
{
        struct store_worker *w = userdata;
        static const uint64_t one = 1;

        /* Its jobs (HSM writes, an audit checkpoint's signature every 1,000 records, 0.3 ms each
         * in SoftHSM2) can wait a moment; a client answered from the cache cannot. At equal
         * priority the scheduler runs this thread on the event loop's CPU, which then answers
         * 5 % fewer clients under load. A lower priority (never raised again) lets it run
         * beside the loop instead; it still gets a quarter of a CPU both want. */
        if (setpriority(PRIO_PROCESS, (id_t)gettid(), STORE_WORKER_NICE) < 0)
                log_debug_errno(-errno, "Could not lower the store worker's priority");
        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct store_job *job;

                while (!w->queue && !w->stopping)
                        pthread_cond_wait(&w->changed, &w->lock);
                if (!w->queue)
                        break; /* stopping, and nothing left that must still run */
                job = w->queue;
                w->queue = job->next;
                if (!w->queue)
                        w->queue_tail = &w->queue;
                w->queued--;
                w->running = job;
                pthread_mutex_unlock(&w->lock);

                job->next = NULL;
                job->result = run_job(w->store, job);

                pthread_mutex_lock(&w->lock);
                w->running = NULL;
                *w->done_tail = job;
                w->done_tail = &job->next;
                /* An eventfd write fails only when the counter would overflow, which cannot
                 * happen with the loop reading it. */
                (void)!write(w->wake.fd, &one, sizeof(one));
                if (!w->stopping) {
                        /* Between jobs, never inside one: no job holds an object handle now.
                         * SoftHSM2 gives back the memory of destroyed objects (store.h). */
                        pthread_mutex_unlock(&w->lock);
                        (void)store_reopen_if_due(w->store);
                        pthread_mutex_lock(&w->lock);
                }
        }
        w->exited = true;
        pthread_cond_broadcast(&w->changed);
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* ---- the loop side ---- */

static void arm_timer(struct store_worker *w, bool on)
{
        struct itimerspec spec = {0};

        if (on == w->timer_armed)
                return;
        if (on) {
                spec.it_interval.tv_nsec = TICK_MSEC * 1000000L;
                spec.it_value = spec.it_interval;
        }
        if (timerfd_settime(w->timer.fd, 0, &spec, NULL) < 0) {
                log_warning_errno(-errno, "Failed to set the store worker's timer");
                return;
        }
        w->timer_armed = on;
}

static struct store_job *take_done(struct store_worker *w)
{
        struct store_job *list;

        pthread_mutex_lock(&w->lock);
        list = w->done;
        w->done = NULL;
        w->done_tail = &w->done;
        pthread_mutex_unlock(&w->lock);
        return list;
}

static void deliver(struct store_worker *w, struct store_job *list)
{
        while (list) {
                struct store_job *job = list;

                list = job->next;
                job->next = NULL;
                w->outstanding--;
                job->done(job, job->userdata);
                store_job_free(job);
        }
        if (w->outstanding == 0)
                arm_timer(w, false);
}

static void on_wake(struct watch *watch, uint32_t events)
{
        struct store_worker *w =
            (struct store_worker *)((char *)watch - offsetof(struct store_worker, wake));
        uint64_t count;

        (void)!read(watch->fd, &count, sizeof(count));
        deliver(w, take_done(w));
}

static void on_timer(struct watch *watch, uint32_t events)
{
        struct store_worker *w =
            (struct store_worker *)((char *)watch - offsetof(struct store_worker, timer));
        uint64_t expirations;

        (void)!read(watch->fd, &expirations, sizeof(expirations));
        if (w->outstanding > 0 && w->tick)
                w->tick(w->tick_userdata);
}

static void worker_free(struct store_worker *w)
{
        if (!w)
                return;
        if (w->wake.fd >= 0) {
                event_remove(w->epfd, &w->wake);
                close(w->wake.fd);
        }
        if (w->timer.fd >= 0) {
                event_remove(w->epfd, &w->timer);
                close(w->timer.fd);
        }
        pthread_cond_destroy(&w->changed);
        pthread_mutex_destroy(&w->lock);
        free(w);
}

int store_worker_start(struct store *store, int epfd, void (*tick)(void *userdata), void *userdata,
                       struct store_worker **ret)
{
        struct store_worker *w;
        pthread_condattr_t attr;
        sigset_t all, saved;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (struct store_worker){
            .store = store,
            .epfd = epfd,
            .wake = {.fd = -1, .fn = on_wake},
            .timer = {.fd = -1, .fn = on_timer},
            .tick = tick,
            .tick_userdata = userdata,
        };
        w->queue_tail = &w->queue;
        w->done_tail = &w->done;
        pthread_mutex_init(&w->lock, NULL);
        /* store_worker_stop() waits on it with a deadline that must not move with the wall
         * clock. */
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&w->changed, &attr);
        pthread_condattr_destroy(&attr);

        w->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (w->wake.fd < 0 || w->timer.fd < 0) {
                r = -errno;
                worker_free(w);
                return r;
        }
        r = event_add(epfd, &w->wake, EPOLLIN);
        if (r == 0)
                r = event_add(epfd, &w->timer, EPOLLIN);
        if (r < 0) {
                worker_free(w);
                return r;
        }

        /* Signals are the loop's (signalfd): the thread must never take one. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                worker_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

int store_worker_submit(struct store_worker *w, struct store_job *job, store_job_done_fn done,
                        void *userdata)
{
        int r = 0;

        if (!w || !job || !done)
                return -EINVAL;
        job->done = done;
        job->userdata = userdata;
        job->next = NULL;
        pthread_mutex_lock(&w->lock);
        if (w->stopping)
                r = -ECANCELED;
        else if (w->queued >= STORE_QUEUE_MAX)
                r = -ENOBUFS;
        if (r == 0) {
                *w->queue_tail = job;
                w->queue_tail = &job->next;
                w->queued++;
                pthread_cond_signal(&w->changed);
        }
        pthread_mutex_unlock(&w->lock);
        if (r < 0)
                return r;
        w->outstanding++;
        arm_timer(w, true);
        return 0;
}

/* Takes the queued jobs that need not run any more: everything but the writes. */
static struct store_job *cancel_queued_reads(struct store_worker *w)
{
        struct store_job *cancelled = NULL, **cancelled_tail = &cancelled;
        struct store_job **link = &w->queue;

        while (*link) {
                struct store_job *job = *link;

                if (job->kind == STORE_JOB_WRITE_REFRESH_TOKEN || job->keep_on_stop) {
                        link = &job->next;
                        continue;
                }
                *link = job->next;
                w->queued--;
                job->next = NULL;
                job->result = -ECANCELED;
                *cancelled_tail = job;
                cancelled_tail = &job->next;
        }
        w->queue_tail = link;
        return cancelled;
}

/* Names the accounts whose rotated refresh token is about to be lost with a stuck thread: with
 * a server that revokes used refresh tokens, they will need an administrator. Under the lock. */
static void log_unstored_tokens(struct store_worker *w)
{
        if (w->running && w->running->kind == STORE_JOB_WRITE_REFRESH_TOKEN)
                log_error("Account %s: its rotated refresh token may not have been stored; the "
                          "previous generation is kept.",
                          w->running->account);
        for (struct store_job *job = w->queue; job; job = job->next)
                if (job->kind == STORE_JOB_WRITE_REFRESH_TOKEN)
                        log_error("Account %s: its rotated refresh token was not stored; the "
                                  "previous generation is kept.",
                                  job->account);
}

bool store_worker_stop(struct store_worker *w, unsigned timeout_ms)
{
        struct store_job *cancelled;
        struct timespec deadline;
        bool exited;

        if (!w)
                return true;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }

        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        cancelled = cancel_queued_reads(w);
        pthread_cond_broadcast(&w->changed);
        while (!w->exited)
                if (pthread_cond_timedwait(&w->changed, &w->lock, &deadline) == ETIMEDOUT)
                        break;
        exited = w->exited;
        if (!exited)
                log_unstored_tokens(w);
        pthread_mutex_unlock(&w->lock);

        deliver(w, cancelled);
        deliver(w, take_done(w));
        if (!exited) {
                /* The thread is inside the PKCS#11 module and may never come back (a stopped
                 * HSM). Waiting longer would hang the shutdown; it keeps the store, its job and
                 * w, and the process exits around it. */
                log_error("The credential store has not answered for %u ms; exiting without "
                          "waiting for it (%zu store operations unfinished).",
                          timeout_ms, w->outstanding);
                return false;
        }
        pthread_join(w->thread, NULL);
        worker_free(w);
        return true;
}
