/* credbroker setup: where its files go (a root or prefix for tests and images) and how they are
 * written: never over an existing file, owner and mode set before the file has its name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct setup_root {
        const char *dest;  /* where files are written: "" for /, else the --root/--prefix DIR */
        const char *shown; /* prefix of the paths written into files: "" unless --prefix */
        const char *user;  /* the service unit's User= */
        bool have_user;    /* user exists (in DEST/etc/passwd with --root, else on this host) */
        uid_t uid;
        gid_t gid;
};

/* dest + path and shown + path, malloc()ed; NULL when out of memory. */
char *setup_dest(const struct setup_root *root, const char *path);
char *setup_shown(const struct setup_root *root, const char *path);

/* Looks the user up: in DEST/etc/passwd when dest and shown differ (--root: an image with its
 * own users), else through NSS on this host. 0 found, -ENOENT not there. */
int setup_lookup_user(struct setup_root *root);

bool setup_exists(const char *path);
/* Whether path is a directory with no entry (false when it does not exist). */
bool setup_dir_is_empty(const char *path);

/* mkdir -p: missing parents root's 0755, path itself with mode, uid and gid (also when it
 * exists already: only the new directories are changed). *ret_created (may be NULL) says
 * whether path was made now. */
int setup_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid, bool *ret_created);

/* Writes a new file: a temporary name in the same directory, created O_EXCL with mode, owned by
 * uid:gid, flushed, then renamed to path without replacing anything (-EEXIST when path exists).
 * Ownership is left alone when we are not root. */
int setup_write_file(const char *path, const void *data, size_t len, mode_t mode, uid_t uid,
                     gid_t gid);

/* Renames path to path.replaced-STAMP (--force never deletes); *ret_new is the new name. */
int setup_move_aside(const char *path, const char *stamp, char **ret_new);

/* chown -R (not following symbolic links). */
int setup_chown_tree(const char *path, uid_t uid, gid_t gid);
/* rm -r, for undoing what this run itself created. */
int setup_remove_tree(const char *path);
