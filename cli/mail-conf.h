/* /etc/credbroker/mail.conf: what credbroker sendmail needs before it asks the broker, in a file
 * every user may read (the broker's own configuration is root's): which profile a caller mails
 * under, and per profile the aliases file, default domain and From policy. docs/mail.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "build-config.h"
#include "cleanup.h"

#define MAIL_CONF_DEFAULT_PATH SYSCONFDIR "/mail.conf"
#define MAIL_CONF_SIZE_MAX     (64u * 1024u)
#define MAIL_CONF_USERS_MAX    1024u
#define MAIL_CONF_PROFILES_MAX 64u

enum mail_conf_from_policy {
        MAIL_CONF_FROM_UNSET,
        MAIL_CONF_FROM_REWRITE,
        MAIL_CONF_FROM_KEEP,
        MAIL_CONF_FROM_REJECT,
};

/* [sendmail] (the defaults) or [profile NAME]: NULL / UNSET where the file says nothing. */
struct mail_conf_settings {
        char *name;    /* NULL for [sendmail] */
        char *mailbox; /* the profile's mailbox, for mail prepared while the broker is down */
        char *aliases; /* absolute path of an aliases file */
        char *default_domain; /* for bare local names (root, user) */
        enum mail_conf_from_policy from_policy;
};

struct mail_conf_user {
        char *user; /* a user name or a decimal uid */
        char *profile;
};

struct mail_conf {
        char *default_profile;
        char *maildrop; /* [sendmail] maildrop: the broker's maildrop_dir when not the default */
        struct mail_conf_settings defaults;
        struct mail_conf_user *users;
        size_t n_users;
        struct mail_conf_settings *profiles;
        size_t n_profiles;
};

/* Loads path: a missing file is an empty configuration. The file must be owned by root (or the
 * caller) and not writable by others (trusted_file_check). Unknown sections or keys, bad values,
 * over-long lines and more than the limits above are errors (-EINVAL, logged with the line). */
int mail_conf_load(const char *path, struct mail_conf **ret);
void mail_conf_free(struct mail_conf *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct mail_conf *, mail_conf_free)

/* The path to load: $CREDBROKER_MAIL_CONFIG (secure_getenv) when set, else the default. */
const char *mail_conf_path(void);

/* The profile a sendmail caller uses: option (-p), else env ($CREDBROKER_PROFILE), else the
 * [users] entry for user_name, else the one for uid, else default_profile; NULL when none. */
const char *mail_conf_choose_profile(const struct mail_conf *c, const char *option, const char *env,
                                     uid_t uid, const char *user_name);

/* The settings for profile: its [profile NAME] values over the [sendmail] defaults. The strings
 * point into c. */
void mail_conf_settings_for(const struct mail_conf *c, const char *profile,
                            struct mail_conf_settings *ret);
