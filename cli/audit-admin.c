/* credbroker audit: placeholder until implemented (issue 12). */
#include <stdio.h>

#include "audit.h"

int audit_key_main(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fputs("credbroker: not implemented yet\n", stderr);
        return 70;
}

int audit_checkpoint_main(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fputs("credbroker: not implemented yet\n", stderr);
        return 70;
}

int audit_rotate_main(int argc, char **argv)
{
        (void)argc;
        (void)argv;
        fputs("credbroker: not implemented yet\n", stderr);
        return 70;
}
