/* Human-readable output helpers; see display.h. */
#include "display.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

void display_text(FILE *f, const char *s)
{
        display_text_max(f, s, SIZE_MAX);
}

void display_text_max(FILE *f, const char *s, size_t max)
{
        const unsigned char *end = (const unsigned char *)s + strnlen(s, max);

        for (const unsigned char *p = (const unsigned char *)s; p < end; p++) {
                if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f) {
                        fputc('?', f);
                } else if (*p == 0xc2 && p + 1 < end && p[1] >= 0x80 && p[1] <= 0x9f) {
                        /* U+0080..U+009F, the C1 controls (CSI among them) in UTF-8. */
                        fputc('?', f);
                        p++;
                } else {
                        fputc(*p, f);
                }
        }
        if (s[end - (const unsigned char *)s] != 0)
                fputs("...", f);
}

void display_countdown(uint64_t seconds, char out[static 24])
{
        if (seconds >= 3600)
                snprintf(out, 24, "%llu:%02u:%02u", (unsigned long long)(seconds / 3600),
                         (unsigned)(seconds / 60 % 60), (unsigned)(seconds % 60));
        else
                snprintf(out, 24, "%u:%02u", (unsigned)(seconds / 60), (unsigned)(seconds % 60));
}

void display_time(uint64_t unix_seconds, char out[static 32])
{
        time_t t = (time_t)unix_seconds;
        struct tm tm;

        if (unix_seconds == 0 || !gmtime_r(&t, &tm) ||
            strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                snprintf(out, 32, "-");
}

void display_relative(uint64_t unix_seconds, uint64_t now, char out[static 32])
{
        uint64_t d = unix_seconds > now ? unix_seconds - now : now - unix_seconds;
        const char *unit = "minute";
        uint64_t n = d / 60;

        if (d < 60) {
                snprintf(out, 32, "just now");
                return;
        }
        if (d >= 2 * 86400) {
                n = d / 86400;
                unit = "day";
        } else if (d >= 2 * 3600) {
                n = d / 3600;
                unit = "hour";
        }
        if (unix_seconds > now)
                snprintf(out, 32, "in %llu %s%s", (unsigned long long)n, unit, n == 1 ? "" : "s");
        else
                snprintf(out, 32, "%llu %s%s ago", (unsigned long long)n, unit, n == 1 ? "" : "s");
}
