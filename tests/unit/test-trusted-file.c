/* Unit tests for common/trusted-file: the one owner and mode rule behind the configuration, the
 * policy files, the PKCS#11 module and its directories and the PIN file, on synthetic stat
 * results (so a foreign owner needs no root), and the logging check on real files. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "trusted-file.h"

static struct stat make(mode_t mode, uid_t uid)
{
        struct stat st;

        memset(&st, 0, sizeof(st));
        st.st_mode = mode;
        st.st_uid = uid;
        return st;
}

static void test_owner(void)
{
        uid_t me = geteuid(), other = me == 4242 ? 4243 : 4242;
        struct stat st;

        st = make(S_IFREG | 0644, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_REGULAR), 0, "root-owned 0644 file: fine");
        st = make(S_IFREG | 0644, me);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_REGULAR), 0, "our own 0644 file: fine");
        st = make(S_IFREG | 0644, other);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_REGULAR), TRUSTED_FILE_FOREIGN_OWNER,
               "another uid's file: a foreign owner");
        st = make(S_IFDIR | 0755, other);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_STICKY_OK), TRUSTED_FILE_FOREIGN_OWNER,
               "another uid's directory: a foreign owner, sticky or not");
}

static void test_mode(void)
{
        struct stat st;

        st = make(S_IFREG | 0620, 0);
        is_int(trusted_file_problems(&st, 0), TRUSTED_FILE_WRITABLE, "group-writable: writable");
        st = make(S_IFREG | 0602, 0);
        is_int(trusted_file_problems(&st, 0), TRUSTED_FILE_WRITABLE, "other-writable: writable");
        st = make(S_IFREG | 0755, 0);
        is_int(trusted_file_problems(&st, 0), 0, "0755: readable and executable is fine");
        st = make(S_IFREG | 0666, 4242 == geteuid() ? 4243 : 4242);
        is_int(trusted_file_problems(&st, 0), TRUSTED_FILE_FOREIGN_OWNER | TRUSTED_FILE_WRITABLE,
               "every problem is reported, not only the first");

        /* The sticky exception (/tmp) holds only for who asks for it. */
        st = make(S_IFDIR | S_ISVTX | 0777, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_STICKY_OK), 0,
               "sticky world-writable directory with STICKY_OK: fine");
        is_int(trusted_file_problems(&st, 0), TRUSTED_FILE_WRITABLE,
               "sticky world-writable directory without STICKY_OK: writable");
        st = make(S_IFDIR | 0777, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_STICKY_OK), TRUSTED_FILE_WRITABLE,
               "world-writable directory that is not sticky: writable even with STICKY_OK");

        /* A secret: any bit for group or others, reading included. */
        st = make(S_IFREG | 0600, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_PRIVATE), 0, "private 0600: fine");
        st = make(S_IFREG | 0640, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_PRIVATE), TRUSTED_FILE_ACCESSIBLE,
               "private 0640: accessible");
        st = make(S_IFREG | 0601, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_PRIVATE), TRUSTED_FILE_ACCESSIBLE,
               "private 0601: accessible");
        st = make(S_IFREG | 0644, 0);
        is_int(trusted_file_problems(&st, 0), 0, "0644 is fine when not private");
}

static void test_regular(void)
{
        struct stat st;

        st = make(S_IFDIR | 0755, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_REGULAR), TRUSTED_FILE_NOT_REGULAR,
               "a directory where a regular file is needed");
        is_int(trusted_file_problems(&st, 0), 0, "a directory where a directory is fine");
        st = make(S_IFIFO | 0600, 0);
        is_int(trusted_file_problems(&st, TRUSTED_FILE_REGULAR | TRUSTED_FILE_PRIVATE),
               TRUSTED_FILE_NOT_REGULAR, "a FIFO is not a regular file");
}

static void test_check(void)
{
        char dir[] = "/tmp/test-trusted-file-XXXXXX", path[64];
        int fd;

        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof(path), "%s/f", dir);
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                abort();
        is_int(trusted_file_check(fd, path, TRUSTED_FILE_REGULAR | TRUSTED_FILE_PRIVATE), 0,
               "trusted_file_check: our own 0600 file");
        (void)fchmod(fd, 0620);
        is_int(trusted_file_check(fd, path, TRUSTED_FILE_REGULAR), -EPERM,
               "trusted_file_check: group-writable is -EPERM");
        (void)fchmod(fd, 0640);
        is_int(trusted_file_check(fd, path, TRUSTED_FILE_REGULAR), 0,
               "trusted_file_check: 0640 is fine when not private");
        is_int(trusted_file_check(fd, path, TRUSTED_FILE_PRIVATE), -EPERM,
               "trusted_file_check: 0640 is -EPERM when private");
        close(fd);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        is_int(trusted_file_check(fd, dir, TRUSTED_FILE_REGULAR), -EBADF,
               "trusted_file_check: a directory is -EBADF");
        is_int(trusted_file_check(-1, dir, 0), -EBADF, "trusted_file_check: a bad fd");
        close(fd);
        unlink(path);
        rmdir(dir);
}

int main(void)
{
        test_owner();
        test_mode();
        test_regular();
        test_check();
        return done_testing();
}
