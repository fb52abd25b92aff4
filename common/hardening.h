/* Process hardening shared by the daemon and the CLI (design.md §9). */
#pragma once

#include <stdint.h>

/* No core dumps, not ptrace-attachable by same-uid processes, private file modes, SIGPIPE
 * ignored. Returns a negative errno if any step fails: callers refuse to run then. */
int harden_process(void);

/* Locks the process's memory (mlockall(), each page as it is first touched) so that no copy of a
 * secret a library makes can be swapped out: our own secret buffers are locked one by one, the
 * buffers of libcurl, GnuTLS and the PKCS#11 module are not. With every future mapping locked,
 * all of the address space counts against RLIMIT_MEMLOCK and an allocation beyond it fails: so
 * memory is locked only when the limit is at least min_bytes or CAP_IPC_LOCK lifts it, and
 * otherwise a warning names the limit and how to raise it. Returns 1 when locked, 0 when not;
 * never fails (the broker runs unlocked rather than not at all). */
int harden_lock_memory(uint64_t min_bytes);

/* What credbrokerd's mlockall() needs: the whole address space counts, libraries and thread
 * stacks included (about 45 MiB measured), with room for connections' buffers;
 * dist/credbroker.service's LimitMEMLOCK= gives exactly this. */
#define BROKER_MEMLOCK_MIN (UINT64_C(128) << 20)
