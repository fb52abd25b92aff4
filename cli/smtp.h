/* credbroker sendmail -bs: enough SMTP on a pair of streams for programs that submit mail by
 * talking SMTP to "sendmail -bs" (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SMTP_COMMAND_LINE_MAX 4096u           /* RFC 5321 says 512; extensions add some */
#define SMTP_DATA_LINE_MAX    (1024u * 1024u) /* RFC 5321 says 1000; real mail is longer */
#define SMTP_ERRORS_MAX       20u             /* bad commands before the session is closed */

struct smtp_envelope {
        const char *from; /* MAIL FROM's address; NULL for the null sender <> */
        char *const *recipients;
        size_t n_recipients;
        const uint8_t *data; /* dot-unstuffed, lines ending in CRLF */
        size_t len;
};

/* Delivers one message: returns the SMTP reply code (250 when taken, 4xx to try again later,
 * 5xx never) with text (no code, no CRLF) set in reply[reply_size]. */
typedef int smtp_deliver_fn(const struct smtp_envelope *e, void *userdata, char *reply,
                            size_t reply_size);

struct smtp_server {
        const char *hostname;  /* in the greeting and EHLO reply */
        size_t message_max;    /* SIZE; larger messages are refused with 552 */
        size_t recipients_max; /* RCPT beyond it: 452 */
        smtp_deliver_fn *deliver;
        void *userdata;
};

/* Speaks SMTP on in/out until QUIT, end of input, or too many bad commands. 0, or a negative
 * errno when out cannot be written or memory runs out. */
int smtp_serve(const struct smtp_server *s, FILE *in, FILE *out);

/* The SMTP reply code for a sysexits.h code of the delivery flow, and its enhanced status code:
 * 0 → 250 2.0.0; 65 → 554 5.6.0; 77 → 550 5.7.1; 69 → 554 5.3.0; 75 and anything else → 451 4.3.0
 * (the client tries again later). */
int smtp_code_of_exit(int exit_code, const char **ret_status);
