/* The device code flow (RFC 8628; microsoft-identity.md "Device code"): ask the device
 * authorization endpoint for a code, hand the user's instructions to the caller, then poll the
 * token endpoint on the loop's timers, never faster than the server's interval. */
#pragma once

#include <stdbool.h>

struct cJSON;
struct device_flow;
struct idp;
struct idp_result;

struct device_flow_params {
        const char *client_id;
        const char *device_endpoint;
        const char *token_endpoint;
        const char *scope;
        bool generic; /* not Microsoft: no message in the answer, no client_info */
        /* The first reply for the admin: {"v":1,"ok":true,"stage":"device_code",...}. */
        void (*on_code)(struct cJSON *stage, void *userdata);
        /* Exactly once: code NULL and result a token response, or code an admin error code
         * (sign_in_failed, needs_config, unavailable) and message a sentence. The flow must
         * not be freed inside. */
        void (*on_done)(struct idp_result *result, const char *code, const char *message,
                        void *userdata);
        void *userdata;
};

int device_flow_start(int epfd, struct idp *idp, const struct device_flow_params *params,
                      struct device_flow **ret);
/* Stops polling; on_done runs (sign_in_failed) once a request in flight has come back. */
void device_flow_cancel(struct device_flow *f);
void device_flow_free(struct device_flow *f);
