/* Signed checkpoints of the audit log; see audit-checkpoint.h. Every checkpoint asked for is an
 * entry of a FIFO, its signature made on the store worker; entries are written in the order
 * they were asked for, as their signatures come back, so the notes' counts only grow and are at
 * most audit_checkpoint_records apart (common/signed-note.h says what is guaranteed). */
#include "audit-checkpoint.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit-aggregate.h"
#include "audit-journal.h"
#include "audit.h"
#include "broker.h"
#include "build-config.h"
#include "config.h"
#include "fault.h"
#include "log.h"
#include "store-worker.h"
#include "store.h"
#include "util.h"

struct waiter_entry {
        audit_checkpoint_done_fn done;
        void *userdata;
        struct waiter_entry *next;
};

enum entry_state {
        ENTRY_SIGNING,   /* on the store worker */
        ENTRY_SIGNED,    /* sig is set: written once the entries before it are */
        ENTRY_FAILED,    /* the token refused: nothing is written */
        ENTRY_CANCELLED, /* the worker stopped first: signed on the loop thread at shutdown */
};

/* One checkpoint asked for. The body is the loop's until the worker's job is done. */
struct entry {
        char *body;
        const struct note_key *key; /* the verifier key the log names */
        char *note;                 /* the signed note, checked against key on the worker */
        uint64_t count;
        uint8_t head[32];
        uint8_t sig[64];
        size_t sig_len;
        enum entry_state state;
        bool reopen; /* a rotation waits on it */
        struct waiter_entry *waiters;
        struct entry *next;
};

struct audit_checkpointer {
        struct broker *b;
        struct note_key key;
        char *key_text;
        struct entry *first, *tail; /* the FIFO, oldest first */
        size_t n_pending;
        bool skipped;       /* a due checkpoint was skipped: warned once until the FIFO drains */
        uint64_t last_usec; /* boottime of the last checkpoint asked for or interval check */
        uint64_t last_size_check_usec;
};

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

static void entry_free(struct entry *e)
{
        if (!e)
                return;
        free(e->body);
        free(e->note);
        free(e);
}

/* Tests (a build with fault points): CREDBROKER_AUDIT_SIGN_DELAY_MS makes every signature on
 * the store worker that slow, as a slow token would; CREDBROKER_AUDIT_SIGN_FAIL_FIRST=N makes
 * the first N signatures fail, as a token that refuses would. */
static int test_sign_fault(void)
{
#if ENABLE_FAULT_POINTS
        static unsigned failed;
        const char *v = secure_getenv("CREDBROKER_AUDIT_SIGN_DELAY_MS");
        uint64_t ms, n;

        if (v && parse_u64(v, &ms) == 0 && ms <= 10000)
                (void)nanosleep(&(struct timespec){.tv_sec = (time_t)(ms / 1000),
                                                   .tv_nsec = (long)(ms % 1000) * 1000000},
                                NULL);
        v = secure_getenv("CREDBROKER_AUDIT_SIGN_FAIL_FIRST");
        if (v && parse_u64(v, &n) == 0 && __atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED) < n)
                return -EIO;
#endif
        return 0;
}

/* Signs on the store worker. The first signature of each key handle is checked there against
 * the key the log names: a second key pair under the same label, or a handle that now names
 * another object, would otherwise put signatures nobody can verify into the log. Later ones are
 * made by the same key object, and a check of each (a tenth of the worker's time under load,
 * docs/benchmark.md) would find nothing new. */
static int sign_call(struct store *store, void *arg)
{
        struct entry *e = arg;
        struct note_checkpoint checked;
        bool looked_up;
        int r;

        free(e->note);
        e->note = NULL;
        r = test_sign_fault();
        if (r < 0)
                return r;
        r = store_audit_sign(store, e->body, strlen(e->body), e->sig, &e->sig_len, &looked_up);
        if (r < 0)
                return r;
        r = note_assemble(e->body, e->key, e->sig, e->sig_len, &e->note);
        if (r < 0 || !looked_up)
                return r;
        r = note_verify(e->note, strlen(e->note), e->key, &checked);
        if (r < 0)
                return log_error_errno(r, "The token's audit key did not sign as the verifier "
                                          "key the log names: checkpoint not written");
        return 0;
}

static int write_signed(struct audit_checkpointer *c, struct entry *e)
{
        uint64_t lag = audit_next_seq(c->b->audit) - e->count;

        /* The verifier keeps the last NOTE_MAX_LAG(n) hashes: a head further back could not be
         * checked. Only a token that did not answer for that long gets here. */
        if (lag > NOTE_MAX_LAG(c->b->config->audit_checkpoint_records))
                return log_error_errno(-ETIMEDOUT,
                                       "Audit checkpoint for %" PRIu64
                                       " records dropped: its signature came back %" PRIu64
                                       " records later",
                                       e->count, lag);
        return audit_write_checkpoint(c->b->audit, e->count, e->head, e->note);
}

static int finish_reopen(struct audit_checkpointer *c, bool *reopened)
{
        int r = audit_reopen(c->b->audit, reopened);
        if (r < 0)
                log_error_errno(r, "Failed to reopen the audit log after rotation");
        return r;
}

/* Writes the entry (or says why not), rotates when asked, answers its waiters. */
static void complete(struct audit_checkpointer *c, struct entry *e)
{
        bool reopened = false;
        int r = -EIO;

        if (e->state == ENTRY_SIGNED)
                r = write_signed(c, e);
        /* What this checkpoint would have sealed is sealed by the next one, at the latest at
         * shutdown: the tail never stays unsealed because one signature failed. */
        if (r < 0)
                audit_mark_unsealed(c->b->audit);
        if (e->reopen) {
                int k = finish_reopen(c, &reopened);
                if (r >= 0)
                        r = k;
        }
        answer(&e->waiters, r, reopened);
        entry_free(e);
}

/* Writes the entries at the head of the FIFO whose signatures are back, in order. */
static void drain(struct audit_checkpointer *c)
{
        while (c->first && (c->first->state == ENTRY_SIGNED || c->first->state == ENTRY_FAILED)) {
                struct entry *e = c->first;
                c->first = e->next;
                if (!c->first)
                        c->tail = NULL;
                c->n_pending--;
                complete(c, e);
        }
        if (!c->first)
                c->skipped = false;
}

static void on_signed(struct store_job *job, void *userdata)
{
        struct audit_checkpointer *c = userdata;
        struct entry *e = job->call_arg;
        int r = job->result;

        if (r == -ECANCELED)
                e->state = ENTRY_CANCELLED; /* audit_checkpoint_final() signs it */
        else if (r < 0) {
                log_error_errno(r, "Failed to sign an audit checkpoint");
                e->state = ENTRY_FAILED;
        } else
                e->state = ENTRY_SIGNED;
        drain(c);
}

static void append(struct audit_checkpointer *c, struct entry *e)
{
        if (c->tail)
                c->tail->next = e;
        else
                c->first = e;
        c->tail = e;
        c->n_pending++;
}

/* A new entry for the chain as it is now, at the FIFO's end. */
static struct entry *entry_new(struct audit_checkpointer *c)
{
        struct entry *e = calloc(1, sizeof(*e));

        if (!e)
                return NULL;
        e->key = &c->key;
        audit_chain_mark(c->b->audit, &e->count, e->head);
        if (note_checkpoint_body(audit_log_id(c->b->audit), e->count, e->head, now_realtime_usec(),
                                 &e->body) < 0) {
                free(e);
                return NULL;
        }
        append(c, e);
        return e;
}

static int submit(struct audit_checkpointer *c, struct entry *e)
{
        struct store_job *job = NULL;
        int r;

        r = store_job_new(STORE_JOB_CALL, "-", &job);
        if (r < 0)
                return r;
        job->call = sign_call;
        job->call_arg = e;
        r = store_worker_submit(c->b->store_worker, job, on_signed, c);
        if (r < 0)
                store_job_free(job);
        return r;
}

/* Asks for a checkpoint of the chain as it is now; the entry it is in, NULL when that failed. */
static struct entry *ask(struct audit_checkpointer *c)
{
        struct entry *e = entry_new(c);
        int r = e ? submit(c, e) : -ENOMEM;

        c->last_usec = now_boottime_usec();
        if (r < 0) {
                log_error_errno(r, "Failed to ask for an audit checkpoint signature");
                if (e)
                        e->state = ENTRY_FAILED;
                drain(c);
                return NULL;
        }
        return e;
}

void audit_checkpoint_request(struct audit_checkpointer *c, bool reopen,
                              audit_checkpoint_done_fn done, void *userdata)
{
        struct waiter_entry *w = NULL;
        struct entry *e;
        bool reopened = false;
        int r = 0;

        if (c->b->stopping || !c->b->store_worker) {
                /* The final checkpoint (audit_checkpoint_final) covers it. */
                if (done)
                        done(userdata, -ECANCELED, false);
                return;
        }
        if (done) {
                w = calloc(1, sizeof(*w));
                if (!w) {
                        done(userdata, -ENOMEM, false);
                        return;
                }
                *w = (struct waiter_entry){.done = done, .userdata = userdata};
        }
        if (audit_unsealed(c->b->audit) > 0) {
                e = ask(c);
                if (!e) {
                        answer(&w, -EIO, false);
                        return;
                }
        } else
                e = c->tail; /* nothing new since the last one asked for: that one answers */
        if (e) {
                e->reopen |= reopen;
                if (w) {
                        w->next = e->waiters;
                        e->waiters = w;
                }
                return;
        }
        /* Sealed, with nothing outstanding. */
        if (reopen)
                r = finish_reopen(c, &reopened);
        answer(&w, r, reopened);
}

/* Every audit_checkpoint_records records (audit.c's hook). */
static void on_records(void *userdata)
{
        struct audit_checkpointer *c = userdata;

        if (c->b->stopping || !c->b->store_worker)
                return;
        if (c->n_pending >= NOTE_PENDING_MAX) {
                /* The token signs slower than the log grows: this one is skipped (the verifier
                 * reports the gap) rather than letting the signatures fall ever further behind. */
                if (!c->skipped)
                        log_error("Audit checkpoint skipped: %u signatures are outstanding; the "
                                  "token signs slower than the audit log grows.",
                                  NOTE_PENDING_MAX);
                c->skipped = true;
                audit_checkpoint_skipped(c->b->audit);
                return;
        }
        (void)ask(c);
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
        while (c->first) {
                struct entry *e = c->first;
                c->first = e->next;
                answer(&e->waiters, -ECANCELED, false);
                if (!c->b->store_abandoned)
                        entry_free(e);
        }
        /* A worker given up on may still be signing an entry with c->key: both are left to the
         * _exit() that follows rather than freed under the thread. */
        if (c->b->store_abandoned)
                return;
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
        if (ENABLE_AUDIT_CHAIN && now - c->last_usec >= every) {
                c->last_usec = now;
                if (audit_unsealed(c->b->audit) > 0 && c->n_pending < NOTE_PENDING_MAX)
                        (void)ask(c);
        }
}

void audit_checkpoint_sighup(struct audit_checkpointer *c)
{
        (void)audit_check_truncation(c->b->audit);
        audit_checkpoint_request(c, true, NULL, NULL);
}

/* Signs e on this thread (the store is this thread's: at start, or once the worker stopped). */
static void sign_here(struct audit_checkpointer *c, struct store *store, struct entry *e)
{
        int r = sign_call(store, e);

        if (r < 0) {
                log_error_errno(r, "Failed to sign an audit checkpoint");
                e->state = ENTRY_FAILED;
        } else
                e->state = ENTRY_SIGNED;
}

/* Signs and writes a checkpoint of the chain as it is now, on this thread. */
static void seal_here(struct audit_checkpointer *c, struct store *store)
{
        struct entry *e = entry_new(c);

        if (!e) {
                log_error("Failed to seal the audit log: out of memory.");
                return;
        }
        sign_here(c, store, e);
        drain(c);
}

void audit_checkpoint_final(struct audit_checkpointer *c, struct store *store)
{
        /* What the worker did not sign before it stopped, in order, then the rest. */
        for (struct entry *e = c->first; e; e = e->next)
                if (e->state == ENTRY_CANCELLED || e->state == ENTRY_SIGNING)
                        sign_here(c, store, e);
        drain(c);
        if (audit_unsealed(c->b->audit) > 0)
                seal_here(c, store);
}

/* At start, before the store worker: the checkpoints a previous run asked for but did not write
 * (it stopped before their signatures were back), then a seal over what it left unsealed. The
 * seal covers the file as found (asked for before the catch-up records are written), so the
 * counts stay at most audit_checkpoint_records apart. */
static void seal_at_start(struct audit_checkpointer *c, struct store *store)
{
        uint64_t n = c->b->config->audit_checkpoint_records;
        struct audit_catch_up up = {0};

        /* A chain that is only its new genesis has nothing to catch up with. */
        if (audit_next_seq(c->b->audit) <= 1)
                return;
        if (audit_catch_up(c->b->audit, n, NOTE_MAX_LAG(n) - 16, &up) < 0)
                up = (struct audit_catch_up){.unsealed = true};
        for (size_t i = 0; i < up.n; i++) {
                struct entry *e = calloc(1, sizeof(*e));
                if (!e ||
                    note_checkpoint_body(audit_log_id(c->b->audit), up.heads[i].count,
                                         up.heads[i].head, now_realtime_usec(), &e->body) < 0) {
                        free(e);
                        break;
                }
                e->key = &c->key;
                e->count = up.heads[i].count;
                memcpy(e->head, up.heads[i].head, 32);
                append(c, e);
        }
        /* The last checkpoint owed may cover everything already: one note per count. */
        if (c->tail && c->tail->count == audit_next_seq(c->b->audit))
                up.unsealed = false;
        free(up.heads);
        if (up.unsealed && !entry_new(c))
                log_error("Failed to seal the audit log: out of memory.");
        for (struct entry *e = c->first; e; e = e->next)
                sign_here(c, store, e);
        drain(c);
}

/* The key stays the one the log's checkpoints are signed with (the latest note's; for a new log,
 * the one found now), even if a pair with a smaller CKA_ID appears in the token later: pinned in
 * the store for every later lookup. A log whose key is gone from the token goes on with *key,
 * and says so: audit verify then needs each key for its part. */
static void pin_audit_key(struct broker *b, struct note_key *key)
{
        const char *note = audit_last_note(b->audit);
        struct note_key pinned;
        uint8_t hash[4];
        bool from_log = note && note_signer_hash(note, hash) == 0;

        if (!from_log)
                memcpy(hash, key->hash, 4);
        if (store_audit_key_pin(b->store, hash, &pinned) == 0) {
                *key = pinned;
                return;
        }
        if (from_log)
                log_error("The audit log's checkpoints are signed by key %02x%02x%02x%02x, which "
                          "the token no longer has: new ones are signed by %02x%02x%02x%02x.",
                          hash[0], hash[1], hash[2], hash[3], key->hash[0], key->hash[1],
                          key->hash[2], key->hash[3]);
        (void)store_audit_key_pin(b->store, key->hash, &pinned);
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
        pin_audit_key(b, &key);
        r = audit_aggregator_new(b->audit, b->config->audit_aggregate_sec, &b->denials);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the audit log");
        r = audit_checkpointer_new(b, &key, &b->checkpoints);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the audit checkpoints");
        seal_at_start(b->checkpoints, b->store);
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
