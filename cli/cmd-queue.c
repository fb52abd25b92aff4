/* credbroker queue [list|show ID|flush [ID]|delete ID]: the broker's mail spool through the
 * admin socket (docs/admin-protocol.md, queue.*). list prints one line per message, like
 * mailq; show prints one message's fields; flush makes messages due now (and releases a held
 * one: it may then be sent a second time); delete removes one for good. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin-client.h"
#include "client.h"
#include "commands.h"
#include "json.h"
#include "options.h"
#include "queue.h"

static void usage(FILE *f)
{
        fputs("Usage: credbroker queue [list]            [--admin-socket PATH] [--config PATH]\n"
              "       credbroker queue show ID\n"
              "       credbroker queue flush [ID]\n"
              "       credbroker queue delete ID\n"
              "\n"
              "The broker's mail spool: messages waiting for Microsoft Graph, held after an\n"
              "interrupted delivery (they may have been sent: flush sends them again), and\n"
              "failed ones with the reason. Administrators only (the admin socket).\n"
              "\n"
              "Exit: 0 done, 64 usage, 66 no such message, 69 broker not running,\n"
              "77 no permission.\n",
              f);
}

/* Sends request (NULL: out of memory) and reads an "ok" reply; the request stays the caller's. */
static int call(const char *admin_socket, const char *config, const cJSON *request, cJSON **ret)
{
        if (!request)
                return EXIT_SOFTWARE;
        return admin_call(admin_socket_path(admin_socket, config), request, ret);
}

static void print_time(const char *label, uint64_t t)
{
        char buf[32];
        time_t tt = (time_t)t;
        struct tm tm;

        if (t && gmtime_r(&tt, &tm) && strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
                printf("%-14s %s\n", label, buf);
}

static void print_line(const cJSON *m)
{
        uint64_t size = 0, queued_at = 0, attempts = 0;
        const char *reason = json_get_string(m, "reason");
        const char *message_id = json_get_string(m, "message_id");
        char when[32] = "-";
        time_t tt;
        struct tm tm;

        (void)json_get_u64(m, "size", &size);
        (void)json_get_u64(m, "queued_at", &queued_at);
        (void)json_get_u64(m, "attempts", &attempts);
        tt = (time_t)queued_at;
        if (gmtime_r(&tt, &tm))
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        printf("%-24s %-7s %9" PRIu64 " %s %-12s %5" PRIu64 " %s%s%s\n", json_get_string(m, "id"),
               json_get_string(m, "state"), size, when, json_get_string(m, "profile"), attempts,
               message_id ? message_id : "-", reason ? "\n    " : "", reason ? reason : "");
}

/* One page of queue.list from offset: prints it, sets *ret_n (this page) and *ret_total. */
static int list_page(const char *admin_socket, const char *config, uint64_t offset, bool header,
                     uint64_t *ret_n, uint64_t *ret_total)
{
        _cleanup_json_ cJSON *reply = NULL;
        cJSON *request = admin_request_new("queue.list");
        const cJSON *list, *m;
        int r;

        if (request && !json_add_uint(request, "offset", offset)) {
                cJSON_Delete(request);
                request = NULL;
        }
        r = call(admin_socket, config, request, &reply);
        cJSON_Delete(request);
        if (r != 0)
                return r;
        list = cJSON_GetObjectItemCaseSensitive(reply, "messages");
        *ret_n = (uint64_t)cJSON_GetArraySize(list);
        if (json_get_u64(reply, "total", ret_total) < 0)
                *ret_total = *ret_n;
        if (header && *ret_n > 0)
                printf("%-24s %-7s %9s %-16s %-12s %5s %s\n", "ID", "STATE", "SIZE", "QUEUED (UTC)",
                       "PROFILE", "TRIES", "MESSAGE-ID");
        cJSON_ArrayForEach(m, list) print_line(m);
        return 0;
}

int queue_list(const char *admin_socket, const char *config)
{
        uint64_t offset = 0, n = 0, total = 0;
        int r;

        do {
                r = list_page(admin_socket, config, offset, offset == 0, &n, &total);
                if (r != 0)
                        return r;
                offset += n;
        } while (n > 0 && offset < total);
        if (offset == 0)
                printf("The mail queue is empty.\n");
        return 0;
}

static cJSON *request_with_id(const char *op, const char *id)
{
        cJSON *request = admin_request_new(op);

        if (request && id && !cJSON_AddStringToObject(request, "id", id)) {
                cJSON_Delete(request);
                return NULL;
        }
        return request;
}

int queue_show(const char *admin_socket, const char *config, const char *id)
{
        _cleanup_json_ cJSON *reply = NULL;
        const cJSON *m;
        uint64_t v;
        _cleanup_json_ cJSON *request = request_with_id("queue.show", id);
        int r = call(admin_socket, config, request, &reply);

        if (r != 0)
                return r;
        m = cJSON_GetObjectItemCaseSensitive(reply, "message");
        for (const char *const *k =
                 (const char *const[]){"id", "state", "profile", "message_id", "reason", NULL};
             *k; k++)
                if (json_get_string(m, *k))
                        printf("%-14s %s\n", *k, json_get_string(m, *k));
        for (const char *const *k =
                 (const char *const[]){"uid", "size", "recipients", "attempts", NULL};
             *k; k++)
                if (json_get_u64(m, *k, &v) == 0)
                        printf("%-14s %" PRIu64 "\n", *k, v);
        if (json_get_u64(m, "queued_at", &v) == 0)
                print_time("queued_at", v);
        if (json_get_u64(m, "next_attempt_at", &v) == 0)
                print_time("next_attempt", v);
        return 0;
}

int queue_flush(const char *admin_socket, const char *config, const char *id)
{
        _cleanup_json_ cJSON *reply = NULL;
        uint64_t n = 0;
        _cleanup_json_ cJSON *request = request_with_id("queue.flush", id);
        int r = call(admin_socket, config, request, &reply);

        if (r != 0)
                return r;
        (void)json_get_u64(reply, "flushed", &n);
        printf("%" PRIu64 " message%s due now.\n", n, n == 1 ? "" : "s");
        return 0;
}

int queue_delete(const char *admin_socket, const char *config, const char *id)
{
        _cleanup_json_ cJSON *reply = NULL;
        _cleanup_json_ cJSON *request = request_with_id("queue.delete", id);
        int r = call(admin_socket, config, request, &reply);

        if (r != 0)
                return r;
        printf("Deleted %s.\n", id);
        return 0;
}

int cmd_queue(int argc, char **argv)
{
        const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : "list";
        bool takes_id = strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0;
        bool may_take_id = takes_id || strcmp(sub, "flush") == 0;
        const char *id = may_take_id && argc > 2 && argv[2][0] != '-' ? argv[2] : NULL;
        int skip = (argc > 1 && argv[1][0] != '-') + (id != NULL);
        struct cli_target t = {0};
        int r;

        if ((takes_id && !id) || (strcmp(sub, "list") != 0 && !may_take_id)) {
                usage(stderr);
                return EXIT_USAGE;
        }
        /* The word before the options stands in for argv[0]. */
        r = cli_parse_target(argc - skip, argv + skip, true, usage, &t);
        if (r >= 0)
                return r;
        if (strcmp(sub, "list") == 0)
                return queue_list(t.admin_socket, t.config);
        if (strcmp(sub, "show") == 0)
                return queue_show(t.admin_socket, t.config, id);
        if (strcmp(sub, "flush") == 0)
                return queue_flush(t.admin_socket, t.config, id);
        return queue_delete(t.admin_socket, t.config, id);
}
