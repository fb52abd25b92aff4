/* credbroker status: every account's state from the running broker, as text or JSON, with the
 * exit code of a monitoring check (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN); or, with
 * --prometheus, the state and the broker's counters in the Prometheus text format. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin-client.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "display.h"
#include "json.h"
#include "options.h"
#include "status-check.h"
#include "status-prometheus.h"
#include "util.h"

#define STATUS_MAX_ACCOUNTS 4096

static void usage(FILE *f)
{
        fputs("Usage: credbroker status [--json | --prometheus [--output FILE]] [--warn-days N]\n"
              "                         [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Shows each account's state as the running broker sees it: ok, refreshing,\n"
              "backoff, needs_reauth or needs_config, the last and next refresh, the access\n"
              "token's expiry, the refresh token's age and the certificate or secret expiry.\n"
              "The first line is a one-line summary, for monitoring.\n"
              "\n"
              "  --json          the same as JSON, with each account's check and reason\n"
              "  --prometheus    the state and the broker's counters (tokens issued and denied\n"
              "                  by profile, upstream errors by class) in the Prometheus text\n"
              "                  format, for node_exporter's textfile collector\n"
              "  --output FILE   with --prometheus: write FILE atomically (a temporary file in\n"
              "                  its directory, then renamed over it), mode 0644\n"
              "  --warn-days N   warn of an expiry within N days (default [broker] warn_days,\n"
              "                  else 30)\n"
              "\n"
              "Exit, as a Nagios plugin: 0 OK, 1 WARNING (an expiry within the warning window,\n"
              "refreshing fails for now), 2 CRITICAL (an account needs an administrator), 3\n"
              "UNKNOWN (the broker cannot be reached or its reply is not understood); 64 usage.\n"
              "With --prometheus: 0 when the broker was read, 3 when not (credbroker_up 0 is\n"
              "written all the same) or when FILE cannot be written.\n",
              f);
}

/* The worse of two levels, in the order monitoring ranks them: CRITICAL above UNKNOWN above
 * WARNING above OK. */
static enum status_level worse(enum status_level a, enum status_level b)
{
        static const int rank[] = {
            [STATUS_OK] = 0, [STATUS_WARNING] = 1, [STATUS_UNKNOWN] = 2, [STATUS_CRITICAL] = 3};
        return rank[b] > rank[a] ? b : a;
}

static void print_time_row(const char *label, const cJSON *account, const char *key, uint64_t now)
{
        char when[32], relative[32];
        uint64_t t;

        if (json_get_u64(account, key, &t) < 0 || t == 0)
                return;
        display_time(t, when);
        display_relative(t, now, relative);
        printf("  %-22s %s (%s)\n", label, when, relative);
}

static void print_account(const cJSON *account, enum status_level level, const char *reason,
                          uint64_t now)
{
        const char *name = json_get_string(account, "account");
        const char *state = json_get_string(account, "state");
        const char *message = json_get_string(account, "message");
        char age[32];
        uint64_t stored;

        display_text(stdout, name ? name : "?");
        fputs(": ", stdout);
        display_text(stdout, state ? state : "?");
        if (level != STATUS_OK) {
                printf(" [%s] ", status_level_name(level));
                display_text(stdout, reason);
        }
        fputc('\n', stdout);
        /* A reason of its own replaces the broker's message, which is then shown below it. */
        if (message && (level == STATUS_OK || status_interrupted_refresh(account))) {
                fputs("  message                ", stdout);
                display_text(stdout, message);
                fputc('\n', stdout);
        }
        if (state && strcmp(state, "backoff") == 0)
                print_time_row("backoff until", account, "state_until", now);
        print_time_row("last refresh", account, "last_refresh", now);
        print_time_row("next refresh", account, "next_refresh", now);
        print_time_row("token expires", account, "token_expires_at", now);
        if (json_get_u64(account, "refresh_token_stored_at", &stored) == 0 && stored > 0) {
                display_relative(stored, now, age);
                printf("  %-22s stored %s\n", "refresh token", age);
        }
        print_time_row("credential expires", account, "credential_expires_at", now);
}

static int warn_days_default(const char *config_option, uint32_t *ret)
{
        _cleanup_(config_freep) struct config *config = NULL;
        const char *path = cli_config_path(config_option);

        *ret = CONFIG_WARN_DAYS_DEFAULT;
        if (!config_option && access(path, F_OK) < 0)
                return 0;
        if (config_load(path, true, &config) < 0)
                return -EINVAL;
        *ret = config->warn_days;
        return 0;
}

struct status_options {
        struct cli_target target;
        bool json, prometheus;
        const char *output;
        uint32_t warn_days;
};

/* -1 when the command goes on, else its exit code. */
static int parse_options(int argc, char **argv, struct status_options *o)
{
        enum { OPT_WARN_DAYS = 0x100, OPT_PROMETHEUS, OPT_OUTPUT };
        static const struct option options[] = {
            {"json", no_argument, NULL, 'j'},
            {"prometheus", no_argument, NULL, OPT_PROMETHEUS},
            {"output", required_argument, NULL, OPT_OUTPUT},
            {"warn-days", required_argument, NULL, OPT_WARN_DAYS},
            CLI_OPTION_ADMIN_SOCKET,
            CLI_OPTION_CONFIG,
            CLI_OPTION_HELP,
            {0},
        };
        bool warn_days_given = false;
        int c, r;

        while ((c = getopt_long(argc, argv, "jc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'j':
                        o->json = true;
                        break;
                case OPT_PROMETHEUS:
                        o->prometheus = true;
                        break;
                case OPT_OUTPUT:
                        o->output = optarg;
                        break;
                case OPT_WARN_DAYS:
                        if (parse_u32(optarg, &o->warn_days) < 0 ||
                            o->warn_days > CONFIG_WARN_DAYS_MAX) {
                                fprintf(stderr, "credbroker: --warn-days wants 0-%d\n",
                                        CONFIG_WARN_DAYS_MAX);
                                return EXIT_USAGE;
                        }
                        warn_days_given = true;
                        break;
                default:
                        r = cli_shared_option(c, &o->target, usage, EXIT_USAGE);
                        if (r >= 0)
                                return r;
                }
        }
        if (optind != argc || (o->json && o->prometheus) || (o->output && !o->prometheus) ||
            (o->output && !o->output[0])) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (!warn_days_given && warn_days_default(o->target.config, &o->warn_days) < 0) {
                printf("UNKNOWN: the configuration cannot be read\n");
                return STATUS_UNKNOWN;
        }
        return -1;
}

/* The accounts' verdict as a whole: the worst level, and the first account at it. */
struct summary {
        enum status_level overall;
        size_t n, n_bad;
        const char *first_name;
        char first_reason[600];
};

/* Judges every account into s; with json, adds each one's "check" and "reason" to the reply.
 * 0, or STATUS_UNKNOWN when the reply is malformed (*ret_why says so) or memory ran out. */
static int judge_accounts(const cJSON *accounts, uint64_t now, const struct status_options *o,
                          struct summary *s, const char **ret_why)
{
        const cJSON *account;

        cJSON_ArrayForEach(account, accounts)
        {
                char reason[600];
                enum status_level level;

                if (!cJSON_IsObject(account)) {
                        *ret_why = "the broker's status reply is malformed";
                        return STATUS_UNKNOWN;
                }
                level = status_check_account(account, now, o->warn_days, reason, sizeof(reason));
                s->n++;
                if (level != STATUS_OK)
                        s->n_bad++;
                if (worse(s->overall, level) != s->overall ||
                    (level != STATUS_OK && !s->first_name)) {
                        s->first_name = json_get_string(account, "account");
                        snprintf(s->first_reason, sizeof(s->first_reason), "%s", reason);
                }
                s->overall = worse(s->overall, level);
                if (o->json && (!cJSON_AddStringToObject((cJSON *)account, "check",
                                                         status_level_name(level)) ||
                                (level != STATUS_OK &&
                                 !cJSON_AddStringToObject((cJSON *)account, "reason", reason))))
                        return STATUS_UNKNOWN;
        }
        return 0;
}

static int print_json(const cJSON *accounts, const struct summary *s, uint32_t warn_days)
{
        _cleanup_json_ cJSON *out = cJSON_CreateObject();
        char *text;

        if (!out || !cJSON_AddStringToObject(out, "status", status_level_name(s->overall)) ||
            !json_add_uint(out, "warn_days", warn_days) ||
            !cJSON_AddItemReferenceToObject(out, "accounts", (cJSON *)accounts))
                return STATUS_UNKNOWN;
        text = cJSON_Print(out);
        if (!text)
                return STATUS_UNKNOWN;
        puts(text);
        json_free_string(text);
        return fflush(stdout) == 0 ? (int)s->overall : STATUS_UNKNOWN;
}

/* The summary line first, for monitoring; then each account. */
static int print_text(const cJSON *accounts, const struct summary *s, uint64_t now,
                      uint32_t warn_days)
{
        const cJSON *account;

        if (s->overall == STATUS_OK) {
                printf("OK: %zu account%s, none needs attention\n", s->n, s->n == 1 ? "" : "s");
        } else {
                printf("%s: %zu of %zu account%s need%s attention; ", status_level_name(s->overall),
                       s->n_bad, s->n, s->n == 1 ? "" : "s", s->n_bad == 1 ? "s" : "");
                display_text(stdout, s->first_name ? s->first_name : "?");
                fputs(": ", stdout);
                display_text(stdout, s->first_reason);
                fputc('\n', stdout);
        }
        cJSON_ArrayForEach(account, accounts)
        {
                char reason[600];
                enum status_level level =
                    status_check_account(account, now, warn_days, reason, sizeof(reason));

                print_account(account, level, reason, now);
        }
        return fflush(stdout) == 0 ? (int)s->overall : STATUS_UNKNOWN;
}

/* The status reply and its judged accounts, or STATUS_UNKNOWN and why not. */
static int read_status(const struct status_options *o, uint64_t now, cJSON **ret_reply,
                       const cJSON **ret_accounts, struct summary *s, const char **ret_why)
{
        _cleanup_json_ cJSON *request = admin_request_new("status");
        const cJSON *accounts;

        *ret_why = "the broker cannot be reached or refused the request";
        if (!request || admin_call(admin_socket_path(o->target.admin_socket, o->target.config),
                                   request, ret_reply) != 0)
                return STATUS_UNKNOWN;
        accounts = cJSON_GetObjectItemCaseSensitive(*ret_reply, "accounts");
        if (!cJSON_IsArray(accounts) || cJSON_GetArraySize(accounts) > STATUS_MAX_ACCOUNTS) {
                *ret_why = "the broker's status reply has no list of accounts";
                return STATUS_UNKNOWN;
        }
        *ret_why = "out of memory";
        *ret_accounts = accounts;
        /* Judge every account first: the summary line comes first, for monitoring. */
        return judge_accounts(accounts, now, o, s, ret_why);
}

/* Writes to a temporary file beside path, then renames it over path: node_exporter's textfile
 * collector never reads a half-written file (it reads only names ending in .prom, and the
 * temporary name does not). 0, or STATUS_UNKNOWN after saying why on stderr. */
static int write_atomically(const char *path, const struct status_prometheus *p)
{
        _cleanup_free_ char *tmp = NULL;
        FILE *f = NULL;
        int fd, r = -ENOMEM;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
                tmp = NULL;
                goto fail;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                free(TAKE_PTR(tmp));
                goto fail;
        }
        /* The textfile collector runs as another user; nothing in the file is secret. */
        if (fchmod(fd, 0644) < 0 || !(f = fdopen(fd, "w"))) {
                r = -errno;
                close(fd);
                goto fail;
        }
        r = status_prometheus_write(f, p);
        if (r == 0 && fsync(fileno(f)) < 0)
                r = -errno;
        if (fclose(TAKE_PTR(f)) != 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r == 0)
                return 0;
fail:
        if (tmp)
                (void)unlink(tmp);
        fprintf(stderr, "credbroker: cannot write %s: %s\n", path, strerror(-r));
        return STATUS_UNKNOWN;
}

static int print_prometheus(const struct status_options *o)
{
        _cleanup_json_ cJSON *status_reply = NULL, *metrics_reply = NULL, *request = NULL;
        struct summary s = {.overall = STATUS_OK};
        struct status_prometheus p = {.now = (uint64_t)time(NULL), .warn_days = o->warn_days};
        const cJSON *accounts = NULL;
        const char *why = NULL;
        int r;

        if (read_status(o, p.now, &status_reply, &accounts, &s, &why) == 0) {
                p.accounts = accounts;
                p.overall = s.overall;
                request = admin_request_new("metrics");
                if (request &&
                    admin_call(admin_socket_path(o->target.admin_socket, o->target.config), request,
                               &metrics_reply) == 0)
                        p.metrics = metrics_reply;
                else
                        why = "the broker did not answer the metrics request";
        }
        if (!p.metrics)
                fprintf(stderr, "credbroker: %s; writing credbroker_up 0\n", why);
        if (o->output)
                r = write_atomically(o->output, &p);
        else
                r = status_prometheus_write(stdout, &p) == 0 ? 0 : STATUS_UNKNOWN;
        return r != 0 || !p.metrics ? STATUS_UNKNOWN : 0;
}

int cmd_status(int argc, char **argv)
{
        _cleanup_json_ cJSON *reply = NULL;
        struct status_options o = {.warn_days = 0};
        struct summary s = {.overall = STATUS_OK};
        const cJSON *accounts = NULL;
        const char *why = NULL;
        uint64_t now;
        int r;

        r = parse_options(argc, argv, &o);
        if (r >= 0)
                return r;
        if (o.prometheus)
                return print_prometheus(&o);
        now = (uint64_t)time(NULL);
        r = read_status(&o, now, &reply, &accounts, &s, &why);
        if (r != 0) {
                printf("UNKNOWN: %s\n", why);
                return STATUS_UNKNOWN;
        }
        return o.json ? print_json(accounts, &s, o.warn_days)
                      : print_text(accounts, &s, now, o.warn_days);
}
