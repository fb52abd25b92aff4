/* Policy parser and evaluator; see policy.h. This first version knows the directives account,
 * scope and include, and the peer stack with the uid and group modules. */
#include "policy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "util.h"

#define POLICY_MAX_IDS      32
#define POLICY_MAX_RULES    64
#define POLICY_MAX_PROFILES 1024
#define POLICY_LINE_MAX     1024
#define POLICY_MAX_WORDS    (POLICY_MAX_IDS + 3)

enum control {
        CONTROL_REQUIRED,
        CONTROL_REQUISITE,
        CONTROL_SUFFICIENT,
        CONTROL_OPTIONAL,
};

enum module {
        MODULE_UID,
        MODULE_GROUP,
};

struct rule {
        enum control control;
        enum module module;
        unsigned ids[POLICY_MAX_IDS];
        size_t n_ids;
        char where[POLICY_RULE_MAX_LEN];
};

struct policy_profile {
        char *name;
        char *account;
        char *scopes[POLICY_MAX_SCOPES];
        size_t n_scopes;
        char *scope_key;
        struct rule rules[POLICY_MAX_RULES];
        size_t n_rules;
};

struct policy_set {
        struct policy_profile **profiles; /* sorted by name */
        size_t n;
};

/* Parser state for one profile, shared across the files it includes. */
struct parser {
        int dirfd;
        struct policy_profile *profile;
        const char *stack[POLICY_MAX_INCLUDE + 1]; /* file names being read, for cycles */
        size_t depth;
        int errors;
};

static void profile_free(struct policy_profile *p)
{
        if (!p)
                return;
        free(p->name);
        free(p->account);
        for (size_t i = 0; i < p->n_scopes; i++)
                free(p->scopes[i]);
        free(p->scope_key);
        free(p);
}

void policy_set_free(struct policy_set *set)
{
        if (!set)
                return;
        for (size_t i = 0; i < set->n; i++)
                profile_free(set->profiles[i]);
        free(set->profiles);
        free(set);
}

#define parse_error(ps, file, line, ...)                                                           \
        do {                                                                                       \
                char _msg[256];                                                                    \
                snprintf(_msg, sizeof(_msg), __VA_ARGS__);                                         \
                log_error("%s:%u: %s", (file), (line), _msg);                                      \
                (ps)->errors++;                                                                    \
        } while (0)

static int resolve_uid(const char *word, unsigned *ret)
{
        char buffer[4096];
        struct passwd pw, *found = NULL;
        uint32_t id;

        if (parse_u32(word, &id) == 0) {
                *ret = id;
                return 0;
        }
        if (getpwnam_r(word, &pw, buffer, sizeof(buffer), &found) != 0 || !found)
                return -ENOENT;
        *ret = found->pw_uid;
        return 0;
}

static int resolve_gid(const char *word, unsigned *ret)
{
        char buffer[16384];
        struct group gr, *found = NULL;
        uint32_t id;

        if (parse_u32(word, &id) == 0) {
                *ret = id;
                return 0;
        }
        if (getgrnam_r(word, &gr, buffer, sizeof(buffer), &found) != 0 || !found)
                return -ENOENT;
        *ret = found->gr_gid;
        return 0;
}

static int parse_control(const char *word, enum control *ret)
{
        static const char *const names[] = {
            [CONTROL_REQUIRED] = "required",
            [CONTROL_REQUISITE] = "requisite",
            [CONTROL_SUFFICIENT] = "sufficient",
            [CONTROL_OPTIONAL] = "optional",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcmp(word, names[i]) == 0) {
                        *ret = (enum control)i;
                        return 0;
                }
        return -EINVAL;
}

static int parse_file(struct parser *ps, const char *file);

static void parse_peer_rule(struct parser *ps, const char *file, unsigned line, char **words,
                            size_t n)
{
        struct policy_profile *p = ps->profile;
        struct rule *rule;

        if (n < 4) {
                parse_error(ps, file, line, "expected \"peer CONTROL MODULE ARGUMENTS...\"");
                return;
        }
        if (p->n_rules == POLICY_MAX_RULES) {
                parse_error(ps, file, line, "more than %d rules", POLICY_MAX_RULES);
                return;
        }
        rule = &p->rules[p->n_rules];
        memset(rule, 0, sizeof(*rule));
        if (parse_control(words[1], &rule->control) < 0) {
                parse_error(ps, file, line,
                            "unknown control \"%.64s\" (required, requisite, sufficient, optional)",
                            words[1]);
                return;
        }
        if (strcmp(words[2], "uid") == 0)
                rule->module = MODULE_UID;
        else if (strcmp(words[2], "group") == 0)
                rule->module = MODULE_GROUP;
        else {
                parse_error(ps, file, line, "unknown peer module \"%.64s\" (uid, group)", words[2]);
                return;
        }
        for (size_t i = 3; i < n; i++) {
                int r = rule->module == MODULE_UID ? resolve_uid(words[i], &rule->ids[rule->n_ids])
                                                   : resolve_gid(words[i], &rule->ids[rule->n_ids]);
                if (r < 0) {
                        parse_error(ps, file, line, "unknown %s \"%.64s\"",
                                    rule->module == MODULE_UID ? "user" : "group", words[i]);
                        return;
                }
                rule->n_ids++;
        }
        snprintf(rule->where, sizeof(rule->where), "%s:%u", file, line);
        p->n_rules++;
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
                        parse_error(ps, file, line, "too many words");
                        return;
                }
                words[n++] = w;
        }
        if (n == 0)
                return;

        if (strcmp(words[0], "account") == 0) {
                if (n != 2 || !name_is_valid(words[1]))
                        parse_error(ps, file, line, "expected \"account NAME\" ([a-z0-9._-])");
                else if (p->account)
                        parse_error(ps, file, line, "account given twice");
                else if (!(p->account = strdup(words[1])))
                        ps->errors++;
        } else if (strcmp(words[0], "scope") == 0) {
                if (n != 2 || !scope_is_valid(words[1]))
                        parse_error(ps, file, line, "expected \"scope SCOPE\"");
                else if (p->n_scopes == POLICY_MAX_SCOPES)
                        parse_error(ps, file, line, "more than %d scopes", POLICY_MAX_SCOPES);
                else if (!strv_contains(p->scopes, p->n_scopes, words[1]) &&
                         !(p->scopes[p->n_scopes++] = strdup(words[1])))
                        ps->errors++;
        } else if (strcmp(words[0], "include") == 0) {
                if (n != 2 || !name_is_valid(words[1]))
                        parse_error(ps, file, line, "expected \"include PROFILE-FILE\"");
                else if (ps->depth >= POLICY_MAX_INCLUDE)
                        parse_error(ps, file, line, "includes nested deeper than %d",
                                    POLICY_MAX_INCLUDE);
                else {
                        for (size_t i = 0; i < ps->depth; i++)
                                if (strcmp(ps->stack[i], words[1]) == 0) {
                                        parse_error(ps, file, line, "include cycle through %s",
                                                    words[1]);
                                        return;
                                }
                        if (parse_file(ps, words[1]) < 0)
                                parse_error(ps, file, line, "cannot include %s", words[1]);
                }
        } else if (strcmp(words[0], "peer") == 0) {
                parse_peer_rule(ps, file, line, words, n);
        } else if (strcmp(words[0], "request") == 0) {
                parse_error(ps, file, line, "the request stack is not supported yet");
        } else {
                parse_error(ps, file, line,
                            "unknown directive \"%.64s\" (account, scope, include, peer)",
                            words[0]);
        }
}

static int parse_file(struct parser *ps, const char *file)
{
        _cleanup_close_ int fd = -1;
        _cleanup_fclose_ FILE *f = NULL;
        char line[POLICY_LINE_MAX];
        unsigned lineno = 0;
        int r;

        fd = openat(ps->dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open policy file %s", file);
        r = config_check_file_owner(fd, file);
        if (r < 0) {
                ps->errors++;
                return r;
        }
        f = fdopen(fd, "re");
        if (!f)
                return -errno;
        TAKE_FD(fd);

        ps->stack[ps->depth++] = file;
        while (fgets(line, sizeof(line), f)) {
                char *nl = strchr(line, '\n');

                lineno++;
                if (nl)
                        *nl = 0;
                else if (!feof(f)) {
                        parse_error(ps, file, lineno, "line longer than %d bytes",
                                    POLICY_LINE_MAX - 2);
                        break;
                }
                parse_line(ps, file, lineno, line);
        }
        ps->depth--;
        return 0;
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

static int load_profile(int dirfd, const char *name, struct policy_profile **ret)
{
        struct parser ps = {.dirfd = dirfd};
        struct policy_profile *p;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->name = strdup(name);
        if (!p->name) {
                profile_free(p);
                return -ENOMEM;
        }
        ps.profile = p;
        if (parse_file(&ps, name) < 0 && ps.errors == 0)
                ps.errors++;
        if (ps.errors == 0 && !p->account) {
                /* A file without "account" is a fragment for others to include, like
                 * pam.d's common-* files: parsed for errors, but not a profile. */
                profile_free(p);
                *ret = NULL;
                return 0;
        }
        if (ps.errors == 0 && p->n_scopes == 0) {
                log_error("%s: no \"scope\" directive.", name);
                ps.errors++;
        }
        if (ps.errors == 0 && scope_key_build(p->scopes, p->n_scopes, &p->scope_key) < 0)
                ps.errors++;
        if (ps.errors > 0) {
                profile_free(p);
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

int policy_set_load(const char *dir, struct policy_set **ret)
{
        _cleanup_(policy_set_freep) struct policy_set *set = NULL;
        DIR *d;
        struct dirent *de;
        int dirfd, errors = 0;

        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return log_error_errno(errno, "Failed to open policy directory %s", dir);
        d = fdopendir(dirfd);
        if (!d) {
                safe_close(dirfd);
                return -errno;
        }
        set = calloc(1, sizeof(*set));
        if (!set) {
                closedir(d);
                return -ENOMEM;
        }

        while ((de = readdir(d))) {
                struct policy_profile *p, **grown;

                if (file_is_ignored(de->d_name))
                        continue;
                if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN) {
                        if (de->d_type == DT_LNK) {
                                log_error("%s/%s: symbolic links are refused in the policy "
                                          "directory.",
                                          dir, de->d_name);
                                errors++;
                        }
                        continue;
                }
                if (!name_is_valid(de->d_name)) {
                        log_error("%s/%s: not a valid profile name ([a-z0-9._-], 1-64).", dir,
                                  de->d_name);
                        errors++;
                        continue;
                }
                if (set->n == POLICY_MAX_PROFILES) {
                        log_error("%s: more than %d profiles.", dir, POLICY_MAX_PROFILES);
                        errors++;
                        break;
                }
                if (load_profile(dirfd, de->d_name, &p) < 0) {
                        errors++;
                        continue;
                }
                if (!p)
                        continue;
                grown = reallocarray(set->profiles, set->n + 1, sizeof(*grown));
                if (!grown) {
                        profile_free(p);
                        closedir(d);
                        return -ENOMEM;
                }
                set->profiles = grown;
                set->profiles[set->n++] = p;
        }
        closedir(d);
        if (errors > 0)
                return -EINVAL;
        if (set->n > 0)
                qsort(set->profiles, set->n, sizeof(*set->profiles), compare_profiles);
        *ret = TAKE_PTR(set);
        return 0;
}

const struct policy_profile *policy_set_find(const struct policy_set *set, const char *name)
{
        size_t lo = 0, hi = set->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(name, set->profiles[mid]->name);
                if (c == 0)
                        return set->profiles[mid];
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

size_t policy_set_count(const struct policy_set *set)
{
        return set->n;
}

const struct policy_profile *policy_set_get(const struct policy_set *set, size_t i)
{
        return i < set->n ? set->profiles[i] : NULL;
}

const char *policy_profile_name(const struct policy_profile *p)
{
        return p->name;
}

const char *policy_profile_account(const struct policy_profile *p)
{
        return p->account;
}

char *const *policy_profile_scopes(const struct policy_profile *p, size_t *ret_n)
{
        *ret_n = p->n_scopes;
        return p->scopes;
}

const char *policy_profile_scope_key(const struct policy_profile *p)
{
        return p->scope_key;
}

bool policy_profile_allows_scopes(const struct policy_profile *p, char *const *scopes, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!strv_contains(p->scopes, p->n_scopes, scopes[i]))
                        return false;
        return true;
}

static bool rule_matches(const struct rule *rule, const struct policy_peer *peer)
{
        for (size_t i = 0; i < rule->n_ids; i++) {
                unsigned id = rule->ids[i];

                if (rule->module == MODULE_UID && peer->uid == id)
                        return true;
                if (rule->module == MODULE_GROUP) {
                        if (peer->gid == id)
                                return true;
                        for (size_t g = 0; g < peer->n_groups; g++)
                                if (peer->groups[g] == id)
                                        return true;
                }
        }
        return false;
}

static void decide(struct policy_decision *ret, bool allow, const char *where, const char *reason)
{
        ret->verdict = allow ? POLICY_ALLOW : POLICY_DENY;
        ret->rate_key[0] = 0;
        ret->retry_after = 0;
        ret->reason = reason;
        snprintf(ret->rule, sizeof(ret->rule), "%s", where);
}

/* Linux-PAM's controls (pam.conf(5)): required fails the stack but keeps going; requisite
 * fails it at once; sufficient succeeds at once unless a required module already failed, and
 * its failure is ignored; optional counts only when it is the only module. The stack allows
 * only when some module set success and none set failure: an empty stack denies. */
void policy_evaluate_peer(const struct policy_profile *p, const struct policy_peer *peer,
                          const struct policy_time *now, struct policy_decision *ret)
{
        (void)now;
        const struct rule *failed = NULL, *succeeded = NULL;

        if (p->n_rules == 0) {
                decide(ret, false, p->name, "empty peer stack");
                return;
        }
        for (size_t i = 0; i < p->n_rules; i++) {
                const struct rule *rule = &p->rules[i];
                bool match = rule_matches(rule, peer);

                switch (rule->control) {
                case CONTROL_REQUIRED:
                case CONTROL_REQUISITE:
                        if (!match) {
                                if (!failed)
                                        failed = rule;
                                if (rule->control == CONTROL_REQUISITE) {
                                        decide(ret, false, rule->where, "requisite rule failed");
                                        return;
                                }
                        } else if (!succeeded)
                                succeeded = rule;
                        break;
                case CONTROL_SUFFICIENT:
                        if (match && !failed) {
                                decide(ret, true, rule->where, "sufficient rule matched");
                                return;
                        }
                        break;
                case CONTROL_OPTIONAL:
                        /* Counts only as the only rule (pam.conf(5)): among others, an
                         * optional match must not let a peer in. */
                        if (p->n_rules == 1) {
                                if (match)
                                        succeeded = rule;
                                else
                                        failed = rule;
                        }
                        break;
                }
        }
        if (failed)
                decide(ret, false, failed->where, "required rule failed");
        else if (succeeded)
                decide(ret, true, succeeded->where, "stack succeeded");
        else
                decide(ret, false, p->name, "no rule succeeded");
}

/* The request stack and the rate module come next; until then a full evaluation is the peer
 * stack's. */
void policy_evaluate(const struct policy_profile *p, const struct policy_peer *peer,
                     const struct policy_request *req, const struct policy_time *now,
                     struct policy_limiter *limiter, struct policy_decision *ret)
{
        (void)req;
        (void)limiter;
        policy_evaluate_peer(p, peer, now, ret);
}

struct policy_limiter {
        int unused;
};

struct policy_limiter *policy_limiter_new(void)
{
        return calloc(1, sizeof(struct policy_limiter));
}

void policy_limiter_free(struct policy_limiter *l)
{
        free(l);
}
