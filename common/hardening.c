/* Process hardening; see hardening.h. */
#include "hardening.h"

#include <errno.h>
#include <linux/capability.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

int harden_process(void)
{
        const struct rlimit no_core = {0, 0};

        /* Not dumpable: no core files and no same-uid ptrace or /proc/<pid>/mem reads. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(-errno, "Failed to make the process non-dumpable");
        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                return log_error_errno(-errno, "Failed to disable core dumps");
        umask(077);
        /* Peers that hang up must surface as EPIPE, not kill us. */
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                return log_error_errno(-errno, "Failed to ignore SIGPIPE");
        return 0;
}

static bool have_ipc_lock(void)
{
        struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {0};

        if (syscall(SYS_capget, &header, data) < 0)
                return false;
        return data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective & CAP_TO_MASK(CAP_IPC_LOCK);
}

int harden_lock_memory(uint64_t min_bytes)
{
        struct rlimit limit;

        if (getrlimit(RLIMIT_MEMLOCK, &limit) < 0)
                limit.rlim_cur = 0;
        if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < min_bytes && !have_ipc_lock()) {
                log_warning("Memory not locked: RLIMIT_MEMLOCK is %llu KiB, less than the %llu MiB "
                            "credbrokerd needs to lock all of its memory. Raise it with "
                            "LimitMEMLOCK=%lluM in credbroker.service (or \"ulimit -l\" / the "
                            "memlock item of limits.conf). Secret buffers are still locked one by "
                            "one while the limit allows; copies inside libcurl, GnuTLS and the "
                            "PKCS#11 module are wiped when freed but may reach swap meanwhile.",
                            (unsigned long long)limit.rlim_cur / 1024,
                            (unsigned long long)min_bytes >> 20,
                            (unsigned long long)min_bytes >> 20);
                return 0;
        }
        /* Locked memory counts whole mappings, reserved or not: one malloc arena for all threads
         * instead of 64 MiB of address space reserved per thread. */
        (void)mallopt(M_ARENA_MAX, 1);
        /* MCL_ONFAULT: pages are locked as they are touched, not all populated up front. */
        if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
                log_warning_errno(-errno,
                                  "Memory not locked: mlockall() failed, with the address space "
                                  "larger than RLIMIT_MEMLOCK? Raise LimitMEMLOCK= in "
                                  "credbroker.service");
                return 0;
        }
        log_debug("Memory locked: every page of credbrokerd stays out of swap.");
        return 1;
}
