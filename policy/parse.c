/* The policy parser: reads policy.d (or one profile from memory), checks each file's owner and
 * mode, splices includes, and reports every problem as file:line: message. */
#include "policy-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashmap.h"
#include "log.h"
#include "trusted-file.h"
#include "util.h"

#define POLICY_FILE_MAX (64 * 1024)
#define DEFAULT_SCOPE   "/.default"

/* Parser state for one profile, shared across the files it includes. */
struct parser {
        int dirfd; /* -1: parsing a buffer, where include is refused */
        const char *dir;
        struct policy_profile *profile;
        const char *stack[POLICY_MAX_INCLUDE + 1]; /* file names being read, for cycles */
        size_t depth;
        struct policy_reporter *rep;
};

static void log_problem(const char *file, unsigned line, const char *message, void *userdata)
{
        (void)userdata;
        if (!*file)
                log_error("%s", message);
        else if (line == 0)
                log_error("%s: %s", file, message);
        else
                log_error("%s:%u: %s", file, line, message);
}

void policy_report(struct policy_reporter *rep, const char *file, unsigned line, const char *fmt,
                   ...)
{
        char message[512];
        uint64_t hash = 14695981039346656037u;
        char number[21];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        rep->errors++;

        /* A fragment's problems would otherwise come once for the fragment and again for every
         * profile that includes it. */
        format_u64(line, number);
        for (const char *part[] = {file, number, message}, **s = part; s < part + 3; s++)
                for (const char *c = *s;; c++) {
                        hash = (hash ^ (uint8_t)*c) * 1099511628211u;
                        if (!*c)
                                break;
                }
        for (size_t i = 0; i < rep->n_seen; i++)
                if (rep->seen[i] == hash)
                        return;
        if (rep->n_seen < ELEMENTSOF(rep->seen))
                rep->seen[rep->n_seen++] = hash;
        (rep->fn ? rep->fn : log_problem)(file, line, message, rep->userdata);
}

void policy_profile_free_internal(struct policy_profile *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->account);
        for (size_t i = 0; i < p->n_scopes; i++)
                free(p->scopes[i]);
        free(p->scopes);
        free(p->scope_key);
        for (size_t s = 0; s < ELEMENTSOF(p->stacks); s++) {
                for (size_t i = 0; i < p->n_rules[s]; i++)
                        policy_rule_clear(&p->stacks[s][i]);
                free(p->stacks[s]);
        }
        free(p);
}

static bool scope_is_default(const char *scope)
{
        size_t len = strlen(scope), n = strlen(DEFAULT_SCOPE);

        return len >= n && strcmp(scope + len - n, DEFAULT_SCOPE) == 0;
}

static void parse_scope(struct parser *ps, const char *file, unsigned line, char **words, size_t n)
{
        struct policy_profile *p = ps->profile;
        char **grown;

        if (n != 2 || !scope_is_valid(words[1])) {
                policy_report(ps->rep, file, line, "expected \"scope SCOPE\"");
                return;
        }
        if (strv_contains(p->scopes, p->n_scopes, words[1]))
                return;
        /* The identity platform refuses ".default" next to any other scope. */
        if (p->n_scopes > 0 && (scope_is_default(words[1]) || scope_is_default(p->scopes[0]))) {
                policy_report(ps->rep, file, line,
                              "a .default scope cannot share a profile with other scopes");
                return;
        }
        if (p->n_scopes == POLICY_MAX_SCOPES) {
                policy_report(ps->rep, file, line, "more than %d scopes", POLICY_MAX_SCOPES);
                return;
        }
        grown = reallocarray(p->scopes, p->n_scopes + 1, sizeof(*grown));
        if (grown)
                p->scopes = grown;
        if (!grown || !(p->scopes[p->n_scopes] = strdup(words[1])))
                policy_report(ps->rep, file, line, "out of memory");
        else
                p->n_scopes++;
}

static void parse_rule(struct parser *ps, enum policy_stack stack, const char *file, unsigned line,
                       char **words, size_t n)
{
        struct policy_profile *p = ps->profile;
        struct rule rule, *grown;

        if (p->n_rules[STACK_PEER] + p->n_rules[STACK_REQUEST] == POLICY_MAX_RULES) {
                policy_report(ps->rep, file, line, "more than %d rules in profile",
                              POLICY_MAX_RULES);
                return;
        }
        if (policy_rule_parse(&rule, stack, words + 1, n - 1, file, line, ps->rep) < 0)
                return;
        grown = reallocarray(p->stacks[stack], p->n_rules[stack] + 1, sizeof(*grown));
        if (!grown) {
                policy_rule_clear(&rule);
                policy_report(ps->rep, file, line, "out of memory");
                return;
        }
        p->stacks[stack] = grown;
        grown[p->n_rules[stack]++] = rule;
}

static int parse_file(struct parser *ps, const char *file, const char *from_file,
                      unsigned from_line);

static void parse_include(struct parser *ps, const char *file, unsigned line, char **words,
                          size_t n)
{
        if (n != 2 || !name_is_valid(words[1])) {
                policy_report(ps->rep, file, line, "expected \"include FILE\" ([a-z0-9._-])");
                return;
        }
        if (ps->dirfd < 0) {
                policy_report(ps->rep, file, line, "include is not available here");
                return;
        }
        for (size_t i = 0; i < ps->depth; i++)
                if (strcmp(ps->stack[i], words[1]) == 0) {
                        policy_report(ps->rep, file, line, "include cycle through %s", words[1]);
                        return;
                }
        /* stack[0] is the profile itself, so depth - 1 includes are open. */
        if (ps->depth > POLICY_MAX_INCLUDE) {
                policy_report(ps->rep, file, line, "includes nested deeper than %d",
                              POLICY_MAX_INCLUDE);
                return;
        }
        parse_file(ps, words[1], file, line);
}

static void parse_line(struct parser *ps, const char *file, unsigned line, char *text)
{
        struct policy_profile *p = ps->profile;
        char *words[POLICY_MAX_WORDS];
        char *save = NULL, *hash;
        size_t n = 0;

        hash = strchr(text, '#');
        if (hash)
                *hash = 0;
        for (char *w = strtok_r(text, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
                if (n == POLICY_MAX_WORDS) {
                        policy_report(ps->rep, file, line, "more than %d words", POLICY_MAX_WORDS);
                        return;
                }
                words[n++] = w;
        }
        if (n == 0)
                return;

        if (strcmp(words[0], "account") == 0) {
                if (n != 2 || !name_is_valid(words[1]))
                        policy_report(ps->rep, file, line,
                                      "expected \"account NAME\" ([a-z0-9._-], 1-64)");
                else if (p->account)
                        policy_report(ps->rep, file, line, "account given twice");
                else if (!(p->account = strdup(words[1])))
                        policy_report(ps->rep, file, line, "out of memory");
        } else if (strcmp(words[0], "scope") == 0)
                parse_scope(ps, file, line, words, n);
        else if (strcmp(words[0], "include") == 0)
                parse_include(ps, file, line, words, n);
        else if (strcmp(words[0], "peer") == 0)
                parse_rule(ps, STACK_PEER, file, line, words, n);
        else if (strcmp(words[0], "request") == 0)
                parse_rule(ps, STACK_REQUEST, file, line, words, n);
        else
                policy_report(ps->rep, file, line,
                              "unknown directive \"%.64s\" (account, scope, include, peer, "
                              "request)",
                              words[0]);
}

/* Splits text into lines for parse_line(). Every line is checked, so one run reports every
 * problem; a line that is too long or holds a NUL byte is reported and skipped. */
static void parse_text(struct parser *ps, const char *file, const char *text, size_t len)
{
        unsigned lineno = 0;
        size_t at = 0;

        while (at < len) {
                const char *start = text + at, *nl = memchr(start, '\n', len - at);
                size_t line_len = nl ? (size_t)(nl - start) : len - at;
                char line[POLICY_LINE_MAX];

                at += line_len + (nl ? 1 : 0);
                lineno++;
                if (line_len >= sizeof(line)) {
                        policy_report(ps->rep, file, lineno, "line longer than %d bytes",
                                      POLICY_LINE_MAX - 1);
                        continue;
                }
                if (memchr(start, 0, line_len)) {
                        policy_report(ps->rep, file, lineno, "NUL byte in line");
                        continue;
                }
                memcpy(line, start, line_len);
                line[line_len] = 0;
                parse_line(ps, file, lineno, line);
        }
}

/* The ownership and mode rules for every policy file and the directory (design.md §7): only root
 * or the broker's own user may be able to change what the broker allows. */
static int check_owner_and_mode(struct parser *ps, const struct stat *st, const char *file,
                                const char *path)
{
        unsigned problems = trusted_file_problems(st, 0);

        if (problems & TRUSTED_FILE_FOREIGN_OWNER)
                policy_report(ps->rep, file, 0,
                              "owned by uid %u; must be owned by root or uid %u (fix: chown root "
                              "%s)",
                              (unsigned)st->st_uid, (unsigned)geteuid(), path);
        if (problems & TRUSTED_FILE_WRITABLE)
                policy_report(ps->rep, file, 0, "writable by group or others (fix: chmod go-w %s)",
                              path);
        return problems ? -EPERM : 0;
}

static int read_file(struct parser *ps, const char *file, char **ret_text, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        char path[PATH_MAX];
        struct stat st;
        size_t len = 0;
        int r;

        snprintf(path, sizeof(path), "%s/%s", ps->dir, file);
        /* O_NONBLOCK: a FIFO planted here must not hang the broker before fstat refuses it. */
        fd = openat(ps->dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ELOOP)
                        policy_report(ps->rep, file, 0,
                                      "is a symbolic link; links are refused in the policy "
                                      "directory (fix: replace %s with the file itself)",
                                      path);
                else
                        policy_report(ps->rep, file, 0, "cannot open: %s", strerror(errno));
                return -errno;
        }
        if (fstat(fd, &st) < 0) {
                policy_report(ps->rep, file, 0, "cannot stat: %s", strerror(errno));
                return -errno;
        }
        if (!S_ISREG(st.st_mode)) {
                policy_report(ps->rep, file, 0, "not a regular file");
                return -EBADF;
        }
        if (check_owner_and_mode(ps, &st, file, path) < 0)
                return -EPERM;
        text = malloc(POLICY_FILE_MAX + 1);
        if (!text)
                return -ENOMEM;
        r = read_bounded(fd, text, POLICY_FILE_MAX, &len);
        if (r == -EFBIG) {
                policy_report(ps->rep, file, 0, "larger than %d bytes", POLICY_FILE_MAX);
                return r;
        }
        if (r < 0) {
                policy_report(ps->rep, file, 0, "cannot read: %s", strerror(-r));
                return r;
        }
        *ret_text = TAKE_PTR(text);
        *ret_len = len;
        return 0;
}

static int parse_file(struct parser *ps, const char *file, const char *from_file,
                      unsigned from_line)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        r = read_file(ps, file, &text, &len);
        if (r < 0) {
                if (from_file)
                        policy_report(ps->rep, from_file, from_line, "cannot include %s", file);
                return r;
        }
        ps->stack[ps->depth++] = file;
        parse_text(ps, file, text, len);
        ps->depth--;
        return 0;
}

static struct policy_profile *profile_new(const char *name)
{
        struct policy_profile *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->name = strdup(name);
        if (!p->name) {
                free(p);
                return NULL;
        }
        return p;
}

/* The checks on a whole profile once every line is read. */
static void finish_profile(struct parser *ps)
{
        struct policy_profile *p = ps->profile;

        if (p->n_scopes == 0)
                policy_report(ps->rep, p->name, 0, "no \"scope\" directive");
        else if (scope_key_build(p->scopes, p->n_scopes, &p->scope_key) < 0)
                policy_report(ps->rep, p->name, 0, "out of memory");
}

static int load_profile(int dirfd, const char *dir, const char *name, struct policy_reporter *rep,
                        struct policy_profile **ret)
{
        struct parser ps = {.dirfd = dirfd, .dir = dir, .rep = rep};
        unsigned errors_before = rep->errors;
        struct policy_profile *p;

        p = profile_new(name);
        if (!p)
                return -ENOMEM;
        ps.profile = p;
        parse_file(&ps, name, NULL, 0);
        if (rep->errors == errors_before && !p->account) {
                /* A file without "account" is a fragment for others to include, like
                 * pam.d's common-* files: parsed for errors, but not a profile. */
                policy_profile_free_internal(p);
                *ret = NULL;
                return 0;
        }
        if (rep->errors == errors_before)
                finish_profile(&ps);
        if (rep->errors != errors_before) {
                policy_profile_free_internal(p);
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

int policy_profile_parse_buffer(const char *name, const char *text, size_t len,
                                policy_error_fn on_error, void *userdata,
                                struct policy_profile **ret)
{
        struct policy_reporter rep = {.fn = on_error, .userdata = userdata};
        struct parser ps = {.dirfd = -1, .dir = "", .rep = &rep};
        struct policy_profile *p;

        if (!name_is_valid(name)) {
                policy_report(&rep, "", 0, "\"%.64s\" is not a valid profile name", name);
                return -EINVAL;
        }
        if (len > POLICY_FILE_MAX) {
                policy_report(&rep, name, 0, "larger than %d bytes", POLICY_FILE_MAX);
                return -EFBIG;
        }
        p = profile_new(name);
        if (!p)
                return -ENOMEM;
        ps.profile = p;
        ps.stack[ps.depth++] = name;
        parse_text(&ps, name, text, len);
        if (rep.errors == 0 && !p->account)
                policy_report(&rep, name, 0, "no \"account\" directive");
        if (rep.errors == 0)
                finish_profile(&ps);
        if (rep.errors > 0) {
                policy_profile_free_internal(p);
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

void policy_profile_free(struct policy_profile *p)
{
        policy_profile_free_internal(p);
}

static bool file_is_ignored(const char *name)
{
        static const char *const suffixes[] = {"~", ".rpmnew", ".rpmsave", ".swp"};
        size_t len = strlen(name);

        /* As pam.d: hidden files, editor backups and package-manager leftovers are not
         * profiles. */
        if (name[0] == '.' || strstr(name, ".dpkg-"))
                return true;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t n = strlen(suffixes[i]);
                if (len >= n && strcmp(name + len - n, suffixes[i]) == 0)
                        return true;
        }
        return false;
}

static int compare_profiles(const void *a, const void *b)
{
        const struct policy_profile *const *x = a, *const *y = b;

        return strcmp((*x)->name, (*y)->name);
}

static int add_profile(struct policy_set *set, struct policy_profile *p)
{
        if (set->n == set->allocated) {
                /* Doubling, not one more each time: a set of 10,000 profiles would otherwise be
                 * copied over and over while it loads. */
                size_t allocated = set->allocated ? 2 * set->allocated : 16;
                struct policy_profile **grown =
                    reallocarray(set->profiles, allocated, sizeof(*grown));

                if (!grown) {
                        policy_profile_free_internal(p);
                        return -ENOMEM;
                }
                set->profiles = grown;
                set->allocated = allocated;
        }
        set->profiles[set->n++] = p;
        return 0;
}

/* The name index policy_set_find() uses; file names in one directory are unique. */
static int index_profiles(struct policy_set *set)
{
        int r = hashmap_new(&set->by_name);

        for (size_t i = 0; r >= 0 && i < set->n; i++)
                r = hashmap_put(set->by_name, set->profiles[i]->name, set->profiles[i]);
        return r;
}

static void load_directory(DIR *d, const char *dir, struct policy_reporter *rep,
                           struct policy_set *set)
{
        struct dirent *de;
        struct stat st;

        if (fstat(dirfd(d), &st) < 0)
                policy_report(rep, "", 0, "%s: cannot stat: %s", dir, strerror(errno));
        else if (trusted_file_problems(&st, 0) & TRUSTED_FILE_FOREIGN_OWNER)
                policy_report(rep, "", 0,
                              "%s: owned by uid %u; must be owned by root or uid %u (fix: chown "
                              "root %s)",
                              dir, (unsigned)st.st_uid, (unsigned)geteuid(), dir);
        else if (trusted_file_problems(&st, 0) & TRUSTED_FILE_WRITABLE)
                policy_report(rep, "", 0, "%s: writable by group or others (fix: chmod go-w %s)",
                              dir, dir);

        while ((de = readdir(d))) {
                struct policy_profile *p;
                int r;

                if (file_is_ignored(de->d_name))
                        continue;
                if (de->d_type == DT_LNK) {
                        policy_report(rep, de->d_name, 0,
                                      "is a symbolic link; links are refused in the policy "
                                      "directory (fix: replace %s/%s with the file itself)",
                                      dir, de->d_name);
                        continue;
                }
                /* Subdirectories and the like are not profiles; an unknown type is found out
                 * by the checks of the open file. */
                if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
                        continue;
                if (!name_is_valid(de->d_name)) {
                        policy_report(rep, de->d_name, 0,
                                      "not a valid profile name ([a-z0-9._-], 1-64 characters); "
                                      "rename or remove it");
                        continue;
                }
                if (set->n == POLICY_MAX_PROFILES) {
                        policy_report(rep, "", 0, "%s: more than %d profiles", dir,
                                      POLICY_MAX_PROFILES);
                        return;
                }
                r = load_profile(dirfd(d), dir, de->d_name, rep, &p);
                if (r == -ENOMEM)
                        policy_report(rep, de->d_name, 0, "out of memory");
                if (r < 0 || !p)
                        continue;
                if (add_profile(set, p) < 0)
                        policy_report(rep, de->d_name, 0, "out of memory");
        }
}

int policy_set_load_reporting(const char *dir, policy_error_fn on_error, void *userdata,
                              struct policy_set **ret)
{
        _cleanup_(policy_set_freep) struct policy_set *set = NULL;
        struct policy_reporter rep = {.fn = on_error, .userdata = userdata};
        DIR *d;
        int fd, r;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                policy_report(&rep, "", 0, "%s: cannot open the policy directory: %s", dir,
                              strerror(-r));
                return r;
        }
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }
        set = calloc(1, sizeof(*set));
        if (!set) {
                closedir(d);
                return -ENOMEM;
        }
        load_directory(d, dir, &rep, set);
        closedir(d);
        if (rep.errors > 0)
                return -EINVAL;
        if (set->n > 0)
                qsort(set->profiles, set->n, sizeof(*set->profiles), compare_profiles);
        r = index_profiles(set);
        if (r < 0) {
                policy_report(&rep, "", 0, "%s: cannot index the profiles: %s", dir, strerror(-r));
                return r;
        }
        *ret = TAKE_PTR(set);
        return 0;
}

static void log_warning_of(const char *where, const char *message, void *userdata)
{
        (void)userdata;
        log_warning("%s: %s", where, message);
}

int policy_set_load(const char *dir, struct policy_set **ret)
{
        int r = policy_set_load_reporting(dir, NULL, NULL, ret);

        /* What "credbroker policy check" warns about goes to the log as well, at every load. */
        if (r >= 0)
                for (size_t i = 0; i < (*ret)->n; i++)
                        (void)policy_profile_lint((*ret)->profiles[i], log_warning_of, NULL);
        return r;
}
