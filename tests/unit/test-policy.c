/* Unit tests for the policy library: parsing and error reports, file checks, includes, scopes,
 * every module (time across DST changes, rate buckets), and the shipped examples. The controls
 * are tested against a reference model in test-policy-controls.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "policy.h"
#include "tap.h"
#include "util.h"

static char dir[] = "/tmp/test-policy.XXXXXX";

/* Every problem reported, "file:line: message" one per line. */
static char errors[8192];
static unsigned n_errors;

static void collect_error(const char *file, unsigned line, const char *message, void *userdata)
{
        size_t at = strlen(errors);

        (void)userdata;
        n_errors++;
        snprintf(errors + at, sizeof(errors) - at, "%s:%u: %s\n", file, line, message);
}

static void reset_errors(void)
{
        errors[0] = 0;
        n_errors = 0;
}

static void write_file(const char *name, const char *text, mode_t mode)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f)
                abort();
        fputs(text, f);
        fclose(f);
        chmod(path, mode);
}

static void remove_file(const char *name)
{
        char path[256];

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        unlink(path);
}

static int load_dir(struct policy_set **ret)
{
        reset_errors();
        return policy_set_load_reporting(dir, collect_error, NULL, ret);
}

/* Parses "account demo / scope S / body" from memory. */
static struct policy_profile *parse(const char *body)
{
        struct policy_profile *p = NULL;
        char text[4096];
        int len = snprintf(text, sizeof(text), "account demo\nscope S\n%s", body);

        reset_errors();
        if (policy_profile_parse_buffer("p", text, (size_t)len, collect_error, NULL, &p) < 0)
                return NULL;
        return p;
}

static const gid_t extra_groups[] = {4242, 4343};
static const struct policy_peer user_peer = {.uid = 1000,
                                             .gid = 1000,
                                             .pid = 2,
                                             .groups = extra_groups,
                                             .n_groups = 2,
                                             .exe = "/usr/lib/nagios/plugins/notify-by-mail",
                                             .unit = "nagios.service"};

/* 1 allow, 0 deny, -1 parse error; the decision in *d. */
static int decide_full(const char *body, const struct policy_peer *peer,
                       const struct policy_request *req, time_t wall, struct policy_decision *d)
{
        struct policy_profile *p = parse(body);

        if (!p)
                return -1;
        policy_evaluate(p, peer, req, &(struct policy_time){.wall = wall}, NULL, d);
        policy_profile_free(p);
        return d->verdict == POLICY_ALLOW;
}

static int decide(const char *body, const struct policy_peer *peer)
{
        struct policy_decision d;

        return decide_full(body, peer, &(struct policy_request){0}, 0, &d);
}

static void test_parsing(void)
{
        struct policy_profile *p;
        size_t n;

        p = parse("# comment\nscope S   # again\nscope T\npeer required uid root 1000\n"
                  "request optional min_ttl max=600\n");
        ok(p != NULL, "a profile parses from memory");
        if (!p)
                return;
        is_str(policy_profile_account(p), "demo", "account directive");
        policy_profile_scopes(p, &n);
        is_int(n, 2, "duplicate scopes are kept once");
        is_str(policy_profile_scope_key(p), "S T", "scope key built at load");
        is_int(policy_profile_rule_count(p), 2, "two rules");
        struct policy_rule_info info;
        is_int(policy_profile_rule_info(p, 1, &info), 0, "rule info");
        ok(strcmp(info.stack, "request") == 0 && strcmp(info.control, "optional") == 0 &&
               strcmp(info.module, "min_ttl") == 0 && strcmp(info.arguments, "max=600") == 0 &&
               strcmp(info.where, "p:7") == 0,
           "rule info names stack, control, module, arguments and file:line");
        is_int(policy_profile_rule_info(p, 2, &info), -ENOENT, "no third rule");
        policy_profile_free(p);

        /* Every problem is reported, each with file:line. */
        p = parse("peer mandatory uid root\nfrobnicate\npeer required uid no-such-user-xyz\n"
                  "peer required exe relative/path\npeer required\n");
        ok(p == NULL, "a profile with errors does not load");
        is_int(n_errors, 5, "every problem is reported, not only the first");
        ok(strstr(errors, "p:3: unknown control \"mandatory\"") != NULL, "unknown control, p:3");
        ok(strstr(errors, "p:4: unknown directive \"frobnicate\"") != NULL, "unknown directive");
        ok(strstr(errors, "p:5: unknown user \"no-such-user-xyz\"") != NULL,
           "unknown user name is an error at load");
        ok(strstr(errors, "p:6: exe \"relative/path\" must be an absolute path") != NULL,
           "relative exe");
        ok(strstr(errors, "p:7: expected \"peer CONTROL MODULE") != NULL, "rule without module");

        ok(parse("peer required bogus\n") == NULL && strstr(errors, "unknown module \"bogus\""),
           "unknown module is an error");
        ok(parse("peer required rate 1/s\n") == NULL &&
               strstr(errors, "p:3: module rate belongs in the request stack"),
           "a request module in the peer stack is an error");
        ok(parse("request required uid root\n") == NULL &&
               strstr(errors, "module uid belongs in the peer stack"),
           "a peer module in the request stack is an error");
        ok(parse("peer required deny extra\n") == NULL, "deny takes no arguments");
        ok(parse("account other\n") == NULL && strstr(errors, "account given twice"),
           "a second account is an error");
        ok(parse("account Bad/Name\n") == NULL, "account name validated");
        ok(parse("include common\n") == NULL && strstr(errors, "include is not available"),
           "include is refused when parsing from memory");
        ok(parse("peer required uid 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 "
                 "23 24 25 26 27 28 29 30 31 32 33\n") == NULL &&
               strstr(errors, "more than 35 words"),
           "words per line are bounded");
        ok(parse("peer required uid 4294967295\n") == NULL, "uid -1 is not a uid");
        {
                char body[4096] = "";
                size_t at = 0;
                for (int i = 0; i < 65; i++)
                        at += (size_t)snprintf(body + at, sizeof(body) - at,
                                               "peer required permit\n");
                ok(parse(body) == NULL && strstr(errors, "more than 64 rules"),
                   "rules per profile are bounded");
        }
        {
                char body[1200];
                memset(body, 'x', 1100);
                memcpy(body, "peer required exe /", 19);
                body[1100] = '\n';
                body[1101] = 0;
                ok(parse(body) == NULL && strstr(errors, "p:3: line longer than"),
                   "long lines are an error");
        }
        {
                static const char with_nul[] = "account demo\nscope S\npeer required \0permit\n";
                struct policy_profile *q = NULL;
                reset_errors();
                ok(policy_profile_parse_buffer("p", with_nul, sizeof(with_nul) - 1, collect_error,
                                               NULL, &q) < 0 &&
                       strstr(errors, "p:3: NUL byte"),
                   "a NUL byte is an error");
        }
        {
                struct policy_profile *q = NULL;
                reset_errors();
                ok(policy_profile_parse_buffer("p", "scope S\npeer required permit\n", 29,
                                               collect_error, NULL, &q) < 0 &&
                       strstr(errors, "no \"account\""),
                   "a profile from memory needs an account");
                reset_errors();
                ok(policy_profile_parse_buffer("p", "account a\n", 10, collect_error, NULL, &q) <
                           0 &&
                       strstr(errors, "p:0: no \"scope\""),
                   "a profile needs a scope");
        }
}

static void test_scopes(void)
{
        struct policy_profile *p;
        struct policy_decision d;
        char *listed[] = {(char *)"S"};
        char *unlisted[] = {(char *)"https://graph.microsoft.com/Mail.Read"};
        char *def_twice[] = {(char *)"https://graph.microsoft.com/.default",
                             (char *)"https://graph.microsoft.com/.default"};

        ok(parse("scope https://graph.microsoft.com/.default\n") == NULL &&
               strstr(errors, "p:3: a .default scope cannot share a profile"),
           ".default next to another scope in a profile is an error");
        {
                struct policy_profile *q = NULL;
                static const char text[] = "account a\nscope https://graph.microsoft.com/.default\n"
                                           "scope https://graph.microsoft.com/Mail.Send\n";
                reset_errors();
                ok(policy_profile_parse_buffer("p", text, sizeof(text) - 1, collect_error, NULL,
                                               &q) < 0,
                   "another scope after .default is an error too");
        }
        p = parse("peer required permit\n");
        if (!p)
                abort();
        ok(policy_profile_allows_scopes(p, listed, 1), "a listed scope is allowed");
        ok(!policy_profile_allows_scopes(p, unlisted, 1), "an unlisted scope is refused");
        ok(policy_profile_allows_scopes(p, NULL, 0), "no scopes: the profile's own");
        policy_evaluate(p, &user_peer, &(struct policy_request){.scopes = unlisted, .n_scopes = 1},
                        &(struct policy_time){0}, NULL, &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.reason, "scope not allowed by the profile") == 0,
           "evaluate denies a scope the profile does not list");
        policy_profile_free(p);
        {
                struct policy_profile *q = NULL;
                static const char text[] = "account a\nscope https://graph.microsoft.com/.default\n"
                                           "peer required permit\n";
                policy_profile_parse_buffer("p", text, sizeof(text) - 1, NULL, NULL, &q);
                ok(q && policy_profile_allows_scopes(q, def_twice, 2),
                   "the same .default twice is one scope");
                policy_profile_free(q);
        }
}

/* A unit of a user's own service manager is "user@UID.service/NAME" (broker/peer.h): a glob
 * written for system units must never reach into it (FNM_PATHNAME), and one that names a manager
 * must parse and match. */
static void test_user_units(void)
{
        struct policy_peer peer = user_peer;
        static const struct {
                const char *pattern, *unit;
                int allow;
        } cases[] = {
            {"*backup.service", "backup.service", 1},
            {"*backup.service", "nightly-backup.service", 1},
            {"*backup.service", "user@1000.service/evil-backup.service", 0},
            {"*backup.service", "user@1000.service/backup.service", 0},
            {"*", "user@1000.service/backup.service", 0},
            {"*.service", "user@1000.service/nagios.service", 0},
            {"user@*", "user@1000.service/backup.service", 0},
            {"user@*.service/backup.service", "user@1000.service/backup.service", 1},
            {"user@*.service/backup.service", "user@0.service/backup.service", 1},
            {"user@*.service/backup.service", "user@1000.service/evil-backup.service", 0},
            {"user@*.service/backup.service", "backup.service", 0},
            {"user@1000.service/*", "user@1000.service/backup.service", 1},
            {"user@1000.service/*", "user@1001.service/backup.service", 0},
            {"user@1000.service/backup.service", "user@1000.service/backup.service", 1},
            {"user@1000.service/backup.service", "backup.service", 0},
            {"user@1000.service", "user@1000.service", 1},
            {"backup.service", "user@1000.service/backup.service", 0},
            /* A backslash is a character of unit names, not an escape. */
            {"systemd-fsck@dev-disk-by\\x2d*.service",
             "systemd-fsck@dev-disk-by\\x2duuid-1234.service", 1},
            {"systemd-fsck@dev-disk-by\\x2d*.service", "systemd-fsck@dev-disk-byx2duuid.service",
             0},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char body[600], label[600];

                snprintf(body, sizeof(body), "peer required unit %s\n", cases[i].pattern);
                snprintf(label, sizeof(label), "unit %s %s %s", cases[i].pattern,
                         cases[i].allow ? "matches" : "does not match", cases[i].unit);
                peer.unit = cases[i].unit;
                is_int(decide(body, &peer), cases[i].allow, label);
        }
}

/* Peers whose uid and gid differ: a uid rule looks at the uid only, a group rule at the gid and
 * the supplementary groups only, and a per-uid bucket is the uid's. */
static void test_uid_is_not_gid(void)
{
        static const gid_t groups[] = {4242};
        const struct policy_peer peer = {
            .uid = 1000, .gid = 2000, .pid = 2, .groups = groups, .n_groups = 1};
        const struct policy_peer swapped = {.uid = 2000, .gid = 1000, .pid = 2};
        struct policy_limiter *l = policy_limiter_new();
        struct policy_profile *p;
        struct policy_decision d;

        is_int(decide("peer required uid 1000\n", &peer), 1, "uid 1000 gid 2000: uid 1000 allows");
        is_int(decide("peer required uid 2000\n", &peer), 0,
               "uid 1000 gid 2000: uid 2000 does not (the gid is no uid)");
        is_int(decide("peer required uid 2000\n", &swapped), 1,
               "uid 2000 gid 1000: uid 2000 allows");
        is_int(decide("peer required group 2000\n", &peer), 1,
               "uid 1000 gid 2000: group 2000 allows (primary group)");
        is_int(decide("peer required group 1000\n", &peer), 0,
               "uid 1000 gid 2000: group 1000 does not (the uid is no group)");
        is_int(decide("peer required group 4242\n", &peer), 1,
               "uid 1000 gid 2000: a supplementary group allows");
        is_int(decide("peer required group 1000\n", &swapped), 1,
               "uid 2000 gid 1000: group 1000 allows");

        p = parse("peer required permit\nrequest required rate 1/hour per-uid\n");
        if (!l || !p)
                abort();
        policy_evaluate(p, &peer, &(struct policy_request){0},
                        &(struct policy_time){.monotonic_usec = USEC_PER_SEC}, l, &d);
        is_str(d.rate_key, "p 1/hour uid=1000",
               "a per-uid bucket is named by the uid, not the gid");
        policy_evaluate(p, &swapped, &(struct policy_request){0},
                        &(struct policy_time){.monotonic_usec = USEC_PER_SEC}, l, &d);
        ok(d.verdict == POLICY_ALLOW && strcmp(d.rate_key, "p 1/hour uid=2000") == 0,
           "the uid whose number is the first peer's gid has a bucket of its own");
        policy_profile_free(p);
        policy_limiter_free(l);
}

static char warnings[2048];

static void collect_warning(const char *where, const char *message, void *userdata)
{
        size_t at = strlen(warnings);

        (void)userdata;
        snprintf(warnings + at, sizeof(warnings) - at, "%s: %s\n", where, message);
}

/* The warnings of one profile body (header lines 1-2, rules from line 3); -1 when it does not
 * parse. */
static int lint(const char *body)
{
        struct policy_profile *p = parse(body);
        int n;

        warnings[0] = 0;
        if (!p)
                return -1;
        n = (int)policy_profile_lint(p, collect_warning, NULL);
        policy_profile_free(p);
        return n;
}

/* policy check's warning: a way through the peer stack to an allow on which an exe rule must
 * succeed and no uid, group, unit or permit rule must. */
static void test_lint(void)
{
        static const struct {
                const char *body;
                const char *where; /* NULL: no warning */
                const char *what;
        } cases[] = {
            {"peer required exe /usr/bin/x\n", "p:3", "exe alone"},
            {"peer requisite exe /usr/bin/x\n", "p:3", "exe alone, requisite"},
            {"peer optional exe /usr/bin/x\n", "p:3", "exe as the only, optional, rule"},
            {"peer required time 06:00-22:00\npeer required exe /usr/bin/x\n", "p:4",
             "exe and time: time says nothing about who"},
            {"peer required exe /usr/bin/x\npeer optional uid root\n", "p:3",
             "an optional uid among others does not count"},
            {"peer required exe /usr/bin/x\npeer sufficient uid root\n", "p:3",
             "the end of the stack needs exe only"},
            {"peer sufficient exe /usr/bin/x\npeer required uid root\n", "p:3",
             "a sufficient exe ends the stack before the uid rule"},
            {"peer required time 06:00-22:00\npeer sufficient exe /usr/bin/x\n"
             "peer required uid root\n",
             "p:4", "a sufficient exe after a time rule"},
            {"peer required exe /usr/bin/x\npeer sufficient time 06:00-22:00\n"
             "peer required uid root\n",
             "p:3", "a sufficient time rule after a required exe"},
            {"peer required exe /usr/bin/x\npeer required uid root\n", NULL, "exe and uid"},
            {"peer required exe /usr/bin/x\npeer required group mail\n", NULL, "exe and group"},
            {"peer requisite unit nagios.service\npeer required exe /usr/bin/x\n", NULL,
             "exe and unit"},
            {"peer required exe /usr/bin/x\npeer required permit\n", NULL,
             "exe and an explicit permit"},
            {"peer required uid root\npeer sufficient exe /usr/bin/x\n", NULL,
             "a sufficient exe after a required uid"},
            {"peer sufficient uid root\npeer sufficient exe /usr/bin/x\npeer required uid 1000\n",
             "p:4", "a sufficient exe after a sufficient uid (which need not succeed)"},
            {"peer required exe /usr/bin/x\npeer required deny\n", NULL,
             "a stack that never allows"},
            {"peer sufficient exe /usr/bin/x\npeer required deny\n", "p:3",
             "a sufficient exe before a deny still lets in"},
            {"peer required time 06:00-22:00\n", NULL, "no exe rule at all"},
            {"peer optional exe /usr/bin/x\npeer required uid root\n", NULL,
             "an optional exe among others"},
            {"peer sufficient deny\npeer required exe /usr/bin/x\npeer required uid 0\n", NULL,
             "a sufficient deny never allows"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char label[256];
                int n = lint(cases[i].body);

                snprintf(label, sizeof(label), "lint: %s: %s", cases[i].what,
                         cases[i].where ? "warns" : "no warning");
                if (!cases[i].where) {
                        if (!ok(n == 0, label))
                                printf("#   %s", warnings);
                        continue;
                }
                if (!ok(n == 1 && strncmp(warnings, cases[i].where, strlen(cases[i].where)) == 0 &&
                            warnings[strlen(cases[i].where)] == ':',
                        label))
                        printf("#   want %s, got %d: %s\n", cases[i].where, n, warnings);
        }
        lint("peer required exe /usr/bin/x\n");
        ok(strstr(warnings, "profile p lets a peer in on exe alone") &&
               strstr(warnings, "add a required uid or group rule"),
           "the warning names the profile and the fix");
}

static void test_modules(void)
{
        struct policy_peer peer = user_peer;
        struct policy_decision d;

        /* uid */
        is_int(decide("peer required uid root\n", &(struct policy_peer){.uid = 0}), 1,
               "uid by name");
        is_int(decide("peer required uid nobody\n", &(struct policy_peer){.uid = 65534}), 1,
               "uid nobody by name");
        is_int(decide("peer required uid 1000\n", &user_peer), 1, "uid by number");
        is_int(decide("peer required uid root 1001\n", &user_peer), 0, "uid not listed");
        /* group */
        is_int(decide("peer required group 1000\n", &user_peer), 1, "primary group");
        is_int(decide("peer required group 4343\n", &user_peer), 1, "supplementary group");
        is_int(decide("peer required group nogroup\n", &user_peer), 0, "group not held");
        is_int(
            decide("peer required group nogroup\n", &(struct policy_peer){.uid = 5, .gid = 65534}),
            1, "group by name");
        ok(decide("peer required group no-such-group-xyz\n", &user_peer) < 0,
           "unknown group name is an error");
        /* exe */
        is_int(decide("peer required exe /usr/lib/nagios/plugins/notify-by-mail\n", &user_peer), 1,
               "exe exact path");
        is_int(decide("peer required exe /usr/lib/nagios/plugins/notify\n", &user_peer), 0,
               "exe exact path is not a prefix");
        is_int(decide("peer required exe /usr/bin/x /usr/lib/nagios/plugins/*\n", &user_peer), 1,
               "exe glob");
        is_int(decide("peer required exe /usr/lib/*\n", &user_peer), 0,
               "exe glob: * does not cross a / (FNM_PATHNAME)");
        is_int(decide("peer required exe /usr/lib/*/*/notify-by-[a-z]ail\n", &user_peer), 1,
               "exe glob with brackets");
        peer.exe = "/opt/r\xc3\xa9sum\xc3\xa9/bin/send";
        is_int(decide("peer required exe /opt/r\xc3\xa9sum\xc3\xa9/bin/*\n", &peer), 1,
               "exe paths may hold UTF-8");
        ok(decide("peer required exe /opt/\x01x\n", &peer) < 0, "but no control characters");
        peer.exe = NULL;
        is_int(decide("peer required exe /*/*/*/*/*\n", &peer), 0, "unknown exe matches nothing");
        is_int(decide("peer sufficient exe /usr/bin/x\npeer required permit\n", &peer), 1,
               "unknown exe: only that rule fails");
        ok(decide("peer required exe /a*b*c*d*e*f*g*h*i*j\n", &user_peer) < 0,
           "globs are bounded in '*'");
        {
                char body[400] = "peer required exe /";
                memset(body + 19, 'a', 300);
                body[319] = '\n';
                body[320] = 0;
                ok(decide(body, &user_peer) < 0, "patterns are bounded in length");
        }
        /* unit */
        is_int(decide("peer required unit nagios.service\n", &user_peer), 1, "unit exact");
        is_int(decide("peer required unit icinga*.service nagios*.service\n", &user_peer), 1,
               "unit glob");
        is_int(decide("peer required unit backup.service\n", &user_peer), 0, "other unit");
        peer = user_peer;
        peer.unit = NULL;
        is_int(decide("peer required unit *\n", &peer), 0, "unknown unit matches nothing");
        ok(decide("peer required unit a/b/c.service\n", &user_peer) < 0 &&
               strstr(errors, "p:3: unit \"a/b/c.service\": a '/' only joins"),
           "unit patterns hold at most one '/'");
        ok(decide("peer required unit /b.service\n", &user_peer) < 0, "no '/' first in a unit");
        ok(decide("peer required unit user@*.service/\n", &user_peer) < 0, "no '/' last in a unit");
        ok(decide("peer required unit a;b.service\n", &user_peer) < 0, "unit names are validated");
        ok(decide("peer required unit\n", &user_peer) < 0, "unit wants a name");
        test_user_units();
        /* deny, permit */
        is_int(decide("peer required permit\n", &user_peer), 1, "permit succeeds");
        is_int(decide("peer required deny\n", &user_peer), 0, "deny fails");
        /* min_ttl */
        is_int(decide_full("peer required permit\nrequest required min_ttl max=300\n", &user_peer,
                           &(struct policy_request){.min_ttl = 300}, 0, &d),
               1, "min_ttl at the maximum");
        is_int(decide_full("peer required permit\nrequest required min_ttl max=300\n", &user_peer,
                           &(struct policy_request){.min_ttl = 301}, 0, &d),
               0, "min_ttl above the maximum");
        is_str(d.rule, "p:4", "the min_ttl rule decided");
        ok(decide("request required min_ttl 300\n", &user_peer) < 0, "min_ttl wants max=");
        ok(decide("request required min_ttl max=x\n", &user_peer) < 0, "min_ttl wants a number");
        /* bad rate and time arguments */
        static const char *const bad[] = {
            "request required rate 0/s\n",
            "request required rate 10/day\n",
            "request required rate 10/s per-gid\n",
            "request required rate x/s\n",
            "request required rate 10\n",
            "request required rate 1000001/s\n",
            "request required rate 10/s per-uid extra\n",
            "peer required time 25:00-26:00\n",
            "peer required time 06:00-06:00\n",
            "peer required time Mon-Fri\n",
            "peer required time Foo 06:00-07:00\n",
            "peer required time 06:00-24:01\n",
            "peer required time 24:00-06:00\n",
            "peer required time 6:00-22:00\n",
            "peer required time Mon-Fri 06:00-22:00x\n",
            "peer required time\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char label[128];
                snprintf(label, sizeof(label), "parse error: %.*s", (int)strlen(bad[i]) - 1,
                         bad[i]);
                ok(decide(bad[i], &user_peer) < 0 && strstr(errors, "p:3: "), label);
        }
        ok(decide("request required rate 60/min per-uid\nrequest required rate 10/s "
                  "per-profile\nrequest required rate 1000/hour\nrequest required rate 5/second\n"
                  "request required rate 5/sec\nrequest required rate 5/minute\n"
                  "request required rate 5/h\npeer required time Mon-Fri 06:00-22:00 "
                  "Sat,Sun 00:00-24:00 22:00-06:00 fri-mon 10:00-11:00\n",
                  &user_peer) >= 0,
           "the documented rate and time forms parse");
}

static time_t utc(int year, int month, int day, int hour, int minute)
{
        struct tm tm = {.tm_year = year - 1900,
                        .tm_mon = month - 1,
                        .tm_mday = day,
                        .tm_hour = hour,
                        .tm_min = minute};
        return timegm(&tm);
}

struct time_case {
        const char *zone;
        const char *window;
        int year, month, day, hour, minute; /* UTC */
        bool allow;
        const char *what;
};

/* Worked out with the zone rules: Berlin switches at 01:00 UTC on 2026-03-29 (CET -> CEST) and
 * 2026-10-25 (CEST -> CET); New York at 07:00 UTC on 2026-03-08 (EST -> EDT). */
static const struct time_case time_cases[] = {
    {"Europe/Berlin", "06:00-22:00", 2026, 3, 28, 4, 30, false, "Sat 05:30 CET: before 06:00"},
    {"Europe/Berlin", "06:00-22:00", 2026, 3, 29, 4, 30, true,
     "Sun 06:30 CEST (04:30 UTC): inside, only with the DST offset"},
    {"Europe/Berlin", "06:00-22:00", 2026, 3, 29, 19, 30, true, "Sun 21:30 CEST: inside"},
    {"Europe/Berlin", "06:00-22:00", 2026, 3, 29, 20, 30, false, "Sun 22:30 CEST: after 22:00"},
    {"Europe/Berlin", "02:00-03:00", 2026, 3, 29, 0, 59, false,
     "01:59 CET, just before the skipped hour"},
    {"Europe/Berlin", "02:00-03:00", 2026, 3, 29, 1, 0, false,
     "03:00 CEST: the skipped hour 02:00-03:00 never happens that night"},
    {"Europe/Berlin", "22:00-06:00", 2026, 10, 25, 4, 30, true,
     "Sun 05:30 CET (after fall-back): inside the night window"},
    {"Europe/Berlin", "22:00-06:00", 2026, 10, 25, 5, 30, false, "Sun 06:30 CET: outside"},
    {"Europe/Berlin", "22:00-06:00", 2026, 10, 24, 4, 30, false, "Sat 06:30 CEST: outside"},
    {"Europe/Berlin", "02:00-03:00", 2026, 10, 25, 0, 30, true,
     "02:30 CEST, the first pass of the repeated hour"},
    {"Europe/Berlin", "02:00-03:00", 2026, 10, 25, 1, 30, true,
     "02:30 CET, the second pass of the repeated hour"},
    {"Europe/Berlin", "Sat 22:00-06:00", 2026, 3, 29, 2, 0, true,
     "Sun 04:00 CEST: the morning after a listed Saturday"},
    {"Europe/Berlin", "Sat 22:00-06:00", 2026, 3, 28, 3, 0, false,
     "Sat 04:00 CET: the morning after an unlisted Friday"},
    {"Europe/Berlin", "Sat 22:00-06:00", 2026, 3, 28, 21, 30, true, "Sat 22:30 CET"},
    {"America/New_York", "Mon-Fri 09:00-17:00", 2026, 3, 9, 13, 30, true,
     "Mon 09:30 EDT (13:30 UTC): inside, only with the DST offset"},
    {"America/New_York", "Mon-Fri 09:00-17:00", 2026, 3, 6, 13, 30, false, "Fri 08:30 EST"},
    {"America/New_York", "Mon-Fri 09:00-17:00", 2026, 3, 6, 14, 30, true, "Fri 09:30 EST"},
    {"America/New_York", "Mon-Fri 09:00-17:00", 2026, 3, 7, 15, 0, false, "Sat 10:00 EST"},
    {"America/New_York", "Sat,Sun 00:00-24:00", 2026, 3, 9, 3, 59, true,
     "Sun 23:59 EDT (Mon 03:59 UTC): still Sunday locally"},
    {"America/New_York", "Sat,Sun 00:00-24:00", 2026, 3, 9, 4, 0, false, "Mon 00:00 EDT"},
    {"America/New_York", "Mon-Fri 09:00-17:00 Sat 10:00-12:00", 2026, 3, 7, 15, 30, true,
     "second window of a rule: Sat 10:30 EST"},
};

static void test_time(void)
{
        const char *saved = secure_getenv("TZ");
        char saved_copy[128];

        snprintf(saved_copy, sizeof(saved_copy), "%s", saved ? saved : "");
        for (size_t i = 0; i < ELEMENTSOF(time_cases); i++) {
                const struct time_case *c = &time_cases[i];
                struct policy_decision d;
                char body[256], label[256];

                setenv("TZ", c->zone, 1);
                tzset();
                snprintf(body, sizeof(body), "peer required time %s\n", c->window);
                snprintf(label, sizeof(label), "%s, time %s: %s", c->zone, c->window, c->what);
                is_int(decide_full(body, &user_peer, &(struct policy_request){0},
                                   utc(c->year, c->month, c->day, c->hour, c->minute), &d),
                       c->allow, label);
        }
        if (saved)
                setenv("TZ", saved_copy, 1);
        else
                unsetenv("TZ");
        tzset();
}

static void test_rate(void)
{
        struct policy_limiter *l = policy_limiter_new();
        struct policy_profile *p, *reloaded;
        struct policy_decision d;
        struct policy_request req = {0};
        struct policy_peer other = user_peer;
        uint64_t t = 1000 * USEC_PER_SEC;

        other.uid = 1001;
        p = parse("peer required permit\nrequest required rate 2/s per-uid\n");
        if (!l || !p)
                abort();
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_ALLOW, "first request allowed");
        is_str(d.rate_key, "p 2/s uid=1000", "the decision names the bucket");
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_ALLOW, "second request allowed (capacity 2)");
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED, "third request rate limited");
        is_int(d.retry_after, 1, "retry_after rounds up to a whole second");
        is_str(d.rule, "p:4", "the rate rule decided");
        is_str(d.rate_key, "p 2/s uid=1000", "the limited bucket is named");
        policy_evaluate(p, &other, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_ALLOW, "another uid has its own bucket");
        policy_evaluate(p, &user_peer, &req,
                        &(struct policy_time){.monotonic_usec = t + USEC_PER_SEC / 2}, l, &d);
        ok(d.verdict == POLICY_ALLOW, "half a second refills one token at 2/s");
        policy_evaluate(p, &user_peer, &req,
                        &(struct policy_time){.monotonic_usec = t + USEC_PER_SEC / 2}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED, "and only one");
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, NULL, &d);
        ok(d.verdict == POLICY_ALLOW && d.rate_key[0] == 0,
           "a NULL limiter lets rate rules pass (dry run)");

        /* The state lives in the limiter: a reloaded profile finds the same bucket. */
        reloaded = parse("peer required permit\n\nrequest required rate 2/s per-uid\n");
        policy_evaluate(reloaded, &user_peer, &req,
                        &(struct policy_time){.monotonic_usec = t + USEC_PER_SEC / 2}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED, "bucket state survives a reload");
        policy_profile_free(reloaded);
        policy_profile_free(p);

        /* Tokens are taken only when the whole decision allows. */
        p = parse("peer required permit\nrequest required rate 1/hour\n"
                  "request required min_ttl max=10\n");
        req.min_ttl = 100;
        for (int i = 0; i < 3; i++)
                policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l,
                                &d);
        ok(d.verdict == POLICY_DENY && strcmp(d.rule, "p:5") == 0,
           "denied by min_ttl, not by the rate");
        req.min_ttl = 5;
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_ALLOW, "denied requests took no token");
        is_str(d.rate_key, "p 1/hour", "per-profile bucket key");
        policy_evaluate(p, &other, &req, &(struct policy_time){.monotonic_usec = t + 1}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED, "per-profile: other uids share the bucket");
        is_int(d.retry_after, 3600, "1/hour: a token in an hour");
        policy_profile_free(p);

        p = parse("peer required uid 0\nrequest required rate 1/hour per-uid\n");
        for (int i = 0; i < 3; i++)
                policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l,
                                &d);
        policy_profile_free(p);
        p = parse("peer required permit\nrequest required rate 1/hour per-uid\n");
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_ALLOW, "peer-stack denials took no token");
        policy_profile_free(p);

        /* 1000/hour: one token every 3.6 s. */
        p = parse("peer required permit\nrequest optional rate 1000/hour\n");
        for (int i = 0; i < 1000; i++)
                policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l,
                                &d);
        ok(d.verdict == POLICY_ALLOW, "a full bucket serves its capacity at once");
        policy_evaluate(p, &user_peer, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED && d.retry_after == 4,
           "an optional rate rule alone decides; retry_after 3.6 s rounds up to 4");
        policy_profile_free(p);

        /* A flood of uids cannot grow the limiter beyond its cap. */
        p = parse("peer required permit\nrequest required rate 1/hour per-uid\n");
        struct policy_peer flood = user_peer;
        for (unsigned i = 0; i < POLICY_LIMITER_MAX_BUCKETS + 1000; i++) {
                flood.uid = 100000 + i;
                policy_evaluate(p, &flood, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        }
        is_int(policy_limiter_bucket_count(l), POLICY_LIMITER_MAX_BUCKETS,
               "buckets are capped; the least recently used are reused");
        policy_evaluate(p, &flood, &req, &(struct policy_time){.monotonic_usec = t}, l, &d);
        ok(d.verdict == POLICY_RATE_LIMITED, "the most recent uid's bucket is still there");
        policy_profile_free(p);
        policy_limiter_free(l);
}

static void test_files(void)
{
        struct policy_set *set = NULL;
        char path[300], link[300];

        write_file("alerts",
                   "# comment\naccount alerts\nscope https://graph.microsoft.com/Mail.Send\n"
                   "peer required uid root 1000\ninclude common\n",
                   0644);
        write_file("common", "account shared\nscope S2\npeer sufficient group 4242\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "common:1: account given twice"),
           "an included file naming a second account is an error at its line");
        write_file("common", "scope S2\npeer sufficient group 4242\n", 0644);
        static const char *const ignored[] = {"common~",    ".hidden",  "x.dpkg-old", "x.dpkg-dist",
                                              "x.dpkg-new", "x.rpmnew", "x.rpmsave",  "alerts.swp"};
        for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
                write_file(ignored[i], "garbage", 0666);
        is_int(load_dir(&set), 0, "a valid directory loads; backups and hidden files are ignored");
        is_str(errors, "", "no problem reported");
        is_int(policy_set_count(set), 1, "the fragment is not a profile");
        ok(set && policy_set_find(set, "alerts") != NULL, "profile found by name");
        ok(set && policy_set_find(set, "nope") == NULL, "unknown profile not found");
        if (set && policy_set_find(set, "alerts")) {
                size_t n;
                policy_profile_scopes(policy_set_find(set, "alerts"), &n);
                is_int(n, 2, "the included scope counts");
        }
        policy_set_free(set);
        set = NULL;
        for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
                remove_file(ignored[i]);

        /* A fragment's problem is reported once, not again for each profile including it. */
        write_file("common", "peer required bogus\n", 0644);
        write_file("second", "account a\nscope S\ninclude common\n", 0644);
        ok(load_dir(&set) < 0, "a broken fragment fails the load");
        is_int(n_errors, 1, "a fragment's problem is reported once");
        remove_file("second");
        write_file("common", "scope S2\npeer sufficient group 4242\n", 0644);

        /* Ownership and mode */
        write_file("alerts", "account alerts\nscope S\npeer required uid root\n", 0664);
        snprintf(path, sizeof(path), "%s/alerts", dir);
        ok(load_dir(&set) < 0 && strstr(errors, "alerts:0: writable by group or others") &&
               strstr(errors, "chmod go-w ") && strstr(errors, path),
           "a group-writable file is refused, naming the file and the fix");
        write_file("alerts", "account alerts\nscope S\npeer required uid root\n", 0646);
        ok(load_dir(&set) < 0 && strstr(errors, "chmod go-w"), "a world-writable file is refused");
        write_file("alerts", "account alerts\nscope S\npeer required uid root\n", 0644);
        if (geteuid() == 0) {
                if (chown(path, 65534, 65534) < 0)
                        abort();
                ok(load_dir(&set) < 0 && strstr(errors, "owned by uid 65534") &&
                       strstr(errors, "chown root"),
                   "a file owned by another user is refused, naming the fix");
                if (chown(path, 0, 0) < 0)
                        abort();
        } else
                ok(1, "# SKIP the wrong-owner case needs root");
        is_int(load_dir(&set), 0, "fixed, it loads");
        policy_set_free(set);
        set = NULL;

        snprintf(link, sizeof(link), "%s/linked", dir);
        if (symlink(path, link) < 0)
                abort();
        ok(load_dir(&set) < 0 && strstr(errors, "linked:0: is a symbolic link"),
           "a symbolic link in policy.d is refused");
        unlink(link);
        write_file("alerts", "account alerts\nscope S\npeer required uid root\ninclude .x\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "expected \"include FILE\""),
           "include names are validated like profile names");
        write_file("alerts", "account alerts\nscope S\npeer required uid root\n", 0644);

        write_file("Bad-Name", "account a\nscope S\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "Bad-Name:0: not a valid profile name"),
           "invalid file names are reported");
        remove_file("Bad-Name");

        chmod(dir, 0775);
        ok(load_dir(&set) < 0 && strstr(errors, "writable by group or others (fix: chmod go-w") &&
               strstr(errors, dir),
           "a group-writable policy directory is refused");
        chmod(dir, 0755);

        /* Two broken files: both reported. */
        write_file("one", "account a\nscope S\npeer bad uid root\n", 0644);
        write_file("two", "account a\nscope S\nrequest required rate 0/s\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "one:3: unknown control") &&
               strstr(errors, "two:3: rate count"),
           "every broken file is reported");
        remove_file("one");
        remove_file("two");

        {
                char *big = malloc(70000);
                memset(big, '#', 69999);
                big[69999] = 0;
                write_file("big", big, 0644);
                free(big);
                ok(load_dir(&set) < 0 && strstr(errors, "big:0: larger than"),
                   "files are bounded in size");
                remove_file("big");
        }
        remove_file("alerts");
        remove_file("common");
}

/* An MSP host's policy: hundreds of profiles, each found by its name with its own account, none
 * found by a name the directory lacks, and listed sorted. */
static void test_many_profiles(void)
{
        enum { N = 300 };
        struct policy_set *set = NULL;
        char many[300], name[32], text[64];
        unsigned found = 0, sorted = 1;

        snprintf(many, sizeof(many), "%s/many", dir);
        if (mkdir(many, 0755) < 0)
                abort();
        for (unsigned i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "many/p%03u", i);
                snprintf(text, sizeof(text), "account a%u\nscope S\n", i);
                write_file(name, text, 0644);
        }
        reset_errors();
        is_int(policy_set_load_reporting(many, collect_error, NULL, &set), 0,
               "a directory of 300 profiles loads");
        is_int(set ? policy_set_count(set) : 0, N, "all 300 are in the set");
        for (unsigned i = 0; set && i < N; i++) {
                const struct policy_profile *p;

                snprintf(name, sizeof(name), "p%03u", i);
                snprintf(text, sizeof(text), "a%u", i);
                p = policy_set_find(set, name);
                found += p && strcmp(policy_profile_name(p), name) == 0 &&
                         strcmp(policy_profile_account(p), text) == 0;
        }
        is_int(found, N, "each profile is found by its name, with its own account");
        ok(set && !policy_set_find(set, "p300") && !policy_set_find(set, "p00") &&
               !policy_set_find(set, "") && !policy_set_find(set, "p0000"),
           "names the directory lacks are not found");
        for (size_t i = 1; set && i < N; i++)
                sorted &= strcmp(policy_profile_name(policy_set_get(set, i - 1)),
                                 policy_profile_name(policy_set_get(set, i))) < 0;
        ok(sorted, "the set lists its profiles sorted by name");
        policy_set_free(set);
        for (unsigned i = 0; i < N; i++) {
                snprintf(name, sizeof(name), "many/p%03u", i);
                remove_file(name);
        }
        rmdir(many);
}

static void test_includes(void)
{
        struct policy_set *set = NULL;
        char name[16], text[64];

        /* a -> f1 -> ... -> f8: eight nested includes are allowed, nine are not. */
        write_file("a", "account a\nscope S\npeer required permit\ninclude f1\n", 0644);
        for (int i = 1; i <= 8; i++) {
                snprintf(name, sizeof(name), "f%d", i);
                snprintf(text, sizeof(text), i < 8 ? "include f%d\n" : "scope S%d\n", i + 1);
                write_file(name, text, 0644);
        }
        is_int(load_dir(&set), 0, "eight nested includes load");
        if (errors[0])
                printf("# %s", errors);
        policy_set_free(set);
        set = NULL;
        write_file("f8", "include f9\n", 0644);
        write_file("f9", "scope S9\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "f8:1: includes nested deeper than 8"),
           "a ninth nested include is an error");
        for (int i = 1; i <= 9; i++) {
                snprintf(name, sizeof(name), "f%d", i);
                remove_file(name);
        }

        write_file("x", "include y\n", 0644);
        write_file("y", "include x\n", 0644);
        write_file("a", "account a\nscope S\npeer required permit\ninclude x\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "include cycle through x"),
           "an include cycle is an error");
        remove_file("x");
        remove_file("y");
        write_file("a", "account a\nscope S\npeer required permit\ninclude a\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "a:4: include cycle through a"),
           "a file including itself is a cycle");
        write_file("a", "account a\nscope S\npeer required permit\ninclude missing\n", 0644);
        ok(load_dir(&set) < 0 && strstr(errors, "a:4: cannot include missing") &&
               strstr(errors, "missing:0: cannot open"),
           "a missing include is an error at the include line");
        {
                char target[300], link[300];
                write_file("real", "scope S2\n", 0644);
                snprintf(target, sizeof(target), "%s/real", dir);
                snprintf(link, sizeof(link), "%s/link.dpkg-old", dir);
                if (symlink(target, link) < 0)
                        abort();
                write_file("a", "account a\nscope S\npeer required permit\ninclude link.dpkg-old\n",
                           0644);
                ok(load_dir(&set) < 0 && strstr(errors, "link.dpkg-old:0: is a symbolic link"),
                   "an include through a symbolic link is refused (O_NOFOLLOW)");
                unlink(link);
                remove_file("real");
        }
        {
                char fifo[300];
                snprintf(fifo, sizeof(fifo), "%s/pipe", dir);
                if (mkfifo(fifo, 0644) < 0)
                        abort();
                write_file("a", "account a\nscope S\npeer required permit\ninclude pipe\n", 0644);
                ok(load_dir(&set) < 0 && strstr(errors, "pipe:0: not a regular file"),
                   "an included FIFO is refused without hanging");
                unlink(fifo);
        }
        remove_file("a");
}

static void test_examples(void)
{
        const char *root = secure_getenv("CREDBROKER_SOURCE_ROOT");
        struct policy_set *set = NULL;
        char examples[512];

        snprintf(examples, sizeof(examples), "%s/policy/examples", root ? root : ".");
        reset_errors();
        is_int(policy_set_load_reporting(examples, collect_error, NULL, &set), 0,
               "policy/examples loads");
        if (errors[0])
                printf("# %s", errors);
        if (!set)
                return;
        ok(policy_set_find(set, "alerts") != NULL, "example profile alerts");
        ok(policy_set_find(set, "monitoring") != NULL, "example profile monitoring");
        ok(policy_set_find(set, "report-cron") != NULL, "example profile report-cron");
        ok(policy_set_find(set, "backup") != NULL, "example profile backup");
        ok(policy_set_find(set, "other") != NULL, "example profile other");
        {
                struct policy_decision d;
                policy_evaluate(policy_set_find(set, "other"), &(struct policy_peer){.uid = 0},
                                &(struct policy_request){0}, &(struct policy_time){0}, NULL, &d);
                ok(d.verdict == POLICY_DENY, "other denies even root");
        }
        policy_set_free(set);
}

int main(void)
{
        log_set_level(LOG_LEVEL_ERROR - 1); /* the error cases below log on purpose */
        if (!mkdtemp(dir))
                abort();
        chmod(dir, 0755);

        test_parsing();
        test_scopes();
        test_modules();
        test_uid_is_not_gid();
        test_lint();
        test_time();
        test_rate();
        test_files();
        test_many_profiles();
        test_includes();
        test_examples();

        rmdir(dir);
        return done_testing();
}
