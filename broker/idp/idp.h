/* Talking to the identity provider's token endpoint, as engine/ and admin/ use it: the HTTP
 * client (http.h) and what a token response means (token-response.h). The request bodies of
 * each grant are in grant.h, the device code flow in flow-device.h, the AADSTS table in
 * aadsts.h; see README.md. */
#pragma once

#include "http.h"
#include "token-response.h"
