/* Reading audit log files; see audit-files.h. */
#include "audit-files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "client.h" /* EXIT_* */
#include "util.h"

struct audit_reader {
        char *path;
        int fd;
        gzFile gz;
        unsigned long lineno;
        size_t start, end;
        bool skipping; /* inside a line longer than AUDIT_LINE_MAX */
        char buf[AUDIT_LINE_MAX + 1];
};

static bool has_suffix(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && strcmp(s + n - m, suffix) == 0;
}

int audit_reader_open(const char *path, struct audit_reader **ret)
{
        struct audit_reader *r;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->path = strdup(path);
        r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (!r->path || r->fd < 0) {
                int e = r->path ? errno : ENOMEM;
                audit_reader_free(r);
                return -e;
        }
        if (has_suffix(path, ".gz")) {
                /* gzdopen() takes the descriptor over (gzclose() closes it). */
                r->gz = gzdopen(r->fd, "rb");
                if (!r->gz) {
                        audit_reader_free(r);
                        return -ENOMEM;
                }
                r->fd = -1;
        }
        *ret = r;
        return 0;
}

void audit_reader_free(struct audit_reader *r)
{
        if (!r)
                return;
        if (r->gz)
                gzclose(r->gz);
        safe_close(r->fd);
        free(r->path);
        free(r);
}

unsigned long audit_reader_lineno(const struct audit_reader *r)
{
        return r->lineno;
}

const char *audit_reader_path(const struct audit_reader *r)
{
        return r->path;
}

int audit_reader_stat(const struct audit_reader *r, dev_t *dev, ino_t *ino)
{
        struct stat st;

        if (r->fd < 0)
                return -EBADF;
        if (fstat(r->fd, &st) < 0)
                return -errno;
        *dev = st.st_dev;
        *ino = st.st_ino;
        return 0;
}

/* Reads more bytes after the buffered ones: the count, 0 at the end, -errno. */
static ssize_t fill(struct audit_reader *r)
{
        size_t room = AUDIT_LINE_MAX - r->end;
        ssize_t n;

        if (r->gz) {
                int k = gzread(r->gz, r->buf + r->end, (unsigned)room);
                int zerr;
                if (k < 0) {
                        const char *msg = gzerror(r->gz, &zerr);
                        (void)msg;
                        return zerr == Z_ERRNO ? -errno : -EBADMSG;
                }
                n = k;
        } else {
                do
                        n = read(r->fd, r->buf + r->end, room);
                while (n < 0 && errno == EINTR);
                if (n < 0)
                        return -errno;
        }
        r->end += (size_t)n;
        return n;
}

/* The end of the file: the partial line left, if any. */
static int at_end(struct audit_reader *r, bool hold_partial, const char **ret_line, size_t *ret_len,
                  bool *ret_complete)
{
        if (hold_partial || (r->end == r->start && !r->skipping))
                return 0;
        r->lineno++;
        if (r->skipping) {
                r->skipping = false;
                r->start = r->end = 0;
                return -E2BIG;
        }
        r->buf[r->end] = 0;
        *ret_line = r->buf + r->start;
        *ret_len = r->end - r->start;
        *ret_complete = false;
        r->start = r->end;
        return 1;
}

int audit_reader_next(struct audit_reader *r, bool hold_partial, const char **ret_line,
                      size_t *ret_len, bool *ret_complete)
{
        for (;;) {
                char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
                ssize_t n;

                if (nl) {
                        size_t at = r->start;
                        bool skipped = r->skipping;
                        *nl = 0;
                        r->start = (size_t)(nl - r->buf) + 1;
                        r->lineno++;
                        r->skipping = false;
                        if (skipped)
                                return -E2BIG;
                        *ret_line = r->buf + at;
                        *ret_len = (size_t)(nl - r->buf) - at;
                        *ret_complete = true;
                        return 1;
                }
                if (r->end - r->start >= AUDIT_LINE_MAX) {
                        /* No "\n" within the bound: drop what is buffered of this line. */
                        r->skipping = true;
                        r->start = r->end = 0;
                } else if (r->start > 0) {
                        memmove(r->buf, r->buf + r->start, r->end - r->start);
                        r->end -= r->start;
                        r->start = 0;
                }
                n = fill(r);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return at_end(r, hold_partial, ret_line, ret_len, ret_complete);
        }
}

/* "N" or "N.gz" after "base.": N (≥ 1), else 0. */
static unsigned long rotated_number(const char *name, const char *base)
{
        size_t n = strlen(base);
        const char *p;
        char *end;
        unsigned long v;

        if (strncmp(name, base, n) != 0 || name[n] != '.')
                return 0;
        p = name + n + 1;
        if (*p < '1' || *p > '9')
                return 0;
        errno = 0;
        v = strtoul(p, &end, 10);
        if (errno != 0 || v > 1000000 || (*end != 0 && strcmp(end, ".gz") != 0))
                return 0;
        return v;
}

struct rotated {
        unsigned long n;
        char *name;
};

static int by_number_desc(const void *a, const void *b)
{
        const struct rotated *x = a, *y = b;

        return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->name, y->name);
}

/* The rotated files in dir, unsorted; *n_ret of them. */
static int find_rotated(const char *dir, const char *base, struct rotated **ret, size_t *n_ret)
{
        DIR *d = opendir(dir);
        struct rotated *list = NULL;
        size_t n = 0;
        struct dirent *de;

        while (d && (de = readdir(d))) {
                unsigned long num = rotated_number(de->d_name, base);
                struct rotated *grown;
                if (num == 0)
                        continue;
                grown = realloc(list, (n + 1) * sizeof(*list));
                if (!grown || !(grown[n].name = strdup(de->d_name))) {
                        if (grown)
                                list = grown;
                        for (size_t i = 0; i < n; i++)
                                free(list[i].name);
                        free(list);
                        closedir(d);
                        return -ENOMEM;
                }
                list = grown;
                list[n++].n = num;
        }
        if (d)
                closedir(d);
        *ret = list;
        *n_ret = n;
        return 0;
}

int audit_files_list(const char *log, char ***ret)
{
        _cleanup_free_ char *dir = strdup(log);
        struct rotated *rot = NULL;
        const char *base;
        char *slash, **files;
        size_t n = 0;
        int r;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        base = slash ? log + (slash - dir) + 1 : log;
        if (slash)
                *(slash == dir ? slash + 1 : slash) = 0;
        r = find_rotated(slash ? dir : ".", base, &rot, &n);
        if (r < 0)
                return r;
        if (n > 0)
                qsort(rot, n, sizeof(*rot), by_number_desc);
        files = calloc(n + 2, sizeof(char *));
        for (size_t i = 0; files && i < n; i++)
                if (asprintf(&files[i], "%.*s%s", (int)(base - log), log, rot[i].name) < 0)
                        files[i] = NULL;
        for (size_t i = 0; i < n; i++)
                free(rot[i].name);
        free(rot);
        if (!files)
                return -ENOMEM;
        files[n] = strdup(log);
        for (size_t i = 0; i <= n; i++)
                if (!files[i]) {
                        for (size_t j = 0; j <= n; j++)
                                free(files[j]);
                        free(files);
                        return -ENOMEM;
                }
        *ret = files;
        return 0;
}

int audit_files_open_error(const char *path, int error)
{
        if (error == EACCES || error == EPERM) {
                fprintf(stderr,
                        "credbroker: cannot read %s: %s (the audit log is readable by root and "
                        "the members of the configured audit_group)\n",
                        path, strerror(error));
                return EXIT_NOPERM;
        }
        fprintf(stderr, "credbroker: cannot read %s: %s\n", path, strerror(error));
        return error == ENOENT ? EXIT_NOINPUT : EXIT_DATAERR;
}
