/* Small pieces mail_prepare() and mail_build() share (internal to libmail). */
#pragma once

#include <stddef.h>

/* Now as an RFC 5322 date in the local time zone: "Sat, 5 Dec 2026 03:10:00 +0100". */
void mail_format_date(char out[static 64]);
/* A new Message-ID, <32 hex digits@domain>, domain taken from addr (NULL or none: localhost). */
int mail_new_message_id(const char *addr, char **ret);
/* n random lower-case hex digits and a NUL into out (n + 1 bytes). */
int mail_random_hex(char *out, size_t n);
