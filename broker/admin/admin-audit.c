/* audit.checkpoint, audit.rotate, audit.key: see admin-audit.h. The checkpoint's signature is
 * made on the store worker (engine/audit-checkpoint.c); the reply waits for it. */
#include "admin-audit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "admin.h"
#include "audit-checkpoint.h"
#include "audit.h"
#include "broker.h"
#include "json.h"

struct checkpoint_operation {
        struct admin_operation op;
        bool rotate;
};

static void on_checkpoint_done(void *userdata, int r, bool reopened)
{
        struct checkpoint_operation *co = userdata;
        struct broker *b = co->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        uint64_t seq, count;
        bool good;

        if (r < 0) {
                admin_operation_fail(&co->op, ADMIN_UNAVAILABLE,
                                     r == -ECANCELED
                                         ? "The broker is stopping; its final checkpoint "
                                           "seals the log."
                                         : "The audit checkpoint could not be written; the "
                                           "broker's log says why.");
                free(co);
                return;
        }
        reply = admin_reply_new();
        good = reply != NULL;
        if (good && co->rotate)
                good = cJSON_AddBoolToObject(reply, "reopened", reopened) != NULL;
        if (good && audit_last_checkpoint(b->audit, &seq, &count))
                good = json_add_uint(reply, "seq", seq) && json_add_uint(reply, "count", count);
        admin_operation_finish(&co->op, good ? reply : NULL);
        free(co);
}

static void start_checkpoint(struct admin_connection *c, bool rotate)
{
        struct checkpoint_operation *co;

        if (!c->broker->checkpoints) {
                admin_send_error(c, ADMIN_UNAVAILABLE, "The audit log has no checkpoints here.");
                return;
        }
        co = calloc(1, sizeof(*co));
        if (!co) {
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        co->rotate = rotate;
        admin_operation_begin(c, &co->op);
        audit_checkpoint_request(c->broker->checkpoints, rotate, on_checkpoint_done, co);
}

void admin_audit_checkpoint(struct admin_connection *c, const struct cJSON *request,
                            const char *account)
{
        start_checkpoint(c, false);
}

void admin_audit_rotate(struct admin_connection *c, const struct cJSON *request,
                        const char *account)
{
        start_checkpoint(c, true);
}

void admin_audit_key(struct admin_connection *c, const struct cJSON *request, const char *account)
{
        _cleanup_json_ cJSON *reply = NULL;

        if (!c->broker->checkpoints) {
                admin_send_error(c, ADMIN_UNAVAILABLE, "The audit log has no checkpoints here.");
                return;
        }
        reply = admin_reply_new();
        if (reply &&
            !cJSON_AddStringToObject(reply, "key", audit_checkpoint_key(c->broker->checkpoints))) {
                cJSON_Delete(reply);
                reply = NULL;
        }
        admin_send(c, reply);
}
