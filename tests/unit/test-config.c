/* Unit tests for common/config: the defaults, a complete file, every kind of rejected line and
 * value, and the owner/mode check on the file itself. Errors are logged to stderr by design;
 * TAP reads only stdout. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "tap.h"
#include "trusted-file.h"

static char tmpdir[] = "/tmp/test-config-XXXXXX";
static char path[256];

static const char *write_conf(const char *text, mode_t mode)
{
        FILE *f;

        snprintf(path, sizeof(path), "%s/credbroker.conf", tmpdir);
        unlink(path);
        f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0)
                abort();
        if (chmod(path, mode) < 0)
                abort();
        return path;
}

/* Loads text (mode 0600, owner check on) and returns the result; *ret gets the config. */
static int load(const char *text, struct config **ret)
{
        return config_load(write_conf(text, 0600), true, ret);
}

static void expect_fail(const char *text, const char *what)
{
        struct config *c = (struct config *)0x1;
        int r = load(text, &c);

        if (!ok(r < 0, what))
                printf("#   got %d for:\n#   %s\n", r, text);
        if (c != (struct config *)0x1) {
                ok(0, "ret must be untouched on failure");
                if (r >= 0)
                        config_free(c);
        }
}

static void expect_ok(const char *text, const char *what)
{
        struct config *c = NULL;
        int r = load(text, &c);

        if (!ok(r == 0 && c, what))
                printf("#   got %d for:\n#   %s\n", r, text);
        config_free(c);
}

static void test_defaults(void)
{
        struct config *c = NULL;

        is_int(config_new_default(&c), 0, "config_new_default");
        if (!c)
                return;
        is_str(c->socket_path, "/run/credbroker/socket", "default socket");
        ok(c->policy_dir && strlen(c->policy_dir) > 9 &&
               strcmp(c->policy_dir + strlen(c->policy_dir) - 9, "/policy.d") == 0,
           "default policy_dir ends in /policy.d");
        is_str(c->audit_log, "/var/log/credbroker/audit.log", "default audit_log");
        is_str(c->log_level, "info", "default log_level");
        is_str(c->module_path, "/usr/lib/softhsm/libsofthsm2.so", "default module");
        is_str(c->token_uri, "pkcs11:token=credbroker", "default token");
        is_str(c->pin_source, "credential:pkcs11-pin", "default pin_source");
        is_int(c->n_module_dirs, 2, "two default module_dirs");
        is_str(c->module_dirs[0], "/usr/lib*", "default module_dirs[0]");
        is_str(c->module_dirs[1], "/usr/local/lib*", "default module_dirs[1]");
        is_str(c->authority, "https://login.microsoftonline.com", "default authority");
        is_str(c->graph_url, "https://graph.microsoft.com", "default graph");
        is_str(c->ca_bundle, "/etc/ssl/certs/ca-certificates.crt", "default ca_bundle");
        is_int(c->connect_timeout_sec, 10, "default connect_timeout");
        is_int(c->timeout_sec, 30, "default timeout");
        config_free(c);
        config_free(NULL);
        ok(1, "config_free(NULL) is a no-op");

        /* An empty file and a file of only comments are the defaults. */
        c = NULL;
        is_int(load("", &c), 0, "empty file loads");
        if (c) {
                is_str(c->socket_path, "/run/credbroker/socket", "empty file: default socket");
                is_int(c->timeout_sec, 30, "empty file: default timeout");
                config_free(c);
        }
        c = NULL;
        is_int(load("# comment\n; other comment\n\n   \n\t# indented\n[broker]\n", &c), 0,
               "comments, blank lines and an empty section load");
        config_free(c);
}

static void test_full(void)
{
        struct config *c = NULL;
        const char *text = "# credbroker.conf\n"
                           "[broker]\n"
                           "socket = /run/cb/sock\n"
                           "policy_dir=/etc/cb/policy.d\n"
                           "  audit_log   =   /var/log/cb/audit.log  \n"
                           "log_level = debug\r\n"
                           "\n"
                           "; PKCS#11 store\n"
                           "[pkcs11]\n"
                           "module = /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so\n"
                           "token = pkcs11:token=cb;serial=1234\n"
                           "pin_source = file:/etc/cb/pin\n"
                           "module_dirs = /usr/lib/x86_64-linux-gnu/softhsm\t/opt/hsm/lib*\n"
                           "\t[identity]\t\n"
                           "authority = https://login.example.test\n"
                           "graph = https://graph.example.test\n"
                           "ca_bundle = /etc/cb/ca.pem\n"
                           "connect_timeout = 5\n"
                           "timeout = 3600\n";

        is_int(load(text, &c), 0, "a full valid file loads");
        if (!c)
                return;
        is_str(c->socket_path, "/run/cb/sock", "socket");
        is_str(c->policy_dir, "/etc/cb/policy.d", "policy_dir without spaces around '='");
        is_str(c->audit_log, "/var/log/cb/audit.log", "audit_log trimmed");
        is_str(c->log_level, "debug", "log_level with CRLF");
        is_str(c->module_path, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so", "module");
        is_str(c->token_uri, "pkcs11:token=cb;serial=1234", "token with '=' in the value");
        is_str(c->pin_source, "file:/etc/cb/pin", "pin_source");
        is_int(c->n_module_dirs, 2, "module_dirs count");
        is_str(c->module_dirs[0], "/usr/lib/x86_64-linux-gnu/softhsm", "module_dirs[0]");
        is_str(c->module_dirs[1], "/opt/hsm/lib*", "module_dirs[1] after a tab");
        is_str(c->authority, "https://login.example.test", "authority");
        is_str(c->graph_url, "https://graph.example.test", "graph");
        is_str(c->ca_bundle, "/etc/cb/ca.pem", "ca_bundle");
        is_int(c->connect_timeout_sec, 5, "connect_timeout");
        is_int(c->timeout_sec, 3600, "timeout at its maximum");
        config_free(c);

        /* A partial file keeps the other defaults. */
        c = NULL;
        is_int(load("[identity]\ntimeout = 1\n", &c), 0, "partial file");
        if (c) {
                is_int(c->timeout_sec, 1, "timeout at its minimum");
                is_int(c->connect_timeout_sec, 10, "untouched key keeps its default");
                is_int(c->keepalive_days, 14, "default keepalive_days");
                is_str(c->socket_path, "/run/credbroker/socket", "other sections untouched");
                config_free(c);
        }

        c = NULL;
        is_int(load("[identity]\nkeepalive_days = 0\n", &c), 0, "keepalive_days 0");
        if (c) {
                is_int(c->keepalive_days, 0, "keepalive_days 0: every check");
                config_free(c);
        }
        c = NULL;
        ok(load("[identity]\nkeepalive_days = 90\n", &c) < 0 && !c,
           "keepalive_days at Microsoft's 90-day limit is refused");
        c = NULL;
        ok(load("[identity]\nkeepalive_days = 1.5\n", &c) < 0 && !c,
           "keepalive_days is whole days");

        /* Later values win; sections may repeat. */
        c = NULL;
        is_int(load("[broker]\nlog_level = error\n[identity]\n[broker]\nlog_level = notice\n", &c),
               0, "repeated sections and keys");
        if (c) {
                is_str(c->log_level, "notice", "the last value wins");
                config_free(c);
        }
}

static void test_module_dirs(void)
{
        struct config *c = NULL;

        is_int(load("[pkcs11]\nmodule_dirs = /a\n", &c), 0, "one module dir");
        if (c) {
                is_int(c->n_module_dirs, 1, "one module dir replaces the defaults");
                is_str(c->module_dirs[0], "/a", "the one module dir");
                config_free(c);
        }

        c = NULL;
        is_int(load("[pkcs11]\nmodule_dirs = /a /b\nmodule_dirs =   /c  \t /d\t/e  \n", &c), 0,
               "module_dirs set twice");
        if (c) {
                is_int(c->n_module_dirs, 3, "the second module_dirs replaces the first");
                ok(c->n_module_dirs == 3 && strcmp(c->module_dirs[0], "/c") == 0 &&
                       strcmp(c->module_dirs[1], "/d") == 0 && strcmp(c->module_dirs[2], "/e") == 0,
                   "module_dirs split on runs of spaces and tabs");
                config_free(c);
        }

        c = NULL;
        is_int(load("[pkcs11]\nmodule_dirs = /1 /2 /3 /4 /5 /6 /7 /8\n", &c), 0,
               "eight module dirs (the maximum)");
        if (c) {
                is_int(c->n_module_dirs, CONFIG_MAX_MODULE_DIRS, "eight module dirs kept");
                is_str(c->module_dirs[7], "/8", "the eighth module dir");
                config_free(c);
        }

        expect_fail("[pkcs11]\nmodule_dirs = /1 /2 /3 /4 /5 /6 /7 /8 /9\n",
                    "nine module dirs are refused");
        expect_fail("[pkcs11]\nmodule_dirs = usr/lib\n", "a relative module dir is refused");
        expect_fail("[pkcs11]\nmodule_dirs = /usr/lib ./lib\n",
                    "a relative module dir after an absolute one is refused");
        expect_fail("[pkcs11]\nmodule_dirs =\n", "empty module_dirs is refused");
        expect_fail("[pkcs11]\nmodule_dirs =  \t \n", "blank module_dirs is refused");
}

/* [pkcs11] store and wrapped_dir (issue 14). */
static void test_store(void)
{
        struct config *c = NULL;

        is_int(load("[broker]\n", &c), 0, "no [pkcs11] store");
        if (c) {
                is_int(c->store, CONFIG_STORE_OBJECTS, "the objects backend by default");
                is_str(c->wrapped_dir, LOCALSTATEDIR "/lib/credbroker/store",
                       "wrapped_dir defaults under the state directory");
                config_free(c);
        }
        c = NULL;
        is_int(load("[pkcs11]\nstore = wrapped\nwrapped_dir = /srv/cb/store\n", &c), 0,
               "store = wrapped");
        if (c) {
                is_int(c->store, CONFIG_STORE_WRAPPED, "the wrapped backend");
                is_str(c->wrapped_dir, "/srv/cb/store", "wrapped_dir as given");
                config_free(c);
        }
        c = NULL;
        is_int(load("[pkcs11]\nstore = wrapped\nstore = objects\n", &c), 0, "store = objects");
        if (c) {
                is_int(c->store, CONFIG_STORE_OBJECTS, "the last store wins");
                config_free(c);
        }
        expect_fail("[pkcs11]\nstore = sqlite\n", "an unknown store is refused");
        expect_fail("[pkcs11]\nstore =\n", "an empty store is refused");
        expect_fail("[pkcs11]\nwrapped_dir = store\n", "a relative wrapped_dir is refused");
        expect_fail("[broker]\nstore = wrapped\n", "store outside [pkcs11] is refused");
}

/* [pkcs11] softhsm_reopen_after (store_reopen_if_due()). */
static void test_softhsm_reopen_after(void)
{
        struct config *c = NULL;

        is_int(load("[broker]\n", &c), 0, "no softhsm_reopen_after");
        if (c) {
                is_int(c->softhsm_reopen_after, 4096,
                       "SoftHSM2 reopened every 4,096 destroyed objects");
                config_free(c);
        }
        c = NULL;
        is_int(load("[pkcs11]\nsofthsm_reopen_after = 0\n", &c), 0, "softhsm_reopen_after = 0");
        if (c) {
                is_int(c->softhsm_reopen_after, 0, "never");
                config_free(c);
        }
        expect_fail("[pkcs11]\nsofthsm_reopen_after = 1000001\n", "more than a million is refused");
        expect_fail("[pkcs11]\nsofthsm_reopen_after = -1\n", "a negative count is refused");
        expect_fail("[pkcs11]\nsofthsm_reopen_after =\n", "an empty count is refused");
}

static void test_errors(void)
{
        char line[1100];

        /* Structure. */
        expect_fail("[broker]\nfrobnicate = yes\n", "unknown key is an error");
        expect_fail("[identity]\nsocket = /run/x\n", "a key in the wrong section is an error");
        expect_fail("[nope]\n", "unknown section is an error");
        expect_fail("[Broker]\n", "section names are case-sensitive");
        expect_fail("[]\n", "empty section name is an error");
        expect_fail("[broker\nsocket = /run/x\n", "unterminated section header");
        expect_fail("[broker] extra\n", "text after a section header");
        expect_fail("[broker]]\n", "two closing brackets");
        expect_fail("[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", "overlong section name");
        expect_fail("socket = /run/x\n", "a key before any section");
        expect_fail("[broker]\nsocket /run/x\n", "a line without '='");
        expect_fail("[broker]\n= /run/x\n", "an empty key");
        expect_fail("[broker]\nsocket =\n", "an empty value");
        expect_fail("[broker]\nsocket =   \n", "a blank value");
        expect_fail("[identity]\nca_bundle =\n", "an empty value nothing else validates");
        expect_fail("[broker]\naudit_log = \t\n", "a blank value nothing else validates");

        /* Line length: 1022 characters fit, 1023 do not. */
        memset(line, 'x', sizeof(line));
        line[0] = '#';
        line[1022] = '\n';
        line[1023] = 0;
        expect_ok(line, "a 1022-character line is accepted");
        line[1022] = 'x';
        line[1023] = '\n';
        line[1024] = 0;
        expect_fail(line, "a 1023-character line is refused");

        /* Values. */
        static const char *const bad_timeouts[] = {
            "0", "3601", "-1", "abc", "10s", " 1x", "1.5", "+5", "99999999999999999999"};
        for (size_t i = 0; i < ELEMENTSOF(bad_timeouts); i++) {
                char text[128], what[128];
                snprintf(text, sizeof(text), "[identity]\ntimeout = %s\n", bad_timeouts[i]);
                snprintf(what, sizeof(what), "timeout = %s is refused", bad_timeouts[i]);
                expect_fail(text, what);
                snprintf(text, sizeof(text), "[identity]\nconnect_timeout = %s\n", bad_timeouts[i]);
                snprintf(what, sizeof(what), "connect_timeout = %s is refused", bad_timeouts[i]);
                expect_fail(text, what);
        }

        expect_fail("[identity]\nauthority = http://login.microsoftonline.com\n",
                    "a plain-http authority is refused");
        expect_fail("[identity]\nauthority = login.microsoftonline.com\n",
                    "an authority without scheme is refused");
        expect_fail("[identity]\nauthority = https:/login.microsoftonline.com\n",
                    "a malformed https authority is refused");
        expect_fail("[identity]\ngraph = http://graph.microsoft.com\n",
                    "a plain-http graph URL is refused");
        expect_fail("[broker]\nlog_level = verbose\n", "unknown log_level is refused");
        expect_fail("[broker]\nlog_level = INFO\n", "log levels are lowercase");
        expect_fail("[pkcs11]\npin_source = env:PIN\n", "unknown pin_source kind is refused");
        expect_fail("[pkcs11]\npin_source = 1234\n", "a literal PIN is refused");
        expect_fail("[broker]\nsocket = run/credbroker/socket\n", "a relative socket path");

        char text[256];
        char sock[120];
        memset(sock, 's', sizeof(sock));
        sock[0] = '/';
        sock[107] = 0; /* 107 bytes + NUL fits sun_path */
        snprintf(text, sizeof(text), "[broker]\nsocket = %s\n", sock);
        expect_ok(text, "a 107-byte socket path is accepted");
        sock[107] = 's';
        sock[108] = 0;
        snprintf(text, sizeof(text), "[broker]\nsocket = %s\n", sock);
        expect_fail(text, "a 108-byte socket path is refused");

        /* The file itself. */
        struct config *c = (struct config *)0x1;
        char missing[300];
        snprintf(missing, sizeof(missing), "%s/missing.conf", tmpdir);
        is_int(config_load(missing, false, &c), -ENOENT, "a missing file is -ENOENT");
        ok(config_load(tmpdir, false, &c) < 0, "a directory is refused");
        ok(c == (struct config *)0x1, "ret untouched");

        char link[300];
        snprintf(link, sizeof(link), "%s/link.conf", tmpdir);
        write_conf("[broker]\n", 0600);
        if (symlink(path, link) < 0)
                abort();
        ok(config_load(link, false, &c) < 0, "a symlink is refused (O_NOFOLLOW)");
        unlink(link);
}

static void test_owner(void)
{
        struct config *c = NULL;
        int fd;

        write_conf("[broker]\nlog_level = debug\n", 0666);
        c = (struct config *)0x1;
        is_int(config_load(path, true, &c), -EPERM, "mode 0666 refused with check_owner");
        ok(c == (struct config *)0x1, "ret untouched");
        c = NULL;
        is_int(config_load(path, false, &c), 0, "mode 0666 accepted without check_owner");
        config_free(c);

        write_conf("[broker]\n", 0620);
        c = NULL;
        is_int(config_load(path, true, &c), -EPERM, "group-writable (0620) refused");
        write_conf("[broker]\n", 0602);
        is_int(config_load(path, true, &c), -EPERM, "other-writable (0602) refused");
        write_conf("[broker]\n", 0644);
        is_int(config_load(path, true, &c), 0, "mode 0644 accepted");
        config_free(c);
        write_conf("[broker]\n", 0400);
        c = NULL;
        is_int(config_load(path, true, &c), 0, "mode 0400 accepted");
        config_free(c);

        fd = open(path, O_RDONLY | O_CLOEXEC);
        is_int(trusted_file_check(fd, path, TRUSTED_FILE_REGULAR), 0,
               "trusted_file_check on a good file");
        close(fd);
        fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ok(trusted_file_check(fd, tmpdir, TRUSTED_FILE_REGULAR) < 0,
           "trusted_file_check on a directory");
        close(fd);

        /* Owned by somebody else: only root can set that up. */
        write_conf("[broker]\n", 0644);
        if (geteuid() == 0 && chown(path, 4242, 4242) == 0) {
                c = NULL;
                is_int(config_load(path, true, &c), -EPERM, "a file owned by another uid");
                c = NULL;
                is_int(config_load(path, false, &c), 0, "... accepted without check_owner");
                config_free(c);
        } else {
                ok(1, "# SKIP needs root to chown");
                ok(1, "# SKIP needs root to chown");
        }
        unlink(path);
}

/* cloud sets authority and graph together; explicit URLs win wherever they are in the file; the
 * scope prefix follows a Microsoft Graph host, else the cloud. */
static void test_clouds(void)
{
        static const struct {
                const char *cloud, *authority, *graph;
        } clouds[] = {
            {"global", "https://login.microsoftonline.com", "https://graph.microsoft.com"},
            {"usgov", "https://login.microsoftonline.com", "https://graph.microsoft.com"},
            {"usgov-high", "https://login.microsoftonline.us", "https://graph.microsoft.us"},
            {"dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"},
            {"china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"},
        };
        struct config *c = NULL;
        char text[128];

        for (size_t i = 0; i < ELEMENTSOF(clouds); i++) {
                snprintf(text, sizeof(text), "[identity]\ncloud = %s\n", clouds[i].cloud);
                c = NULL;
                is_int(load(text, &c), 0, clouds[i].cloud);
                if (!c)
                        continue;
                is_str(c->authority, clouds[i].authority, "the cloud's authority");
                is_str(c->graph_url, clouds[i].graph, "the cloud's Graph");
                is_str(config_graph_resource(c), clouds[i].graph, "the cloud's scope prefix");
                config_free(c);
        }
        c = NULL;
        is_int(load("[identity]\ngraph = https://127.0.0.1:8443\nauthority = https://127.0.0.1:8443"
                    "\ncloud = usgov-high\n",
                    &c),
               0, "cloud after explicit URLs");
        is_str(c->authority, "https://127.0.0.1:8443", "an explicit authority wins");
        is_str(c->graph_url, "https://127.0.0.1:8443", "an explicit graph wins");
        is_str(config_graph_resource(c), "https://graph.microsoft.us",
               "a relay's scopes are the cloud's");
        config_free(c);
        c = NULL;
        is_int(load("[identity]\ngraph = https://DOD-graph.microsoft.us/\n", &c), 0,
               "an explicit national Graph");
        is_str(config_graph_resource(c), "https://dod-graph.microsoft.us",
               "the scopes follow a Microsoft Graph host");
        is_str(c->authority, "https://login.microsoftonline.com", "global authority by default");
        config_free(c);
        expect_fail("[identity]\ncloud = usgovhigh\n", "an unknown cloud");
        expect_fail("[identity]\ncloud = \n", "an empty cloud");
        expect_fail("[broker]\ncloud = china\n", "cloud outside [identity]");
}

static void test_proxy(void)
{
        struct config *c = NULL;
        char *shown = NULL;

        is_int(load("[identity]\nproxy = http://u:s3cret@proxy.example:3128\n"
                    "no_proxy = localhost, .internal,10.0.0.0/8\n",
                    &c),
               0, "proxy and no_proxy");
        is_str(c->proxy, "http://u:s3cret@proxy.example:3128", "the proxy as given");
        is_str(c->no_proxy, "localhost, .internal,10.0.0.0/8", "no_proxy as given");
        config_free(c);
        c = NULL;
        is_int(load("", &c), 0, "no proxy");
        ok(!c->proxy && !c->no_proxy, "none by default");
        config_free(c);
        expect_fail("[identity]\nproxy = ftp://proxy:21\n", "an ftp proxy");
        expect_fail("[identity]\nproxy = proxy.example:3128\n", "a proxy without a scheme");
        expect_fail("[identity]\nno_proxy = a;b\n", "no_proxy with a semicolon");
        expect_ok("[identity]\nproxy = socks5h://127.0.0.1:1080\n", "a SOCKS proxy");

        is_int(config_proxy_redacted("http://u:s3cret@proxy.example:3128", &shown), 0, "redact");
        is_str(shown, "http://***@proxy.example:3128", "user and password hidden");
        free(shown);
        is_int(config_proxy_redacted("http://a@b:pw@proxy:1/x@y", &shown), 0, "redact two @");
        is_str(shown, "http://***@proxy:1/x@y", "up to the last @ before the path");
        free(shown);
        is_int(config_proxy_redacted("http://proxy.example:3128", &shown), 0, "nothing to hide");
        is_str(shown, "http://proxy.example:3128", "unchanged");
        free(shown);
        is_int(config_proxy_redacted(NULL, &shown), 0, "no proxy");
        ok(!shown, "NULL for no proxy");
}

/* [broker] refresh_concurrency_per_authority and refresh_ahead_spread (issue 14). */
static void test_refresh_keys(void)
{
        struct config *c = NULL;

        if (config_new_default(&c) < 0)
                abort();
        is_int(c->refresh_concurrency_per_authority, 8, "refresh concurrency defaults to 8");
        is_int(c->refresh_ahead_spread, 15, "refresh-ahead spread defaults to 15%");
        config_free(c);
        c = NULL;
        is_int(
            load("[broker]\nrefresh_concurrency_per_authority = 2\nrefresh_ahead_spread = 0\n", &c),
            0, "both keys load");
        ok(c && c->refresh_concurrency_per_authority == 2 && c->refresh_ahead_spread == 0,
           "with their values");
        config_free(c);
        expect_ok("[broker]\nrefresh_concurrency_per_authority = 1024\nrefresh_ahead_spread = 50\n",
                  "the largest values load");
        expect_fail("[broker]\nrefresh_concurrency_per_authority = 0\n",
                    "a concurrency of 0 is refused");
        expect_fail("[broker]\nrefresh_concurrency_per_authority = 1025\n",
                    "a concurrency above 1024 is refused");
        expect_fail("[broker]\nrefresh_ahead_spread = 51\n", "a spread above 50% is refused");
        expect_fail("[identity]\nrefresh_ahead_spread = 10\n", "the keys are [broker]'s");
}

int main(void)
{
        if (!mkdtemp(tmpdir))
                abort();
        test_clouds();
        test_proxy();
        test_defaults();
        test_full();
        test_module_dirs();
        test_store();
        test_softhsm_reopen_after();
        test_errors();
        test_owner();
        test_refresh_keys();
        rmdir(tmpdir);
        return done_testing();
}
