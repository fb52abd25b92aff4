/* The journald mirror of the audit log (issue 12): each record also goes to the journal with
 * MESSAGE, a fixed MESSAGE_ID per event, PRIORITY and CREDBROKER_* fields. Best effort: a
 * journal that is missing or slow never fails or holds up the file write. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "audit.h"

#define AUDIT_JOURNAL_MAX_FIELDS 16

/* Installs the mirror in o (a no-op without libsystemd). */
void audit_journal_setup(struct audit_options *o);

/* The journal fields for one line ("KEY=value", malloc()ed, free with
 * audit_journal_fields_free()); the line is the record's JSON. */
int audit_journal_fields(const char *line, size_t len, uint64_t seq, const char *hash_hex,
                         char *fields[static AUDIT_JOURNAL_MAX_FIELDS], size_t *ret_n);
void audit_journal_fields_free(char **fields, size_t n);
/* The MESSAGE_ID of an event, 32 hex. */
const char *audit_journal_message_id(const char *event);
