/* What the `credbroker account` subcommands share: opening the token, checking account names,
 * reading a secret from standard input, printing times. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secret.h"
#include "store.h"

/* 0 or a sysexits.h code after printing why. */
int account_open_store(const char *config_option, struct store **ret);

/* Prints a clear message and returns false for a name the store would refuse. */
bool account_name_check(const char *name);

/* Reads standard input (at most max bytes, one trailing newline dropped) into a secret, so the
 * value is never on argv or in the environment. -EFBIG when longer, -ENODATA when empty. */
int account_read_secret_stdin(size_t max, struct secret **ret);

/* "2026-11-28 09:00:00 UTC"; "unknown" for 0. */
void account_format_time(uint64_t unix_seconds, char out[static 32]);

int account_show(int argc, char **argv);
int account_keygen(int argc, char **argv);
int account_cert(int argc, char **argv);
int account_add(int argc, char **argv);
int account_login(int argc, char **argv);
int account_test(int argc, char **argv);
