/* Unit tests for peer facts: the cgroup-line and /proc/<pid>/stat parsers on real lines, the exe
 * link rules, and capture on live, exited and zombie peers by both pidfd methods. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "peer.h"
#include "tap.h"

#define ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

struct cgroup_case {
        const char *text;
        const char *unit; /* NULL: none */
        int error;        /* when unit is NULL */
};

/* Lines as /proc/<pid>/cgroup shows them on unified, hybrid and legacy systems. */
static const struct cgroup_case cgroup_cases[] = {
    {"0::/system.slice/nagios.service\n", "nagios.service", 0},
    {"0::/system.slice/system-getty.slice/getty@tty1.service\n", "getty@tty1.service", 0},
    {"0::/system.slice/systemd-fsck@dev-disk-by\\x2duuid-1234.service\n",
     "systemd-fsck@dev-disk-by\\x2duuid-1234.service", 0},
    {"0::/init.scope\n", "init.scope", 0},
    {"0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope", 0},
    /* A user manager's units: the user unit below the manager, named with the manager so that
     * a user's "nagios.service" never passes for the system's. */
    {"0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n",
     "user@1000.service/backup.service", 0},
    {"0::/user.slice/user-1000.slice/user@1000.service/app.slice/nagios.service\n",
     "user@1000.service/nagios.service", 0},
    {"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/"
     "vte-spawn-1f2e.scope\n",
     "user@1000.service/vte-spawn-1f2e.scope", 0},
    {"0::/user.slice/user-1000.slice/user@1000.service/init.scope\n", "user@1000.service", 0},
    {"0::/user.slice/user-1000.slice/user@1000.service\n", "user@1000.service", 0},
    /* A unit with Delegate= names its own sub-cgroups: they are not believed. */
    {"0::/system.slice/builder.service/nagios.service\n", "builder.service", 0},
    {"0::/system.slice/docker-4f1c.scope/payload\n", "docker-4f1c.scope", 0},
    /* Hybrid: both hierarchies; v2 first. */
    {"12:pids:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n"
     "0::/system.slice/cron.service\n",
     "cron.service", 0},
    /* Legacy: only the name=systemd hierarchy knows the unit. */
    {"11:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n",
     "cron.service", 0},
    /* Hybrid with an empty v2 path: the v1 one still names the unit. */
    {"1:name=systemd:/system.slice/cron.service\n0::/\n", "cron.service", 0},
    /* No unit. */
    {"0::/\n", NULL, -ENOENT},
    {"9:name=systemd:/\n8:pids:/\n4:memory:/process_api/f02132089b25766713d3fddc56b7cae1\n0::/\n",
     NULL, -ENOENT},
    {"0::/system.slice\n", NULL, -ENOENT},
    {"0::/docker/4f1c9a\n", NULL, -ENOENT},
    {"0::/machine.slice/machine-qemu.scope/../x.service\n", NULL, -EINVAL},
    {"", NULL, -ENOENT},
    /* Outside our cgroup namespace, torn, or not the format at all. */
    {"0::/../../system.slice/nagios.service\n", NULL, -EINVAL},
    {"0::/system.slice/nagios.service", NULL, -EINVAL},
    /* A second line for one hierarchy is not the kernel's (it refuses '\n' in names). */
    {"0::/user.slice/user-1000.slice/user@1000.service/x\n0::/system.slice/nagios.service\n", NULL,
     -EINVAL},
    {"1:name=systemd:/a.service\n1:name=systemd:/b.service\n", NULL, -EINVAL},
    {"garbage\n", NULL, -EINVAL},
    {"0:/system.slice/nagios.service\n", NULL, -EINVAL},
    {"0::/system.slice//nagios.service\n", NULL, -EINVAL},
    {"0::system.slice/nagios.service\n", NULL, -EINVAL},
    {"0::/system.slice/na gios.service\n", NULL, -ENOENT},
    {"0::/system.slice/.service\n", NULL, -ENOENT},
    {"0::/system.slice/nagios.socket\n", NULL, -ENOENT},
};

static void test_cgroup_lines(void)
{
        char unit[PEER_UNIT_MAX], what[200], long_line[600];

        for (size_t i = 0; i < sizeof(cgroup_cases) / sizeof(cgroup_cases[0]); i++) {
                const struct cgroup_case *c = &cgroup_cases[i];
                int r;

                memset(unit, 0, sizeof(unit));
                r = peer_unit_from_cgroup(c->text, strlen(c->text), unit);
                snprintf(what, sizeof(what), "cgroup case %zu: %.120s", i, c->text);
                /* One TAP line per case. */
                for (char *nl = strchr(what, '\n'); nl; nl = strchr(nl, '\n'))
                        *nl = '|';
                if (c->unit) {
                        is_int(r, 0, what);
                        is_str(unit, c->unit, what);
                } else {
                        is_int(r, c->error, what);
                }
        }

        /* A unit name at systemd's limit and one past it. */
        snprintf(long_line, sizeof(long_line), "0::/system.slice/%0*d.service\n", 255 - 8, 0);
        is_int(peer_unit_from_cgroup(long_line, strlen(long_line), unit), 0,
               "a unit name of 255 characters");
        is_int(strlen(unit), 255, "kept whole");
        snprintf(long_line, sizeof(long_line), "0::/system.slice/%0*d.service\n", 256 - 8, 0);
        is_int(peer_unit_from_cgroup(long_line, strlen(long_line), unit), -ENOENT,
               "a unit name of 256 characters is not one");
}

static void test_stat_lines(void)
{
        uint64_t t = 0;
        const char *normal = "1471 (node) S 1 1471 1471 0 -1 4194560 3076 0 0 0 12 3 0 0 20 0 11 "
                             "0 98765 1152921504 12345 18446744073709551615 1 1 0 0 0\n";
        const char *hostile = "1471 (a) S 1 2 3) R 1 1471 1471 0 -1 4194560 3076 0 0 0 12 3 0 0 "
                              "20 0 11 0 4242 1152921504\n";

        is_int(peer_start_time_from_stat(normal, strlen(normal), &t), 0, "a stat line parses");
        is_int(t, 98765, "start time is field 22");
        /* comm is chosen by the process: it may hold ") " and digits to mislead a parser. */
        is_int(peer_start_time_from_stat(hostile, strlen(hostile), &t), 0,
               "a comm holding \") R 1\" parses");
        is_int(t, 4242, "fields count from the last ')'");
        ok(peer_start_time_from_stat("1 (x) S 1 2 3\n", 14, &t) < 0, "a short line is refused");
        ok(peer_start_time_from_stat("no parenthesis", 14, &t) < 0, "garbage is refused");
        ok(peer_start_time_from_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5 1\n", 48,
                                     &t) < 0,
           "a negative start time is refused");
}

static void test_exe_links(void)
{
        static const struct {
                const char *target;
                bool usable;
        } cases[] = {
            {"/usr/bin/node", true},
            {"/usr/lib/nagios/plugins/notify-by-mail", true},
            {"/opt/caf\xc3\xa9/bin/x", true},
            {"/usr/bin/node (deleted)", false},
            {"/tmp/x (deleted)", false},
            {"relative/path", false},
            {"", false},
            {"/usr/bin/a\nb", false},
            {"/usr/bin/\x7f", false},
            {"/usr/bin/\xff\xfe", false},
        };

        char what[64];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                snprintf(what, sizeof(what), "exe link case %zu is %s", i,
                         cases[i].usable ? "usable" : "refused");
                is_int(peer_exe_link_is_usable(cases[i].target, strlen(cases[i].target)),
                       cases[i].usable, what);
        }
}

static char *own_exe(void)
{
        static char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

        if (n <= 0)
                abort();
        exe[n] = 0;
        return exe;
}

/* What peer_identify() must find as the unit of this very process. */
static int own_unit(char unit[static PEER_UNIT_MAX])
{
        static char text[PEER_CGROUP_FILE_MAX];
        int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, text, sizeof(text)) : -1;

        if (fd >= 0)
                close(fd);
        if (n < 0)
                abort();
        return peer_unit_from_cgroup(text, (size_t)n, unit);
}

static bool have_peerpidfd;

static void test_live_peer(void)
{
        int sv[2];
        struct peer p = {0};
        char unit[PEER_UNIT_MAX];
        bool has_unit = own_unit(unit) == 0;
        int r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        is_int(peer_credentials_from_socket(sv[0], &p), 0, "credentials of a socketpair peer");
        is_int(p.uid, getuid(), "uid");
        is_int(p.gid, getgid(), "gid");
        is_int(p.pid, getpid(), "pid");
        ok(p.exe == NULL && p.unit == NULL, "no exe or unit before identifying");

        r = peer_identify_with(sv[0], &p, PEER_PIDFD_FROM_SOCKET);
        have_peerpidfd = r != -ENOPROTOOPT;
        if (have_peerpidfd) {
                is_int(r, PEER_PIDFD_FROM_SOCKET, "SO_PEERPIDFD identifies a live peer");
                is_str(p.exe, own_exe(), "exe by SO_PEERPIDFD");
                if (has_unit)
                        is_str(p.unit, unit, "unit by SO_PEERPIDFD");
                else
                        ok(p.unit == NULL, "no unit by SO_PEERPIDFD (the test runs in none)");
        } else {
                printf("# the kernel refuses SO_PEERPIDFD: only the pidfd_open() path is tested\n");
        }

        r = peer_identify_with(sv[0], &p, PEER_PIDFD_BY_PID);
        is_int(r, PEER_PIDFD_BY_PID, "pidfd_open() identifies a live peer");
        is_str(p.exe, own_exe(), "exe by pidfd_open()");
        if (has_unit)
                is_str(p.unit, unit, "unit by pidfd_open()");
        else
                ok(p.unit == NULL, "no unit by pidfd_open() (the test runs in none)");

        r = peer_identify(sv[0], &p);
        is_int(r, have_peerpidfd ? PEER_PIDFD_FROM_SOCKET : PEER_PIDFD_BY_PID,
               "peer_identify() prefers SO_PEERPIDFD where the kernel has it");
        peer_clear(&p);
        ok(p.exe == NULL && p.unit == NULL, "peer_clear() frees and forgets");
        peer_clear(&p);
        peer_clear(NULL);
        close(sv[0]);
        close(sv[1]);
}

static int listen_socket(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
                abort();
        return fd;
}

/* A child that connects and exits at once; the parent reaps it (or leaves a zombie) and only
 * then accepts, as a busy broker might. */
static void test_gone_peer(const char *socket_path, bool reap)
{
        int listener = listen_socket(socket_path), fd;
        struct peer p = {0};
        const char *what = reap ? "an exited, reaped peer" : "an exited, unreaped (zombie) peer";
        char label[160];
        pid_t child;

        child = fork();
        if (child < 0)
                abort();
        if (child == 0) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int c = socket(AF_UNIX, SOCK_STREAM, 0);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
                _exit(c >= 0 && connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : 1);
        }
        if (reap) {
                int status;
                if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0)
                        abort();
        } else {
                /* Wait for the exit without reaping. */
                siginfo_t info;
                memset(&info, 0, sizeof(info));
                if (waitid(P_PID, (id_t)child, &info, WEXITED | WNOWAIT) < 0)
                        abort();
        }
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                abort();
        snprintf(label, sizeof(label), "credentials of %s", what);
        is_int(peer_credentials_from_socket(fd, &p), 0, label);
        is_int(p.pid, child, "its pid is the one that connected");
        if (have_peerpidfd) {
                snprintf(label, sizeof(label), "SO_PEERPIDFD: %s is not identified", what);
                ok(peer_identify_with(fd, &p, PEER_PIDFD_FROM_SOCKET) < 0, label);
                ok(p.exe == NULL && p.unit == NULL, "exe and unit unknown (SO_PEERPIDFD)");
        }
        snprintf(label, sizeof(label), "pidfd_open(): %s is not identified", what);
        ok(peer_identify_with(fd, &p, PEER_PIDFD_BY_PID) < 0, label);
        ok(p.exe == NULL && p.unit == NULL, "exe and unit unknown (pidfd_open)");
        peer_clear(&p);
        close(fd);
        close(listener);
        unlink(socket_path);
        if (!reap)
                (void)waitpid(child, NULL, 0);
}

/* Mutated table lines through both parsers: no crash, no read past the length (ASan builds),
 * a unit only ever of the unit alphabet. Deterministic, so a failure repeats. */

/* What a found unit may look like: systemd's unit-name alphabet, and at most one "/", only after
 * a user manager ("user@1000.service/backup.service"). */
static bool unit_name_is_plausible(const char *unit)
{
        static const char alphabet[] =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@";
        const char *slash = strchr(unit, '/');
        size_t len = strlen(unit);

        if (len == 0 || len >= PEER_UNIT_MAX)
                return false;
        if (slash && (strncmp(unit, "user@", 5) != 0 || strchr(slash + 1, '/') ||
                      strspn(slash + 1, alphabet) != strlen(slash + 1) ||
                      strspn(unit, alphabet) != (size_t)(slash - unit)))
                return false;
        return slash || strspn(unit, alphabet) == len;
}

static void test_parsers_on_mutations(void)
{
        static const char alphabet[] = "0:/\n.-@\\ )(xs";
        uint64_t state = 0x9e3779b97f4a7c15ULL;
        char text[512], unit[PEER_UNIT_MAX];
        size_t bad_units = 0;
        uint64_t t;

        for (unsigned round = 0; round < 200000; round++) {
                const char *seed = cgroup_cases[round % ELEMENTS(cgroup_cases)].text;
                size_t len = strlen(seed);

                if (len > sizeof(text))
                        len = sizeof(text);
                memcpy(text, seed, len);
                for (unsigned m = 0; m < 3 && len > 0; m++) {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        size_t at = (size_t)(state % len);
                        switch ((state >> 32) % 3) {
                        case 0:
                                text[at] = alphabet[(state >> 40) % (sizeof(alphabet) - 1)];
                                break;
                        case 1:
                                len = at; /* truncate */
                                break;
                        default:
                                text[at] = (char)(state >> 48);
                                break;
                        }
                }
                /* Exactly len bytes, no terminator: an overread shows under ASan. */
                char *exact = malloc(len ? len : 1);
                if (!exact)
                        abort();
                memcpy(exact, text, len);
                if (peer_unit_from_cgroup(exact, len, unit) == 0 && !unit_name_is_plausible(unit))
                        bad_units++;
                (void)peer_start_time_from_stat(exact, len, &t);
                free(exact);
        }
        is_int(bad_units, 0, "200000 mutated cgroup files: every unit found is a unit name");
}

/* A live peer that handed its socket to another process and closed its own copy: SO_PEERPIDFD
 * still names it, the pidfd_open() path (which must rule out pid reuse) does not. */
static void test_handed_off_peer(const char *socket_path)
{
        int listener = listen_socket(socket_path), fd, gate[2], closed[2];
        struct peer p = {0};
        pid_t child;
        char byte;

        if (pipe2(gate, O_CLOEXEC) < 0 || pipe2(closed, O_CLOEXEC) < 0)
                abort();
        child = fork();
        if (child < 0)
                abort();
        if (child == 0) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int c = socket(AF_UNIX, SOCK_STREAM, 0);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
                if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        _exit(1);
                close(c); /* as if handed on: this process no longer holds it */
                close(gate[1]);
                close(closed[1]);               /* tells the parent it is closed */
                (void)!read(gate[0], &byte, 1); /* stay alive until the parent is done */
                _exit(0);
        }
        close(gate[0]);
        close(closed[1]);
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 || read(closed[0], &byte, 1) != 0)
                abort();
        close(closed[0]);
        is_int(peer_credentials_from_socket(fd, &p), 0, "credentials of a peer that let go");
        if (have_peerpidfd) {
                is_int(peer_identify_with(fd, &p, PEER_PIDFD_FROM_SOCKET), PEER_PIDFD_FROM_SOCKET,
                       "SO_PEERPIDFD identifies the live peer that connected");
                is_str(p.exe, own_exe(), "its exe");
        }
        ok(peer_identify_with(fd, &p, PEER_PIDFD_BY_PID) < 0,
           "pidfd_open(): a process not holding the peer socket is not taken for the peer");
        ok(p.exe == NULL, "exe unknown");
        peer_clear(&p);
        close(gate[1]);
        (void)waitpid(child, NULL, 0);
        close(fd);
        close(listener);
        unlink(socket_path);
}

/* A broker without ptrace access to the peer (another uid, no CAP_SYS_PTRACE) cannot read its
 * exe: unknown, never a guess. The unit comes from the world-readable cgroup file. */
static void test_peer_of_other_uid(void)
{
        int sv[2], status;
        pid_t child;
        char unit[PEER_UNIT_MAX];
        bool has_unit = own_unit(unit) == 0;

        if (getuid() != 0) {
                printf("ok %d - # SKIP needs root to drop to another uid\n", ++tap_count);
                return;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        child = fork();
        if (child < 0)
                abort();
        if (child == 0) {
                struct peer p = {0};
                int code = 0;

                if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(10);
                if (peer_credentials_from_socket(sv[0], &p) < 0 || p.uid != 0)
                        _exit(11);
                /* The pidfd_open() path must see the peer's descriptors, which needs ptrace
                 * access as well: there even the unit stays unknown. */
                (void)peer_identify_with(
                    sv[0], &p, have_peerpidfd ? PEER_PIDFD_FROM_SOCKET : PEER_PIDFD_BY_PID);
                if (p.exe)
                        code |= 1;
                if (has_unit && have_peerpidfd ? !p.unit || strcmp(p.unit, unit) != 0
                                               : p.unit != NULL)
                        code |= 2;
                peer_clear(&p);
                _exit(code);
        }
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
                abort();
        is_int(WEXITSTATUS(status) & ~2, 0,
               "exe of a root peer is unknown to an unprivileged reader");
        is_int(WEXITSTATUS(status) & ~1, 0,
               "its unit is read from the cgroup file (with SO_PEERPIDFD), or unknown");
        close(sv[0]);
        close(sv[1]);
}

/* A peer whose uid, gid and supplementary groups all differ (root only: the child drops to uid
 * 65534, gid 1 and groups 2 and 4242): each comes back in its own field, none in another's. */
static void test_peer_uid_differs_from_gid(void)
{
        static const gid_t groups[] = {2, 4242};
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct peer p = {0};
        socklen_t sa_len;
        int listener, fd, gate[2], status;
        bool has_2 = false, has_4242 = false, has_other = false;
        pid_t child;

        if (getuid() != 0) {
                printf("ok %d - # SKIP needs root to become uid 65534 gid 1\n", ++tap_count);
                return;
        }
        /* An abstract address: no file whose permissions the dropped child would need. */
        snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "credbroker-test-peer-%d",
                 (int)getpid());
        sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa.sun_path + 1));
        listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sa_len) < 0 ||
            listen(listener, 1) < 0 || pipe2(gate, O_CLOEXEC) < 0)
                abort();
        child = fork();
        if (child < 0)
                abort();
        if (child == 0) {
                int c;
                char byte;

                close(gate[1]);
                if (setgroups(ELEMENTS(groups), groups) < 0 || setgid(1) < 0 || setuid(65534) < 0)
                        _exit(10);
                c = socket(AF_UNIX, SOCK_STREAM, 0);
                if (c < 0 || connect(c, (struct sockaddr *)&sa, sa_len) < 0)
                        _exit(11);
                (void)!read(gate[0], &byte, 1); /* stay connected until the parent has looked */
                _exit(0);
        }
        close(gate[0]);
        fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                abort();
        is_int(peer_credentials_from_socket(fd, &p), 0, "credentials of a uid 65534 gid 1 peer");
        is_int(p.uid, 65534, "its uid is 65534 (not its gid)");
        is_int(p.gid, 1, "its gid is 1 (not its uid)");
        for (size_t i = 0; i < p.n_groups; i++) {
                has_2 = has_2 || p.groups[i] == 2;
                has_4242 = has_4242 || p.groups[i] == 4242;
                has_other = has_other || (p.groups[i] != 2 && p.groups[i] != 4242);
        }
        ok(has_2 && has_4242 && !has_other, "its supplementary groups are 2 and 4242, no more");
        close(gate[1]);
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
                abort();
        is_int(WEXITSTATUS(status), 0, "the child dropped to uid 65534 gid 1 and connected");
        peer_clear(&p);
        close(fd);
        close(listener);
}

static double usec_between(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) * 1e6 + (double)(b->tv_nsec - a->tv_nsec) / 1e3;
}

/* Not a pass/fail test: prints what capture costs per connection, for docs/benchmark.md. */
static void measure(void)
{
        enum { ROUNDS = 2000 };
        struct timespec t0, t1, t2, t3;
        struct peer p = {0};
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < ROUNDS; i++)
                (void)peer_credentials_from_socket(sv[0], &p);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int i = 0; i < ROUNDS && have_peerpidfd; i++)
                (void)peer_identify_with(sv[0], &p, PEER_PIDFD_FROM_SOCKET);
        clock_gettime(CLOCK_MONOTONIC, &t2);
        for (int i = 0; i < ROUNDS; i++)
                (void)peer_identify_with(sv[0], &p, PEER_PIDFD_BY_PID);
        clock_gettime(CLOCK_MONOTONIC, &t3);
        printf("# per connection: credentials %.1f us; exe+unit via SO_PEERPIDFD %.1f us, via "
               "pidfd_open %.1f us\n",
               usec_between(&t0, &t1) / ROUNDS, usec_between(&t1, &t2) / ROUNDS,
               usec_between(&t2, &t3) / ROUNDS);
        ok(p.exe != NULL, "still identified after many rounds (no descriptor leak)");
        peer_clear(&p);
        close(sv[0]);
        close(sv[1]);
}

int main(void)
{
        char dir[] = "/tmp/test-peer.XXXXXX";
        char socket_path[64];
        int fds_before, fds_after;

        log_set_level(LOG_LEVEL_ERROR);
        if (!mkdtemp(dir))
                abort();
        snprintf(socket_path, sizeof(socket_path), "%s/s", dir);
        fds_before = dup(0);
        close(fds_before);

        test_cgroup_lines();
        test_stat_lines();
        test_exe_links();
        test_parsers_on_mutations();
        test_live_peer();
        test_gone_peer(socket_path, true);
        test_gone_peer(socket_path, false);
        test_handed_off_peer(socket_path);
        test_peer_of_other_uid();
        test_peer_uid_differs_from_gid();
        measure();

        /* Every pidfd and /proc descriptor was closed: the lowest free one is the same. */
        fds_after = dup(0);
        close(fds_after);
        is_int(fds_after, fds_before, "no descriptor leaked");
        rmdir(dir);
        return done_testing();
}
