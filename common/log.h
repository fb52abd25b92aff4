/* Leveled logging to stderr (journald reads it when run by systemd). Never pass a secret. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
        LOG_LEVEL_ERROR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

void log_set_level(enum log_level level);
/* Program name shown before each line when stderr is not the journal. */
void log_set_ident(const char *ident);
int log_parse_level(const char *name, enum log_level *ret);

/* Returns -abs(error) (or 0 when error is 0), so callers can "return log_error_errno(r, ...)".
 * The convention is the negative errno everywhere: log_error_errno(r, ...) with r < 0 from a
 * function of ours, log_error_errno(-errno, ...) after a failed libc call.
 * A non-zero error appends ": <strerror(error)>" to the line (ISO C has no "%m"). */
int log_internal(enum log_level level, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int log_internalv(enum log_level level, int error, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Whether a line of that level would be written at all. */
bool log_level_enabled(enum log_level level);

#define log_debug(...)   log_internal(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_internal(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_internal(LOG_LEVEL_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_internal(LOG_LEVEL_ERROR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_internal(LOG_LEVEL_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...)   log_internal(LOG_LEVEL_ERROR, (e), __VA_ARGS__)
