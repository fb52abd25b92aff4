/* The admin socket (docs/admin-protocol.md): provisioning, sign-in flows and status for root or
 * the broker's own uid. admin-server.c accepts and frames; admin-ops.c runs the operations;
 * provision*.c and flow-*.c do account.add and account.login. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream.h"
#include "wire.h"

struct broker;
struct buf;
struct cJSON;

/* An operation whose reply comes later (a store job, an HTTPS request, a device code being
 * approved). Embedded first in each operation's own struct. When the connection closes first,
 * connection is set to NULL and the operation runs to its end without anyone to tell. */
struct admin_operation {
        struct admin_connection *connection;
        struct broker *broker;
        const struct admin_op *desc; /* the table entry of the request that began it */
        /* Called when the connection goes away, so a long flow (device code polling) can stop
         * early; may be NULL. The operation still completes with admin_operation_finish(). */
        void (*abandoned)(struct admin_operation *op);
};

struct admin_connection {
        struct stream stream; /* first: the connection itself (net/stream.h) */
        struct broker *broker;
        struct admin_operation *operation; /* at most one: replies go out in request order */
        const struct admin_op *handling;   /* while its handler runs */
};

/* One admin operation (admin-ops.c's table). The handler answers at once (admin_send) or begins
 * an operation that answers later; account is the request's valid "account" when needs_account,
 * else NULL. needs_store: it reads or writes the credential store (on the store worker). audit:
 * the audit event a success writes (admin_operation_audit), NULL for an operation that changes
 * nothing. */
struct admin_op {
        const char *name;
        void (*handler)(struct admin_connection *c, const struct cJSON *request,
                        const char *account);
        bool needs_account;
        bool needs_store;
        const char *audit;
};

/* The entry of the operation called name, or NULL; the whole table (for tests and docs). */
const struct admin_op *admin_op_find(const char *name);
const struct admin_op *admin_op_table(size_t *ret_n);

int admin_listen(struct broker *b);
void admin_close_all(struct broker *b);

/* {"v":1,"ok":true}, to add the reply's fields to; NULL when out of memory. */
struct cJSON *admin_reply_new(void);
/* Appends reply as a frame (reply stays the caller's); NULL reply: out of memory, hang up. */
void admin_send(struct admin_connection *c, struct cJSON *reply);
void admin_send_error(struct admin_connection *c, enum admin_error code, const char *message);
/* A code from below (the identity provider's classification) as an admin_error; one the admin
 * protocol does not know is "internal". */
enum admin_error admin_error_parse(const char *code);

/* Starts an operation on c: no further request of c is read until it finishes. */
void admin_operation_begin(struct admin_connection *c, struct admin_operation *op);
/* The operation's intermediate reply (device code), if the connection is still there. */
void admin_operation_send(struct admin_operation *op, struct cJSON *reply);
/* Sends the final reply (or error when code is set) and resumes the connection's requests. */
void admin_operation_finish(struct admin_operation *op, struct cJSON *reply);
void admin_operation_fail(struct admin_operation *op, enum admin_error code, const char *message);
/* Writes the audit record of the operation's success ({event: its table entry's audit, account}),
 * if its entry has one. */
void admin_operation_audit(struct admin_operation *op, const char *account);

/* Unix seconds of a CLOCK_BOOTTIME instant (admin-ops.c). */
uint64_t admin_boottime_to_unix(uint64_t boottime_usec);

/* admin-ops.c: handles one request frame. payload is writable so secrets in it can be wiped. */
void admin_handle(struct admin_connection *c, uint8_t *payload, size_t len);

/* account.keygen, account.cert, account.secret (admin-credentials.c); the account is valid. */
void admin_credential_start(struct admin_connection *c, const struct cJSON *request,
                            const char *op);
