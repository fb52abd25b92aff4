/* The broker's shared state: one struct the loop owns, with the parts of every layer. Only the
 * types it holds by value are included here; each file includes the headers of the parts it
 * uses (accounts.h, refresh.h, waiter.h, store-worker.h, audit.h, ...). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "event.h"
#include "metrics.h"
#include "token-cache.h"

struct account;
struct accounts;
struct audit;
struct audit_aggregator;
struct audit_checkpointer;
struct config;
struct idp;
struct keepalive;
struct policy_limiter;
struct policy_set;
struct provision;
struct spool;
struct store;
struct store_worker;
struct stream_hub;
struct stream_server;

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
        struct metrics metrics;    /* counters for monitoring (metrics.h) */
        struct accounts *accounts; /* accounts.c: by name, and a list to walk */
        struct keepalive *keepalive;
        struct spool *spool; /* mail (engine/spool.h) */
        bool stopping;
};
