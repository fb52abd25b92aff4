/* credbroker audit: placeholder until implemented (issue 12). */
#include <stdio.h>

#include "audit.h"

int audit_query_main(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fputs("credbroker: not implemented yet\n", stderr);
        return 70;
}

int audit_summary_main(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fputs("credbroker: not implemented yet\n", stderr);
        return 70;
}
