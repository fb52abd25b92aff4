/* credbroker setup: the PKCS#11 side. A new SoftHSM2 token initialised through the PKCS#11 API
 * (C_InitToken, C_InitPIN: the PINs never reach a child's argv or environment), and the list of
 * tokens a module offers when no URI was given. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include "secret.h"

#define SETUP_PIN_LENGTH 32

/* len random characters of [A-Za-z0-9] in a new secret. */
int setup_random_pin(size_t len, struct secret **ret);

/* Initialises the one uninitialised token (SoftHSM2's free slot) of module with label and the SO
 * PIN, then sets its user PIN. SOFTHSM2_CONF must already name a fresh token directory. */
int setup_init_token(const char *module, const char *label, struct secret *so_pin,
                     struct secret *user_pin);

/* Prints one line per initialised token of module: its PKCS#11 URI and what it is. Returns the
 * number of tokens (0 when none), or a negative errno. */
int setup_list_tokens(const char *module, FILE *out);
