/* credbroker sendmail: a drop-in /usr/sbin/sendmail for the programs that mail from a host (cron,
 * mdadm, PHP, mailx, git send-email...), delivering through Graph with a brokered token, or into
 * the broker's spool when Graph, the token endpoint or the broker cannot be reached. Also run as
 * "sendmail", "mailq" or "newaliases" through a symlink (docs/mail.md). */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "client.h"
#include "commands.h"
#include "log.h"
#include "mail-conf.h"
#include "mail-deliver.h"
#include "queue.h"
#include "sendmail-args.h"
#include "sendmail-input.h"
#include "smtp.h"
#include "util.h"

/* What every delivery of this run shares. */
struct sendmail_context {
        const struct sendmail_args *args;
        const char *socket;
        const char *profile;
        struct mail_conf_settings settings;
        struct mail_aliases *aliases;
        const char *maildrop; /* mail.conf's, NULL: the default */
        char hostname[256];
};

static void context_done(struct sendmail_context *c)
{
        mail_aliases_free(c->aliases);
}

static enum mail_from_policy from_policy_of(enum mail_conf_from_policy p)
{
        return p == MAIL_CONF_FROM_KEEP     ? MAIL_FROM_KEEP
               : p == MAIL_CONF_FROM_REJECT ? MAIL_FROM_REJECT
                                            : MAIL_FROM_REWRITE;
}

/* One message through the CLI's delivery flow. */
static int deliver(const struct sendmail_context *c, const uint8_t *data, size_t len,
                   const char *envelope_from, char *const *recipients, size_t n_recipients,
                   bool from_headers, struct mail_deliver_result *ret)
{
        char local[SENDMAIL_ARG_MAX + 1];
        const struct mail_deliver_request r = {
            .socket = c->socket,
            .profile = c->profile,
            .raw = data,
            .len = len,
            .envelope_from =
                sendmail_local_sender(envelope_from, c->hostname, local, sizeof(local)),
            .full_name = c->args->full_name,
            .recipients_from_headers = from_headers,
            .recipients = recipients,
            .n_recipients = n_recipients,
            .default_domain = c->settings.default_domain,
            .aliases = c->aliases,
            .from_policy = from_policy_of(c->settings.from_policy),
            .fallback_mailbox = c->settings.mailbox,
            .maildrop_dir = c->maildrop,
            .save_to_sent_items = true,
        };

        return mail_deliver(&r, ret);
}

static int smtp_deliver(const struct smtp_envelope *e, void *userdata, char *reply, size_t size)
{
        const struct sendmail_context *c = userdata;
        struct mail_deliver_result result;
        const char *status;
        int code;

        (void)deliver(c, e->data, e->len, e->from ? e->from : c->args->envelope_from, e->recipients,
                      e->n_recipients, false, &result);
        code = smtp_code_of_exit(result.exit_code, &status);
        snprintf(reply, size, "%s %s", status,
                 result.exit_code == 0 ? (result.queued ? "Ok: queued" : "Ok: sent")
                                       : result.reason);
        return code;
}

static int run_smtp(const struct sendmail_context *c)
{
        struct smtp_server s = {
            .hostname = c->hostname[0] ? c->hostname : "localhost",
            .message_max = MAIL_MESSAGE_MAX,
            .recipients_max = SENDMAIL_RECIPIENTS_MAX,
            .deliver = smtp_deliver,
            .userdata = (void *)c,
        };

        return smtp_serve(&s, stdin, stdout) < 0 ? EXIT_IOERR : 0;
}

static int run_deliver(const struct sendmail_context *c)
{
        _cleanup_free_ uint8_t *data = NULL;
        struct mail_deliver_result result;
        size_t len;
        int r;

        r = sendmail_read_message(STDIN_FILENO, c->args->dot_ends_message, MAIL_MESSAGE_MAX, &data,
                                  &len);
        if (r == -EMSGSIZE) {
                fprintf(stderr, "sendmail: the message is larger than %u bytes\n",
                        MAIL_MESSAGE_MAX);
                return EXIT_DATAERR;
        }
        if (r < 0) {
                fprintf(stderr, "sendmail: cannot read the message: %s\n", strerror(-r));
                return EXIT_IOERR;
        }
        r = deliver(c, data, len, c->args->envelope_from, c->args->recipients,
                    c->args->n_recipients, c->args->recipients_from_headers, &result);
        if (r != 0)
                fprintf(stderr, "sendmail: %s\n", result.reason);
        else if (result.queued)
                log_info("sendmail: %s", result.reason);
        return r;
}

/* The profile, its settings and aliases. 0, or an exit code after saying why. */
static int context_init(struct sendmail_context *c, const struct mail_conf *conf)
{
        const char *env = secure_getenv("CREDBROKER_PROFILE");
        char buffer[4096], *user = NULL;
        struct passwd pw, *found = NULL;
        int r;

        if (getpwuid_r(getuid(), &pw, buffer, sizeof(buffer), &found) == 0 && found)
                user = found->pw_name;
        c->profile = mail_conf_choose_profile(conf, c->args->profile, env, getuid(), user);
        if (!c->profile) {
                fprintf(stderr,
                        "sendmail: no profile to mail under: give -p PROFILE, set "
                        "CREDBROKER_PROFILE, or map this user or a default_profile in "
                        "%s (docs/mail.md)\n",
                        mail_conf_path());
                return EXIT_CONFIG;
        }
        if (!name_is_valid(c->profile)) {
                fprintf(stderr, "sendmail: not a profile name: \"%.64s\"\n", c->profile);
                return EXIT_USAGE;
        }
        mail_conf_settings_for(conf, c->profile, &c->settings);
        if (c->settings.aliases) {
                r = mail_aliases_load(c->settings.aliases, &c->aliases);
                if (r < 0) {
                        fprintf(stderr, "sendmail: cannot load the aliases %s: %s\n",
                                c->settings.aliases, strerror(-r));
                        return EXIT_CONFIG;
                }
        }
        c->maildrop = conf->maildrop;
        if (gethostname(c->hostname, sizeof(c->hostname) - 1) < 0)
                c->hostname[0] = 0;
        c->socket = client_socket_path(NULL, NULL);
        return 0;
}

int cmd_sendmail(int argc, char **argv)
{
        _cleanup_(mail_conf_freep) struct mail_conf *conf = NULL;
        struct sendmail_args a;
        struct sendmail_context c = {.args = &a};
        int r;

        r = sendmail_args_parse(argc, argv, &a);
        if (r < 0) {
                fprintf(stderr, "sendmail: %s\n", r == -ENOMEM ? "out of memory" : a.error);
                sendmail_args_done(&a);
                return r == -ENOMEM ? EXIT_SOFTWARE : EXIT_USAGE;
        }
        if (a.verbose)
                log_set_level(LOG_LEVEL_DEBUG);
        if (a.mode == SENDMAIL_MODE_INIT_ALIASES)
                r = 0; /* aliases are read at each delivery: nothing to rebuild */
        else if (a.mode == SENDMAIL_MODE_LIST_QUEUE || a.mode == SENDMAIL_MODE_FLUSH_QUEUE)
                /* The spool's administration (mail-spool's cli/queue.h), as credbroker queue. */
                r = a.mode == SENDMAIL_MODE_LIST_QUEUE ? queue_list(NULL, NULL)
                                                       : queue_flush(NULL, NULL, NULL);
        else if (mail_conf_load(mail_conf_path(), &conf) < 0)
                r = EXIT_CONFIG;
        else if ((r = context_init(&c, conf)) == 0)
                r = a.mode == SENDMAIL_MODE_SMTP ? run_smtp(&c) : run_deliver(&c);
        context_done(&c);
        sendmail_args_done(&a);
        return r;
}
