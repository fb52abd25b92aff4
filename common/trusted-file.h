/* The one ownership and mode rule for what decides what the broker trusts: its configuration, the
 * policy files and their directory, the PKCS#11 module and every directory above it, the PIN
 * file. Only root or the user we run as may be able to change them (design.md §7), as OpenSSH
 * asks of the paths to its keys. trusted_file_problems() applies the rule and says what is
 * wrong; each caller words the message for its own file (policy files are reported through the
 * policy reporter, the module with its config key), so the rule exists once and the messages
 * stay where the context is. */
#pragma once

#include <sys/stat.h>

/* What to ask of the file. */
enum trusted_file_flags {
        TRUSTED_FILE_REGULAR = 1u << 0,   /* must be a regular file */
        TRUSTED_FILE_STICKY_OK = 1u << 1, /* a sticky directory (/tmp) may be writable by group or
                                           * others: there nobody else can rename what is ours */
        TRUSTED_FILE_PRIVATE = 1u << 2,   /* a secret: no permission at all for group or others */
};

/* What is wrong, as bits; 0 when nothing is. */
enum trusted_file_problem {
        TRUSTED_FILE_NOT_REGULAR = 1u << 0,   /* with TRUSTED_FILE_REGULAR */
        TRUSTED_FILE_FOREIGN_OWNER = 1u << 1, /* owned by neither root nor our effective uid */
        TRUSTED_FILE_WRITABLE = 1u << 2,      /* writable by group or others */
        TRUSTED_FILE_ACCESSIBLE = 1u << 3,    /* with TRUSTED_FILE_PRIVATE: any group or other bit
                                               * (reported instead of TRUSTED_FILE_WRITABLE) */
};

/* Every problem of st under flags (enum trusted_file_flags), as enum trusted_file_problem bits. */
unsigned trusted_file_problems(const struct stat *st, unsigned flags);

/* fstat()s an opened file and checks it with trusted_file_problems(flags), logging the first
 * problem with the fix: "PATH is owned by uid N; it must be owned by root or uid M (chown root
 * PATH)." -EBADF for a file that is not regular, -EPERM for owner and mode. */
int trusted_file_check(int fd, const char *path, unsigned flags);
