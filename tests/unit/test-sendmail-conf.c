/* mail.conf (cli/mail-conf.c): loading, validation and the choice of a sendmail profile. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mail-conf.h"
#include "tap.h"

static char dir[] = "/tmp/test-sendmail-conf.XXXXXX";

static int load_text(const char *text, struct mail_conf **ret)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/mail.conf", dir);
        f = fopen(path, "w");
        if (!f)
                return -errno;
        fputs(text, f);
        fclose(f);
        chmod(path, 0644);
        return mail_conf_load(path, ret);
}

static void test_good(void)
{
        struct mail_conf *c = NULL;
        struct mail_conf_settings s;
        const char *text = "# host mail\n"
                           "[sendmail]\n"
                           "default_profile = alerts\n"
                           "aliases = /etc/credbroker/aliases\n"
                           "default_domain = contoso.com\n"
                           "maildrop = /srv/maildrop\n"
                           "\n"
                           "[users]\n"
                           "root = alerts\n"
                           "www-data = web\n"
                           "1001 = backup\n"
                           "[profile web]\n"
                           "mailbox = web@contoso.com\n"
                           "from_policy = keep\n";

        is_int(load_text(text, &c), 0, "a good mail.conf loads");
        if (!c)
                return;
        is_str(c->maildrop, "/srv/maildrop", "the maildrop directory");
        is_str(mail_conf_choose_profile(c, "cli", "env", 0, "root"), "cli", "-p wins");
        is_str(mail_conf_choose_profile(c, NULL, "env", 0, "root"), "env",
               "then CREDBROKER_PROFILE");
        is_str(mail_conf_choose_profile(c, NULL, "", 33, "www-data"), "web", "then the user name");
        is_str(mail_conf_choose_profile(c, NULL, NULL, 1001, "nosuch"), "backup", "then the uid");
        is_str(mail_conf_choose_profile(c, NULL, NULL, 4242, "nobody"), "alerts",
               "then default_profile");
        mail_conf_settings_for(c, "web", &s);
        is_str(s.mailbox, "web@contoso.com", "the profile's mailbox");
        is_int(s.from_policy, MAIL_CONF_FROM_KEEP, "the profile's from_policy");
        is_str(s.default_domain, "contoso.com", "the default domain from [sendmail]");
        is_str(s.aliases, "/etc/credbroker/aliases", "the aliases path from [sendmail]");
        mail_conf_settings_for(c, "alerts", &s);
        is_int(s.from_policy, MAIL_CONF_FROM_UNSET, "no policy set: unset (rewrite)");
        ok(s.mailbox == NULL, "no mailbox for a profile without a section");
        mail_conf_free(c);
}

static void test_bad(void)
{
        static const char *const bad[] = {
            "default_profile = x\n",                    /* outside a section */
            "[sendmail]\nnosuch = 1\n",                 /* unknown key */
            "[nosuch]\n",                               /* unknown section */
            "[sendmail]\ndefault_profile = Bad Name\n", /* not a profile name */
            "[sendmail]\nfrom_policy = sometimes\n",    /* not a policy */
            "[sendmail]\naliases = relative/path\n",    /* not absolute */
            "[profile x]\nmaildrop = /srv\n",           /* only in [sendmail] */
            "[sendmail]\ndefault_domain = a b\n",       /* not a domain */
            "[users]\nroot = a\nroot = b\n",            /* twice */
            "[profile x]\nmailbox = not-an-address\n",  /* not a mailbox */
            "[profile x]\n[profile x]\n",               /* twice */
        };
        struct mail_conf *c = NULL;
        char line[1200];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                c = NULL;
                char what[64];

                snprintf(what, sizeof(what), "bad mail.conf %zu is refused", i);
                if (!ok(load_text(bad[i], &c) == -EINVAL, what)) {
                        printf("#   the file: %s\n", bad[i]);
                        mail_conf_free(c);
                }
        }
        memset(line, 'x', sizeof(line));
        memcpy(line, "[sendmail]\n#", 12);
        line[sizeof(line) - 1] = 0;
        is_int(load_text(line, &c), -EINVAL, "a line over 1022 bytes");
}

static void test_missing_and_mode(void)
{
        struct mail_conf *c = NULL;
        char path[256];

        is_int(mail_conf_load("/nonexistent/mail.conf", &c), 0, "a missing file: empty");
        ok(c && !mail_conf_choose_profile(c, NULL, NULL, 0, "root"), "empty: no profile");
        mail_conf_free(c);
        c = NULL;
        is_int(load_text("[sendmail]\n", &c), 0, "a minimal file");
        mail_conf_free(c);
        c = NULL;
        snprintf(path, sizeof(path), "%s/mail.conf", dir);
        chmod(path, 0666);
        ok(mail_conf_load(path, &c) < 0, "a world-writable mail.conf is refused");
}

int main(void)
{
        log_set_level(LOG_LEVEL_ERROR);
        if (!mkdtemp(dir))
                return 1;
        test_good();
        test_bad();
        test_missing_and_mode();
        {
                char path[256];

                snprintf(path, sizeof(path), "%s/mail.conf", dir);
                unlink(path);
                rmdir(dir);
        }
        return done_testing();
}
