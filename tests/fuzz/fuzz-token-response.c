/* Fuzz target for what the token endpoint sends back (untrusted network input): the first two
 * bytes pick the HTTP status, the rest is the body. Whatever comes in, the result must be
 * classified, secrets kept only on success, the message safe for a log line, and a granted
 * "scope" mapped for the reports (grant_granted_scope). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grant.h"
#include "idp.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GRAPH_SCOPES "https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/User.Read"

static void check(bool cond, const char *what)
{
        if (!cond) {
                fprintf(stderr, "fuzz-token-response: invariant broken: %s\n", what);
                abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const long statuses[] = {200, 200, 200, 400, 401, 429, 500, 503};
        struct idp_result r = {0};
        static bool initialised;

        if (!initialised) {
                json_init();
                initialised = true;
        }
        if (size < 1)
                return 0;
        idp_parse_token_response(statuses[data[0] % 8], data + 1, size - 1, data[0] >> 3, &r);
        check(r.outcome == IDP_OK || r.outcome == IDP_TRANSIENT || r.outcome == IDP_REAUTH ||
                  r.outcome == IDP_CONFIG || r.outcome == IDP_SCOPES_REFUSED,
              "an outcome is chosen");
        if (r.outcome == IDP_OK) {
                check(r.access_token && secret_len(r.access_token) > 0, "success has a token");
                check(r.expires_in > 0, "success has a lifetime");
                for (size_t i = 0; i < secret_len(r.access_token); i++) {
                        unsigned char c = (unsigned char)secret_str(r.access_token)[i];
                        check(c > 0x20 && c < 0x7f && c != '"' && c != '\\',
                              "a token is printable ASCII without quotes");
                }
                /* The granted scope as the cache and the reports take it (fuzz-granted-scope
                 * checks the mapping itself). */
                char *granted = NULL;
                int e = grant_granted_scope(GRAPH_SCOPES, r.scope, &granted);
                check(e == 0 || e == -ENOMEM, "the granted scope is mapped or out of memory");
                check(!granted || (r.scope && granted[0] != 0), "a mapped scope is not empty");
                free(granted);
        } else {
                check(!r.access_token && !r.refresh_token, "no secret kept on failure");
                check(memchr(r.message, 0, sizeof(r.message)) != NULL, "message terminated");
                check(strlen(r.message) > 0, "a failure says why");
                for (const char *p = r.message; *p; p++)
                        check(*p != '\n' && *p != '\r', "a message is one line");
        }
        idp_result_clear(&r);
        return 0;
}
