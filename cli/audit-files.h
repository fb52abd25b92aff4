/* Reading audit log files (docs/audit.md, "Reading the log"): the configured log with its rotated
 * predecessors, plain or gzip-compressed, one bounded line at a time. Shared by the audit
 * subcommands that read the log. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cleanup.h"

/* A line is at most this many bytes, its "\n" included (the format's bound). */
#define AUDIT_LINE_MAX 65536

struct audit_reader;

/* Opens path for reading; a name ending in ".gz" is decompressed. -errno, nothing printed. */
int audit_reader_open(const char *path, struct audit_reader **ret);
void audit_reader_free(struct audit_reader *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct audit_reader *, audit_reader_free)

/* The next line, without its "\n", NUL-terminated, valid until the next call: 1. At the end of
 * the file: 0; a last line without "\n" is returned first (complete false) unless hold_partial
 * is set, when it stays buffered for a later call (following a growing file). A line longer
 * than AUDIT_LINE_MAX is skipped: -E2BIG (its number is audit_reader_lineno()). Read errors:
 * -errno. */
int audit_reader_next(struct audit_reader *r, bool hold_partial, const char **ret_line,
                      size_t *ret_len, bool *ret_complete);
/* The number (from 1) of the line last returned or skipped. */
unsigned long audit_reader_lineno(const struct audit_reader *r);
const char *audit_reader_path(const struct audit_reader *r);
/* The inode the reader has open (plain files; for following a log through rotation). */
int audit_reader_stat(const struct audit_reader *r, dev_t *dev, ino_t *ino);

/* The files of a log, oldest first: log.N[.gz] … log.1[.gz], then log itself. The rotated
 * ones are found in the log's directory (none when it cannot be listed). NULL-terminated. */
int audit_files_list(const char *log, char ***ret);

/* Prints why path cannot be read (error is a positive errno), with the hint that the log is
 * readable by root and the configured audit_group. Returns the exit status to use. */
int audit_files_open_error(const char *path, int error);
