/* Where the token's PIN comes from (pin_source: file:/path or credential:NAME) and reading it,
 * from a file whose owner and mode are checked, into a secret buffer. */
#include "store-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "secret.h"
#include "trusted-file.h"

#define PIN_MAX 256

/* Checks pin_source's syntax and returns the file to read, before any module is loaded. */
int p11_pin_source_path(const char *pin_source, char **ret_path, bool *ret_check_mode)
{
        const char *arg;
        char *path;

        if (!pin_source) {
                log_error("No pin_source configured; set pin_source = file:/path or "
                          "credential:NAME.");
                return -EINVAL;
        }
        if ((arg = p11_startswith(pin_source, "file:"))) {
                if (arg[0] != '/') {
                        log_error("pin_source %s: the file must be given as an absolute path, "
                                  "e.g. file:/etc/credbroker/pin.",
                                  pin_source);
                        return -EINVAL;
                }
                path = strdup(arg);
                if (!path)
                        return -ENOMEM;
                *ret_path = path;
                *ret_check_mode = true;
                return 0;
        }
        if ((arg = p11_startswith(pin_source, "credential:"))) {
                const char *dir;

                if (arg[0] == 0 || strchr(arg, '/') || strcmp(arg, ".") == 0 ||
                    strcmp(arg, "..") == 0 || strlen(arg) > NAME_MAX) {
                        log_error("pin_source %s: the credential name must be a plain file name "
                                  "as given to LoadCredential=.",
                                  pin_source);
                        return -EINVAL;
                }
                dir = secure_getenv("CREDENTIALS_DIRECTORY");
                if (!dir || dir[0] != '/') {
                        log_error("pin_source %s needs $CREDENTIALS_DIRECTORY, which is %s; "
                                  "add LoadCredential=%s:/path/to/pin (or "
                                  "LoadCredentialEncrypted=) to the service unit.",
                                  pin_source, dir ? "not an absolute path" : "not set", arg);
                        return -EINVAL;
                }
                if (asprintf(&path, "%s/%s", dir, arg) < 0)
                        return -ENOMEM;
                *ret_path = path;
                /* systemd owns $CREDENTIALS_DIRECTORY (read-only, private to the unit) and may
                 * grant our user access by ACL, which shows up as group bits in the mode. */
                *ret_check_mode = false;
                return 0;
        }
        log_error("pin_source \"%s\" is neither file:/path nor credential:NAME.", pin_source);
        return -EINVAL;
}

int p11_read_pin(const char *path, bool check_mode, struct secret **ret)
{
        _cleanup_close_ int fd = -1;
        char fd_path[64];
        struct stat st;
        unsigned problems;
        int r;

        /* O_NONBLOCK so a FIFO planted at the path cannot hang us before fstat() refuses it. */
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ELOOP)
                        return log_error_errno(-errno,
                                               "PIN file %s is a symbolic link; point "
                                               "pin_source at the file itself.",
                                               path);
                return log_error_errno(-errno, "Failed to open PIN file %s", path);
        }
        if (fstat(fd, &st) < 0)
                return log_error_errno(-errno, "Failed to stat PIN file %s", path);
        problems = trusted_file_problems(&st, TRUSTED_FILE_REGULAR | TRUSTED_FILE_PRIVATE);
        if (problems & TRUSTED_FILE_NOT_REGULAR) {
                log_error("PIN file %s is not a regular file.", path);
                return -EBADF;
        }
        if (check_mode) {
                if (problems & TRUSTED_FILE_FOREIGN_OWNER) {
                        log_error("PIN file %s is owned by uid %u; it must be owned by root or "
                                  "uid %u; fix with: chown %u %s",
                                  path, (unsigned)st.st_uid, (unsigned)geteuid(),
                                  (unsigned)geteuid(), path);
                        return -EPERM;
                }
                if (problems & TRUSTED_FILE_ACCESSIBLE) {
                        log_error("PIN file %s is accessible by group or others (mode %04o); "
                                  "fix with: chmod 0600 %s",
                                  path, (unsigned)(st.st_mode & 07777), path);
                        return -EPERM;
                }
        }

        /* Read the file we checked, not whatever the path names by now. */
        snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", fd);
        r = secret_from_file(fd_path, PIN_MAX, ret);
        if (r == -EFBIG)
                return log_error_errno(r, "PIN file %s is longer than %d bytes.", path, PIN_MAX);
        if (r == -ENODATA)
                return log_error_errno(r, "PIN file %s is empty.", path);
        if (r < 0)
                return log_error_errno(r, "Failed to read PIN file %s", path);
        return 0;
}
