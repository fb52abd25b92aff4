/* The spool's file work that waits on the disk (fsync of a message, rename and fsync of its
 * directory, unlink) runs on one thread of its own, never on the event loop; each job's done
 * callback runs on the loop once the thread hands it back through an eventfd (as
 * store-worker.c does for the PKCS#11 token). Jobs run one at a time in submission order. */
#pragma once

struct spool_sync;

/* run(arg) on the thread, then done(arg, its result) on the loop, exactly once. */
typedef int spool_sync_run_fn(void *arg);
typedef void spool_sync_done_fn(void *arg, int result);

int spool_sync_start(int epfd, struct spool_sync **ret);
/* -ENOMEM, or -ECANCELED when stopping: then nothing was queued. */
int spool_sync_submit(struct spool_sync *s, spool_sync_run_fn *run, spool_sync_done_fn *done,
                      void *arg);
/* Runs what is queued to its end (each is a few syscalls), delivers every callback, joins. */
void spool_sync_stop(struct spool_sync *s);
