/* credbroker setup: paths under a root or prefix, and files written without ever replacing one
 * (setup-files.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "setup-files.h"

static char *join(const char *a, const char *b)
{
        char *s;

        if (asprintf(&s, "%s%s", a, b) < 0)
                return NULL;
        return s;
}

char *setup_dest(const struct setup_root *root, const char *path)
{
        return join(root->dest, path);
}

char *setup_shown(const struct setup_root *root, const char *path)
{
        return join(root->shown, path);
}

/* An image's own users: its /etc/passwd, not this host's NSS. */
static int lookup_in_passwd(struct setup_root *root)
{
        _cleanup_free_ char *path = setup_dest(root, "/etc/passwd");
        _cleanup_fclose_ FILE *f = NULL;
        struct passwd *pw;

        if (!path)
                return -ENOMEM;
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ENOENT
                                       : log_error_errno(-errno, "Failed to read %s", path);
        while ((pw = fgetpwent(f)))
                if (strcmp(pw->pw_name, root->user) == 0) {
                        root->uid = pw->pw_uid;
                        root->gid = pw->pw_gid;
                        root->have_user = true;
                        return 0;
                }
        return -ENOENT;
}

int setup_lookup_user(struct setup_root *root)
{
        struct passwd *pw;

        root->have_user = false;
        if (strcmp(root->dest, root->shown) != 0)
                return lookup_in_passwd(root);
        errno = 0;
        pw = getpwnam(root->user);
        if (!pw)
                return errno && errno != ENOENT
                           ? log_error_errno(-errno, "Failed to look up %s", root->user)
                           : -ENOENT;
        root->uid = pw->pw_uid;
        root->gid = pw->pw_gid;
        root->have_user = true;
        return 0;
}

bool setup_exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

bool setup_dir_is_empty(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *de;
        bool empty = true;

        if (!d)
                return false;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        empty = false;
                        break;
                }
        closedir(d);
        return empty;
}

static int set_owner_mode(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
        if (geteuid() == 0 && lchown(path, uid, gid) < 0)
                return log_error_errno(-errno, "Failed to give %s to %u:%u", path, (unsigned)uid,
                                       (unsigned)gid);
        if (chmod(path, mode) < 0)
                return log_error_errno(-errno, "Failed to set the mode of %s", path);
        return 0;
}

int setup_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid, bool *ret_created)
{
        char buf[PATH_MAX];
        size_t len = strlen(path);

        if (len == 0 || len >= sizeof(buf) || path[0] != '/')
                return -EINVAL;
        memcpy(buf, path, len + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, 0755) == 0) {
                        if (chmod(buf, 0755) < 0) /* whatever our umask */
                                return log_error_errno(-errno, "Failed to chmod %s", buf);
                } else if (errno != EEXIST)
                        return log_error_errno(-errno, "Failed to create %s", buf);
                *p = '/';
        }
        if (mkdir(path, 0700) < 0) {
                if (errno != EEXIST)
                        return log_error_errno(-errno, "Failed to create %s", path);
                if (ret_created)
                        *ret_created = false;
                return 0;
        }
        if (ret_created)
                *ret_created = true;
        return set_owner_mode(path, mode, uid, gid);
}

int setup_write_file(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
                     gid_t gid)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r = 0;

        if (asprintf(&tmp, "%s.setup-new", path) < 0)
                return -ENOMEM;
        (void)unlink(tmp); /* an earlier run's leftover: ours, never read by anyone */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0600);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to create %s", tmp);
        if (geteuid() == 0 && fchown(fd, uid, gid) < 0)
                r = log_error_errno(-errno, "Failed to give %s to %u:%u", tmp, (unsigned)uid,
                                    (unsigned)gid);
        else if (fchmod(fd, mode) < 0)
                r = log_error_errno(-errno, "Failed to set the mode of %s", tmp);
        else if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
                r = log_error_errno(-errno ? -errno : -EIO, "Failed to write %s", tmp);
        else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0)
                r = errno == EEXIST ? -EEXIST : log_error_errno(-errno, "Failed to rename %s", tmp);
        if (r < 0)
                (void)unlink(tmp);
        return r;
}

int setup_move_aside(const char *path, const char *stamp, char **ret_new)
{
        _cleanup_free_ char *aside = NULL;

        if (asprintf(&aside, "%s.replaced-%s", path, stamp) < 0)
                return -ENOMEM;
        if (renameat2(AT_FDCWD, path, AT_FDCWD, aside, RENAME_NOREPLACE) < 0)
                return log_error_errno(-errno, "Failed to rename %s to %s", path, aside);
        *ret_new = TAKE_PTR(aside);
        return 0;
}

static uid_t tree_uid;
static gid_t tree_gid;

static int chown_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return lchown(path, tree_uid, tree_gid) < 0 ? -1 : 0;
}

int setup_chown_tree(const char *path, uid_t uid, gid_t gid)
{
        tree_uid = uid;
        tree_gid = gid;
        if (nftw(path, chown_one, 16, FTW_PHYS) != 0)
                return log_error_errno(-errno, "Failed to give %s to %u:%u", path, (unsigned)uid,
                                       (unsigned)gid);
        return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

int setup_remove_tree(const char *path)
{
        if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
                return log_error_errno(-errno, "Failed to remove %s", path);
        return 0;
}
