/* The audit log verifier's core (audit-verify.c feeds it lines; fuzz-audit-verify.c too): checks
 * the hash chain, seq numbering, checkpoints and their signed notes, line by line, in bounded
 * memory. Format: docs/audit.md (audit log format v1). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "signed-note.h"

#define CHAIN_MAX_LINE                   65536 /* bytes, including the "\n" */
#define CHAIN_CHECKPOINT_RECORDS_DEFAULT 1000

enum chain_status { CHAIN_INTACT = 0, CHAIN_BROKEN = 1, CHAIN_UNSEALED = 2 };

struct chain_options {
        const struct note_key *key; /* NULL: trust the genesis record's key (warned) */
        bool expect_head;
        uint64_t expect_seq;
        uint8_t expect_hash[32];
        /* gap: consecutive checkpoints' counts more than this apart; also sizes the memory of
         * record hashes (NOTE_MAX_LAG + 1) */
        uint64_t checkpoint_records;
        FILE *warnings; /* NULL: none */
};

struct chain;

int chain_new(const struct chain_options *o, struct chain **ret);
void chain_free(struct chain *c);
/* The next file (oldest first); name is kept until the next call or chain_free(). */
void chain_begin_file(struct chain *c, const char *name);
/* One line without its "\n" (newline: whether it had one; only a file's last line may lack it).
 * 0: go on; CHAIN_BROKEN: stop, chain_message() says why. */
int chain_line(struct chain *c, const char *line, size_t len, bool newline);
/* After the last line: CHAIN_INTACT, CHAIN_BROKEN or CHAIN_UNSEALED (chain_message()). */
int chain_end(struct chain *c);
/* "FILE:LINE: seq N: what" for BROKEN/UNSEALED, a summary for INTACT. */
const char *chain_message(const struct chain *c);
/* Records checked so far. */
uint64_t chain_records(const struct chain *c);
