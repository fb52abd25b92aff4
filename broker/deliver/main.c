/* credbroker-deliver: one delivery attempt of a spooled message, run by credbrokerd
 * (engine/spool-deliver.c) as a child per attempt, so that the process holding the HSM session
 * never parses mail nor speaks Graph's upload protocol (docs/mail-spool.md).
 *
 *   fd 3    the message (RFC 5322, CRLF), read to its end from where it stands
 *   stdin   one JSON line: {"access_token":…,"graph":…,"mailbox":…,"delegated":bool,"ca_file":…}
 *   stdout  one JSON line: {"result":"sent"|"temporary"|"permanent"|"denied"|"token_rejected",
 *           "retry_after":N,"reason":"…","graph_status":N}
 *
 * The exit status says nothing: a child that prints no result line is taken to have maybe sent
 * the message (it is held, never sent again on its own). Sending is libmail's graph_mail_send(),
 * the same code as `credbroker send` and `credbroker sendmail`. */
#include "build-config.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "address.h"
#include "cleanup.h"
#include "graph-send.h"
#include "hardening.h"
#include "json.h"
#include "log.h"
#include "secret.h"
#include "util.h"

#define MESSAGE_MAX    (160u * 1024u * 1024u) /* above [mail] max_message_mb's bound */
#define TOKEN_LINE_MAX (TOKEN_MAX_LEN + 4096)
#define ADDRESS_MAX    320

static int read_all(int fd, size_t max, uint8_t **ret, size_t *ret_len)
{
        size_t cap = 65536, len = 0;
        uint8_t *buf = malloc(cap);

        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;
                if (len == cap) {
                        uint8_t *bigger = cap >= max ? NULL : realloc(buf, cap * 2);
                        if (!bigger) {
                                free(buf);
                                return cap >= max ? -EMSGSIZE : -ENOMEM;
                        }
                        buf = bigger;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        free(buf);
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* The addr-spec of the message's From header (the first), into out; "" when none is found. */
static void header_from(const uint8_t *msg, size_t len, char out[static ADDRESS_MAX + 1])
{
        const char *p = (const char *)msg, *end = p + len;

        out[0] = 0;
        while (p < end && !(p[0] == '\r' || p[0] == '\n')) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);

                if (n > 5 && strncasecmp(p, "From:", 5) == 0) {
                        const char *lt = memchr(p, '<', n),
                                   *gt = lt ? memchr(lt, '>', n - (size_t)(lt - p)) : NULL;
                        const char *a = lt && gt ? lt + 1 : p + 5, *b = lt && gt ? gt : p + n;
                        while (a < b && (*a == ' ' || *a == '\t'))
                                a++;
                        while (b > a && (b[-1] == ' ' || b[-1] == '\r' || b[-1] == '\t'))
                                b--;
                        if ((size_t)(b - a) <= ADDRESS_MAX) {
                                memcpy(out, a, (size_t)(b - a));
                                out[b - a] = 0;
                        }
                        return;
                }
                p += n + 1;
        }
}

static const char *result_name(enum graph_mail_result r)
{
        switch (r) {
        case GRAPH_MAIL_SENT:
                return "sent";
        case GRAPH_MAIL_TOKEN_REJECTED:
                return "token_rejected";
        case GRAPH_MAIL_DENIED:
                return "denied";
        case GRAPH_MAIL_PERMANENT:
                return "permanent";
        case GRAPH_MAIL_TEMPORARY:
        default:
                return "temporary";
        }
}

static int print_result(const char *result, unsigned retry_after, const char *reason, long status)
{
        _cleanup_json_ cJSON *json = cJSON_CreateObject();
        char *text;

        if (!json || !cJSON_AddStringToObject(json, "result", result) ||
            (retry_after && !json_add_uint(json, "retry_after", retry_after)) ||
            !cJSON_AddStringToObject(json, "reason", reason) ||
            (status > 0 && !json_add_uint(json, "graph_status", (uint64_t)status)))
                return EXIT_FAILURE;
        text = cJSON_PrintUnformatted(json);
        if (!text)
                return EXIT_FAILURE;
        printf("%s\n", text);
        json_free_string(text);
        return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* A local failure before Graph was asked: nothing was sent. */
static int local_failure(int r, const char *what)
{
        char reason[256];
        bool permanent = r == -EMSGSIZE || r == -EBADMSG || r == -EINVAL;

        snprintf(reason, sizeof(reason), "%s: %s", what, strerror(-r));
        return print_result(permanent ? "permanent" : "temporary", 0, reason, 0);
}

/* A message queued while no mailbox could be learnt (the broker was down when sendmail ran,
 * mail.conf names none) has no From: the account's mailbox, which Graph sends as anyway, goes
 * in front. The caller frees *ret. */
static int add_from(const char *mailbox, const uint8_t *msg, size_t len, uint8_t **ret,
                    size_t *ret_len)
{
        size_t head = strlen("From: \r\n") + strlen(mailbox);
        uint8_t *out = malloc(head + len);

        if (!out)
                return -ENOMEM;
        snprintf((char *)out, head + 1, "From: %s\r\n", mailbox);
        memcpy(out + head, msg, len);
        *ret = out;
        *ret_len = head + len;
        return 0;
}

static int send_message(cJSON *line, const uint8_t *msg, size_t len)
{
        _cleanup_free_ uint8_t *with_from = NULL;
        cJSON *token = cJSON_GetObjectItemCaseSensitive(line, "access_token");
        char from[ADDRESS_MAX + 1];
        struct graph_mail_outcome outcome = {0};
        struct graph_mail_target t = {
            .graph_url = json_get_string(line, "graph"),
            .ca_file = json_get_string(line, "ca_file"),
            .mailbox = json_get_string(line, "mailbox"),
            .delegated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(line, "delegated")),
            .from = from,
            .save_to_sent_items = true,
        };
        int r;

        if (!cJSON_IsString(token) || !t.graph_url)
                return local_failure(-EINVAL, "the broker's token line is incomplete");
        header_from(msg, len, from);
        if (!from[0] && t.mailbox && address_is_valid(t.mailbox)) {
                snprintf(from, sizeof(from), "%s", t.mailbox);
                r = add_from(t.mailbox, msg, len, &with_from, &len);
                if (r < 0)
                        return local_failure(r, "the message could not be sent");
                msg = with_from;
        }
        r = graph_mail_send(&t, token->valuestring, msg, len, NULL, NULL, &outcome);
        explicit_bzero(token->valuestring, strlen(token->valuestring));
        if (r < 0)
                return local_failure(r, "the message could not be sent");
        return print_result(result_name(outcome.result), outcome.retry_after, outcome.reason,
                            outcome.http_status);
}

int main(void)
{
        _cleanup_free_ uint8_t *msg = NULL, *raw_line = NULL;
        _cleanup_json_ cJSON *line = NULL;
        size_t len = 0, line_len = 0;
        int r;

        log_set_ident("credbroker-deliver");
        if (harden_process() < 0)
                return EXIT_FAILURE;
        json_init();
        r = read_all(STDIN_FILENO, TOKEN_LINE_MAX, &raw_line, &line_len);
        if (r == 0) {
                const uint8_t *nl = memchr(raw_line, '\n', line_len);
                if (json_parse(raw_line, nl ? (size_t)(nl - raw_line) : line_len, &line) < 0)
                        r = -EBADMSG;
        }
        if (raw_line)
                explicit_bzero(raw_line, line_len);
        if (r < 0)
                return local_failure(r, "the broker's token line cannot be read");
        r = read_all(3, MESSAGE_MAX, &msg, &len);
        if (r < 0)
                return local_failure(r, "the spool file cannot be read");
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return local_failure(-ENOMEM, "libcurl cannot start");
        r = send_message(line, msg, len);
        curl_global_cleanup();
        return r;
}
