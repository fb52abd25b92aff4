/* Process hardening shared by the daemon and the CLI (design.md §9). */
#pragma once

/* No core dumps, not ptrace-attachable by same-uid processes, private file modes, SIGPIPE
 * ignored. Returns a negative errno if any step fails: callers refuse to run then. */
int harden_process(void);
