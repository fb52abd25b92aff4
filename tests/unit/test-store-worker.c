/* Unit tests for broker/store-worker: jobs run on the worker thread and their callbacks on the
 * loop, once each; a job that carries a rotated refresh token still runs when the worker is
 * stopped while reads queued behind nothing are cancelled; a job submitted while stopping is
 * refused. A private SoftHSM2 token. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "event.h"
#include "secret.h"
#include "store-worker.h"
#include "store.h"
#include "tap.h"

#define TOKEN_LABEL "credbroker-worker"
#define META        "{\"tenant\":\"contoso.onmicrosoft.com\"}"
#define N_READS     64

static char tmpdir[] = "/tmp/credbroker-test-store-worker.XXXXXX";
static char pin_source[PATH_MAX + 8];
static char pattern_lib[] = "/usr/lib*";
static char *const lib_dirs[] = {pattern_lib};

static void die(const char *what)
{
        fprintf(stderr, "test-store-worker: %s: %s\n", what, strerror(errno));
        exit(EXIT_FAILURE);
}

static void write_file(const char *path, const char *content)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t len = strlen(content);

        if (fd < 0 || write(fd, content, len) != (ssize_t)len)
                die(path);
        close(fd);
}

static void setup(struct store **ret)
{
        char path[PATH_MAX], conf[PATH_MAX * 2];
        const char *module = secure_getenv("SOFTHSM_MODULE");
        int status;
        pid_t pid;

        if (!module || !*module)
                module = "/usr/lib/softhsm/libsofthsm2.so";
        umask(077);
        if (!mkdtemp(tmpdir))
                die("mkdtemp");
        snprintf(path, sizeof(path), "%s/tokens", tmpdir);
        if (mkdir(path, 0700) < 0)
                die(path);
        snprintf(conf, sizeof(conf),
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 path);
        snprintf(path, sizeof(path), "%s/softhsm2.conf", tmpdir);
        write_file(path, conf);
        if (setenv("SOFTHSM2_CONF", path, 1) < 0)
                die("setenv");
        pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        _exit(127);
                execlp("softhsm2-util", "softhsm2-util", "--init-token", "--free", "--label",
                       TOKEN_LABEL, "--pin", "1234", "--so-pin", "5678", (char *)NULL);
                _exit(127);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                die("softhsm2-util --init-token");
        snprintf(path, sizeof(path), "%s/pin", tmpdir);
        write_file(path, "1234\n");
        snprintf(pin_source, sizeof(pin_source), "file:%s", path);

        struct store_options options = {
            .module_path = module,
            .token_uri = "pkcs11:token=" TOKEN_LABEL,
            .pin_source = pin_source,
            .module_dirs = lib_dirs,
            .n_module_dirs = 1,
        };
        if (store_open(&options, ret) < 0)
                die("store_open");
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
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
                        die("event_dispatch");
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
                die("provisioning");
        if (event_loop_new(&epfd) < 0)
                die("epoll");

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
                        die("submit");
        if (store_worker_submit(w, job(STORE_JOB_WRITE_REFRESH_TOKEN, "RT-third"), record,
                                &last_write) < 0)
                die("submit");
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
        if (nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
                fprintf(stderr, "test-store-worker: could not remove %s\n", tmpdir);
        return done_testing();
}
