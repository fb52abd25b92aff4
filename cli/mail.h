/* Mail addresses as credbroker send and credbroker account test --send-to take them. */
#pragma once

#include <stdbool.h>

/* Longest mail address taken. */
#define MAIL_ADDRESS_MAX 320

/* One plain address: local@domain, at most MAIL_ADDRESS_MAX bytes, no controls, spaces or
 * <>()[]\,;:" characters; ascii_only also refuses bytes above 0x7f. */
bool mail_address_is_valid(const char *address, bool ascii_only);
