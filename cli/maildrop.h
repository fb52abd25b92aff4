/* The maildrop (docs/mail-spool.md): when the broker is not running, the CLI leaves a message
 * in [mail] maildrop_dir (default /var/spool/credbroker/maildrop, group credbroker-mail, mode
 * 3730) for the broker to take at its next start, under the policy decision for the file's
 * owner. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define MAILDROP_DIR_DEFAULT "/var/spool/credbroker/maildrop"

/* Writes {"v":1,"profile":P}\n and msg as .<uid>.<random>.tmp, fsyncs it, renames it to
 * <uid>.<random> and fsyncs the directory: 0 once it is durable, else a negative errno
 * (-EACCES: the caller may not write there, so it must exit 75 rather than claim success). */
int maildrop_write(const char *dir, const char *profile, const uint8_t *msg, size_t len);
