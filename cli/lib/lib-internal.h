/* libcredbroker's internals shared between its files (not installed). Deadlines are absolute
 * CLOCK_MONOTONIC milliseconds, so one deadline can span connect, send, receive and retries. */
#pragma once

#include <stdint.h>

#include "credbroker.h"

#define CB_NO_DEADLINE UINT64_MAX

uint64_t cb_now_ms(void);
/* now + timeout_ms, CB_NO_DEADLINE for timeout_ms < 0. */
uint64_t cb_deadline(int timeout_ms);
/* 0 once past; CB_NO_DEADLINE for none. */
uint64_t cb_remaining_ms(uint64_t deadline);

/* Fills err (when not NULL) and returns error (a negative errno). */
int cb_fail(struct credbroker_error *err, enum credbroker_failure failure, int error);

int cb_connect(const char *path, uint64_t deadline, struct credbroker_conn **ret,
               struct credbroker_error *err);
int cb_send(struct credbroker_conn *c, const cJSON *request, uint64_t deadline,
            struct credbroker_error *err);
int cb_receive(struct credbroker_conn *c, uint64_t deadline, unsigned flags, cJSON **ret,
               struct credbroker_error *err);
