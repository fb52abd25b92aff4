/* libcredbroker: the client socket's mail operations (docs/mail-spool.md): token.drop after
 * Graph refused a token, and mail.submit, which hands a whole message to the broker's spool in
 * chunks on one connection. */
#include "build-config.h"

#include "lib-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "json.h"
#include "wire.h"

#define SUBMIT_TIMEOUT_MS 30000
#define CHUNK_RAW         (WIRE_MAIL_CHUNK_MAX / 4 * 3) /* 36 KiB: 48 KiB of base64 */

DEFINE_TRIVIAL_CLEANUP_FUNC(struct credbroker_conn *, credbroker_close)

int credbroker_token_drop(const char *socket, const char *profile, const char *access_token,
                          struct credbroker_error *err)
{
        _cleanup_json_ cJSON *request = credbroker_request_new("token.drop"), *reply = NULL;
        _cleanup_(credbroker_closep) struct credbroker_conn *c = NULL;
        uint64_t deadline = cb_deadline(SUBMIT_TIMEOUT_MS);
        int r;

        if (!request || !cJSON_AddStringToObject(request, "profile", profile))
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -ENOMEM);
        r = cb_connect(socket, deadline, &c, err);
        if (r == 0)
                r = credbroker_send_secret(c, request, "access_token", access_token,
                                           strlen(access_token), SUBMIT_TIMEOUT_MS, err);
        if (r == 0)
                r = cb_receive(c, deadline, 0, &reply, err);
        if (r < 0)
                return r;
        return credbroker_reply_error(reply, err);
}

/* One request and its reply on c; a refusal is an error. The uid's request budget
 * ([broker] request_rate_per_uid) counts every chunk: a "rate_limited" refusal was not acted
 * on, so the same frame is sent again after the broker's retry_after, within the deadline. */
static int exchange(struct credbroker_conn *c, const cJSON *request, uint64_t deadline, cJSON **ret,
                    struct credbroker_error *err)
{
        for (;;) {
                cJSON *reply = NULL;
                int r = cb_send(c, request, deadline, err);

                if (r == 0)
                        r = cb_receive(c, deadline, 0, &reply, err);
                if (r == 0)
                        r = credbroker_reply_error(reply, err);
                if (r == 0 && ret)
                        *ret = reply;
                else
                        cJSON_Delete(reply);
                if (r != -EBUSY || err->failure != CREDBROKER_FAILURE_REFUSED)
                        return r;
                uint64_t wait_ms = (err->retry_after ? err->retry_after : 1) * 1000;
                if (wait_ms >= cb_remaining_ms(deadline))
                        return r;
                (void)nanosleep(&(struct timespec){.tv_sec = (time_t)(wait_ms / 1000)}, NULL);
        }
}

static int send_chunks(struct credbroker_conn *c, const uint8_t *msg, size_t len,
                       struct credbroker_error *err)
{
        _cleanup_free_ char *b64 = malloc(WIRE_MAIL_CHUNK_MAX + 1);
        int r = 0;

        if (!b64)
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -ENOMEM);
        for (size_t off = 0; off < len && r == 0; off += CHUNK_RAW) {
                _cleanup_json_ cJSON *chunk = credbroker_request_new("mail.chunk");
                size_t n = len - off < CHUNK_RAW ? len - off : CHUNK_RAW;

                wire_base64_encode(msg + off, n, b64);
                if (!chunk || !cJSON_AddStringToObject(chunk, "data", b64))
                        return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -ENOMEM);
                r = exchange(c, chunk, cb_deadline(SUBMIT_TIMEOUT_MS), NULL, err);
        }
        return r;
}

int credbroker_mail_submit(const char *socket, const char *profile, const uint8_t *msg, size_t len,
                           const char *message_id, size_t n_recipients, char **ret_queue_id,
                           struct credbroker_error *err)
{
        _cleanup_json_ cJSON *begin = credbroker_request_new("mail.submit"), *reply = NULL;
        _cleanup_json_ cJSON *commit = credbroker_request_new("mail.commit");
        _cleanup_(credbroker_closep) struct credbroker_conn *c = NULL;
        struct credbroker_error local;
        const char *id;
        int r;

        if (!err)
                err = &local;
        if (!begin || !commit || !cJSON_AddStringToObject(begin, "profile", profile) ||
            !json_add_uint(begin, "size", len) ||
            !json_add_uint(begin, "recipients", n_recipients) ||
            (message_id && !cJSON_AddStringToObject(begin, "message_id", message_id)))
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -ENOMEM);
        if (len == 0)
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -EINVAL);
        r = cb_connect(socket, cb_deadline(SUBMIT_TIMEOUT_MS), &c, err);
        if (r == 0)
                r = exchange(c, begin, cb_deadline(SUBMIT_TIMEOUT_MS), NULL, err);
        if (r == 0)
                r = send_chunks(c, msg, len, err);
        /* The broker answers once the message is on disk (fsync): give it time. */
        if (r == 0)
                r = exchange(c, commit, cb_deadline(4 * SUBMIT_TIMEOUT_MS), &reply, err);
        if (r < 0)
                return r;
        id = json_get_string(reply, "queue_id");
        if (!id)
                return cb_fail(err, CREDBROKER_FAILURE_MALFORMED, -EBADMSG);
        if (ret_queue_id && !(*ret_queue_id = strdup(id)))
                return cb_fail(err, CREDBROKER_FAILURE_REQUEST, -ENOMEM);
        return 0;
}
