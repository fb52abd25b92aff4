/* The CLI's side of a sign-in in progress; see sign-in.h. On a terminal the countdown is one line
 * redrawn each second; otherwise (a log, a pipe) a line at most once a minute. */
#include "sign-in.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "display.h"
#include "json.h"

/* A device code lives 15 minutes at Microsoft; a longer one is not believed. */
#define DEVICE_CODE_LIFETIME_MAX 3600
/* How long after the code's expiry the broker may take to say so. */
#define DEVICE_CODE_GRACE_SEC    120
#define PLAIN_PROGRESS_EVERY_SEC 60

static uint64_t now_sec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec;
}

struct countdown {
        bool tty;
        uint64_t expires; /* monotonic seconds */
        uint64_t printed; /* when the last plain line was printed */
        bool line_drawn;
};

static void countdown_show(struct countdown *cd)
{
        uint64_t now = now_sec();
        uint64_t left = cd->expires > now ? cd->expires - now : 0;
        char text[24];

        if (cd->tty) {
                display_countdown(left, text);
                fprintf(stderr, "\rwaiting for sign-in\u2026 %s left   ", text);
                cd->line_drawn = true;
        } else if (cd->printed == 0 || now - cd->printed >= PLAIN_PROGRESS_EVERY_SEC) {
                fprintf(stderr, "waiting for sign-in (%llu minute%s left)\n",
                        (unsigned long long)((left + 59) / 60), (left + 59) / 60 == 1 ? "" : "s");
                cd->printed = now;
        }
        fflush(stderr);
}

static void countdown_end(struct countdown *cd)
{
        if (cd->tty && cd->line_drawn) {
                fputs("\r                                              \r", stderr);
                fflush(stderr);
        }
        cd->line_drawn = false;
}

/* Ctrl-C while the countdown line is drawn: end that line, say what happens, then die of the
 * signal as usual. Only async-signal-safe calls here. */
static void interrupted(int sig)
{
        static const char text[] = "\ncredbroker: interrupted; the broker abandons the sign-in\n";

        (void)!write(STDERR_FILENO, text, sizeof(text) - 1);
        signal(sig, SIG_DFL);
        raise(sig);
}

static void catch_interrupts(void)
{
        struct sigaction action = {.sa_handler = interrupted};

        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, NULL);
        sigaction(SIGTERM, &action, NULL);
}

static int print_device_code(const cJSON *reply, uint64_t *ret_expires_in)
{
        const char *message = json_get_string(reply, "message");
        const char *user_code = json_get_string(reply, "user_code");
        const char *uri = json_get_string(reply, "verification_uri");
        /* RFC 8628 §3.3.1: the URI with the code in it, for a link or a QR code. */
        const char *complete = json_get_string(reply, "verification_uri_complete");
        uint64_t expires_in;

        if (json_get_u64(reply, "expires_in", &expires_in) < 0 || expires_in == 0 ||
            (!message && (!user_code || !uri))) {
                fprintf(stderr, "credbroker: the broker's device-code reply is incomplete\n");
                return EXIT_SOFTWARE;
        }
        if (message) {
                display_text(stdout, message);
        } else {
                fputs("To sign in, open ", stdout);
                display_text(stdout, uri);
                fputs(" and enter the code ", stdout);
                display_text(stdout, user_code);
        }
        fputc('\n', stdout);
        if (complete && *complete) {
                fputs("Or open this link, which carries the code: ", stdout);
                display_text(stdout, complete);
                fputc('\n', stdout);
        }
        fflush(stdout);
        *ret_expires_in =
            expires_in > DEVICE_CODE_LIFETIME_MAX ? DEVICE_CODE_LIFETIME_MAX : expires_in;
        return 0;
}

static int print_done(const cJSON *reply)
{
        const char *account = json_get_string(reply, "account");
        const cJSON *scopes = cJSON_GetObjectItemCaseSensitive(reply, "scopes");
        const cJSON *scope;
        bool first = true;

        if (!account || (scopes && !cJSON_IsArray(scopes))) {
                fprintf(stderr, "credbroker: the broker's final reply is incomplete\n");
                return EXIT_SOFTWARE;
        }
        fputs("account ", stdout);
        display_text(stdout, account);
        fputs(" signed in; scopes:", stdout);
        cJSON_ArrayForEach(scope, scopes)
        {
                if (!cJSON_IsString(scope))
                        continue;
                fputc(' ', stdout);
                display_text(stdout, scope->valuestring);
                first = false;
        }
        if (first)
                fputs(" (none reported)", stdout);
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : EXIT_SOFTWARE;
}

int sign_in_follow(struct admin_conn *c)
{
        struct countdown cd = {.tty = isatty(STDERR_FILENO) == 1};
        bool waiting_for_user = false;
        uint64_t deadline = 0;

        for (;;) {
                _cleanup_json_ cJSON *reply = NULL;
                const char *stage;
                uint64_t expires_in;
                int r;

                r = admin_read_reply(c, waiting_for_user ? 1000 : -1, &reply);
                if (r == -ETIMEDOUT && waiting_for_user && now_sec() < deadline) {
                        countdown_show(&cd);
                        continue;
                }
                countdown_end(&cd);
                if (r == -ETIMEDOUT) {
                        fprintf(stderr, "credbroker: the broker did not finish the sign-in in "
                                        "time; see its log\n");
                        return EXIT_TEMPFAIL;
                }
                if (r != 0)
                        return r;
                if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                        return admin_report_error(reply);
                stage = json_get_string(reply, "stage");
                if (stage && strcmp(stage, "device_code") == 0 && !waiting_for_user) {
                        r = print_device_code(reply, &expires_in);
                        if (r != 0)
                                return r;
                        waiting_for_user = true;
                        catch_interrupts();
                        cd.expires = now_sec() + expires_in;
                        deadline = cd.expires + DEVICE_CODE_GRACE_SEC;
                        countdown_show(&cd);
                        continue;
                }
                if (stage && strcmp(stage, "done") != 0) {
                        fprintf(stderr, "credbroker: unexpected reply from the broker\n");
                        return EXIT_SOFTWARE;
                }
                return print_done(reply);
        }
}
