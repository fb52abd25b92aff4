/* Binding the broker's Unix sockets safely. */
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

/* A listening, non-blocking socket at path whose mode is 0777 & ~umask_bits from the start.
 * Never replaces another kind of file, nor a socket another process still answers on (the
 * broker refuses to start, naming it). A missing directory is created only when it is the
 * broker's own runtime directory (RUNTIME_DIR); otherwise the error says how to create it.
 * Fills ret_inode so that listen_unix_remove() removes only what this call made. */
int listen_unix(const char *path, mode_t umask_bits, int backlog, ino_t *ret_inode);
/* Unlinks path if it is still the socket listen_unix() made. */
void listen_unix_remove(const char *path, ino_t inode);
