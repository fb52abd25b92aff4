/* Reading a password: from the terminal with echo off, or one line of standard input. Never from
 * argv or the environment; always into secret memory. */
#pragma once

#include <stddef.h>

#include "secret.h"

/* Reads one line from fd into a new secret, byte by byte so nothing after the line is consumed.
 * The newline (and a CR before it) is dropped. -EFBIG when the line is longer than max,
 * -ENODATA when it is empty, -EIO on end of input before any byte. */
int password_read_line(int fd, size_t max, struct secret **ret);

/* Prints prompt on /dev/tty, turns echo off, reads one line, and restores the terminal on every
 * way out, SIGINT, SIGTERM, SIGHUP and SIGQUIT included (the signal is then raised again).
 * -ENXIO when there is no controlling terminal. */
int password_read_tty(const char *prompt, size_t max, struct secret **ret);
