/* Unit tests for the first policy engine: parsing, file checks, and the peer stack's controls. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "policy.h"
#include "tap.h"

static char dir[] = "/tmp/test-policy.XXXXXX";

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

static const struct policy_peer root_peer = {.uid = 0, .gid = 0, .pid = 1};
static const gid_t extra_groups[] = {4242};
static const struct policy_peer user_peer = {
    .uid = 1000, .gid = 1000, .pid = 2, .groups = extra_groups, .n_groups = 1};

static int decide(const char *stack, const struct policy_peer *peer, char *rule, size_t n)
{
        struct policy_set *set = NULL;
        struct policy_decision d;
        char text[1024];
        int r;

        snprintf(text, sizeof(text),
                 "account demo\nscope https://graph.microsoft.com/Mail.Send\n%s", stack);
        write_file("p", text, 0644);
        r = policy_set_load(dir, &set);
        remove_file("p");
        if (r < 0)
                return -1;
        policy_evaluate(policy_set_find(set, "p"), peer, &(struct policy_request){0},
                        &(struct policy_time){0}, NULL, &d);
        if (rule)
                snprintf(rule, n, "%s", d.rule);
        policy_set_free(set);
        return d.verdict == POLICY_ALLOW;
}

int main(void)
{
        struct policy_set *set = NULL;
        char rule[POLICY_RULE_MAX_LEN];
        size_t n;

        log_set_level(LOG_LEVEL_ERROR - 1); /* the error cases below log on purpose */
        json_init();
        if (!mkdtemp(dir))
                abort();

        /* Parsing */
        write_file("alerts",
                   "# comment\naccount alerts\nscope https://graph.microsoft.com/Mail.Send   # x\n"
                   "scope https://graph.microsoft.com/Mail.Send\n"
                   "peer required uid root 1000\ninclude common\n",
                   0644);
        write_file("common", "account shared\nscope S2\npeer sufficient group 4242\n", 0644);
        ok(policy_set_load(dir, &set) < 0, "an included file naming a second account is an error");
        write_file("common", "scope S2\npeer sufficient group 4242\n", 0644);
        write_file("common~", "garbage", 0644);
        write_file(".hidden", "garbage", 0644);
        write_file("x.dpkg-old", "garbage", 0644);
        is_int(policy_set_load(dir, &set), 0, "a valid directory loads; backups are ignored");
        is_int(policy_set_count(set), 1, "files without an account are errors, or not loaded");
        policy_set_free(set);
        set = NULL;
        remove_file("common~");
        remove_file(".hidden");
        remove_file("x.dpkg-old");

        write_file("common", "scope S2\npeer sufficient group 4242\n", 0644);
        remove_file("common");
        write_file("alerts",
                   "account alerts\nscope https://graph.microsoft.com/Mail.Send\nscope S2\n"
                   "scope S2\npeer required uid root\n",
                   0644);
        is_int(policy_set_load(dir, &set), 0, "profile loads");
        const struct policy_profile *p = policy_set_find(set, "alerts");
        ok(p != NULL, "profile found by name");
        ok(policy_set_find(set, "nope") == NULL, "unknown profile not found");
        is_str(policy_profile_account(p), "alerts", "account directive");
        policy_profile_scopes(p, &n);
        is_int(n, 2, "duplicate scopes are kept once");
        char *want[] = {(char *)"S2"};
        char *bad[] = {(char *)"https://graph.microsoft.com/Mail.Read"};
        ok(policy_profile_allows_scopes(p, want, 1), "a listed scope is allowed");
        ok(!policy_profile_allows_scopes(p, bad, 1), "an unlisted scope is refused");
        policy_set_free(set);
        set = NULL;

        /* File checks */
        write_file("alerts", "account alerts\nscope S\npeer required uid root\n", 0666);
        ok(policy_set_load(dir, &set) < 0, "a world-writable policy file is refused");
        write_file("alerts", "account alerts\nscope S\npeer required uid root\n", 0644);
        {
                char target[300], link[300];
                snprintf(target, sizeof(target), "%s/alerts", dir);
                snprintf(link, sizeof(link), "%s/linked", dir);
                if (symlink(target, link) < 0)
                        abort();
                ok(policy_set_load(dir, &set) < 0, "a symbolic link in policy.d is refused");
                unlink(link);
        }
        remove_file("alerts");

        /* Parse errors */
        ok(decide("peer required uid no-such-user-xyz\n", &root_peer, NULL, 0) < 0,
           "unknown user name is a parse error");
        ok(decide("peer mandatory uid root\n", &root_peer, NULL, 0) < 0, "unknown control");
        ok(decide("peer required exe /bin/sh\n", &root_peer, NULL, 0) < 0,
           "module not supported yet is an error, not ignored");
        ok(decide("frobnicate\n", &root_peer, NULL, 0) < 0, "unknown directive");
        ok(decide("include p\n", &root_peer, NULL, 0) < 0, "include cycle");

        /* Controls, with Linux-PAM's meaning (pam.conf(5)). */
        is_int(decide("", &root_peer, NULL, 0), 0, "empty stack denies");
        is_int(decide("peer required uid root\n", &root_peer, rule, sizeof(rule)), 1,
               "required match allows");
        is_str(rule, "p:3", "decision names file:line");
        is_int(decide("peer required uid root\n", &user_peer, NULL, 0), 0,
               "required mismatch denies");
        is_int(decide("peer required group 4242\n", &user_peer, NULL, 0), 1,
               "supplementary group matches");
        is_int(decide("peer required uid 1000\npeer required uid root\n", &user_peer, rule,
                      sizeof(rule)),
               0, "one failed required denies");
        is_str(rule, "p:4", "the failing required rule decided");
        is_int(decide("peer required uid root\npeer sufficient uid 1000\n", &user_peer, NULL, 0), 0,
               "sufficient after a failed required does not allow");
        is_int(decide("peer sufficient uid 1000\npeer required uid root\n", &user_peer, rule,
                      sizeof(rule)),
               1, "sufficient before anything fails allows at once");
        is_str(rule, "p:3", "the sufficient rule decided");
        is_int(decide("peer sufficient uid root\n", &user_peer, NULL, 0), 0,
               "failing sufficient alone denies");
        is_int(decide("peer requisite uid root\npeer sufficient uid 1000\n", &user_peer, rule,
                      sizeof(rule)),
               0, "requisite failure denies at once");
        is_str(rule, "p:3", "the requisite rule decided");
        is_int(decide("peer optional uid 1000\n", &user_peer, NULL, 0), 1,
               "optional alone counts (match)");
        is_int(decide("peer optional uid root\n", &user_peer, NULL, 0), 0,
               "optional alone counts (no match)");
        is_int(decide("peer optional uid root\npeer required uid 1000\n", &user_peer, NULL, 0), 1,
               "a failing optional among others is ignored");
        is_int(decide("peer sufficient uid root\npeer optional uid 1000\n", &user_peer, NULL, 0), 0,
               "a matching optional among others does not allow");
        is_int(decide("peer required uid 1000\npeer requisite uid root\n", &user_peer, rule,
                      sizeof(rule)),
               0, "a failing requisite after a matching required denies");
        is_str(rule, "p:4", "the requisite rule that stopped the stack is named");

        /* The shipped examples must load as they are. */
        {
                const char *root = secure_getenv("CREDBROKER_SOURCE_ROOT");
                char examples[512];

                snprintf(examples, sizeof(examples), "%s/policy/examples", root ? root : ".");
                is_int(policy_set_load(examples, &set), 0, "policy/examples loads");
                if (set) {
                        ok(policy_set_find(set, "alerts") != NULL, "example profile alerts");
                        is_int(policy_set_count(set), 1, "the fragment is not a profile");
                        policy_set_free(set);
                        set = NULL;
                }
        }

        rmdir(dir);
        return done_testing();
}
