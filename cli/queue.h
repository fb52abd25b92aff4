/* The broker's mail spool for the administrator (docs/mail-spool.md): what `credbroker queue`
 * runs, and `credbroker sendmail -bp` (list) and `-q` (flush) call. Each talks to the admin
 * socket (root or the broker's user), prints, and returns a sysexits code. admin_socket: the
 * --admin-socket option or NULL; config: the --config option or NULL. */
#pragma once

int queue_list(const char *admin_socket, const char *config);
int queue_show(const char *admin_socket, const char *config, const char *id);
/* id NULL: every queued or held message is due now. */
int queue_flush(const char *admin_socket, const char *config, const char *id);
int queue_delete(const char *admin_socket, const char *config, const char *id);
