/* The broker's shared state and the objects that live in its event loop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "account.h"
#include "audit.h"
#include "buf.h"
#include "config.h"
#include "event.h"
#include "idp.h"
#include "keepalive.h"
#include "peer.h"
#include "policy.h"
#include "store-worker.h"
#include "store.h"
#include "stream.h"
#include "token-cache.h"
#include "wire.h"

struct broker {
        struct config *config;
        int epfd;
        struct stream_hub *streams; /* both sockets' connections and their limits */
        struct stream_server *client_server;
        struct stream_server *admin_server; /* admin-server.c */
        ino_t socket_inode, admin_socket_inode;
        struct provision *provisions; /* provision.c: sign-ins in progress, one per account */
        struct watch signals;
        struct store *store; /* the store worker's alone once it runs */
        struct store_worker *store_worker;
        bool store_abandoned; /* the worker was stuck in the token at shutdown */
        struct policy_set *policy;
        struct policy_limiter *limiter; /* rate buckets; outlive policy reloads */
        struct audit *audit;
        struct audit_aggregator *denials;       /* repeated denials, counted (audit-aggregate.h) */
        struct audit_checkpointer *checkpoints; /* signed checkpoints (audit-checkpoint.h) */
        struct idp *idp;
        struct token_cache cache;
        struct account *accounts;
        struct keepalive *keepalive;
        bool stopping;
};

struct provision;

enum refresh_outcome {
        REFRESH_FRESH,             /* a new token for the waiter's scope set is in the cache */
        REFRESH_FAILED,            /* transient, or the account needs an administrator */
        REFRESH_SCOPES_REFUSED,    /* the provider refused this scope set (invalid_scope) */
        REFRESH_STORE_UNAVAILABLE, /* the credential store failed or did not answer in time */
        REFRESH_NOT_PROVISIONED,   /* the store has no (valid) metadata for the account */
};

/* A token request that waits for its account's refresh to finish. */
struct waiter {
        struct connection *connection;
        struct account *account;
        char profile[NAME_MAX_LEN + 1];
        char *scope_key; /* sorted, space separated */
        uint32_t min_ttl;
        char rule[POLICY_RULE_MAX_LEN]; /* the policy rule that allowed it, for the audit log */
        uint64_t since_usec;            /* boottime it started waiting */
        /* Set for a waiter that is not a client's token request (the admin socket's
         * account.test): called instead of replying on connection, and frees the waiter. */
        void (*answer)(struct broker *b, struct waiter *w, enum refresh_outcome outcome);
        void *answer_data;
        struct waiter *next;
};

/* A connection's last issue record, prepared for reuse (request.c). */
struct issued_record {
        char *body; /* audit_prepare() output */
        size_t len;
        uint64_t token_id;
        uint64_t expires_at;
        char profile[NAME_MAX_LEN + 1];
        char rule[POLICY_RULE_MAX_LEN];
};

/* A connection's last request, kept parsed for when the next one is the same (request.c). */
#define LAST_REQUEST_MAX 512
struct last_request {
        uint8_t payload[LAST_REQUEST_MAX];
        size_t len; /* 0: nothing to compare with */
        struct wire_request parsed;
};

/* A client connection: its stream (net/stream.h) and what request.c keeps for it. */
struct connection {
        struct stream stream; /* first: the connection itself */
        struct broker *broker;
        struct waiter *waiting; /* at most one: replies go out in request order */
        struct issued_record issued;
        struct last_request last_request;
};

/* main.c: re-reads the policy (SIGHUP and the admin socket's reload). On failure the old
 * policy is kept and error holds the first problem as "file:line: message". */
int broker_reload(struct broker *b, char *error, size_t error_size, size_t *ret_profiles);

/* server.c */
int server_listen(struct broker *b);
void server_close_all(struct broker *b);
/* Resumes handling c's queued requests after its waiter was answered. */
void connection_resume(struct connection *c);

/* request.c: handles one frame from a connection. Either a reply is appended to c->out, or
 * c->waiting is set and the reply comes when the account's refresh is done. */
void request_handle(struct connection *c, const uint8_t *payload, size_t len);

/* How long a request waits on the credential store before it is answered `unavailable`
 * (refresh.c), and the retry_after it is told. */
#define STORE_WAIT_SEC        5
#define STORE_RETRY_AFTER_SEC 5

/* Answers a waiter once its account's refresh is done, then frees it. */
void request_answer_waiter(struct broker *b, struct waiter *w, enum refresh_outcome outcome);
void waiter_free(struct waiter *w);

/* refresh.c */
/* Starts a refresh of account a for scope_key unless one is in flight. When none can start
 * (backing off, account unusable, store unreadable) the account's waiters are answered now. */
void refresh_start(struct broker *b, struct account *a, const char *scope_key);
/* The store worker's tick: answers requests that have waited on the store too long. */
void refresh_store_tick(void *broker);
/* Submits a store job for account a and marks a busy until it is done (refresh.c). */
int refresh_submit_store_job(struct broker *b, struct account *a, struct store_job *job,
                             store_job_done_fn done, void *userdata);
/* Called by a store job's callback for account a: not busy with the store any more. */
void refresh_store_job_done(struct account *a);

/* request.c: the runtime account of that name, created (and its metadata read) on first use. */
int broker_account_get(struct broker *b, const char *name, struct account **ret);
