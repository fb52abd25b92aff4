/* Dates, random identifiers; see mail-util.h. */
#include "mail-util.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void mail_format_date(char out[static 64])
{
        static const char days[][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char months[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        time_t now = time(NULL);
        struct tm tm = {0};
        long off;

        /* Month and day names by hand: the C library's follow the locale. */
        if (!localtime_r(&now, &tm))
                gmtime_r(&now, &tm);
        off = tm.tm_gmtoff / 60;
        snprintf(out, 64, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

int mail_random_hex(char *out, size_t n)
{
        uint8_t rnd[64];

        if (n > 2 * sizeof(rnd) || gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof(rnd)) < 0)
                return -EIO;
        for (size_t k = 0; k < n; k++)
                out[k] = "0123456789abcdef"[(rnd[k / 2] >> (k % 2 ? 0 : 4)) & 15];
        out[n] = 0;
        return 0;
}

int mail_new_message_id(const char *addr, char **ret)
{
        const char *domain = addr ? strrchr(addr, '@') : NULL;
        char hex[33];
        int r = mail_random_hex(hex, 32);

        if (r < 0)
                return r;
        if (asprintf(ret, "<%s@%.200s>", hex, domain && domain[1] ? domain + 1 : "localhost") < 0)
                return -ENOMEM;
        return 0;
}
