/* Unit tests for losing the PKCS#11 session (pkcs11/store.c, store_ensure_session()): the next
 * operation opens it again without its caller noticing; a token that stays away is retried only
 * once per backoff period; a PIN the token refuses is never tried again; and the reopen that gives
 * back SoftHSM2's memory for destroyed objects (store_reopen_if_due()). A private SoftHSM2
 * token; the session is taken away with C_CloseAllSessions through store-private.h. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "secret.h"
#include "store-private.h"
#include "store.h"
#include "softhsm-token.h"
#include "tap.h"

#define TOKEN_LABEL "credbroker-session"
#define USER_PIN    "1234"
#define SO_PIN      "5678"
#define META        "{\"tenant\":\"contoso.onmicrosoft.com\"}"

static struct test_token softhsm;
/* Where test_backoff() moves the token directory to make the token go away. */
static char tokens_away[PATH_MAX];

static void setup(void)
{
        test_token_init(&softhsm, TOKEN_LABEL, USER_PIN, SO_PIN);
        test_token_path(&softhsm, tokens_away, sizeof(tokens_away), "tokens-away");
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
        if (rename(softhsm.tokens_dir, tokens_away) < 0 || mkdir(softhsm.tokens_dir, 0700) < 0)
                test_die("rename tokens");
        lose_session(s);
        is_int(store_get_meta(s, "alerts", &json), -EAGAIN,
               "while the token is away, an operation fails with -EAGAIN");
        ok(store_session_lost(s), "the session stays lost");
        if (rmdir(softhsm.tokens_dir) < 0 || rename(tokens_away, softhsm.tokens_dir) < 0)
                test_die("rename tokens back");
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

        is_int(test_token_open(&softhsm, &s), 0, "open a second store");
        if (!s)
                return;
        test_write_file(softhsm.pin_path, "0000\n", 0600);
        lose_session(s);
        is_int(store_get_meta(s, "alerts", &json), -EACCES,
               "a reopen whose PIN is refused fails with -EACCES");
        test_write_file(softhsm.pin_path, USER_PIN "\n", 0600);
        sleep_ms(1100);
        is_int(store_get_meta(s, "alerts", &json), -EACCES,
               "and the PIN is never tried again, not even after the backoff period");
        store_close(s);
}

/* A rotation of alerts' refresh token, which destroys the generation before last. */
static void rotate(struct store *s, unsigned i, uint64_t *generation)
{
        _cleanup_secret_ struct secret *token = NULL;
        char text[32];
        int n = snprintf(text, sizeof(text), "RT-rotated-%u", i);

        if (secret_new_from(text, (size_t)n, &token) < 0 ||
            store_write_refresh_token(s, "alerts", token, generation) < 0)
                test_die("rotate the refresh token");
}

static void test_reopen_if_due(void)
{
        _cleanup_secret_ struct secret *back = NULL;
        uint64_t generation = 0, read_generation = 0;
        struct store *s = NULL, *never = NULL;
        unsigned reopened = 0, i;
        int r;

        is_int(test_token_open_reopening(&softhsm, 4, &s), 0,
               "open a store that reopens SoftHSM2 after 4 destroyed objects");
        is_int(test_token_open(&softhsm, &never), 0, "and one that never does");
        if (!s || !never)
                return;
        is_int(store_reopen_if_due(s), 0, "nothing destroyed yet: not due");
        for (i = 0; i < 12; i++) {
                rotate(s, i, &generation);
                r = store_reopen_if_due(s);
                if (r < 0)
                        break;
                reopened += (unsigned)r;
        }
        printf("# reopened %u times in 12 rotations\n", reopened);
        ok(i == 12 && reopened >= 2 && reopened <= 6,
           "twelve rotations, each destroying a generation: reopened every few");
        ok(!store_session_lost(s), "the session is open after each");
        is_int(store_read_refresh_token(s, "alerts", &back, &read_generation), 0,
               "the refresh token reads back after the reopens");
        ok(back && secret_len(back) == strlen("RT-rotated-11") &&
               memcmp(secret_data(back), "RT-rotated-11", secret_len(back)) == 0 &&
               read_generation == generation,
           "the last rotation's token and generation");
        for (i = 0; i < 12; i++)
                rotate(never, 100 + i, &generation);
        is_int(store_reopen_if_due(never), 0, "a store opened with 0 never reopens");
        store_close(never);

#if defined(__SANITIZE_ADDRESS__)
        printf("# the heap check is left out: mallinfo2() does not see AddressSanitizer's heap\n");
#else
        /* What it is for: without the reopens SoftHSM2 keeps ~870 bytes per destroyed object
         * (400 rotations: ~350 KB); with one every 4 destroyed objects, about none. */
        size_t before = mallinfo2().uordblks, after;

        for (i = 0; i < 400; i++) {
                rotate(s, 1000 + i, &generation);
                if (store_reopen_if_due(s) < 0)
                        break;
        }
        after = mallinfo2().uordblks;
        printf("# the heap grew by %ld bytes in 400 rotations\n", (long)after - (long)before);
        ok(i == 400 && after < before + 64 * 1024,
           "400 rotations with the reopens: SoftHSM2's heap stays (under 64 KiB more)");
#endif
        store_close(s);
}

int main(void)
{
        struct store *s = NULL;

        setup();
        is_int(test_token_open(&softhsm, &s), 0, "open the test token");
        if (s) {
                test_reopen(s);
                test_backoff(s);
                store_close(s);
        }
        test_reopen_if_due();
        test_wrong_pin();
        test_token_cleanup(&softhsm);
        return done_testing();
}
