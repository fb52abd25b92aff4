/* A private SoftHSM2 token for the store unit tests: a temporary directory with its own
 * softhsm2.conf (SOFTHSM2_CONF points at it), initialised tokens and a PIN file; and the few
 * helpers the tests share (die, write a file, run a program, open the store on the token). */
#pragma once

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

struct test_token {
        char dir[PATH_MAX];            /* the temporary directory that holds everything below */
        char tokens_dir[PATH_MAX];     /* SoftHSM2's directories.tokendir */
        char pin_path[PATH_MAX];       /* holds the user PIN and a newline, mode 0600 */
        char pin_source[PATH_MAX + 8]; /* "file:<pin_path>", for store_options.pin_source */
        const char *module;            /* $SOFTHSM_MODULE or the Debian path of libsofthsm2.so */
        const char *label;             /* of the token test_token_init() made */
        const char *pin;
        const char *so_pin;
};

/* Prints "<program>: what: strerror(errno)" and exits with failure. */
__attribute__((noreturn)) void test_die(const char *what);

/* Writes content to path (created or truncated) and sets its mode; dies on failure. */
void test_write_file(const char *path, const char *content, mode_t mode);

/* fork + execvp (the project bans system() and popen()): the child's stdout goes to stderr so
 * its chatter never lands in the TAP stream. Returns the exit status, 128 for a signal. */
int test_run(char *const argv[]);

/* Sets umask 077, makes /tmp/credbroker-<program>.XXXXXX with a SoftHSM2 configuration, sets
 * SOFTHSM2_CONF, initialises a token labelled label with the two PINs and writes the PIN file.
 * Dies on any failure. */
void test_token_init(struct test_token *t, const char *label, const char *pin, const char *so_pin);

/* Initialises one more token, with the same PINs, in the same token directory. */
void test_token_add(const struct test_token *t, const char *label);

/* <dir>/<name> into out; dies when it does not fit. */
void test_token_path(const struct test_token *t, char *out, size_t size, const char *name);

struct store;

/* store_open() on the token test_token_init() made, with t's module and PIN file and
 * "/usr/lib*" as the module allow-list. */
int test_token_open(const struct test_token *t, struct store **ret);
/* The same, with store_options.softhsm_reopen_after set (test_token_open(): 0, never). */
int test_token_open_reopening(const struct test_token *t, unsigned softhsm_reopen_after,
                              struct store **ret);

/* Removes the temporary directory and everything in it. */
void test_token_cleanup(struct test_token *t);
