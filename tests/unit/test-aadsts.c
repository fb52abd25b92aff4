/* Unit tests for the AADSTS table: every code microsoft-identity.md names is there, in the right
 * class, with guidance that names what to change. */
#include <string.h>

#include "aadsts.h"
#include "tap.h"

static const struct {
        uint32_t code;
        enum idp_outcome want;
        const char *guidance_mentions;
} cases[] = {
    {50076, IDP_REAUTH, "sign"},
    {50079, IDP_REAUTH, "enrol"},
    {700082, IDP_REAUTH, "90 days"},
    {70008, IDP_REAUTH, "sign"},
    {50173, IDP_REAUTH, "sign"},
    {70043, IDP_REAUTH, "sign"},
    {65001, IDP_CONFIG, "admin consent"},
    {53003, IDP_CONFIG, "conditional access"},
    {7000218, IDP_CONFIG, "Allow public client flows"},
    {700025, IDP_CONFIG, "public client"},
    {7000215, IDP_CONFIG, "add a new secret"},
    {7000222, IDP_CONFIG, "add a new secret"},
    {700016, IDP_CONFIG, "client id"},
    {90002, IDP_CONFIG, "tenant"},
    {9001023, IDP_CONFIG, "/common"},
    {50196, IDP_TRANSIENT, "backing off"},
    {50126, IDP_REAUTH, "password hash sync"},
    {50126, IDP_REAUTH, "AllowCloudPasswordValidation"},
    {700027, IDP_CONFIG, "RS256"},
};

int main(void)
{
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct aadsts_entry *e = aadsts_find(cases[i].code);

                ok(e != NULL, "the code is in the table");
                if (!e)
                        continue;
                is_int(e->code, cases[i].code, "the entry is the code's");
                is_int(e->outcome, cases[i].want, "classified as microsoft-identity.md says");
                ok(strstr(e->guidance, cases[i].guidance_mentions) != NULL,
                   cases[i].guidance_mentions);
                ok(strchr(e->guidance, '\n') == NULL && strlen(e->guidance) < 200,
                   "guidance is one line that fits an idp_result message");
        }
        /* Loop detection lifts after minutes: a one-second retry only extends it. */
        ok(aadsts_retry_after_min(50196) >= 120, "50196 waits minutes, not seconds");
        ok(aadsts_find(0) == NULL, "0 is no code");
        ok(aadsts_find(12345) == NULL, "an unknown code is left to the OAuth error");
        return done_testing();
}
