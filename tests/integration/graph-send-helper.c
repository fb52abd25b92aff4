/* Drives graph_mail_send() for graph-send.test.js: the access token comes on stdin (never in argv),
 * the message from a file; prints one JSON line with the outcome and the progress seen.
 *
 *   graph-send-helper --graph URL --ca FILE [--mailbox M] [--delegated] [--from ADDR] \
 *                     [--path-only] MESSAGE-FILE < token
 */
#include "build-config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "graph-send.h"

#include "mime.h"

/* --- the driver ------------------------------------------------------------------------------ */

struct progress_seen {
        unsigned calls;
        uint64_t done, total;
        bool monotonic;
};

static void on_progress(uint64_t done, uint64_t total, void *userdata)
{
        struct progress_seen *p = userdata;

        if (done < p->done || done > total)
                p->monotonic = false;
        p->calls++;
        p->done = done;
        p->total = total;
}

static uint8_t *read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        uint8_t *data = NULL;
        long n;

        if (!f)
                return NULL;
        if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
            (data = malloc((size_t)n)) && fread(data, 1, (size_t)n, f) == (size_t)n)
                *ret_len = (size_t)n;
        else {
                free(data);
                data = NULL;
        }
        fclose(f);
        return data;
}

static void print_json_string(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        printf("\\%c", *s);
                else if ((unsigned char)*s < 0x20)
                        printf("\\u%04x", *s);
                else
                        putchar(*s);
        }
        putchar('"');
}

int main(int argc, char **argv)
{
        static const char *const results[] = {"sent", "temporary", "token_rejected", "denied",
                                              "permanent"};
        struct graph_mail_target t = {.save_to_sent_items = true};
        struct progress_seen seen = {.monotonic = true};
        struct graph_mail_outcome o = {0};
        char token[16384 + 2];
        const char *file = NULL;
        bool path_only = false;
        uint8_t *message;
        size_t len = 0;
        char *path = NULL;
        int r;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(a, "--graph") == 0 && v)
                        t.graph_url = argv[++i];
                else if (strcmp(a, "--ca") == 0 && v)
                        t.ca_file = argv[++i];
                else if (strcmp(a, "--mailbox") == 0 && v)
                        t.mailbox = argv[++i];
                else if (strcmp(a, "--from") == 0 && v)
                        t.from = argv[++i];
                else if (strcmp(a, "--delegated") == 0)
                        t.delegated = true;
                else if (strcmp(a, "--path-only") == 0)
                        path_only = true;
                else
                        file = a;
        }
        r = graph_mail_send_path(&t, &path);
        if (path_only) {
                printf("%s\n", r < 0 ? "error" : path);
                return r < 0;
        }
        if (!file || !fgets(token, sizeof(token), stdin)) {
                fprintf(stderr, "usage: see the head of graph-send-helper.c\n");
                return 2;
        }
        token[strcspn(token, "\r\n")] = '\0';
        message = read_file(file, &len);
        if (!message) {
                fprintf(stderr, "cannot read %s\n", file);
                return 2;
        }
        r = graph_mail_send(&t, token, message, len, on_progress, &seen, &o);
        explicit_bzero(token, sizeof(token));
        if (r < 0) {
                printf("{\"error\":%d}\n", r);
                return 1;
        }
        printf("{\"result\":\"%s\",\"retry_after\":%u,\"http_status\":%ld,\"path\":",
               results[o.result], o.retry_after, o.http_status);
        print_json_string(path ? path : "");
        printf(",\"progress_calls\":%u,\"progress_done\":%llu,\"progress_total\":%llu,"
               "\"progress_monotonic\":%s,\"reason\":",
               seen.calls, (unsigned long long)seen.done, (unsigned long long)seen.total,
               seen.monotonic ? "true" : "false");
        print_json_string(o.reason);
        printf("}\n");
        free(path);
        free(message);
        return 0;
}
