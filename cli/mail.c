/* Mail addresses as the CLI takes them; see mail.h. */
#include "mail.h"

#include <string.h>

bool mail_address_is_valid(const char *address, bool ascii_only)
{
        size_t n = strlen(address);
        const char *at = strchr(address, '@');

        if (n == 0 || n > MAIL_ADDRESS_MAX || !at || at == address || !at[1] || strchr(at + 1, '@'))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)address[i];

                if (c <= 0x20 || c == 0x7f || (ascii_only && c > 0x7f) ||
                    strchr("<>()[]\\,;:\"", c))
                        return false;
        }
        return true;
}
