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
#include "signed-note.h"
#include "store.h"

enum { ADMIN_KEY, ADMIN_CHECKPOINT, ADMIN_ROTATE };

static void usage(FILE *f, int which)
{
        static const char *const lines[] = {
            [ADMIN_KEY] =
                "Usage: credbroker audit key [-v] [--admin-socket PATH] [--config PATH]\n"
                "\n"
                "Prints the key that verifies the audit log's signed checkpoints, in the\n"
                "signed-note form credbroker-audit+HASH+KEY. While the broker runs it is\n"
                "asked; otherwise the PKCS#11 token is opened directly (the key pair is\n"
                "generated in the token when there is none yet).\n"
                "\n"
                "Exit: 0, 64 usage, 69 broker unavailable, 77 no permission,\n"
                "78 configuration or token problem.\n",
            [ADMIN_CHECKPOINT] =
                "Usage: credbroker audit checkpoint [--admin-socket PATH] [--config PATH]\n"
                "\n"
                "Makes the running broker sign and append a checkpoint now, and prints its\n"
                "seq and the number of records it covers.\n"
                "\n"
                "Exit: 0, 64 usage, 69 broker not running or busy, 77 no permission.\n",
            [ADMIN_ROTATE] =
                "Usage: credbroker audit rotate [--admin-socket PATH] [--config PATH]\n"
                "\n"
                "Makes the running broker write a checkpoint and, when the log file was\n"
                "renamed (logrotate), start a new file at the configured path with a\n"
                "file.start record that links the old one.\n"
                "\n"
                "Exit: 0, 64 usage, 69 broker not running or busy, 77 no permission.\n",
        };
        fputs(lines[which], f);
}

/* Options common to the three; returns -1 to go on, else an exit status. */
static int parse(int argc, char **argv, int which, const char **admin_socket,
                 const char **config_option, bool *verbose)
{
        static const struct option options[] = {
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "vc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'v':
                        *verbose = true;
                        break;
                case 'A':
                        *admin_socket = optarg;
                        break;
                case 'c':
                        *config_option = optarg;
                        break;
                case 'h':
                        usage(stdout, which);
                        return 0;
                default:
                        usage(stderr, which);
                        return EXIT_USAGE;
                }
        }
        if (optind != argc) {
                usage(stderr, which);
                return EXIT_USAGE;
        }
        return -1;
}

static int key_from_token(const char *config_option)
{
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_free_ char *text = NULL;
        struct note_key key;
        int r;

        r = account_open_store(config_option, &store);
        if (r != 0)
                return r;
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

int audit_key_main(int argc, char **argv)
{
        const char *admin_socket = NULL, *config_option = NULL, *key;
        _cleanup_admin_ struct admin_conn *admin = NULL;
        _cleanup_json_ cJSON *request = admin_request_new("audit.key"), *reply = NULL;
        bool verbose = false;
        int r;

        r = parse(argc, argv, ADMIN_KEY, &admin_socket, &config_option, &verbose);
        if (r >= 0)
                return r;
        if (!request)
                return EXIT_SOFTWARE;
        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 1)
                return key_from_token(config_option);
        if (r != 0)
                return r;
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

static int ask(int argc, char **argv, int which)
{
        const char *admin_socket = NULL, *config_option = NULL;
        _cleanup_json_ cJSON *request = NULL, *reply = NULL;
        bool verbose = false;
        uint64_t seq, count;
        bool has_checkpoint;
        int r;

        r = parse(argc, argv, which, &admin_socket, &config_option, &verbose);
        if (r >= 0)
                return r;
        request = admin_request_new(which == ADMIN_ROTATE ? "audit.rotate" : "audit.checkpoint");
        if (!request)
                return EXIT_SOFTWARE;
        r = admin_call(admin_socket_path(admin_socket, config_option), request, &reply);
        if (r != 0)
                return r;
        has_checkpoint =
            json_get_u64(reply, "seq", &seq) == 0 && json_get_u64(reply, "count", &count) == 0;
        if (has_checkpoint)
                printf("Checkpoint: seq %llu, %llu records.\n", (unsigned long long)seq,
                       (unsigned long long)count);
        if (which == ADMIN_ROTATE)
                printf("%s\n", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "reopened"))
                                   ? "Started a new audit log file."
                                   : "The audit log file was not renamed: no new file.");
        return 0;
}

int audit_checkpoint_main(int argc, char **argv)
{
        return ask(argc, argv, ADMIN_CHECKPOINT);
}

int audit_rotate_main(int argc, char **argv)
{
        return ask(argc, argv, ADMIN_ROTATE);
}
