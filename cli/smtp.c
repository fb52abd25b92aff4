/* The SMTP dialogue of sendmail -bs; see smtp.h. Every line and the message are bounded; a
 * message over the limit is read to its end and refused, so the dialogue stays in step. */
#include "smtp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "util.h"

struct session {
        const struct smtp_server *server;
        FILE *in, *out;
        char *line; /* the current line, without CRLF, NUL-terminated */
        size_t line_len;
        bool have_from;
        char *from; /* NULL for <> */
        char **recipients;
        size_t n_recipients;
        unsigned errors;
};

/* Reads one line of at most max bytes into s->line (CRLF or LF removed; a longer line is cut and
 * *too_long set). 0, or -ENODATA at end of input. */
static int read_line(struct session *s, size_t max, bool *too_long)
{
        size_t n = 0;
        int c;

        *too_long = false;
        while ((c = getc(s->in)) != EOF && c != '\n') {
                if (n < max)
                        s->line[n++] = (char)c;
                else
                        *too_long = true;
        }
        if (c == EOF && n == 0)
                return -ENODATA;
        if (n > 0 && s->line[n - 1] == '\r')
                n--;
        s->line[n] = 0;
        s->line_len = n;
        return 0;
}

static int reply(struct session *s, const char *text)
{
        if (fputs(text, s->out) < 0 || fputs("\r\n", s->out) < 0 || fflush(s->out) != 0)
                return -EIO;
        return 0;
}

static void reset(struct session *s)
{
        free(s->from);
        s->from = NULL;
        s->have_from = false;
        for (size_t i = 0; i < s->n_recipients; i++)
                free(s->recipients[i]);
        free(s->recipients);
        s->recipients = NULL;
        s->n_recipients = 0;
}

/* The address of "FROM:<addr> params" / "TO:<addr>" after the keyword (case-insensitive); ""
 * for <>. NULL when malformed. */
static char *path_argument(const char *args, const char *keyword)
{
        size_t k = strlen(keyword), n;
        const char *p, *end;

        if (strncasecmp(args, keyword, k) != 0)
                return NULL;
        p = args + k;
        p += strspn(p, " ");
        if (*p == '<') {
                end = strchr(++p, '>');
                if (!end)
                        return NULL;
        } else {
                end = p + strcspn(p, " ");
        }
        n = (size_t)(end - p);
        if (n > 320 || memchr(p, ' ', n) || memchr(p, '\t', n))
                return NULL;
        return bytes_to_string(p, n);
}

static int command_mail(struct session *s, const char *args)
{
        char *from;

        if (s->have_from)
                return reply(s, "503 5.5.1 Error: nested MAIL command");
        from = path_argument(args, "FROM:");
        if (!from)
                return reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        s->have_from = true;
        if (*from == 0)
                free(from);
        else
                s->from = from;
        return reply(s, "250 2.1.0 Ok");
}

static int command_rcpt(struct session *s, const char *args)
{
        _cleanup_free_ char *to = NULL;
        char **grown;

        if (!s->have_from)
                return reply(s, "503 5.5.1 Error: need MAIL command");
        to = path_argument(args, "TO:");
        if (!to || *to == 0 || to[0] == '-' || strpbrk(to, "\"\\,;:()[]"))
                return reply(s, "501 5.1.3 Bad recipient address syntax");
        if (s->n_recipients >= s->server->recipients_max)
                return reply(s, "452 4.5.3 Error: too many recipients");
        grown = reallocarray(s->recipients, s->n_recipients + 1, sizeof(char *));
        if (!grown)
                return -ENOMEM;
        s->recipients = grown;
        s->recipients[s->n_recipients++] = TAKE_PTR(to);
        return reply(s, "250 2.1.5 Ok");
}

/* Appends one data line (dot-unstuffed) and CRLF, unless the message is already too large. */
static int append_line(struct session *s, uint8_t **data, size_t *len, size_t *size,
                       bool *too_large)
{
        const char *line = s->line[0] == '.' ? s->line + 1 : s->line;
        size_t n = s->line_len - (line != s->line);

        if (*too_large || *len + n + 2 > s->server->message_max) {
                *too_large = true;
                return 0;
        }
        if (*len + n + 2 > *size) {
                size_t want = (*len + n + 2) * 2;
                uint8_t *p;

                if (want > s->server->message_max)
                        want = s->server->message_max;
                p = realloc(*data, want);
                if (!p)
                        return -ENOMEM;
                *data = p;
                *size = want;
        }
        memcpy(*data + *len, line, n);
        memcpy(*data + *len + n, "\r\n", 2);
        *len += n + 2;
        return 0;
}

/* Reads the message up to the lone dot and hands it to deliver. */
static int command_data(struct session *s)
{
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0, size = 0;
        bool too_large = false, too_long;
        char text[400], answer[420];
        int r, code;

        if (s->n_recipients == 0)
                return reply(s, "503 5.5.1 Error: need RCPT command");
        r = reply(s, "354 End data with <CR><LF>.<CR><LF>");
        for (;;) {
                if (r < 0)
                        return r;
                if (read_line(s, SMTP_DATA_LINE_MAX, &too_long) < 0)
                        return -ENODATA; /* the client went away mid-message: nothing taken */
                if (too_long)
                        too_large = true;
                if (s->line_len == 1 && s->line[0] == '.')
                        break;
                r = append_line(s, &data, &len, &size, &too_large);
        }
        if (too_large) {
                reset(s);
                return reply(s, "552 5.3.4 Error: message too large or a line too long");
        }
        text[0] = 0;
        code = s->server->deliver(&(struct smtp_envelope){.from = s->from,
                                                          .recipients = s->recipients,
                                                          .n_recipients = s->n_recipients,
                                                          .data = data ? data : (const uint8_t *)"",
                                                          .len = len},
                                  s->server->userdata, text, sizeof(text));
        if (code < 200 || code > 599)
                code = 451;
        /* Only printable text goes back to the client. */
        for (char *p = text; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        snprintf(answer, sizeof(answer), "%d %s", code, text[0] ? text : "Ok");
        reset(s);
        return reply(s, answer);
}

static int command_ehlo(struct session *s, bool extended, const char *args)
{
        char text[512];

        if (*args == 0)
                return reply(s, "501 5.5.4 Syntax: EHLO hostname");
        reset(s);
        if (!extended) {
                snprintf(text, sizeof(text), "250 %s", s->server->hostname);
                return reply(s, text);
        }
        snprintf(
            text, sizeof(text),
            "250-%s\r\n250-PIPELINING\r\n250-SIZE %zu\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES",
            s->server->hostname, s->server->message_max);
        return reply(s, text);
}

/* One command line: 1 after QUIT, else 0 or a negative errno. */
static int command(struct session *s)
{
        char *verb = s->line, *args;
        size_t n = strcspn(verb, " ");

        args = verb + n + strspn(verb + n, " ");
        verb[n] = 0;
        if (strcasecmp(verb, "EHLO") == 0 || strcasecmp(verb, "HELO") == 0)
                return command_ehlo(s, strcasecmp(verb, "EHLO") == 0, args);
        if (strcasecmp(verb, "MAIL") == 0)
                return command_mail(s, args);
        if (strcasecmp(verb, "RCPT") == 0)
                return command_rcpt(s, args);
        if (strcasecmp(verb, "DATA") == 0)
                return *args ? reply(s, "501 5.5.4 Syntax: DATA") : command_data(s);
        if (strcasecmp(verb, "RSET") == 0) {
                reset(s);
                return reply(s, "250 2.0.0 Ok");
        }
        if (strcasecmp(verb, "NOOP") == 0)
                return reply(s, "250 2.0.0 Ok");
        if (strcasecmp(verb, "VRFY") == 0)
                return reply(s, "252 2.5.0 Cannot VRFY user; try RCPT");
        if (strcasecmp(verb, "HELP") == 0)
                return reply(s, "214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT");
        if (strcasecmp(verb, "QUIT") == 0) {
                int r = reply(s, "221 2.0.0 Bye");
                return r < 0 ? r : 1;
        }
        s->errors++;
        return reply(s, "500 5.5.2 Error: command not recognized");
}

int smtp_serve(const struct smtp_server *server, FILE *in, FILE *out)
{
        _cleanup_free_ char *line = malloc(SMTP_DATA_LINE_MAX + 1);
        struct session s = {.server = server, .in = in, .out = out, .line = line};
        char greeting[300];
        bool too_long;
        int r;

        if (!line)
                return -ENOMEM;
        snprintf(greeting, sizeof(greeting), "220 %s ESMTP credbroker sendmail", server->hostname);
        r = reply(&s, greeting);
        while (r == 0) {
                if (read_line(&s, SMTP_COMMAND_LINE_MAX, &too_long) < 0)
                        break;
                if (too_long) {
                        s.errors++;
                        r = reply(&s, "500 5.5.2 Error: line too long");
                } else {
                        r = command(&s);
                }
                if (r == 0 && s.errors >= SMTP_ERRORS_MAX)
                        r = reply(&s, "421 4.7.0 Error: too many errors");
                if (r == 0 && s.errors >= SMTP_ERRORS_MAX)
                        break;
        }
        reset(&s);
        return r == -ENODATA || r == 1 ? 0 : (r < 0 ? r : 0);
}

int smtp_code_of_exit(int exit_code, const char **ret_status)
{
        switch (exit_code) {
        case 0:
                *ret_status = "2.0.0";
                return 250;
        case 65: /* EX_DATAERR */
                *ret_status = "5.6.0";
                return 554;
        case 77: /* EX_NOPERM */
                *ret_status = "5.7.1";
                return 550;
        case 69: /* EX_UNAVAILABLE */
                *ret_status = "5.3.0";
                return 554;
        default:
                *ret_status = "4.3.0";
                return 451;
        }
}
