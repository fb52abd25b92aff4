/* The ownership and mode rule for trusted files (trusted-file.h). */
#include "trusted-file.h"

#include <errno.h>
#include <unistd.h>

#include "log.h"

unsigned trusted_file_problems(const struct stat *st, unsigned flags)
{
        unsigned problems = 0;

        if ((flags & TRUSTED_FILE_REGULAR) && !S_ISREG(st->st_mode))
                problems |= TRUSTED_FILE_NOT_REGULAR;
        if (st->st_uid != 0 && st->st_uid != geteuid())
                problems |= TRUSTED_FILE_FOREIGN_OWNER;
        if (flags & TRUSTED_FILE_PRIVATE) {
                if (st->st_mode & (S_IRWXG | S_IRWXO))
                        problems |= TRUSTED_FILE_ACCESSIBLE;
        } else if ((st->st_mode & (S_IWGRP | S_IWOTH)) &&
                   !((flags & TRUSTED_FILE_STICKY_OK) && (st->st_mode & S_ISVTX)))
                problems |= TRUSTED_FILE_WRITABLE;
        return problems;
}

int trusted_file_check(int fd, const char *path, unsigned flags)
{
        struct stat st;
        unsigned problems;

        if (fstat(fd, &st) < 0)
                return log_error_errno(-errno, "Failed to stat %s", path);
        problems = trusted_file_problems(&st, flags);
        if (problems & TRUSTED_FILE_NOT_REGULAR) {
                log_error("%s is not a regular file.", path);
                return -EBADF;
        }
        if (problems & TRUSTED_FILE_FOREIGN_OWNER) {
                log_error("%s is owned by uid %u; it must be owned by root or uid %u "
                          "(chown root %s).",
                          path, (unsigned)st.st_uid, (unsigned)geteuid(), path);
                return -EPERM;
        }
        if (problems & TRUSTED_FILE_WRITABLE) {
                log_error("%s is writable by group or others; fix with: chmod go-w %s", path, path);
                return -EPERM;
        }
        if (problems & TRUSTED_FILE_ACCESSIBLE) {
                log_error("%s is accessible by group or others (mode %04o); fix with: chmod 0600 "
                          "%s",
                          path, (unsigned)(st.st_mode & 07777), path);
                return -EPERM;
        }
        return 0;
}
