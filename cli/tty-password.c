/* Password input without echo; see tty-password.h. */
#include "tty-password.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cleanup.h"

int password_read_line(int fd, size_t max, struct secret **ret)
{
        _cleanup_secret_ struct secret *line = NULL;
        bool got_any = false;
        size_t len = 0;
        int r;

        /* Room for the value and one byte more to notice a longer line. */
        r = secret_new(max + 2, &line);
        if (r < 0)
                return r;
        for (;;) {
                /* Straight into secret memory: no stack copy of the byte to wipe. */
                uint8_t *slot;
                ssize_t n;

                if (len == max + 2)
                        return -EFBIG;
                slot = secret_data(line) + len;
                n = read(fd, slot, 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got_any = true;
                if (*slot == '\n') {
                        *slot = 0;
                        break;
                }
                len++;
        }
        if (!got_any)
                return -EIO;
        if (len > 0 && secret_data(line)[len - 1] == '\r')
                len--;
        if (len > max)
                return -EFBIG;
        if (len == 0)
                return -ENODATA;
        r = secret_set_len(line, len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(line);
        return 0;
}

/* What a signal handler needs to put the terminal back. */
static volatile sig_atomic_t restore_fd = -1;
static struct termios saved_termios;

static const int restore_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static void restore_and_reraise(int sig)
{
        if (restore_fd >= 0) {
                (void)tcsetattr(restore_fd, TCSAFLUSH, &saved_termios);
                (void)!write(restore_fd, "\n", 1);
        }
        signal(sig, SIG_DFL);
        raise(sig);
}

int password_read_tty(const char *prompt, size_t max, struct secret **ret)
{
        struct sigaction old_actions[sizeof(restore_signals) / sizeof(restore_signals[0])];
        struct sigaction action = {.sa_handler = restore_and_reraise};
        _cleanup_close_ int fd = -1;
        struct termios quiet;
        int r;

        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -ENXIO;
        if (tcgetattr(fd, &saved_termios) < 0)
                return -ENXIO;
        quiet = saved_termios;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        quiet.c_lflag |= ICANON;

        sigemptyset(&action.sa_mask);
        restore_fd = fd;
        for (size_t i = 0; i < sizeof(restore_signals) / sizeof(restore_signals[0]); i++)
                sigaction(restore_signals[i], &action, &old_actions[i]);
        /* Echo goes off before the prompt shows, so nothing typed ahead is echoed. */
        if (tcsetattr(fd, TCSAFLUSH, &quiet) < 0 || write(fd, prompt, strlen(prompt)) < 0)
                r = -errno;
        else
                r = password_read_line(fd, max, ret);
        (void)tcsetattr(fd, TCSAFLUSH, &saved_termios);
        (void)!write(fd, "\n", 1);
        restore_fd = -1;
        for (size_t i = 0; i < sizeof(restore_signals) / sizeof(restore_signals[0]); i++)
                sigaction(restore_signals[i], &old_actions[i], NULL);
        return r;
}
