/* Leveled logging to stderr. One write() per line so lines from concurrent processes don't mix. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static enum log_level max_level = LOG_LEVEL_INFO;
static const char *ident = "credbroker";
static int journal = -1;

void log_set_level(enum log_level level)
{
        max_level = level;
}

void log_set_ident(const char *name)
{
        ident = name;
}

int log_parse_level(const char *name, enum log_level *ret)
{
        static const struct {
                const char *name;
                enum log_level level;
        } names[] = {
            {"error", LOG_LEVEL_ERROR},   {"warning", LOG_LEVEL_WARNING},
            {"notice", LOG_LEVEL_NOTICE}, {"info", LOG_LEVEL_INFO},
            {"debug", LOG_LEVEL_DEBUG},
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(name, names[i].name) == 0) {
                        *ret = names[i].level;
                        return 0;
                }
        return -EINVAL;
}

static const char *level_word(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_ERROR:
                return "error";
        case LOG_LEVEL_WARNING:
                return "warning";
        case LOG_LEVEL_NOTICE:
                return "notice";
        case LOG_LEVEL_INFO:
                return "info";
        default:
                return "debug";
        }
}

bool log_level_enabled(enum log_level level)
{
        return level <= max_level;
}

int log_internal(enum log_level level, int error, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = log_internalv(level, error, fmt, ap);
        va_end(ap);
        return r;
}

int log_internalv(enum log_level level, int error, const char *fmt, va_list ap)
{
        char line[2048];
        int n;

        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;

        /* systemd sets JOURNAL_STREAM when stderr is the journal: it wants "<N>" priority
         * prefixes and stamps time and program itself. */
        if (journal < 0)
                journal = secure_getenv("JOURNAL_STREAM") != NULL;

        if (journal)
                n = snprintf(line, sizeof(line), "<%d>", (int)level);
        else
                n = snprintf(line, sizeof(line), "%s: %s: ", ident, level_word(level));
        if (n < 0)
                return -error;

        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        if (m < 0)
                return -error;
        size_t len = (size_t)n + (size_t)m;
        if (len > sizeof(line) - 2)
                len = sizeof(line) - 2;
        if (error) {
                int k = snprintf(line + len, sizeof(line) - len - 1, ": %s", strerror(error));
                if (k > 0)
                        len += (size_t)k;
                if (len > sizeof(line) - 2)
                        len = sizeof(line) - 2;
        }
        line[len++] = '\n';
        (void)!write(STDERR_FILENO, line, len);
        return -error;
}
