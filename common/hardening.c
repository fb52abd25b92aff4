/* Process hardening; see hardening.h. */
#include "hardening.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "log.h"

int harden_process(void)
{
        const struct rlimit no_core = {0, 0};

        /* Not dumpable: no core files and no same-uid ptrace or /proc/<pid>/mem reads. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(errno, "Failed to make the process non-dumpable");
        if (setrlimit(RLIMIT_CORE, &no_core) < 0)
                return log_error_errno(errno, "Failed to disable core dumps");
        umask(077);
        /* Peers that hang up must surface as EPIPE, not kill us. */
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                return log_error_errno(errno, "Failed to ignore SIGPIPE");
        return 0;
}
