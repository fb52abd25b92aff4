/* Mail through Microsoft Graph; see mail.h. */
#include "mail.h"

#include <errno.h>
#include <string.h>

#include "client.h"
#include "graph.h"
#include "json.h"

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

int mail_add_recipient(cJSON *recipients, const char *address)
{
        cJSON *entry = cJSON_CreateObject();
        cJSON *email = entry ? cJSON_AddObjectToObject(entry, "emailAddress") : NULL;

        if (!email || !cJSON_AddStringToObject(email, "address", address) ||
            !cJSON_AddItemToArray(recipients, entry)) {
                cJSON_Delete(entry);
                return -ENOMEM;
        }
        return 0;
}

int mail_send(const struct config *config, const char *mailbox, const cJSON *token_reply,
              const cJSON *document)
{
        char *text = cJSON_PrintUnformatted(document);
        int r;

        if (!text)
                return EXIT_SOFTWARE;
        r = graph_send_mail(&(struct graph_request){
            .graph_base = graph_base_of(token_reply, config->graph_url),
            .ca_bundle = config->ca_bundle,
            .mailbox = mailbox,
            .access_token = json_get_string(token_reply, "access_token"),
            .body = text,
        });
        json_free_string(text);
        return r;
}
