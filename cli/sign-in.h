/* Following a sign-in on the admin socket (account.add, account.login): the device code and its
 * countdown, then the broker's outcome. */
#pragma once

#include "admin-client.h"

/* Reads the replies of a sign-in request already sent on c until the "done" reply or an error.
 * Prints Microsoft's device-code message at once and a countdown while the broker polls. Returns
 * 0 or the exit code after printing why. */
int sign_in_follow(struct admin_conn *c);
