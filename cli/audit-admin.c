/* credbroker audit key, audit checkpoint, audit rotate: the checkpoint verifier key (from the
 * running broker, else from the token directly), and asking the broker for a checkpoint or a
 * rotation through the admin socket (docs/admin-protocol.md). */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin-client.h"
#include "audit.h"
#include "client.h"
#include "cmd-account.h"
#include "json.h"
#include "options.h"
#include "signed-note.h"
#include "store.h"

static void key_usage(FILE *f)
{
        fputs("Usage: credbroker audit key [-v] [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Prints the key that verifies the audit log's signed checkpoints, in the\n"
              "signed-note form credbroker-audit+HASH+KEY. While the broker runs it is\n"
              "asked; otherwise the PKCS#11 token is opened directly (the key pair is\n"
              "generated in the token when there is none yet).\n"
              "\n"
              "Exit: 0, 64 usage, 69 broker unavailable, 77 no permission,\n"
              "78 configuration or token problem.\n",
              f);
}

static void checkpoint_usage(FILE *f)
{
        fputs("Usage: credbroker audit checkpoint [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Makes the running broker sign and append a checkpoint now, and prints its\n"
              "seq and the number of records it covers.\n"
              "\n"
              "Exit: 0, 64 usage, 69 broker not running or busy, 77 no permission.\n",
              f);
}

static void rotate_usage(FILE *f)
{
        fputs("Usage: credbroker audit rotate [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Makes the running broker write a checkpoint and, when the log file was\n"
              "renamed (logrotate), start a new file at the configured path with a\n"
              "file.start record that links the old one.\n"
              "\n"
              "Exit: 0, 64 usage, 69 broker not running or busy, 77 no permission.\n",
              f);
}

static int key_from_broker(struct admin_conn *admin)
{
        _cleanup_json_ cJSON *request = admin_request_new("audit.key"), *reply = NULL;
        const char *key;
        int r;

        if (!request)
                return EXIT_SOFTWARE;
        r = admin_exchange(admin, request, &reply);
        if (r != 0)
                return r;
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                return admin_report_error(reply);
        key = json_get_string(reply, "key");
        if (!key || strncmp(key, NOTE_KEY_NAME "+", strlen(NOTE_KEY_NAME) + 1) != 0) {
                fprintf(stderr, "credbroker: the broker's reply has no audit key\n");
                return EXIT_SOFTWARE;
        }
        printf("%s\n", key);
        return 0;
}

static int key_from_token(struct store *store)
{
        _cleanup_free_ char *text = NULL;
        struct note_key key;
        int r;

        r = store_audit_key(store, &key);
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot get the audit key from the token: %s\n",
                        strerror(-r));
                return EXIT_CONFIG;
        }
        if (note_key_format(&key, &text) < 0)
                return EXIT_SOFTWARE;
        printf("%s\n", text);
        return 0;
}

static int key_run(const struct account_args *a, struct account_target *t, void *state)
{
        return t->admin ? key_from_broker(t->admin) : key_from_token(t->store);
}

int audit_key_main(int argc, char **argv)
{
        static const struct account_command command = {
            .name = "audit key",
            .usage = key_usage,
            .run = key_run,
        };

        return account_run(&command, argc, argv);
}

static int ask(int argc, char **argv, const char *op, void (*usage)(FILE *f))
{
        static const struct option options[] = {
            CLI_OPTION_ADMIN_SOCKET,
            CLI_OPTION_CONFIG,
            CLI_OPTION_HELP,
            {0},
        };
        _cleanup_json_ cJSON *request = NULL, *reply = NULL;
        struct cli_target target = {0};
        uint64_t seq, count;
        int c, r;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                r = cli_shared_option(c, &target, usage, EXIT_USAGE);
                if (r >= 0)
                        return r;
        }
        if (optind != argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        request = admin_request_new(op);
        if (!request)
                return EXIT_SOFTWARE;
        r = admin_call(admin_socket_path(target.admin_socket, target.config), request, &reply);
        if (r != 0)
                return r;
        if (json_get_u64(reply, "seq", &seq) == 0 && json_get_u64(reply, "count", &count) == 0)
                printf("Checkpoint: seq %llu, %llu records.\n", (unsigned long long)seq,
                       (unsigned long long)count);
        if (strcmp(op, "audit.rotate") == 0)
                printf("%s\n", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "reopened"))
                                   ? "Started a new audit log file."
                                   : "The audit log file was not renamed: no new file.");
        return 0;
}

int audit_checkpoint_main(int argc, char **argv)
{
        return ask(argc, argv, "audit.checkpoint", checkpoint_usage);
}

int audit_rotate_main(int argc, char **argv)
{
        return ask(argc, argv, "audit.rotate", rotate_usage);
}
