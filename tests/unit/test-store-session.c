/* Unit tests for losing the PKCS#11 session (pkcs11/store.c, store_ensure_session()): the next
 * operation opens it again without its caller noticing; a token that stays away is retried only
 * once per backoff period; a PIN the token refuses is never tried again. A private SoftHSM2
 * token; the session is taken away with C_CloseAllSessions through store-private.h. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "secret.h"
#include "store-private.h"
#include "store.h"
#include "tap.h"

#define TOKEN_LABEL "credbroker-session"
#define USER_PIN    "1234"
#define SO_PIN      "5678"
#define META        "{\"tenant\":\"contoso.onmicrosoft.com\"}"

static char tmpdir[] = "/tmp/credbroker-test-store-session.XXXXXX";
static char tokens_dir[PATH_MAX], tokens_away[PATH_MAX], pin_path[PATH_MAX];
static char pin_source[PATH_MAX + 8];
static const char *module;
static char pattern_lib[] = "/usr/lib*";
static char *const lib_dirs[] = {pattern_lib};

static void die(const char *what)
{
        fprintf(stderr, "test-store-session: %s: %s\n", what, strerror(errno));
        exit(EXIT_FAILURE);
}

static void write_file(const char *path, const char *content)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t len = strlen(content);

        if (fd < 0 || write(fd, content, len) != (ssize_t)len)
                die(path);
        close(fd);
}

/* fork + execvp (system() is banned); the child's stdout goes to stderr, away from TAP. */
static int run(char *const argv[])
{
        int status;
        pid_t pid = fork();

        if (pid < 0)
                die("fork");
        if (pid == 0) {
                if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        _exit(127);
                execvp(argv[0], argv);
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        die("waitpid");
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void setup(void)
{
        char conf_path[PATH_MAX], conf[PATH_MAX * 2];
        char *const init[] = {
            (char *)"softhsm2-util", (char *)"--init-token",
            (char *)"--free",        (char *)"--label",
            (char *)TOKEN_LABEL,     (char *)"--pin",
            (char *)USER_PIN,        (char *)"--so-pin",
            (char *)SO_PIN,          NULL,
        };

        module = secure_getenv("SOFTHSM_MODULE");
        if (!module || !*module)
                module = "/usr/lib/softhsm/libsofthsm2.so";
        umask(077);
        if (!mkdtemp(tmpdir))
                die("mkdtemp");
        snprintf(tokens_dir, sizeof(tokens_dir), "%s/tokens", tmpdir);
        snprintf(tokens_away, sizeof(tokens_away), "%s/tokens-away", tmpdir);
        if (mkdir(tokens_dir, 0700) < 0)
                die(tokens_dir);
        snprintf(conf, sizeof(conf),
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 tokens_dir);
        snprintf(conf_path, sizeof(conf_path), "%s/softhsm2.conf", tmpdir);
        write_file(conf_path, conf);
        if (setenv("SOFTHSM2_CONF", conf_path, 1) < 0)
                die("setenv");
        if (run(init) != 0) {
                fprintf(stderr, "test-store-session: softhsm2-util --init-token failed\n");
                exit(EXIT_FAILURE);
        }
        snprintf(pin_path, sizeof(pin_path), "%s/pin", tmpdir);
        write_file(pin_path, USER_PIN "\n");
        snprintf(pin_source, sizeof(pin_source), "file:%s", pin_path);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

static int open_store(struct store **ret)
{
        struct store_options options = {
            .module_path = module,
            .token_uri = "pkcs11:token=" TOKEN_LABEL,
            .pin_source = pin_source,
            .module_dirs = lib_dirs,
            .n_module_dirs = 1,
        };

        return store_open(&options, ret);
}

/* What an HSM restart does to its clients: every session of the slot is gone, and the login
 * with them. */
static void lose_session(struct store *s)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_SESSION_INFO info;

        store_private_session(s, &m, &session);
        if (m->C_GetSessionInfo(session, &info) != CKR_OK ||
            m->C_CloseAllSessions(info.slotID) != CKR_OK) {
                fprintf(stderr, "test-store-session: could not close the sessions\n");
                exit(EXIT_FAILURE);
        }
}

static bool meta_reads_back(struct store *s)
{
        _cleanup_free_ char *json = NULL;

        return store_get_meta(s, "alerts", &json) == 0 && strcmp(json, META) == 0;
}

static void sleep_ms(long ms)
{
        struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

        while (nanosleep(&t, &t) < 0 && errno == EINTR)
                ;
}

static void test_reopen(struct store *s)
{
        _cleanup_secret_ struct secret *token = NULL, *back = NULL;
        uint64_t generation = 0;

        is_int(store_put_meta(s, "alerts", META), 0, "store the account metadata");
        if (secret_new_from("RT-one", 6, &token) < 0)
                abort();
        is_int(store_write_refresh_token(s, "alerts", token, &generation), 0,
               "store a refresh token");

        lose_session(s);
        ok(meta_reads_back(s), "after the session was closed under it, the next read works");
        ok(!store_session_lost(s), "and the session is open again");

        lose_session(s);
        is_int(store_read_refresh_token(s, "alerts", &back, &generation), 0,
               "a refresh token read reopens too");
        ok(back && secret_equal(back, token), "and returns the token");

        lose_session(s);
        secret_free(token);
        if (secret_new_from("RT-two", 6, &token) < 0)
                abort();
        is_int(store_write_refresh_token(s, "alerts", token, &generation), 0,
               "a rotation after a lost session stores the next generation");
        is_int(generation, 2, "generation 2");
}

static void test_backoff(struct store *s)
{
        _cleanup_free_ char *json = NULL;

        /* The token vanishes (its directory is gone) and the session with it. */
        if (rename(tokens_dir, tokens_away) < 0 || mkdir(tokens_dir, 0700) < 0)
                die("rename tokens");
        lose_session(s);
        is_int(store_get_meta(s, "alerts", &json), -EAGAIN,
               "while the token is away, an operation fails with -EAGAIN");
        ok(store_session_lost(s), "the session stays lost");
        if (rmdir(tokens_dir) < 0 || rename(tokens_away, tokens_dir) < 0)
                die("rename tokens back");
        is_int(store_get_meta(s, "alerts", &json), -EAGAIN,
               "within the backoff period nothing is tried, even with the token back");
        sleep_ms(1100);
        ok(meta_reads_back(s), "after the backoff period the next operation reopens");
        ok(!store_session_lost(s), "and the session is open again");
}

static void test_wrong_pin(void)
{
        _cleanup_free_ char *json = NULL;
        struct store *s = NULL;

        is_int(open_store(&s), 0, "open a second store");
        if (!s)
                return;
        write_file(pin_path, "0000\n");
        lose_session(s);
        is_int(store_get_meta(s, "alerts", &json), -EACCES,
               "a reopen whose PIN is refused fails with -EACCES");
        write_file(pin_path, USER_PIN "\n");
        sleep_ms(1100);
        is_int(store_get_meta(s, "alerts", &json), -EACCES,
               "and the PIN is never tried again, not even after the backoff period");
        store_close(s);
}

int main(void)
{
        struct store *s = NULL;

        setup();
        is_int(open_store(&s), 0, "open the test token");
        if (s) {
                test_reopen(s);
                test_backoff(s);
                store_close(s);
        }
        test_wrong_pin();
        if (nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
                fprintf(stderr, "test-store-session: could not remove %s\n", tmpdir);
        return done_testing();
}
