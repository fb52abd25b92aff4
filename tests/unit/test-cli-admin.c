/* Unit tests of the CLI's admin-socket helpers: secret-carrying frames, password lines, dates,
 * terminal-safe text, countdowns and the status check levels. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin-frame.h"
#include "display.h"
#include "json.h"
#include "parse-date.h"
#include "retry.h"
#include "secret.h"
#include "status-check.h"
#include "tap.h"
#include "tty-password.h"

/* The frame's payload parsed back, or NULL. */
static cJSON *frame_payload(struct secret *frame)
{
        const uint8_t *d = secret_data(frame);
        size_t len = ((size_t)d[0] << 24) | ((size_t)d[1] << 16) | ((size_t)d[2] << 8) | d[3];
        cJSON *json = NULL;

        if (len + 4 != secret_len(frame) || json_parse(d + 4, len, &json) < 0)
                return NULL;
        return json;
}

static void test_frames(void)
{
        static const char tricky[] = "p\"a\\s s\n\t\x01\x7f\xc3\xa9}{,";
        struct secret *value = NULL, *frame = NULL;
        cJSON *request = cJSON_CreateObject(), *parsed;

        cJSON_AddNumberToObject(request, "v", 1);
        cJSON_AddStringToObject(request, "op", "account.add");
        secret_new_from(tricky, strlen(tricky), &value);
        is_int(admin_frame_with_secret(request, "password", value, &frame), 0, "frame built");
        parsed = frame_payload(frame);
        ok(parsed != NULL, "the frame is one JSON object with the right length");
        is_str(json_get_string(parsed, "password"), tricky, "the secret round-trips escaped");
        is_str(json_get_string(parsed, "op"), "account.add", "the public members stay");
        cJSON_Delete(parsed);
        secret_free(frame);
        frame = NULL;

        is_int(admin_frame_with_secret(request, "op", value, &frame), -EINVAL,
               "a member the request already has is refused");
        secret_free(value);

        secret_new_from("a\0b", 3, &value);
        is_int(admin_frame_with_secret(request, "password", value, &frame), -EINVAL,
               "a NUL in the secret is refused");
        secret_free(value);
        secret_new_from("\xff\xfe", 2, &value);
        is_int(admin_frame_with_secret(request, "password", value, &frame), -EINVAL,
               "a secret that is not UTF-8 is refused");
        secret_free(value);
        cJSON_Delete(request);

        request = cJSON_CreateObject();
        secret_new_from("x", 1, &value);
        is_int(admin_frame_with_secret(request, "client_secret", value, &frame), 0,
               "an empty object gets just the secret");
        parsed = frame_payload(frame);
        is_str(json_get_string(parsed, "client_secret"), "x", "and it parses");
        ok(parsed && cJSON_GetArraySize(parsed) == 1, "with one member");
        cJSON_Delete(parsed);
        secret_free(frame);
        secret_free(value);
        cJSON_Delete(request);
}

static int pipe_with(const char *text)
{
        int fds[2];

        if (pipe(fds) < 0)
                abort();
        if (write(fds[1], text, strlen(text)) != (ssize_t)strlen(text))
                abort();
        close(fds[1]);
        return fds[0];
}

static void test_password_lines(void)
{
        struct secret *s = NULL;
        char rest[8] = {0};
        int fd;

        fd = pipe_with("hunter2\nNEXT");
        is_int(password_read_line(fd, 16, &s), 0, "a line is read");
        is_str(s ? secret_str(s) : NULL, "hunter2", "without its newline");
        is_int(read(fd, rest, sizeof(rest) - 1), 4, "nothing after the line is consumed");
        close(fd);
        secret_free(s);
        s = NULL;

        fd = pipe_with("crlf\r\n");
        is_int(password_read_line(fd, 16, &s), 0, "CR LF line");
        is_str(s ? secret_str(s) : NULL, "crlf", "CR dropped");
        close(fd);
        secret_free(s);
        s = NULL;

        fd = pipe_with("no-newline");
        is_int(password_read_line(fd, 16, &s), 0, "a last line without newline");
        is_str(s ? secret_str(s) : NULL, "no-newline", "read whole");
        close(fd);
        secret_free(s);
        s = NULL;

        fd = pipe_with("0123456789abcdefX\n");
        is_int(password_read_line(fd, 16, &s), -EFBIG, "one byte over the bound is refused");
        close(fd);
        fd = pipe_with("0123456789abcdef\n");
        is_int(password_read_line(fd, 16, &s), 0, "exactly the bound is fine");
        close(fd);
        secret_free(s);
        s = NULL;
        fd = pipe_with("\n");
        is_int(password_read_line(fd, 16, &s), -ENODATA, "an empty line is refused");
        close(fd);
        fd = pipe_with("");
        is_int(password_read_line(fd, 16, &s), -EIO, "no input at all");
        close(fd);
}

static void test_dates(void)
{
        uint64_t t = 0;

        is_int(parse_iso_date("2027-06-30", &t), 0, "a date parses");
        is_int(t, 1814313600, "to midnight UTC");
        is_int(parse_iso_date("1970-01-01", &t), 0, "the epoch");
        is_int(t, 0, "is zero");
        for (const char *const *bad =
                 (const char *const[]){"2027-02-30", "2027-13-01", "2027-6-30", "2027-06-30x",
                                       "20270630", "", "1969-12-31", "2027-00-10", "+027-06-30",
                                       NULL};
             *bad; bad++)
                ok(parse_iso_date(*bad, &t) == -EINVAL, *bad);
}

static void test_display(void)
{
        char out[24], *text = NULL;
        size_t size = 0;
        FILE *f;

        display_countdown(872, out);
        is_str(out, "14:32", "minutes and seconds");
        display_countdown(5, out);
        is_str(out, "0:05", "seconds only");
        display_countdown(3723, out);
        is_str(out, "1:02:03", "an hour on");

        f = open_memstream(&text, &size);
        display_text(f, "ok\x1b[2Jtitle\x07 \xc2\x9b"
                        "31m caf\xc3\xa9\nnext\ttab");
        fclose(f);
        is_str(text, "ok?[2Jtitle? ?31m caf\xc3\xa9\nnext\ttab",
               "escape, bell and C1 CSI are neutralised, UTF-8 and newlines stay");
        free(text);

        text = NULL;
        f = open_memstream(&text, &size);
        display_text_max(f, "ab\x1b[31mcdef", 6);
        fclose(f);
        is_str(text, "ab?[31...", "bounded: filtered, cut, marked");
        free(text);
        text = NULL;
        f = open_memstream(&text, &size);
        display_text_max(f, "x\xc2\x9b", 2);
        fclose(f);
        ok(text && !strchr(text, '\x9b'), "a C1 control cut in half is not completed");
        free(text);
}

static enum status_level level_of(const char *json, uint64_t now, uint32_t warn_days)
{
        char reason[256];
        cJSON *o = cJSON_Parse(json);
        enum status_level l = status_check_account(o, now, warn_days, reason, sizeof(reason));

        cJSON_Delete(o);
        return l;
}

static void test_status_levels(void)
{
        const uint64_t now = 2000000000, day = 86400;
        char json[256];

        is_int(level_of("{\"state\":\"ok\"}", now, 30), STATUS_OK, "ok");
        is_int(level_of("{\"state\":\"refreshing\"}", now, 30), STATUS_OK, "refreshing is ok");
        is_int(level_of("{\"state\":\"backoff\"}", now, 30), STATUS_WARNING, "backoff warns");
        is_int(level_of("{\"state\":\"needs_reauth\"}", now, 30), STATUS_CRITICAL,
               "needs_reauth is critical");
        is_int(level_of("{\"state\":\"needs_config\",\"message\":\"x\"}", now, 30), STATUS_CRITICAL,
               "needs_config is critical");
        is_int(level_of("{\"state\":\"weird\"}", now, 30), STATUS_UNKNOWN, "unknown state");
        is_int(level_of("{}", now, 30), STATUS_UNKNOWN, "no state");
        snprintf(json, sizeof(json), "{\"state\":\"ok\",\"credential_expires_at\":%llu}",
                 (unsigned long long)(now + 10 * day));
        is_int(level_of(json, now, 30), STATUS_WARNING, "certificate within warn_days");
        is_int(level_of(json, now, 5), STATUS_OK, "outside a shorter window");
        snprintf(json, sizeof(json), "{\"state\":\"ok\",\"credential_expires_at\":%llu}",
                 (unsigned long long)(now - 1));
        is_int(level_of(json, now, 30), STATUS_CRITICAL, "an expired certificate");
        snprintf(json, sizeof(json), "{\"state\":\"ok\",\"refresh_token_stored_at\":%llu}",
                 (unsigned long long)(now - 70 * day));
        is_int(level_of(json, now, 30), STATUS_WARNING, "refresh token idle 70 days");
        snprintf(json, sizeof(json), "{\"state\":\"ok\",\"refresh_token_stored_at\":%llu}",
                 (unsigned long long)(now - 3 * day));
        is_int(level_of(json, now, 30), STATUS_OK, "refresh token idle 3 days");
        snprintf(json, sizeof(json), "{\"state\":\"ok\",\"refresh_token_stored_at\":%llu}",
                 (unsigned long long)(now - 91 * day));
        is_int(level_of(json, now, 30), STATUS_CRITICAL, "refresh token past 90 days");
        is_str(status_level_name(STATUS_WARNING), "WARNING", "level names");
}

/* interrupted_refresh: its own reason, only with needs_reauth and only when true. */
static void test_status_interrupted_refresh(void)
{
        char reason[256];
        cJSON *o = cJSON_Parse("{\"state\":\"needs_reauth\",\"interrupted_refresh\":true,"
                               "\"message\":\"m\"}");

        is_int(status_check_account(o, 1000, 30, reason, sizeof(reason)), STATUS_CRITICAL,
               "interrupted needs_reauth is critical");
        is_str(reason,
               "needs reauth: the previous run stopped during a refresh (the refresh-token "
               "family may be lost on a strict server); sign in again",
               "the interrupted refresh is named");
        cJSON_ReplaceItemInObjectCaseSensitive(o, "interrupted_refresh", cJSON_CreateFalse());
        status_check_account(o, 1000, 30, reason, sizeof(reason));
        is_str(reason, "needs an administrator to sign in again: m", "false: the broker's message");
        cJSON_Delete(o);
}

/* Counts in sentences agree with their number: "1 day", never "1 days". */
static void test_plurals(void)
{
        char reason[256];
        cJSON *o = cJSON_Parse("{\"state\":\"ok\",\"credential_expires_at\":1000000}");

        status_check_account(o, 1000000 - 86400 - 100, 30, reason, sizeof(reason));
        is_str(reason, "its certificate or client secret expires in 1 day", "one day");
        status_check_account(o, 1000000 - 2 * 86400 - 100, 30, reason, sizeof(reason));
        is_str(reason, "its certificate or client secret expires in 2 days", "two days");
        status_check_account(o, 1000000 - 100, 30, reason, sizeof(reason));
        is_str(reason, "its certificate or client secret expires in less than a day",
               "under a day");
        cJSON_Delete(o);
}

/* Backoff for refusals under load (cli/retry.c): grows, jitters, honours retry_after, and never
 * waits past the caller's deadline. */
static void test_retry(void)
{
        uint64_t ms = 12345, lo = UINT64_MAX, hi = 0;

        is_int(retry_delay_ms(0, 0, 60000, 0, &ms), 0, "first retry allowed");
        is_int((int)ms, RETRY_BASE_MS / 2, "first step, lowest jitter: half the base");
        is_int(retry_delay_ms(0, 0, 60000, 0xffffffff, &ms), 0, "first retry allowed");
        ok(ms >= RETRY_BASE_MS / 2 && ms <= RETRY_BASE_MS, "first step within [base/2, base]");
        is_int(retry_delay_ms(3, 0, 60000, 0, &ms), 0, "fourth retry allowed");
        is_int((int)ms, (RETRY_BASE_MS << 3) / 2, "the step doubles with each attempt");
        is_int(retry_delay_ms(40, 0, 60000, 0xffffffff, &ms), 0, "many attempts");
        ok(ms >= RETRY_CAP_MS / 2 && ms <= RETRY_CAP_MS, "the step stops at the cap");
        for (uint32_t r = 0; r < 5000; r++) {
                (void)retry_delay_ms(2, 0, 60000, r * 2654435761u, &ms);
                lo = ms < lo ? ms : lo;
                hi = ms > hi ? ms : hi;
        }
        ok(hi > lo, "jitter: delays of one step differ between clients");

        is_int(retry_delay_ms(0, 1000, 60000, 0, &ms), 0, "retry_after honoured");
        is_int((int)ms, 1000, "never earlier than retry_after");
        is_int(retry_delay_ms(0, 1000, 60000, 0xffffffff, &ms), 0, "retry_after with jitter");
        ok(ms >= 1000 && ms <= 1500, "retry_after spread by at most half of it");

        is_int(retry_delay_ms(5, 0, 300, 0xffffffff, &ms), 0, "little time left");
        ok(ms <= 300, "never waits past the deadline");
        is_int(retry_delay_ms(0, 900, 1000, 449, &ms), 0, "retry_after just fits");
        is_int((int)ms, 1000, "spread capped to what remains");
        ms = 777;
        is_int(retry_delay_ms(0, 0, 0, 0, &ms), -ETIMEDOUT, "no time left: give up");
        is_int(retry_delay_ms(0, 3600000, 60000, 0, &ms), -ETIMEDOUT,
               "retry_after past the deadline: give up at once");
        is_int((int)ms, 777, "nothing written when giving up");
}

int main(void)
{
        json_init();
        test_frames();
        test_password_lines();
        test_dates();
        test_display();
        test_status_levels();
        test_status_interrupted_refresh();
        test_retry();
        test_plurals();
        return done_testing();
}
