/* mail.conf; see mail-conf.h. The same INI shape as credbroker.conf: "[section]", "key = value",
 * '#' or ';' comments. */
#include "mail-conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "trusted-file.h"
#include "util.h"

#define LINE_MAX_BYTES 1024

static char *trim(char *s)
{
        size_t n;

        s += strspn(s, " \t");
        n = strlen(s);
        while (n > 0 && strchr(" \t\r", s[n - 1]))
                s[--n] = 0;
        return s;
}

static void settings_done(struct mail_conf_settings *s)
{
        free(s->name);
        free(s->mailbox);
        free(s->aliases);
        free(s->default_domain);
}

void mail_conf_free(struct mail_conf *c)
{
        if (!c)
                return;
        free(c->default_profile);
        free(c->maildrop);
        settings_done(&c->defaults);
        for (size_t i = 0; i < c->n_users; i++) {
                free(c->users[i].user);
                free(c->users[i].profile);
        }
        free(c->users);
        for (size_t i = 0; i < c->n_profiles; i++)
                settings_done(&c->profiles[i]);
        free(c->profiles);
        free(c);
}

/* A domain: letters, digits, '-' and '.', 1..253 bytes. */
static bool domain_is_valid(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= 253 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-.") == n &&
               s[0] != '.' && s[0] != '-';
}

static bool mailbox_is_valid(const char *s)
{
        const char *at = strchr(s, '@');
        size_t n = strlen(s);

        if (!at || at == s || n > 320 || strchr(at + 1, '@') || !domain_is_valid(at + 1))
                return false;
        for (const char *p = s; p < at; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
                    strchr("<>()[]\\,;:\"", *p))
                        return false;
        return true;
}

static int set_string(char **field, const char *value)
{
        char *copy = strdup(value);

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* A key of [sendmail] or [profile NAME]. -ENOENT for an unknown key, -EINVAL for a bad value. */
static int settings_set(struct mail_conf_settings *s, const char *key, const char *value)
{
        static const char *const policies[] = {"rewrite", "keep", "reject"};

        if (strcmp(key, "mailbox") == 0)
                return mailbox_is_valid(value) ? set_string(&s->mailbox, value) : -EINVAL;
        if (strcmp(key, "aliases") == 0)
                return value[0] == '/' && strlen(value) < 4096 ? set_string(&s->aliases, value)
                                                               : -EINVAL;
        if (strcmp(key, "default_domain") == 0)
                return domain_is_valid(value) ? set_string(&s->default_domain, value) : -EINVAL;
        if (strcmp(key, "from_policy") == 0) {
                for (size_t i = 0; i < ELEMENTSOF(policies); i++)
                        if (strcmp(value, policies[i]) == 0) {
                                s->from_policy = (enum mail_conf_from_policy)(i + 1);
                                return 0;
                        }
                return -EINVAL;
        }
        return -ENOENT;
}

/* A user name as useradd allows it, or a decimal uid. */
static bool user_key_is_valid(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= 32 && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$") == n;
}

static int users_set(struct mail_conf *c, const char *key, const char *value)
{
        struct mail_conf_user *grown;

        if (!user_key_is_valid(key) || !name_is_valid(value))
                return -EINVAL;
        if (c->n_users >= MAIL_CONF_USERS_MAX)
                return -E2BIG;
        for (size_t i = 0; i < c->n_users; i++)
                if (strcmp(c->users[i].user, key) == 0)
                        return -EEXIST;
        grown = reallocarray(c->users, c->n_users + 1, sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        c->users = grown;
        c->users[c->n_users] = (struct mail_conf_user){strdup(key), strdup(value)};
        if (!c->users[c->n_users].user || !c->users[c->n_users].profile) {
                free(c->users[c->n_users].user);
                free(c->users[c->n_users].profile);
                return -ENOMEM;
        }
        c->n_users++;
        return 0;
}

/* "[sendmail]", "[users]" or "[profile NAME]": the settings later keys go to (NULL for
 * [users]) in *ret. */
static int open_section(struct mail_conf *c, const char *name, struct mail_conf_settings **ret,
                        bool *ret_users)
{
        struct mail_conf_settings *grown;

        *ret_users = strcmp(name, "users") == 0;
        *ret = NULL;
        if (*ret_users)
                return 0;
        if (strcmp(name, "sendmail") == 0) {
                *ret = &c->defaults;
                return 0;
        }
        if (strncmp(name, "profile ", 8) != 0 || !name_is_valid(trim((char *)name + 8)))
                return -EINVAL;
        name = trim((char *)name + 8);
        for (size_t i = 0; i < c->n_profiles; i++)
                if (strcmp(c->profiles[i].name, name) == 0)
                        return -EEXIST;
        if (c->n_profiles >= MAIL_CONF_PROFILES_MAX)
                return -E2BIG;
        grown = reallocarray(c->profiles, c->n_profiles + 1, sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        c->profiles = grown;
        c->profiles[c->n_profiles] = (struct mail_conf_settings){.name = strdup(name)};
        if (!c->profiles[c->n_profiles].name)
                return -ENOMEM;
        *ret = &c->profiles[c->n_profiles++];
        return 0;
}

struct parser {
        struct mail_conf *conf;
        struct mail_conf_settings *settings; /* the section's, NULL in [users] or before any */
        bool in_users, in_section;
};

static int parse_line(struct parser *p, char *line)
{
        char *s = trim(line), *eq, *key, *value;

        if (*s == 0 || *s == '#' || *s == ';')
                return 0;
        if (*s == '[') {
                char *end = strchr(s, ']');

                if (!end || end[1] != 0)
                        return -EINVAL;
                *end = 0;
                p->in_section = true;
                return open_section(p->conf, s + 1, &p->settings, &p->in_users);
        }
        eq = strchr(s, '=');
        if (!eq || !p->in_section)
                return -EINVAL;
        *eq = 0;
        key = trim(s);
        value = trim(eq + 1);
        if (p->in_users)
                return users_set(p->conf, key, value);
        if (p->settings == &p->conf->defaults && strcmp(key, "default_profile") == 0)
                return name_is_valid(value) ? set_string(&p->conf->default_profile, value)
                                            : -EINVAL;
        if (p->settings == &p->conf->defaults && strcmp(key, "maildrop") == 0)
                return value[0] == '/' && strlen(value) < 4096
                           ? set_string(&p->conf->maildrop, value)
                           : -EINVAL;
        return settings_set(p->settings, key, value);
}

static const char *problem(int r)
{
        switch (r) {
        case -ENOENT:
                return "unknown key";
        case -EEXIST:
                return "given twice";
        case -E2BIG:
                return "too many entries";
        case -ENOMEM:
                return "out of memory";
        default:
                return "invalid line or value";
        }
}

static int parse_file(FILE *f, const char *path, struct mail_conf *c)
{
        struct parser p = {.conf = c};
        char line[LINE_MAX_BYTES];
        unsigned lineno = 0;
        int r;

        while (fgets(line, sizeof(line), f)) {
                char *nl = strchr(line, '\n');

                lineno++;
                if (nl)
                        *nl = 0;
                else if (!feof(f))
                        return log_error_errno(-EINVAL, "%s:%u: line longer than %d bytes.", path,
                                               lineno, LINE_MAX_BYTES - 2);
                r = parse_line(&p, line);
                if (r < 0)
                        return log_error_errno(r == -ENOMEM ? r : -EINVAL, "%s:%u: %s.", path,
                                               lineno, problem(r));
        }
        return ferror(f) ? -EIO : 0;
}

int mail_conf_load(const char *path, struct mail_conf **ret)
{
        _cleanup_(mail_conf_freep) struct mail_conf *c = calloc(1, sizeof(*c));
        _cleanup_close_ int fd = -1;
        _cleanup_fclose_ FILE *f = NULL;
        struct stat st;
        int r;

        if (!c)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0 && errno == ENOENT) {
                *ret = TAKE_PTR(c);
                return 0;
        }
        if (fd < 0)
                return log_error_errno(-errno, "Failed to open %s", path);
        r = trusted_file_check(fd, path, TRUSTED_FILE_REGULAR);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size > (off_t)MAIL_CONF_SIZE_MAX)
                return log_error_errno(-EFBIG, "%s is larger than %u bytes.", path,
                                       MAIL_CONF_SIZE_MAX);
        f = fdopen(fd, "re");
        if (!f)
                return -errno;
        TAKE_FD(fd);
        r = parse_file(f, path, c);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

const char *mail_conf_path(void)
{
        const char *env = secure_getenv("CREDBROKER_MAIL_CONFIG");

        return env && *env ? env : MAIL_CONF_DEFAULT_PATH;
}

const char *mail_conf_choose_profile(const struct mail_conf *c, const char *option, const char *env,
                                     uid_t uid, const char *user_name)
{
        char uid_text[21];

        if (option)
                return option;
        if (env && *env)
                return env;
        if (!c)
                return NULL;
        snprintf(uid_text, sizeof(uid_text), "%lu", (unsigned long)uid);
        for (size_t i = 0; user_name && i < c->n_users; i++)
                if (strcmp(c->users[i].user, user_name) == 0)
                        return c->users[i].profile;
        for (size_t i = 0; i < c->n_users; i++)
                if (strcmp(c->users[i].user, uid_text) == 0)
                        return c->users[i].profile;
        return c->default_profile;
}

void mail_conf_settings_for(const struct mail_conf *c, const char *profile,
                            struct mail_conf_settings *ret)
{
        const struct mail_conf_settings *p = NULL;

        *ret = c->defaults;
        ret->name = NULL;
        for (size_t i = 0; profile && i < c->n_profiles; i++)
                if (strcmp(c->profiles[i].name, profile) == 0)
                        p = &c->profiles[i];
        if (!p)
                return;
        ret->name = p->name;
        if (p->mailbox)
                ret->mailbox = p->mailbox;
        if (p->aliases)
                ret->aliases = p->aliases;
        if (p->default_domain)
                ret->default_domain = p->default_domain;
        if (p->from_policy != MAIL_CONF_FROM_UNSET)
                ret->from_policy = p->from_policy;
}
