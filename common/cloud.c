/* Microsoft's clouds; see cloud.h. The endpoints are Microsoft's ("Microsoft Graph national
 * cloud deployments"): Microsoft 365 GCC keeps the worldwide endpoints, GCC High uses
 * login.microsoftonline.us and graph.microsoft.us, DoD the same authority and
 * dod-graph.microsoft.us, 21Vianet login.chinacloudapi.cn and microsoftgraph.chinacloudapi.cn. */
#include "cloud.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"

static const struct {
        const char *name, *authority, *graph;
} clouds[_CLOUD_MAX] = {
    [CLOUD_GLOBAL] = {"global", "https://login.microsoftonline.com", "https://graph.microsoft.com"},
    [CLOUD_USGOV] = {"usgov", "https://login.microsoftonline.com", "https://graph.microsoft.com"},
    [CLOUD_USGOV_HIGH] = {"usgov-high", "https://login.microsoftonline.us",
                          "https://graph.microsoft.us"},
    [CLOUD_DOD] = {"dod", "https://login.microsoftonline.us", "https://dod-graph.microsoft.us"},
    [CLOUD_CHINA] = {"china", "https://login.chinacloudapi.cn",
                     "https://microsoftgraph.chinacloudapi.cn"},
};

int cloud_from_string(const char *s, enum cloud *ret)
{
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(clouds); i++)
                if (strcmp(s, clouds[i].name) == 0) {
                        *ret = (enum cloud)i;
                        return 0;
                }
        return -EINVAL;
}

const char *cloud_to_string(enum cloud c)
{
        return (size_t)c < ELEMENTSOF(clouds) ? clouds[c].name : "unknown";
}

const char *cloud_authority(enum cloud c)
{
        return clouds[(size_t)c < ELEMENTSOF(clouds) ? c : CLOUD_GLOBAL].authority;
}

const char *cloud_graph(enum cloud c)
{
        return clouds[(size_t)c < ELEMENTSOF(clouds) ? c : CLOUD_GLOBAL].graph;
}

const char *cloud_graph_resource(const char *graph_url, enum cloud fallback)
{
        if (graph_url && strncasecmp(graph_url, "https://", 8) == 0) {
                const char *host = graph_url + 8;
                size_t len = strcspn(host, "/?#");

                /* The host as written, without a default port; any other port is no Graph's. */
                if (len > 4 && strncmp(host + len - 4, ":443", 4) == 0)
                        len -= 4;
                for (size_t i = 0; i < ELEMENTSOF(clouds); i++) {
                        const char *known = clouds[i].graph + 8;
                        if (strlen(known) == len && strncasecmp(host, known, len) == 0)
                                return clouds[i].graph;
                }
        }
        return cloud_graph(fallback);
}
