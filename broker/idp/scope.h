/* Scope strings between a scope set (the policy's scope key, space separated) and what the
 * token endpoint is asked for and answers (microsoft-identity.md, the token endpoint). Pure
 * string work. */
#pragma once

#include <stdbool.h>

/* The scope of a client_credentials request for a scope set: Microsoft wants exactly one
 * {resource}/.default (the resource of the first scope; bare names are Graph's, whose resource
 * in the account's cloud is graph_resource, "https://graph.microsoft.us" for instance); a
 * generic server gets the scopes as they are. malloc()ed. */
int grant_app_only_scope(const char *scope_key, const char *graph_resource, bool generic,
                         char **ret);

/* The granted scope as the broker reports it: Entra answers with short names for Graph
 * ("Mail.Send") and adds openid, profile and email; each short name becomes the requested
 * scope it abbreviates, the OpenID scopes are left out. *ret is NULL (the scope key is then
 * reported) when nothing is left or granted is NULL. malloc()ed. */
int grant_granted_scope(const char *scope_key, const char *granted, char **ret);
