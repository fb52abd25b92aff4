/* The one thread that talks to the PKCS#11 token once the broker runs. A PKCS#11 session is
 * not for concurrent use and a token can take any time to answer (a remote HSM, a stalled
 * p11-kit server), so every store call after startup runs here, one at a time, and never on
 * the event loop: the loop submits a job, the worker runs it, and its callback runs on the loop
 * once the worker hands the result back through an eventfd. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "secret.h"
#include "store.h"
#include "util.h"

enum store_job_kind {
        /* out: names of every account (keepalive.c). The account name is unused. */
        STORE_JOB_LIST_ACCOUNTS,
        /* in: names, stale_before; out: names, only those whose refresh token was stored before
         * it (keepalive.c checks the accounts a few at a time, so that the jobs queued meanwhile,
         * a client's first token, run between them). The account name is unused. */
        STORE_JOB_KEEP_STALE,
        STORE_JOB_GET_META,            /* out: meta_json */
        STORE_JOB_READ_REFRESH_TOKEN,  /* out: refresh_token, generation */
        STORE_JOB_WRITE_REFRESH_TOKEN, /* in: refresh_token; out: generation */
        STORE_JOB_CALL,                /* in: call, call_arg: any sequence of store calls */
        STORE_JOB_CLEAR_REFRESH_MARK,  /* an answer rotated nothing: store_mark_refresh(0) */
};

struct store_job;
/* Runs on the loop thread, exactly once per submitted job; the job is freed after it returns,
 * so the callback takes what it keeps (TAKE_PTR). */
typedef void (*store_job_done_fn)(struct store_job *job, void *userdata);

struct store_job {
        enum store_job_kind kind;
        char account[NAME_MAX_LEN + 1];
        struct secret *refresh_token; /* the only secret a job carries */
        uint64_t generation;
        /* READ/WRITE_REFRESH_TOKEN for a refresh about to be sent: the refresh marker is moved
         * to the generation read or written (store_mark_refresh()); interrupted: the previous
         * run stopped during a refresh with that generation. */
        bool mark_refresh;
        bool interrupted;
        char *meta_json;
        /* STORE_JOB_CALL: runs call(store, call_arg) on the worker thread. The admin operations
         * (docs/admin-protocol.md) each need a different sequence of store calls; call_arg is
         * the caller's and must not be touched by the loop until done runs. keep_on_stop: the
         * job writes a credential that exists nowhere else (a fresh sign-in's refresh token),
         * so stopping runs it like a rotated-token write instead of cancelling it. */
        int (*call)(struct store *store, void *call_arg);
        void *call_arg;
        bool keep_on_stop;
        /* 0, a negative errno from the store, or -ECANCELED when the worker stopped before
         * running the job */
        int result;
        /* STORE_JOB_LIST_ACCOUNTS, STORE_JOB_KEEP_STALE */
        uint64_t stale_before; /* unix seconds */
        char **names;
        size_t n_names;

        /* the worker's */
        store_job_done_fn done;
        void *userdata;
        struct store_job *next;
};

/* A job for account; the caller fills in refresh_token for a write. */
int store_job_new(enum store_job_kind kind, const char *account, struct store_job **ret);
/* Wipes and frees the job's secret along with it. */
void store_job_free(struct store_job *job);

struct store_worker;

/* Takes over store (nothing else may call it from now on) and adds the worker's descriptors to
 * the loop. While jobs are outstanding, tick(userdata) runs on the loop about twice a second,
 * so the broker can give up waiting on a token that does not answer. */
int store_worker_start(struct store *store, int epfd, void (*tick)(void *userdata), void *userdata,
                       struct store_worker **ret);

/* Queues job; done(job, userdata) runs later on the loop. On failure (-ENOBUFS: the queue is
 * full; -ECANCELED: the worker is stopping) the job was not taken and the caller still owns it. */
int store_worker_submit(struct store_worker *w, struct store_job *job, store_job_done_fn done,
                        void *userdata);

/* Stops the worker: queued reads are cancelled, queued writes of rotated refresh tokens still
 * run (they are the only copy), and the thread is joined if it finishes within timeout_ms.
 * Every outstanding callback runs before this returns. Returns false when the thread is stuck
 * in the token: it is left running, still owning the store, which the caller must then neither
 * close nor touch; w is left allocated for it. */
bool store_worker_stop(struct store_worker *w, unsigned timeout_ms);
