/* Microsoft's clouds (docs/operations.md, "Clouds and proxies"): each one's authority, Graph
 * base URL and Graph resource (the prefix of Graph's scopes:
 * "https://graph.microsoft.us/Mail.Send"). Shared by the configuration ([identity] cloud), account
 * metadata (an account's "cloud") and whoever builds a default scope. */
#pragma once

#include <stdbool.h>

enum cloud {
        CLOUD_GLOBAL,     /* worldwide, including Microsoft 365 GCC */
        CLOUD_USGOV,      /* Microsoft 365 GCC (moderate): the worldwide endpoints */
        CLOUD_USGOV_HIGH, /* GCC High, US Government L4 */
        CLOUD_DOD,        /* US Government L5 (DoD) */
        CLOUD_CHINA,      /* operated by 21Vianet */
        _CLOUD_MAX,
};

/* "global", "usgov", "usgov-high", "dod" or "china"; -EINVAL for anything else. */
int cloud_from_string(const char *s, enum cloud *ret);
const char *cloud_to_string(enum cloud c);
/* https://login.microsoftonline.com and the like, without a trailing slash. */
const char *cloud_authority(enum cloud c);
/* https://graph.microsoft.com and the like: the base URL, which is also the resource. */
const char *cloud_graph(enum cloud c);

/* The Graph resource whose scopes a Graph base URL takes: the URL's scheme and host when that
 * host is one of the clouds' Graph hosts (a graph setting of https://graph.microsoft.us means
 * graph.microsoft.us scopes), else the fallback cloud's (a relay, a private endpoint or a test
 * emulator serves the cloud's Graph under another name). A static string. */
const char *cloud_graph_resource(const char *graph_url, enum cloud fallback);
