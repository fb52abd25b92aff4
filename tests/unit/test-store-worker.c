/* Unit tests for broker/store-worker: jobs run on the worker thread and their callbacks on the
 * loop, once each; a job that carries a rotated refresh token still runs when the worker is
 * stopped while reads queued behind nothing are cancelled; a job submitted while stopping is
 * refused. A private SoftHSM2 token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "event.h"
#include "secret.h"
#include "store-worker.h"
#include "store.h"
#include "softhsm-token.h"
#include "tap.h"

#define TOKEN_LABEL "credbroker-worker"
#define META        "{\"tenant\":\"contoso.onmicrosoft.com\"}"
#define N_READS     64

static struct test_token softhsm;

static void setup(struct store **ret)
{
        test_token_init(&softhsm, TOKEN_LABEL, "1234", "5678");
        if (test_token_open(&softhsm, ret) < 0)
                test_die("store_open");
}

static struct secret *make_secret(const char *text)
{
        struct secret *s;

        if (secret_new_from(text, strlen(text), &s) < 0)
                abort();
        return s;
}

/* What the callbacks saw. */
struct seen {
        unsigned calls;
        unsigned cancelled;
        int result;
        uint64_t generation;
        char meta[128];
        char token[64];
};

static void record(struct store_job *job, void *userdata)
{
        struct seen *seen = userdata;

        seen->calls++;
        if (job->result == -ECANCELED)
                seen->cancelled++;
        seen->result = job->result;
        seen->generation = job->generation;
        if (job->meta_json)
                snprintf(seen->meta, sizeof(seen->meta), "%s", job->meta_json);
        if (job->kind == STORE_JOB_READ_REFRESH_TOKEN && job->refresh_token)
                snprintf(seen->token, sizeof(seen->token), "%s", secret_str(job->refresh_token));
}

static struct store_worker *worker_for_resubmit;
static int resubmit_result = 1;

/* A callback that runs while the worker stops and tries to queue more work. */
static void resubmit(struct store_job *job, void *userdata)
{
        struct store_job *again = NULL;

        record(job, userdata);
        if (store_job_new(STORE_JOB_GET_META, "alerts", &again) < 0)
                abort();
        resubmit_result = store_worker_submit(worker_for_resubmit, again, record, userdata);
        if (resubmit_result < 0)
                store_job_free(again);
}

static struct store_job *job(enum store_job_kind kind, const char *token)
{
        struct store_job *j = NULL;

        if (store_job_new(kind, "alerts", &j) < 0)
                abort();
        if (token)
                j->refresh_token = make_secret(token);
        return j;
}

static void dispatch_until(int epfd, const unsigned *counter, unsigned want)
{
        for (int i = 0; i < 200 && *counter < want; i++)
                if (event_dispatch(epfd, 50) < 0)
                        test_die("event_dispatch");
}

int main(void)
{
        _cleanup_secret_ struct secret *rt = NULL, *back = NULL;
        struct seen meta = {0}, read = {0}, write = {0}, reads = {0}, last_write = {0};
        struct store_worker *w = NULL;
        struct store *s = NULL;
        uint64_t generation = 0;
        int epfd;

        setup(&s);
        rt = make_secret("RT-first");
        if (store_put_meta(s, "alerts", META) < 0 ||
            store_write_refresh_token(s, "alerts", rt, &generation) < 0)
                test_die("provisioning");
        if (event_loop_new(&epfd) < 0)
                test_die("epoll");

        is_int(store_worker_start(s, epfd, NULL, NULL, &w), 0, "start the worker");
        is_int(store_worker_submit(w, job(STORE_JOB_GET_META, NULL), record, &meta), 0,
               "submit a metadata read");
        is_int(store_worker_submit(w, job(STORE_JOB_READ_REFRESH_TOKEN, NULL), record, &read), 0,
               "submit a refresh token read");
        is_int(
            store_worker_submit(w, job(STORE_JOB_WRITE_REFRESH_TOKEN, "RT-second"), record, &write),
            0, "submit a rotated token write");
        dispatch_until(epfd, &write.calls, 1);
        is_int(meta.calls, 1, "the metadata callback ran once, on the loop");
        is_str(meta.meta, META, "with the metadata");
        is_int(read.calls, 1, "the read callback ran once");
        is_str(read.token, "RT-first", "with the refresh token");
        is_int(read.generation, 1, "of generation 1");
        is_int(write.calls, 1, "the write callback ran once");
        is_int(write.result, 0, "the write succeeded");
        is_int(write.generation, 2, "as generation 2");

        /* Stop with reads queued and one write last: the write runs, the reads that had not
         * started are cancelled, every callback runs once before stop returns. */
        worker_for_resubmit = w;
        for (int i = 0; i < N_READS; i++)
                if (store_worker_submit(w, job(STORE_JOB_READ_REFRESH_TOKEN, NULL),
                                        i == 0 ? resubmit : record, &reads) < 0)
                        test_die("submit");
        if (store_worker_submit(w, job(STORE_JOB_WRITE_REFRESH_TOKEN, "RT-third"), record,
                                &last_write) < 0)
                test_die("submit");
        ok(store_worker_stop(w, 5000), "the worker stops and is joined");
        is_int(reads.calls, N_READS, "every queued read's callback ran once");
        ok(reads.cancelled > 0, "reads not started yet were cancelled");
        is_int(last_write.calls, 1, "the queued write's callback ran once");
        is_int(last_write.result, 0, "and the write ran although the worker was stopping");
        is_int(resubmit_result, -ECANCELED, "a job submitted while stopping is refused");

        /* The store is the caller's again. */
        is_int(store_read_refresh_token(s, "alerts", &back, &generation), 0,
               "the store is usable after the worker stopped");
        is_str(back ? secret_str(back) : NULL, "RT-third", "and holds the last written token");
        is_int(generation, 3, "as generation 3");

        ok(store_worker_stop(NULL, 0), "stopping no worker is a no-op");
        store_close(s);
        close(epfd);
        test_token_cleanup(&softhsm);
        return done_testing();
}
