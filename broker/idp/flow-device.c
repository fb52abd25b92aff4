/* The device code flow; see flow-device.h. Polling runs on a CLOCK_BOOTTIME timerfd in the
 * broker's loop: a wall-clock step neither hurries nor stalls it, and nothing sleeps. */
#include "flow-device.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "event.h"
#include "idp.h"
#include "grant.h"
#include "json.h"
#include "log.h"

/* Bounds on what the device endpoint may say (Entra: interval 5, expires_in 900). */
#define DEVICE_INTERVAL_DEFAULT   5
#define DEVICE_INTERVAL_MAX       60
#define DEVICE_EXPIRES_IN_DEFAULT 900
#define DEVICE_EXPIRES_IN_MAX     3600
#define DEVICE_TEXT_MAX           1024
#define DEVICE_SLOW_DOWN_STEP     5 /* RFC 8628 §3.5 */

struct device_flow {
        int epfd;
        struct idp *idp;
        struct device_flow_params params;
        char *client_id, *token_endpoint, *scope;
        struct secret *device_code;
        uint32_t interval;      /* seconds between polls */
        uint64_t deadline_usec; /* boottime the code expires */
        struct watch timer;
        bool in_flight; /* a request is out; its callback holds the flow */
        bool cancelled;
        bool done; /* on_done has run */
};

static void timer_free(void *p)
{
        free(p);
}

void device_flow_free(struct device_flow *f)
{
        if (!f)
                return;
        free(f->client_id);
        free(f->token_endpoint);
        free(f->scope);
        secret_free(f->device_code);
        f->device_code = NULL;
        if (f->timer.fd >= 0) {
                int fd = f->timer.fd;
                /* Possibly from inside the timer's own callback: freed after the batch. */
                event_release(f->epfd, &f->timer, f, timer_free);
                close(fd);
                return;
        }
        free(f);
}

/* Calls on_done once; the caller must not touch f afterwards (it may be freed inside). */
static void finish(struct device_flow *f, struct idp_result *result, const char *code,
                   const char *message)
{
        if (f->done)
                return;
        f->done = true;
        f->params.on_done(result, code, message, f->params.userdata);
}

static int arm(struct device_flow *f, uint32_t seconds)
{
        struct itimerspec spec = {.it_value.tv_sec = seconds};

        return timerfd_settime(f->timer.fd, 0, &spec, NULL) < 0 ? -errno : 0;
}

static void on_poll_answer(struct idp_result *result, void *userdata)
{
        struct device_flow *f = userdata;
        const char *error = result->error;

        f->in_flight = false;
        if (f->cancelled) {
                finish(f, NULL, "sign_in_failed",
                       "Sign-in abandoned: the administrator's connection closed.");
                return;
        }
        if (result->outcome == IDP_OK) {
                finish(f, result, NULL, NULL);
                return;
        }
        if (strcmp(error, "authorization_pending") == 0 || strcmp(error, "slow_down") == 0 ||
            result->outcome == IDP_TRANSIENT) {
                if (strcmp(error, "slow_down") == 0 &&
                    f->interval + DEVICE_SLOW_DOWN_STEP <= DEVICE_INTERVAL_MAX)
                        f->interval += DEVICE_SLOW_DOWN_STEP;
                /* A 429 or 5xx: not before what the server asked. */
                uint32_t wait =
                    result->retry_after > f->interval ? result->retry_after : f->interval;
                if (now_boottime_usec() + (uint64_t)wait * USEC_PER_SEC > f->deadline_usec) {
                        finish(f, NULL, "sign_in_failed",
                               "Sign-in failed: the code expired before anyone signed in with "
                               "it: run the command again.");
                        return;
                }
                if (arm(f, wait) < 0)
                        finish(f, NULL, "internal", "The polling timer failed.");
                return;
        }
        /* Declined, expired, bad code, or a configuration error: the caller says which. */
        finish(f, result, NULL, NULL);
}

static void poll_now(struct device_flow *f)
{
        struct secret *form = NULL;
        int r;

        r = grant_form_device_code(f->client_id, f->device_code, f->params.generic, &form);
        if (r == 0)
                r = idp_post_token_request(f->idp, f->token_endpoint, &form, on_poll_answer, f);
        secret_free(form);
        if (r < 0) {
                /* The transfer table may be full for a moment: try again next interval. */
                if (arm(f, f->interval) < 0)
                        finish(f, NULL, "internal", "The polling timer failed.");
                return;
        }
        f->in_flight = true;
}

static void on_timer(struct watch *w, uint32_t events)
{
        struct device_flow *f =
            (struct device_flow *)((char *)w - offsetof(struct device_flow, timer));
        uint64_t expirations;

        (void)!read(w->fd, &expirations, sizeof(expirations));
        if (f->done || f->in_flight)
                return;
        if (f->cancelled) {
                finish(f, NULL, "sign_in_failed",
                       "Sign-in abandoned: the administrator's connection closed.");
                return;
        }
        if (now_boottime_usec() >= f->deadline_usec) {
                finish(f, NULL, "sign_in_failed",
                       "Sign-in failed: the code expired before anyone signed in with it: run "
                       "the command again.");
                return;
        }
        poll_now(f);
}

static const char *bounded_string(const cJSON *json, const char *key)
{
        const char *s = json_get_string(json, key);

        if (!s || !*s || strlen(s) > DEVICE_TEXT_MAX ||
            !utf8_is_valid((const uint8_t *)s, strlen(s)))
                return NULL;
        return s;
}

static uint32_t bounded_number(const cJSON *json, const char *key, uint32_t fallback, uint32_t max)
{
        uint64_t v;

        if (json_get_u64(json, key, &v) < 0 || v == 0)
                return fallback;
        return v > max ? max : (uint32_t)v;
}

/* The user's instructions, checked, as the first admin reply. */
static cJSON *stage_reply(const cJSON *json, uint32_t expires_in, uint32_t interval, bool generic)
{
        const char *user_code = bounded_string(json, "user_code");
        const char *uri = bounded_string(json, "verification_uri");
        const char *complete = bounded_string(json, "verification_uri_complete");
        const char *message = bounded_string(json, "message");
        char fallback[DEVICE_TEXT_MAX + 256];
        cJSON *reply;

        /* Entra's older endpoint says verification_url. */
        if (!uri && !generic)
                uri = bounded_string(json, "verification_url");
        if (!user_code || !uri || strncmp(uri, "https://", 8) != 0)
                return NULL;
        if (!message) {
                /* A standards-only server sends no sentence: make Microsoft's. */
                snprintf(fallback, sizeof(fallback),
                         "To sign in, use a web browser to open the page %s and enter the code "
                         "%s to authenticate.",
                         uri, user_code);
                message = fallback;
        }
        reply = cJSON_CreateObject();
        if (!reply || !cJSON_AddNumberToObject(reply, "v", 1) ||
            !cJSON_AddTrueToObject(reply, "ok") ||
            !cJSON_AddStringToObject(reply, "stage", "device_code") ||
            !cJSON_AddStringToObject(reply, "message", message) ||
            !cJSON_AddStringToObject(reply, "user_code", user_code) ||
            !cJSON_AddStringToObject(reply, "verification_uri", uri) ||
            (complete && strncmp(complete, "https://", 8) == 0 &&
             !cJSON_AddStringToObject(reply, "verification_uri_complete", complete)) ||
            !json_add_uint(reply, "expires_in", expires_in) ||
            !json_add_uint(reply, "interval", interval)) {
                cJSON_Delete(reply);
                return NULL;
        }
        return reply;
}

static void on_device_code(const struct idp_raw_response *response, void *userdata)
{
        struct device_flow *f = userdata;
        _cleanup_json_ cJSON *json = NULL;
        _cleanup_json_ cJSON *stage = NULL;
        const char *code;
        uint32_t expires_in;

        f->in_flight = false;
        if (response->failure || f->cancelled) {
                char message[256];
                snprintf(message, sizeof(message),
                         "The device authorization endpoint did not answer: %s.",
                         response->failure ? response->failure : "cancelled");
                finish(f, NULL, "unavailable", message);
                return;
        }
        if (response->http_status != 200) {
                /* An OAuth error, classified the way token errors are. */
                struct idp_result result = {0};
                idp_parse_token_response(response->http_status, response->body, response->len,
                                         response->retry_after, &result);
                finish(f, &result, NULL, NULL);
                idp_result_clear(&result);
                return;
        }
        if (json_parse(response->body, response->len, &json) < 0 || !cJSON_IsObject(json)) {
                finish(f, NULL, "unavailable",
                       "The device authorization endpoint's answer is not a JSON object.");
                return;
        }
        code = json_get_string(json, "device_code");
        expires_in =
            bounded_number(json, "expires_in", DEVICE_EXPIRES_IN_DEFAULT, DEVICE_EXPIRES_IN_MAX);
        f->interval =
            bounded_number(json, "interval", DEVICE_INTERVAL_DEFAULT, DEVICE_INTERVAL_MAX);
        stage = stage_reply(json, expires_in, f->interval, f->params.generic);
        if (!code || !token_is_valid(code, strnlen(code, TOKEN_MAX_LEN + 1)) || !stage ||
            secret_new_from(code, strlen(code), &f->device_code) < 0) {
                finish(f, NULL, "unavailable",
                       "The device authorization endpoint's answer lacks a usable device_code, "
                       "user_code or https verification_uri.");
                return;
        }
        /* The device code is a credential until it expires: no copy outside secret memory. */
        explicit_bzero((char *)code, strlen(code));
        f->deadline_usec = now_boottime_usec() + (uint64_t)expires_in * USEC_PER_SEC;
        if (arm(f, f->interval) < 0) {
                finish(f, NULL, "internal", "The polling timer failed.");
                return;
        }
        f->params.on_code(stage, f->params.userdata);
}

int device_flow_start(int epfd, struct idp *idp, const struct device_flow_params *params,
                      struct device_flow **ret)
{
        struct device_flow *f = calloc(1, sizeof(*f));
        struct secret *form = NULL;
        int r;

        if (!f)
                return -ENOMEM;
        f->epfd = epfd;
        f->idp = idp;
        f->params = *params;
        f->timer.fd = -1;
        f->client_id = strdup(params->client_id);
        f->token_endpoint = strdup(params->token_endpoint);
        f->scope = strdup(params->scope);
        if (!f->client_id || !f->token_endpoint || !f->scope) {
                device_flow_free(f);
                return -ENOMEM;
        }
        f->timer.fd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
        if (f->timer.fd < 0) {
                r = -errno;
                device_flow_free(f);
                return r;
        }
        f->timer.fn = on_timer;
        r = event_add(epfd, &f->timer, EPOLLIN);
        if (r == 0)
                r = grant_form_device_authorization(f->client_id, f->scope, &form);
        if (r == 0)
                r = idp_post_form_raw(idp, params->device_endpoint, &form, on_device_code, f);
        secret_free(form);
        if (r < 0) {
                device_flow_free(f);
                return r;
        }
        f->in_flight = true;
        *ret = f;
        return 0;
}

void device_flow_cancel(struct device_flow *f)
{
        f->cancelled = true;
        /* A request in flight ends the flow when it comes back; else end it now. */
        if (!f->in_flight)
                finish(f, NULL, "sign_in_failed",
                       "Sign-in abandoned: the administrator's connection closed.");
}
