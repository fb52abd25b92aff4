/* Signed checkpoints of the audit log; see audit-checkpoint.h. */
#include "audit-checkpoint.h"

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>

#include "audit-aggregate.h"
#include "audit-journal.h"
#include "audit.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "store-worker.h"
#include "store.h"
#include "util.h"

struct waiter_entry {
        audit_checkpoint_done_fn done;
        void *userdata;
        struct waiter_entry *next;
};

struct audit_checkpointer {
        struct broker *b;
        struct note_key key;
        char *key_text;
        bool pending; /* a signature is being made */
        bool again;   /* asked for again while pending */
        bool reopen;  /* the pending checkpoint is a rotation's */
        bool reopen_next;
        uint64_t last_usec; /* boottime of the last checkpoint or check */
        uint64_t last_size_check_usec;
        struct waiter_entry *waiters; /* answered by the pending checkpoint */
        struct waiter_entry *next_waiters;
};

/* What the worker thread signs: the body is the loop's until done runs. */
struct sign_request {
        char *body;
        uint64_t count;
        uint8_t head[32];
        uint8_t sig[64];
        size_t sig_len;
};

static void sign_request_free(struct sign_request *s)
{
        if (!s)
                return;
        free(s->body);
        free(s);
}

static int sign_call(struct store *store, void *arg)
{
        struct sign_request *s = arg;
        return store_audit_sign(store, s->body, strlen(s->body), s->sig, &s->sig_len);
}

static void answer(struct waiter_entry **list, int r, bool reopened)
{
        while (*list) {
                struct waiter_entry *w = *list;
                *list = w->next;
                if (w->done)
                        w->done(w->userdata, r, reopened);
                free(w);
        }
}

static int write_signed(struct audit_checkpointer *c, struct sign_request *s)
{
        _cleanup_free_ char *note = NULL;
        int r;

        r = note_assemble(s->body, &c->key, s->sig, s->sig_len, &note);
        if (r < 0)
                return log_error_errno(r, "Failed to assemble an audit checkpoint");
        return audit_write_checkpoint(c->b->audit, s->count, s->head, note);
}

static int finish_reopen(struct audit_checkpointer *c, bool *reopened)
{
        int r = audit_reopen(c->b->audit, reopened);
        if (r < 0)
                log_error_errno(r, "Failed to reopen the audit log after rotation");
        return r;
}

static void start(struct audit_checkpointer *c);

static void on_signed(struct store_job *job, void *userdata)
{
        struct audit_checkpointer *c = userdata;
        struct sign_request *s = job->call_arg;
        bool reopened = false;
        int r = job->result;

        if (r < 0)
                log_error_errno(r, "Failed to sign an audit checkpoint");
        else
                r = write_signed(c, s);
        sign_request_free(s);
        c->pending = false;
        c->last_usec = now_boottime_usec();
        if (c->reopen) {
                int e = finish_reopen(c, &reopened);
                if (r >= 0)
                        r = e;
        }
        answer(&c->waiters, r, reopened);
        if (c->again && !c->b->stopping)
                start(c);
}

static struct sign_request *prepare(struct audit_checkpointer *c)
{
        struct sign_request *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        audit_chain_head(c->b->audit, &s->count, s->head);
        if (note_checkpoint_body(audit_log_id(c->b->audit), s->count, s->head, now_realtime_usec(),
                                 &s->body) < 0) {
                free(s);
                return NULL;
        }
        return s;
}

static void start(struct audit_checkpointer *c)
{
        struct store_job *job = NULL;
        struct sign_request *s;
        bool reopened = false;
        int r;

        c->again = false;
        c->reopen = c->reopen_next;
        c->reopen_next = false;
        c->waiters = c->next_waiters;
        c->next_waiters = NULL;
        if (audit_unsealed(c->b->audit) == 0) {
                /* Sealed already: nothing to sign. */
                r = c->reopen ? finish_reopen(c, &reopened) : 0;
                c->last_usec = now_boottime_usec();
                answer(&c->waiters, r, reopened);
                return;
        }
        s = prepare(c);
        r = s ? store_job_new(STORE_JOB_CALL, "-", &job) : -ENOMEM;
        if (r >= 0) {
                job->call = sign_call;
                job->call_arg = s;
                r = store_worker_submit(c->b->store_worker, job, on_signed, c);
                if (r >= 0) {
                        c->pending = true;
                        return;
                }
                store_job_free(job);
        }
        sign_request_free(s);
        log_error_errno(r, "Failed to ask for an audit checkpoint signature");
        if (c->reopen)
                (void)finish_reopen(c, &reopened);
        answer(&c->waiters, r, reopened);
}

void audit_checkpoint_request(struct audit_checkpointer *c, bool reopen,
                              audit_checkpoint_done_fn done, void *userdata)
{
        if (c->b->stopping || !c->b->store_worker) {
                /* The final checkpoint (audit_checkpoint_final) covers it. */
                if (done)
                        done(userdata, -ECANCELED, false);
                return;
        }
        if (done) {
                struct waiter_entry *w = calloc(1, sizeof(*w));
                if (!w) {
                        done(userdata, -ENOMEM, false);
                        return;
                }
                *w = (struct waiter_entry){
                    .done = done, .userdata = userdata, .next = c->next_waiters};
                c->next_waiters = w;
        }
        c->reopen_next |= reopen;
        if (c->pending) {
                c->again = true;
                return;
        }
        start(c);
}

static void on_records(void *userdata)
{
        audit_checkpoint_request(userdata, false, NULL, NULL);
}

int audit_checkpointer_new(struct broker *b, const struct note_key *key,
                           struct audit_checkpointer **ret)
{
        struct audit_checkpointer *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->b = b;
        c->key = *key;
        r = note_key_format(key, &c->key_text);
        if (r < 0) {
                free(c);
                return r;
        }
        c->last_usec = c->last_size_check_usec = now_boottime_usec();
        audit_set_checkpoint_hook(b->audit, b->config->audit_checkpoint_records, on_records, c);
        *ret = c;
        return 0;
}

void audit_checkpointer_free(struct audit_checkpointer *c)
{
        if (!c)
                return;
        if (c->b->audit)
                audit_set_checkpoint_hook(c->b->audit, 0, NULL, NULL);
        answer(&c->waiters, -ECANCELED, false);
        answer(&c->next_waiters, -ECANCELED, false);
        free(c->key_text);
        free(c);
}

const char *audit_checkpoint_key(const struct audit_checkpointer *c)
{
        return c->key_text;
}

void audit_checkpoint_tick(struct audit_checkpointer *c)
{
        uint64_t now = now_boottime_usec(),
                 every = (uint64_t)c->b->config->audit_checkpoint_sec * USEC_PER_SEC;

        if (now - c->last_size_check_usec >= every) {
                c->last_size_check_usec = now;
                (void)audit_check_truncation(c->b->audit);
        }
        if (!c->pending && now - c->last_usec >= every) {
                c->last_usec = now;
                if (audit_unsealed(c->b->audit) > 0)
                        audit_checkpoint_request(c, false, NULL, NULL);
        }
}

void audit_checkpoint_sighup(struct audit_checkpointer *c)
{
        (void)audit_check_truncation(c->b->audit);
        audit_checkpoint_request(c, true, NULL, NULL);
}

void audit_checkpoint_final(struct audit_checkpointer *c, struct store *store)
{
        struct sign_request *s;
        int r;

        if (audit_unsealed(c->b->audit) == 0)
                return;
        s = prepare(c);
        if (!s) {
                log_error("Failed to seal the audit log at shutdown: out of memory.");
                return;
        }
        r = store_audit_sign(store, s->body, strlen(s->body), s->sig, &s->sig_len);
        if (r < 0)
                log_error_errno(r, "Failed to sign the audit log's final checkpoint");
        else
                (void)write_signed(c, s);
        sign_request_free(s);
}

int audit_start(struct broker *b, const struct secret *install_key)
{
        _cleanup_free_ char *verifier_key = NULL;
        struct audit_options options = {.group = (gid_t)-1};
        struct note_key key;
        int r;

        r = store_audit_key(b->store, &key);
        if (r < 0)
                return log_error_errno(r, "Failed to get the audit signing key");
        r = note_key_format(&key, &verifier_key);
        if (r < 0)
                return log_error_errno(r, "Failed to format the audit verifier key");
        options.verifier_key = verifier_key;
        if (b->config->audit_group) {
                struct group *g = getgrnam(b->config->audit_group);
                if (!g)
                        return log_error_errno(-ENOENT,
                                               "No group %s for the audit log ([broker] "
                                               "audit_group)",
                                               b->config->audit_group);
                options.group = g->gr_gid;
        }
        if (b->config->audit_journal)
                audit_journal_setup(&options);
        r = audit_open_with(b->config->audit_log, install_key, &options, &b->audit);
        if (r < 0)
                return r;
        r = audit_aggregator_new(b->audit, b->config->audit_aggregate_sec, &b->denials);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the audit log");
        r = audit_checkpointer_new(b, &key, &b->checkpoints);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the audit checkpoints");
        return 0;
}

void audit_stop(struct broker *b)
{
        audit_aggregator_free(b->denials);
        b->denials = NULL;
        if (b->checkpoints && b->audit && !b->store_abandoned)
                audit_checkpoint_final(b->checkpoints, b->store);
        audit_checkpointer_free(b->checkpoints);
        b->checkpoints = NULL;
        audit_close(b->audit);
        b->audit = NULL;
}
