/* Mail through Microsoft Graph with a token the broker handed out: what credbroker send and
 * credbroker account test --send-to share. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "config.h"

/* Longest mail address taken. */
#define MAIL_ADDRESS_MAX 320

/* One plain address: local@domain, at most MAIL_ADDRESS_MAX bytes, no controls, spaces or
 * <>()[]\,;:" characters; ascii_only also refuses bytes above 0x7f. */
bool mail_address_is_valid(const char *address, bool ascii_only);

/* Appends {"emailAddress":{"address":address}} to a Graph recipient array: 0 or -ENOMEM. */
int mail_add_recipient(cJSON *recipients, const char *address);

/* Sends document (Graph's sendMail JSON) as mailbox (NULL: the token's own) with the access token
 * of the broker's token reply, to the Graph of config. 0 when Graph accepted it, else a sysexits
 * code after printing why. */
int mail_send(const struct config *config, const char *mailbox, const cJSON *token_reply,
              const cJSON *document);
