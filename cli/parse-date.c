/* Strict calendar-date parsing; see parse-date.h. */
#include "parse-date.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static int digits(const char *s, size_t n, int *ret)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

int parse_iso_date(const char *text, uint64_t *ret)
{
        struct tm tm = {0}, back;
        int year, month, day;
        time_t t;

        if (strlen(text) != 10 || text[4] != '-' || text[7] != '-' || digits(text, 4, &year) < 0 ||
            digits(text + 5, 2, &month) < 0 || digits(text + 8, 2, &day) < 0 || year < 1970 ||
            month < 1 || month > 12 || day < 1 || day > 31)
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = month - 1;
        tm.tm_mday = day;
        t = timegm(&tm);
        /* timegm() normalises 2027-02-30 (and tm with it) into March; comparing with what was
         * typed refuses it. */
        if (t < 0 || !gmtime_r(&t, &back) || back.tm_year != year - 1900 ||
            back.tm_mon != month - 1 || back.tm_mday != day)
                return -EINVAL;
        *ret = (uint64_t)t;
        return 0;
}
