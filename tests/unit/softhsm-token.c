/* The private SoftHSM2 token the store unit tests share: see softhsm-token.h. */
#include "softhsm-token.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"

void test_die(const char *what)
{
        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, strerror(errno));
        exit(EXIT_FAILURE);
}

void test_write_file(const char *path, const char *content, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        size_t len = strlen(content);

        if (fd < 0 || write(fd, content, len) != (ssize_t)len || fchmod(fd, mode) < 0)
                test_die(path);
        close(fd);
}

int test_run(char *const argv[])
{
        int status;
        pid_t pid = fork();

        if (pid < 0)
                test_die("fork");
        if (pid == 0) {
                if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                        _exit(127);
                execvp(argv[0], argv);
                _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        test_die("waitpid");
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

void test_token_path(const struct test_token *t, char *out, size_t size, const char *name)
{
        if ((size_t)snprintf(out, size, "%s/%s", t->dir, name) >= size)
                test_die("path too long");
}

void test_token_add(const struct test_token *t, const char *label)
{
        char *const argv[] = {
            (char *)"softhsm2-util", (char *)"--init-token",
            (char *)"--free",        (char *)"--label",
            (char *)label,           (char *)"--pin",
            (char *)t->pin,          (char *)"--so-pin",
            (char *)t->so_pin,       NULL,
        };

        if (test_run(argv) != 0) {
                fprintf(stderr, "%s: softhsm2-util --init-token %s failed\n",
                        program_invocation_short_name, label);
                exit(EXIT_FAILURE);
        }
}

void test_token_init(struct test_token *t, const char *label, const char *pin, const char *so_pin)
{
        char conf_path[PATH_MAX], conf[PATH_MAX * 2], pin_line[256];

        *t = (struct test_token){.label = label, .pin = pin, .so_pin = so_pin};
        t->module = secure_getenv("SOFTHSM_MODULE");
        if (!t->module || !*t->module)
                t->module = "/usr/lib/softhsm/libsofthsm2.so";

        umask(077);
        if ((size_t)snprintf(t->dir, sizeof(t->dir), "/tmp/credbroker-%s.XXXXXX",
                             program_invocation_short_name) >= sizeof(t->dir))
                test_die("path too long");
        if (!mkdtemp(t->dir))
                test_die("mkdtemp");
        test_token_path(t, t->tokens_dir, sizeof(t->tokens_dir), "tokens");
        if (mkdir(t->tokens_dir, 0700) < 0)
                test_die(t->tokens_dir);
        snprintf(conf, sizeof(conf),
                 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                 t->tokens_dir);
        test_token_path(t, conf_path, sizeof(conf_path), "softhsm2.conf");
        test_write_file(conf_path, conf, 0600);
        if (setenv("SOFTHSM2_CONF", conf_path, 1) < 0)
                test_die("setenv");

        test_token_add(t, label);

        if ((size_t)snprintf(pin_line, sizeof(pin_line), "%s\n", pin) >= sizeof(pin_line))
                test_die("PIN too long");
        test_token_path(t, t->pin_path, sizeof(t->pin_path), "pin");
        test_write_file(t->pin_path, pin_line, 0600);
        snprintf(t->pin_source, sizeof(t->pin_source), "file:%s", t->pin_path);
}

int test_token_open(const struct test_token *t, struct store **ret)
{
        return test_token_open_reopening(t, 0, ret);
}

int test_token_open_reopening(const struct test_token *t, unsigned softhsm_reopen_after,
                              struct store **ret)
{
        static char pattern_lib[] = "/usr/lib*";
        static char *const lib_dirs[] = {pattern_lib};
        char uri[256];
        struct store_options options = {
            .module_path = t->module,
            .token_uri = uri,
            .pin_source = t->pin_source,
            .module_dirs = lib_dirs,
            .n_module_dirs = 1,
            .softhsm_reopen_after = softhsm_reopen_after,
        };

        if ((size_t)snprintf(uri, sizeof(uri), "pkcs11:token=%s", t->label) >= sizeof(uri))
                test_die("token label too long");
        return store_open(&options, ret);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

void test_token_cleanup(struct test_token *t)
{
        if (!t->dir[0])
                return;
        if (nftw(t->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
                fprintf(stderr, "%s: could not remove %s: %s\n", program_invocation_short_name,
                        t->dir, strerror(errno));
        t->dir[0] = 0;
}
