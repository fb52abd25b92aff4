/* The aliases file: "local: address[, address…]" lines (e.g. "root: ops@contoso.com"), '#'
 * comments, like /etc/aliases without its :include: and pipe forms. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cleanup.h"
#include "message.h"
#include "util.h"

#define ALIASES_FILE_MAX    (1024 * 1024)
#define ALIASES_ENTRIES_MAX 10000

struct mail_aliases_entry {
        char *local;
        char *target;
};

struct mail_aliases {
        struct mail_aliases_entry *entries;
        size_t n;
};

void mail_aliases_free(struct mail_aliases *a)
{
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++) {
                free(a->entries[i].local);
                free(a->entries[i].target);
        }
        free(a->entries);
        free(a);
}

static char *trim(char *s)
{
        size_t n;

        while (isspace((unsigned char)*s))
                s++;
        n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = 0;
        return s;
}

static int add_line(struct mail_aliases *a, char *line)
{
        struct mail_aliases_entry *e;
        char *colon, *local, *target;

        line[strcspn(line, "#")] = 0;
        line = trim(line);
        if (!*line)
                return 0;
        colon = strchr(line, ':');
        if (!colon)
                return -EINVAL;
        *colon = 0;
        local = trim(line);
        target = trim(colon + 1);
        if (!*local || !*target || strpbrk(local, " \t@") || a->n >= ALIASES_ENTRIES_MAX)
                return -EINVAL;
        e = realloc(a->entries, (a->n + 1) * sizeof(*e));
        if (!e)
                return -ENOMEM;
        a->entries = e;
        e[a->n].local = strdup(local);
        e[a->n].target = strdup(target);
        if (!e[a->n].local || !e[a->n].target) {
                free(e[a->n].local), free(e[a->n].target);
                return -ENOMEM;
        }
        a->n++;
        return 0;
}

/* Parses text (NUL terminated, modified). -EINVAL for a malformed line. */
static int parse_text(struct mail_aliases *a, char *text)
{
        char *save = NULL;

        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                int r = add_line(a, line);
                if (r < 0)
                        return r;
        }
        return 0;
}

int mail_aliases_load(const char *path, struct mail_aliases **ret)
{
        struct mail_aliases *a = calloc(1, sizeof(*a));
        _cleanup_free_ char *text = malloc(ALIASES_FILE_MAX + 1);
        _cleanup_close_ int fd = -1;
        size_t len = 0;
        int r = 0;

        if (!a || !text) {
                free(a);
                return -ENOMEM;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 && errno != ENOENT)
                r = -errno;
        if (fd >= 0)
                r = read_bounded(fd, text, ALIASES_FILE_MAX, &len);
        if (r >= 0) {
                text[len] = 0;
                r = memchr(text, 0, len) ? -EINVAL : parse_text(a, text);
        }
        if (r < 0) {
                mail_aliases_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

const char *mail_aliases_lookup(const struct mail_aliases *a, const char *local)
{
        for (size_t i = 0; a && i < a->n; i++)
                if (strcasecmp(a->entries[i].local, local) == 0)
                        return a->entries[i].target;
        return NULL;
}
