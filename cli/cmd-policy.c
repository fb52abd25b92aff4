/* credbroker policy check|test|show: lint, dry-run and display policy.d with the broker's own
 * policy engine, so what these commands say is what credbrokerd will do. */
#include "build-config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "commands.h"
#include "config.h"
#include "options.h"
#include "policy.h"
#include "util.h"

/* pamtester's convention rather than sysexits.h: scripts test "policy test" for allow (0) or
 * deny (1); anything else is a usage or policy error. */
#define POLICY_EXIT_ALLOW 0
#define POLICY_EXIT_DENY  1
#define POLICY_EXIT_USAGE 2

#define POLICY_TEST_MAX_GROUPS 256

static void usage(FILE *f)
{
        fputs("Usage: credbroker policy check [--config PATH] [DIR]\n"
              "       credbroker policy test [--policy-dir DIR] -p PROFILE --uid USER\n"
              "                              [--gid GROUP] [--groups GROUP,...] [--exe PATH]\n"
              "                              [--unit UNIT] [--scope S]... [--min-ttl SECONDS]\n"
              "                              [--at \"YYYY-MM-DD HH:MM\"]\n"
              "       credbroker policy show [--policy-dir DIR] -p PROFILE\n"
              "       credbroker policy reload [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "check  reports every problem in the policy directory as file:line: message,\n"
              "       and warns (exit status unchanged) about a profile exe alone lets in\n"
              "test   decides a made-up request as the broker would (rate limits not drawn)\n"
              "show   prints a profile after includes, each rule with its file:line\n"
              "reload makes the running broker reload the policy (as credbroker reload)\n"
              "\n"
              "DIR defaults to policy_dir of the configuration (--config, $CREDBROKER_CONFIG,\n"
              "or " CONFIG_DEFAULT_PATH ").\n"
              "Exit: check 0 clean, 1 problems; test 0 allow, 1 deny; 2 usage or policy errors.\n"
              "See credbroker-policy(5).\n",
              f);
}

struct printer {
        const char *dir;
        FILE *out;
};

static void print_problem(const char *file, unsigned line, const char *message, void *userdata)
{
        const struct printer *p = userdata;

        if (!*file)
                fprintf(p->out, "%s\n", message);
        else if (line == 0)
                fprintf(p->out, "%s/%s: %s\n", p->dir, file, message);
        else
                fprintf(p->out, "%s/%s:%u: %s\n", p->dir, file, line, message);
}

/* The directory to read: the one given, else the configuration's policy_dir. A missing default
 * configuration means the built-in default; a configuration that was asked for must load. */
static int resolve_policy_dir(const char *given, const char *config_option, char **ret)
{
        _cleanup_(config_freep) struct config *c = NULL;
        const char *path;
        int r;

        if (given) {
                *ret = strdup(given);
                return *ret ? 0 : -ENOMEM;
        }
        path = cli_config_path(config_option);
        if (!config_option && !secure_getenv("CREDBROKER_CONFIG") && access(path, F_OK) < 0)
                r = config_new_default(&c);
        else
                r = config_load(path, false, &c);
        if (r < 0)
                return r;
        *ret = strdup(c->policy_dir);
        return *ret ? 0 : -ENOMEM;
}

/* A warning names the rule's file:line; it does not change check's exit status. */
static void print_warning(const char *where, const char *message, void *userdata)
{
        const struct printer *p = userdata;

        fprintf(p->out, "%s/%s: warning: %s\n", p->dir, where, message);
}

static int load_set(const char *dir, FILE *out, struct policy_set **ret)
{
        struct printer printer = {.dir = dir, .out = out};

        return policy_set_load_reporting(dir, print_problem, &printer, ret);
}

static int policy_check(int argc, char **argv)
{
        static const struct option options[] = {
            CLI_OPTION_CONFIG,
            CLI_OPTION_HELP,
            {0},
        };
        _cleanup_(policy_set_freep) struct policy_set *set = NULL;
        _cleanup_free_ char *dir = NULL;
        struct cli_target target = {0};
        struct printer printer = {.out = stdout};
        size_t rules = 0, warnings = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                r = cli_shared_option(c, &target, usage, POLICY_EXIT_USAGE);
                if (r >= 0)
                        return r;
        }
        if (argc - optind > 1) {
                usage(stderr);
                return POLICY_EXIT_USAGE;
        }
        if (resolve_policy_dir(optind < argc ? argv[optind] : NULL, target.config, &dir) < 0)
                return POLICY_EXIT_USAGE;
        if (load_set(dir, stdout, &set) < 0) {
                fprintf(stderr, "credbroker: %s has problems; credbrokerd would refuse it\n", dir);
                return 1;
        }
        printer.dir = dir;
        for (size_t i = 0; i < policy_set_count(set); i++) {
                const struct policy_profile *p = policy_set_get(set, i);

                rules += policy_profile_rule_count(p);
                warnings += policy_profile_lint(p, print_warning, &printer);
        }
        if (warnings > 0)
                printf("%s: %zu profile(s), %zu rule(s): no problems, %zu warning(s)\n", dir,
                       policy_set_count(set), rules, warnings);
        else
                printf("%s: %zu profile(s), %zu rule(s): no problems\n", dir, policy_set_count(set),
                       rules);
        return fflush(stdout) == 0 ? 0 : 1;
}

static int lookup_user(const char *word, uid_t *ret_uid, gid_t *ret_gid, char *name,
                       size_t name_len)
{
        char buffer[4096];
        struct passwd pw, *found = NULL;
        uint32_t id;

        if (parse_u32(word, &id) == 0) {
                *ret_uid = id;
                if (getpwuid_r(id, &pw, buffer, sizeof(buffer), &found) != 0 || !found)
                        return 0; /* a uid without an entry: no defaults to take */
        } else if (getpwnam_r(word, &pw, buffer, sizeof(buffer), &found) != 0 || !found)
                return -ENOENT;
        *ret_uid = found->pw_uid;
        *ret_gid = found->pw_gid;
        snprintf(name, name_len, "%s", found->pw_name);
        return 1;
}

static int lookup_group(const char *word, gid_t *ret)
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

static int parse_groups(char *list, gid_t *groups, size_t *ret_n)
{
        char *save = NULL;
        size_t n = 0;

        for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                if (n == POLICY_TEST_MAX_GROUPS)
                        return -E2BIG;
                if (lookup_group(w, &groups[n]) < 0) {
                        fprintf(stderr, "credbroker: unknown group \"%.64s\"\n", w);
                        return -ENOENT;
                }
                n++;
        }
        *ret_n = n;
        return 0;
}

/* "YYYY-MM-DD HH:MM" in local time, as the time module reads the clock. */
static int parse_at(const char *s, time_t *ret)
{
        struct tm tm = {0};
        const char *end = strptime(s, "%Y-%m-%d %H:%M", &tm);
        time_t t;

        if (!end || *end)
                return -EINVAL;
        tm.tm_isdst = -1;
        t = mktime(&tm);
        if (t == (time_t)-1)
                return -EINVAL;
        *ret = t;
        return 0;
}

static const char *verdict_name(enum policy_verdict v)
{
        return v == POLICY_ALLOW ? "allow" : v == POLICY_DENY ? "deny" : "rate_limited";
}

static void print_deciding_rule(const struct policy_profile *p, const char *where)
{
        struct policy_rule_info info;

        for (size_t i = 0; policy_profile_rule_info(p, i, &info) == 0; i++)
                if (strcmp(info.where, where) == 0) {
                        printf("  %s %s %s%s%s\n", info.stack, info.control, info.module,
                               *info.arguments ? " " : "", info.arguments);
                        return;
                }
}

/* The profile named in the policy directory dir_option (else the configuration's): -1 with
 * *ret_set, *ret_dir and *ret, else the exit code after saying why not. */
static int open_profile(const char *dir_option, const char *config, const char *name,
                        struct policy_set **ret_set, char **ret_dir,
                        const struct policy_profile **ret)
{
        if (resolve_policy_dir(dir_option, config, ret_dir) < 0)
                return POLICY_EXIT_USAGE;
        if (load_set(*ret_dir, stderr, ret_set) < 0) {
                fprintf(stderr, "credbroker: %s has problems (see credbroker policy check)\n",
                        *ret_dir);
                return POLICY_EXIT_USAGE;
        }
        *ret = policy_set_find(*ret_set, name);
        if (!*ret) {
                fprintf(stderr, "credbroker: no profile \"%.64s\" in %s\n", name, *ret_dir);
                return POLICY_EXIT_USAGE;
        }
        return -1;
}

/* A made-up request for policy test: who asks, what for, when. */
struct test_request {
        struct cli_target target;
        const char *dir_option, *profile_name, *user, *group;
        char *group_list, *scopes[POLICY_MAX_SCOPES];
        gid_t groups[POLICY_TEST_MAX_GROUPS];
        struct policy_peer peer;
        struct policy_request req;
        struct policy_time now;
};

/* policy test's options checked as they are read: 0, or an exit code after saying why. */
static int test_option(int c, const char *arg, void *userdata)
{
        struct test_request *t = userdata;

        switch (c) {
        case 's':
                if (t->req.n_scopes == POLICY_MAX_SCOPES) {
                        fprintf(stderr, "credbroker: at most %d scopes\n", POLICY_MAX_SCOPES);
                        return POLICY_EXIT_USAGE;
                }
                t->scopes[t->req.n_scopes++] = (char *)arg;
                return 0;
        case 't':
                if (parse_u32(arg, &t->req.min_ttl) < 0) {
                        fputs("credbroker: --min-ttl wants seconds\n", stderr);
                        return POLICY_EXIT_USAGE;
                }
                return 0;
        default: /* 'a' */
                if (parse_at(arg, &t->now.wall) < 0) {
                        fputs("credbroker: --at wants \"YYYY-MM-DD HH:MM\" (local time)\n", stderr);
                        return POLICY_EXIT_USAGE;
                }
                return 0;
        }
}

static int parse_test_options(int argc, char **argv, struct test_request *t)
{
        static const struct cli_option options[] = {
            CLI_CONFIG(struct test_request, target),
            CLI_ARG("policy-dir", 'd', struct test_request, dir_option),
            CLI_ARG("profile", 'p', struct test_request, profile_name),
            CLI_ARG("uid", 'u', struct test_request, user),
            CLI_ARG("gid", 'g', struct test_request, group),
            CLI_ARG("groups", 'G', struct test_request, group_list),
            CLI_ARG("exe", 'e', struct test_request, peer.exe),
            CLI_ARG("unit", 'U', struct test_request, peer.unit),
            CLI_OWN("scope", required_argument, 's'),
            CLI_OWN("min-ttl", required_argument, 't'),
            CLI_OWN("at", required_argument, 'a'),
            CLI_HELP,
            {0},
        };
        int r = cli_parse_one(argc, argv, "c:d:p:u:g:G:e:U:s:t:a:h", options, t, test_option, usage,
                              POLICY_EXIT_USAGE);

        if (r >= 0)
                return r;
        if (!t->profile_name || !t->user || optind < argc) {
                usage(stderr);
                return POLICY_EXIT_USAGE;
        }
        return -1;
}

/* The peer's uid, gid and groups, like a login: the gid and groups default to the user's entry.
 * -1 when resolved, else the exit code after saying why not. */
static int resolve_peer(struct test_request *t)
{
        char user_name[256] = "";
        bool have_gid;
        int r;

        r = lookup_user(t->user, &t->peer.uid, &t->peer.gid, user_name, sizeof(user_name));
        if (r < 0) {
                fprintf(stderr, "credbroker: unknown user \"%.64s\"\n", t->user);
                return POLICY_EXIT_USAGE;
        }
        have_gid = r > 0;
        if (t->group) {
                if (lookup_group(t->group, &t->peer.gid) < 0) {
                        fprintf(stderr, "credbroker: unknown group \"%.64s\"\n", t->group);
                        return POLICY_EXIT_USAGE;
                }
                have_gid = true;
        }
        if (!have_gid) {
                fputs("credbroker: --gid is needed for a uid without a user entry\n", stderr);
                return POLICY_EXIT_USAGE;
        }
        if (t->group_list) {
                if (parse_groups(t->group_list, t->groups, &t->peer.n_groups) < 0)
                        return POLICY_EXIT_USAGE;
        } else if (user_name[0]) {
                int n = POLICY_TEST_MAX_GROUPS;
                if (getgrouplist(user_name, t->peer.gid, t->groups, &n) >= 0)
                        t->peer.n_groups = (size_t)n;
        }
        t->peer.groups = t->groups;
        return -1;
}

static int policy_test(int argc, char **argv)
{
        _cleanup_(policy_set_freep) struct policy_set *set = NULL;
        _cleanup_free_ char *dir = NULL;
        struct test_request t = {
            .peer = {.pid = 0},
            .now = {.wall = time(NULL), .monotonic_usec = now_boottime_usec()},
        };
        struct policy_decision d;
        const struct policy_profile *p;
        int r;

        t.req.scopes = t.scopes;
        r = parse_test_options(argc, argv, &t);
        if (r < 0)
                r = resolve_peer(&t);
        if (r < 0)
                r = open_profile(t.dir_option, t.target.config, t.profile_name, &set, &dir, &p);
        if (r >= 0)
                return r;
        /* No limiter: a dry run draws no tokens, so it never says rate_limited. */
        policy_evaluate(p, &t.peer, &t.req, &t.now, NULL, &d);
        printf("%s %s (%s)\n", verdict_name(d.verdict), d.rule, d.reason);
        print_deciding_rule(p, d.rule);
        if (fflush(stdout) != 0)
                return POLICY_EXIT_USAGE;
        return d.verdict == POLICY_ALLOW ? POLICY_EXIT_ALLOW : POLICY_EXIT_DENY;
}

/* The last component of dir, so show's comments read "policy.d/alerts:4". */
static void dir_label(const char *dir, char *out, size_t out_len)
{
        size_t len = strlen(dir);
        const char *start;

        while (len > 1 && dir[len - 1] == '/')
                len--;
        start = dir + len;
        while (start > dir && start[-1] != '/')
                start--;
        snprintf(out, out_len, "%.*s", (int)(dir + len - start), start);
}

static int policy_show(int argc, char **argv)
{
        static const struct option options[] = {
            CLI_OPTION_CONFIG,
            {"policy-dir", required_argument, NULL, 'd'},
            {"profile", required_argument, NULL, 'p'},
            CLI_OPTION_HELP,
            {0},
        };
        _cleanup_(policy_set_freep) struct policy_set *set = NULL;
        _cleanup_free_ char *dir = NULL;
        const char *dir_option = NULL, *profile_name = NULL;
        struct cli_target target = {0};
        const struct policy_profile *p;
        struct policy_rule_info info;
        char label[NAME_MAX_LEN * 4];
        char *const *scopes;
        size_t n_scopes;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:d:p:h", options, NULL)) >= 0) {
                if (c == 'd')
                        dir_option = optarg;
                else if (c == 'p')
                        profile_name = optarg;
                else if ((r = cli_shared_option(c, &target, usage, POLICY_EXIT_USAGE)) >= 0)
                        return r;
        }
        if (!profile_name || optind < argc) {
                usage(stderr);
                return POLICY_EXIT_USAGE;
        }
        r = open_profile(dir_option, target.config, profile_name, &set, &dir, &p);
        if (r >= 0)
                return r;
        dir_label(dir, label, sizeof(label));
        printf("# profile %s (%s/%s)\n", policy_profile_name(p), label, policy_profile_name(p));
        printf("account  %s\n", policy_profile_account(p));
        scopes = policy_profile_scopes(p, &n_scopes);
        for (size_t i = 0; i < n_scopes; i++)
                printf("scope    %s\n", scopes[i]);
        for (size_t i = 0; policy_profile_rule_info(p, i, &info) == 0; i++)
                printf("%-8s %-10s %-7s %-24s # %s/%s\n", info.stack, info.control, info.module,
                       info.arguments, label, info.where);
        return fflush(stdout) == 0 ? 0 : POLICY_EXIT_USAGE;
}

int cmd_policy(int argc, char **argv)
{
        static const struct cli_command subcommands[] = {
            {"check", policy_check},
            {"test", policy_test},
            {"show", policy_show},
            {"reload", cmd_reload},
        };
        const struct cli_command *c;
        int r;

        r = cli_usage_or_help(argc, argv, usage, POLICY_EXIT_USAGE);
        if (r >= 0)
                return r;
        c = cli_command_find(subcommands, ELEMENTSOF(subcommands), argv[1]);
        if (c)
                return c->run(argc - 1, argv + 1);
        fprintf(stderr,
                "credbroker: unknown policy command \"%.40s\"; see credbroker policy --help\n",
                argv[1]);
        return POLICY_EXIT_USAGE;
}
