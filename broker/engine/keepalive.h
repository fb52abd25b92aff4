/* Keep-alive of delegated accounts: a refresh token Microsoft sees unused for 90 days expires
 * (AADSTS700082) and the account then needs an administrator. An account whose refresh token
 * was stored longer than [identity] keepalive_days ago is refreshed, a minute after start and
 * then hourly. */
#pragma once

struct broker;
struct keepalive;

/* Adds the check's timer to the loop; the first check runs a minute later (with keepalive_days
 * 0, as soon as the loop runs). The store worker must be running by then. */
int keepalive_start(struct broker *b, struct keepalive **ret);
/* After the store worker stopped: its last callback has run by then. */
void keepalive_free(struct keepalive *k);
