/* credbroker sendmail -bs (cli/smtp.c): a whole dialogue through memory streams, with a
 * delivery callback that records what it was handed. */
#include <errno.h>

#include "smtp.h"
#include "tap.h"

struct delivered {
        int count;
        char from[128];
        char rcpts[512];
        char data[4096];
        int answer;
};

static int deliver(const struct smtp_envelope *e, void *userdata, char *reply, size_t size)
{
        struct delivered *d = userdata;

        d->count++;
        snprintf(d->from, sizeof(d->from), "%s", e->from ? e->from : "<>");
        d->rcpts[0] = 0;
        for (size_t i = 0; i < e->n_recipients; i++) {
                size_t used = strlen(d->rcpts);

                snprintf(d->rcpts + used, sizeof(d->rcpts) - used, "%s ", e->recipients[i]);
        }
        snprintf(d->data, sizeof(d->data), "%.*s", (int)e->len, (const char *)e->data);
        snprintf(reply, size, "%s", d->answer == 250 ? "2.0.0 queued" : "4.3.0 try later");
        return d->answer;
}

/* Runs a session over input; the server's output in out (freed by the caller). */
static int run(const char *input, size_t message_max, struct delivered *d, char **out)
{
        struct smtp_server s = {.hostname = "host.test",
                                .message_max = message_max,
                                .recipients_max = 3,
                                .deliver = deliver,
                                .userdata = d};
        FILE *in = fmemopen((void *)input, strlen(input), "r");
        size_t out_len;
        FILE *o = open_memstream(out, &out_len);
        int r = smtp_serve(&s, in, o);

        fclose(in);
        fclose(o);
        return r;
}

static void test_dialogue(void)
{
        struct delivered d = {.answer = 250};
        char *out = NULL;
        const char *in = "EHLO client\r\n"
                         "MAIL FROM:<cron@host> SIZE=100\r\n"
                         "RCPT TO:<a@x.org>\r\n"
                         "RCPT TO:<b@x.org>\r\n"
                         "DATA\r\n"
                         "Subject: hi\r\n"
                         "\r\n"
                         "..leading dot\r\n"
                         ".\r\n"
                         "NOOP\r\n"
                         "QUIT\r\n";

        is_int(run(in, 1 << 20, &d, &out), 0, "a whole dialogue");
        ok(strncmp(out, "220 host.test", 13) == 0, "greeting first");
        ok(strstr(out, "250-host.test\r\n250-PIPELINING") != NULL, "EHLO lists extensions");
        ok(strstr(out, "354 ") != NULL, "DATA: 354");
        is_int(d.count, 1, "one message delivered");
        is_str(d.from, "cron@host", "MAIL FROM's address, parameters dropped");
        is_str(d.rcpts, "a@x.org b@x.org ", "both RCPT TO");
        is_str(d.data, "Subject: hi\r\n\r\n.leading dot\r\n", "dot-unstuffed, CRLF");
        ok(strstr(out, "250 2.0.0 queued\r\n") != NULL, "the delivery's answer is relayed");
        ok(strstr(out, "221 2.0.0 Bye\r\n") != NULL, "QUIT: 221");
        free(out);
}

static void test_sequence_errors(void)
{
        struct delivered d = {.answer = 451};
        char *out = NULL;
        const char *in = "HELO c\r\n"
                         "RCPT TO:<a@x.org>\r\n"
                         "DATA\r\n"
                         "MAIL FROM:<>\r\n"
                         "MAIL FROM:<x@y>\r\n"
                         "RCPT TO:<a@x.org>\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<c@x.org>\r\n"
                         "RCPT TO:<d@x.org>\r\n"
                         "RCPT TO:<bad,addr>\r\n"
                         "DATA\r\nbody\r\n.\r\n"
                         "RSET\r\nDATA\r\nFROB\r\n";

        is_int(run(in, 1 << 20, &d, &out), 0, "end of input ends the session");
        ok(strstr(out, "250 host.test\r\n") != NULL, "HELO: 250 with the name");
        ok(strstr(out, "503 5.5.1 Error: need MAIL command") != NULL, "RCPT before MAIL: 503");
        ok(strstr(out, "503 5.5.1 Error: need RCPT command") != NULL, "DATA before RCPT: 503");
        ok(strstr(out, "503 5.5.1 Error: nested MAIL") != NULL, "MAIL twice: 503");
        ok(strstr(out, "452 4.5.3") != NULL, "a fourth recipient over the limit: 452");
        ok(strstr(out, "501 5.1.3") != NULL, "a bad recipient: 501");
        is_str(d.from, "<>", "the null sender");
        ok(strstr(out, "451 4.3.0 try later") != NULL, "a temporary failure: 451");
        ok(strstr(out, "500 5.5.2 Error: command not recognized") != NULL, "unknown: 500");
        free(out);
}

static void test_limits(void)
{
        struct delivered d = {.answer = 250};
        char *out = NULL, long_line[6000], input[8000];

        memset(long_line, 'a', sizeof(long_line) - 1);
        long_line[sizeof(long_line) - 1] = 0;
        snprintf(input, sizeof(input),
                 "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n0123456789\r\n"
                 "0123456789\r\n.\r\n%s\r\nQUIT\r\n",
                 long_line);
        is_int(run(input, 20, &d, &out), 0, "a session over the limits");
        is_int(d.count, 0, "a message over SIZE is not delivered");
        ok(strstr(out, "552 5.3.4") != NULL, "over SIZE: 552 after the dot");
        ok(strstr(out, "500 5.5.2 Error: line too long") != NULL, "a command line over 4096: 500");
        ok(strstr(out, "221 2.0.0 Bye") != NULL, "the dialogue stays in step");
        free(out);
}

static void test_too_many_errors(void)
{
        struct delivered d = {.answer = 250};
        char *out = NULL, input[2000] = "";

        for (int i = 0; i < 30; i++)
                memcpy(input + i * 7, "BOGUS\r\n", 7);
        memcpy(input + 30 * 7, "QUIT\r\n", 7);
        is_int(run(input, 100, &d, &out), 0, "a session of bad commands");
        ok(strstr(out, "421 4.7.0") != NULL, "closed after too many errors");
        ok(strstr(out, "221") == NULL, "nothing read after closing");
        free(out);
}

static void test_codes(void)
{
        const char *status = NULL;

        is_int(smtp_code_of_exit(0, &status), 250, "sent or queued: 250");
        is_str(status, "2.0.0", "sent: 2.0.0");
        is_int(smtp_code_of_exit(65, &status), 554, "a bad message: 554, never retried");
        is_int(smtp_code_of_exit(77, &status), 550, "denied: 550");
        is_str(status, "5.7.1", "denied: 5.7.1");
        is_int(smtp_code_of_exit(75, &status), 451, "temporary: 451, the client retries");
        is_int(smtp_code_of_exit(78, &status), 451, "configuration: 451, kept by the client");
}

int main(void)
{
        test_codes();
        test_dialogue();
        test_sequence_errors();
        test_limits();
        test_too_many_errors();
        return done_testing();
}
