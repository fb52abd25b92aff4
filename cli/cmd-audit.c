/* credbroker audit: read, query, summarise and verify the audit log; print the checkpoint key;
 * make the broker checkpoint or rotate. Each subcommand lives in its own file (audit.h). */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "commands.h"
#include "cleanup.h"

static void usage(FILE *f)
{
        fputs(
            "Usage: credbroker audit [query options]   records as a table (or --json), -f to "
            "follow\n"
            "       credbroker audit summary [--since T]  tokens, denials and failures per "
            "account\n"
            "       credbroker audit verify [--key KEY] [--expect-head SEQ:HASH] [FILE...]\n"
            "       credbroker audit key                  the checkpoint verifier key\n"
            "       credbroker audit checkpoint           make the broker write a checkpoint now\n"
            "       credbroker audit rotate               make the broker start a new file\n"
            "\n"
            "Run \"credbroker audit SUBCOMMAND --help\" for its options.\n",
            f);
}

int cmd_audit(int argc, char **argv)
{
        static const struct {
                const char *name;
                int (*run)(int argc, char **argv);
        } subcommands[] = {
            {"summary", audit_summary_main}, {"verify", audit_verify_main},
            {"key", audit_key_main},         {"checkpoint", audit_checkpoint_main},
            {"rotate", audit_rotate_main},
        };

        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                usage(stdout);
                return 0;
        }
        for (size_t i = 0; argc >= 2 && i < ELEMENTSOF(subcommands); i++)
                if (strcmp(argv[1], subcommands[i].name) == 0)
                        return subcommands[i].run(argc - 1, argv + 1);
        /* No subcommand (or an option first): the query. */
        return audit_query_main(argc, argv);
}
