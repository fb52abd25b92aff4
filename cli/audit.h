/* The audit subcommands (cmd-audit.c dispatches; argv[0] is the subcommand's name, or "audit"
 * for the query). Each returns the process's exit status. */
#pragma once

int audit_query_main(int argc, char **argv);      /* audit-query.c */
int audit_summary_main(int argc, char **argv);    /* audit-query.c */
int audit_verify_main(int argc, char **argv);     /* audit-verify.c */
int audit_key_main(int argc, char **argv);        /* audit-admin.c */
int audit_checkpoint_main(int argc, char **argv); /* audit-admin.c */
int audit_rotate_main(int argc, char **argv);     /* audit-admin.c */
