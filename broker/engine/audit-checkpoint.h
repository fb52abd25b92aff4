/* Signed checkpoints of the audit log (docs/audit.md, issue 12): the broker asks the store
 * worker to sign the chain's count and head with the audit key in the token, and appends a
 * checkpoint record when the signature is back. The event loop never waits for a signature. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "signed-note.h"

struct broker;
struct audit_checkpointer;
struct store;

/* Called once the checkpoint asked for is written (r < 0: it failed), and for a rotation with
 * whether a new file was opened. */
typedef void (*audit_checkpoint_done_fn)(void *userdata, int r, bool reopened);

int audit_checkpointer_new(struct broker *b, const struct note_key *key,
                           struct audit_checkpointer **ret);
/* Answers every waiter with -ECANCELED. */
void audit_checkpointer_free(struct audit_checkpointer *c);

/* A checkpoint now (nothing is signed when the chain is sealed already); with reopen, then a
 * new file when the path was renamed (rotation). done may be NULL. */
void audit_checkpoint_request(struct audit_checkpointer *c, bool reopen,
                              audit_checkpoint_done_fn done, void *userdata);
/* Once a second from the loop: the interval checkpoint and the truncation check. */
void audit_checkpoint_tick(struct audit_checkpointer *c);
/* SIGHUP: the truncation check, a checkpoint, a new file if the old one was renamed. */
void audit_checkpoint_sighup(struct audit_checkpointer *c);
/* At shutdown, once the store worker has stopped: signs on this thread, so the file ends
 * sealed. */
void audit_checkpoint_final(struct audit_checkpointer *c, struct store *store);
/* The verifier key string, "credbroker-audit+…". */
const char *audit_checkpoint_key(const struct audit_checkpointer *c);

struct secret;
/* At broker start, before the store worker: the audit key (generated in the token when there is
 * none), the log opened with [broker]'s audit settings, the denial aggregator and the
 * checkpointer. */
int audit_start(struct broker *b, const struct secret *install_key);
/* At shutdown, once the store worker has stopped (or was abandoned): the aggregated denials, the
 * final checkpoint, the log closed. */
void audit_stop(struct broker *b);
