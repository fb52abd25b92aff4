/* The spool's admin operations (docs/admin-protocol.md): queue.list, queue.show {"id"},
 * queue.flush {"id"?}, queue.delete {"id"}. They answer at once from the spool in memory
 * (engine/spool.h); a delete is audited by the spool (mail.deleted). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "admin-queue.h"
#include "admin.h"
#include "broker.h"
#include "json.h"
#include "log.h"
#include "spool.h"

static cJSON *entry_json(const struct spool_entry_view *v)
{
        cJSON *o = cJSON_CreateObject();

        if (o && cJSON_AddStringToObject(o, "id", v->id) &&
            cJSON_AddStringToObject(o, "state", spool_state_to_string(v->state)) &&
            cJSON_AddStringToObject(o, "profile", v->profile) &&
            (!v->message_id || cJSON_AddStringToObject(o, "message_id", v->message_id)) &&
            json_add_uint(o, "uid", v->uid) && json_add_uint(o, "size", v->size) &&
            json_add_uint(o, "recipients", v->n_recipients) &&
            json_add_uint(o, "queued_at", v->queued_at) &&
            (!v->next_at || json_add_uint(o, "next_attempt_at", v->next_at)) &&
            json_add_uint(o, "attempts", v->attempts) &&
            (!v->reason[0] || cJSON_AddStringToObject(o, "reason", v->reason)))
                return o;
        cJSON_Delete(o);
        return NULL;
}

/* One reply must fit a frame: at most this many messages per queue.list, from "offset" on. */
#define QUEUE_LIST_PAGE 100

struct page {
        cJSON *list;
        uint64_t offset, index;
};

static void add_entry(const struct spool_entry_view *v, void *userdata)
{
        struct page *p = userdata;
        cJSON *o;

        if (p->index++ < p->offset || p->index > p->offset + QUEUE_LIST_PAGE)
                return;
        o = entry_json(v);
        if (o)
                cJSON_AddItemToArray(p->list, o);
}

static bool spool_ready(struct admin_connection *c)
{
        if (c->broker->spool)
                return true;
        admin_send_error(c, ADMIN_UNAVAILABLE, "The broker has no spool.");
        return false;
}

/* The request's "id": a queue id, or NULL (answered) when it is missing or not one. */
static const char *request_id(struct admin_connection *c, const cJSON *request, bool required)
{
        const char *id = json_get_string(request, "id");

        if (!id && !required && !cJSON_GetObjectItemCaseSensitive(request, "id"))
                return "";
        if (!id || strlen(id) != SPOOL_ID_LEN || strspn(id, "0123456789abcdef") != SPOOL_ID_LEN) {
                admin_send_error(c, ADMIN_BAD_REQUEST, "\"id\" must be a queue id.");
                return NULL;
        }
        return id;
}

void admin_queue_list(struct admin_connection *c, const cJSON *request, const char *account)
{
        _cleanup_json_ cJSON *reply = NULL;
        struct page p = {0};

        if (!spool_ready(c))
                return;
        if (cJSON_GetObjectItemCaseSensitive(request, "offset") &&
            json_get_u64(request, "offset", &p.offset) < 0) {
                admin_send_error(c, ADMIN_BAD_REQUEST, "\"offset\" must be an integer.");
                return;
        }
        reply = admin_reply_new();
        p.list = reply ? cJSON_AddArrayToObject(reply, "messages") : NULL;
        if (p.list)
                spool_foreach(c->broker->spool, add_entry, &p);
        /* total: how many there are; a client asks again from offset + the page's length. */
        admin_send(c, p.list && json_add_uint(reply, "total", p.index) ? reply : NULL);
}

void admin_queue_show(struct admin_connection *c, const cJSON *request, const char *account)
{
        _cleanup_json_ cJSON *reply = NULL;
        struct spool_entry_view v;
        const char *id;
        cJSON *o;

        if (!spool_ready(c) || !(id = request_id(c, request, true)))
                return;
        if (spool_lookup(c->broker->spool, id, &v) < 0) {
                admin_send_error(c, ADMIN_NOT_FOUND, "No such message in the spool.");
                return;
        }
        reply = admin_reply_new();
        o = entry_json(&v);
        if (!reply || !o || !cJSON_AddItemToObject(reply, "message", o)) {
                cJSON_Delete(o);
                admin_send(c, NULL);
                return;
        }
        admin_send(c, reply);
}

void admin_queue_flush(struct admin_connection *c, const cJSON *request, const char *account)
{
        _cleanup_json_ cJSON *reply = NULL;
        const char *id;
        int n;

        if (!spool_ready(c) || !(id = request_id(c, request, false)))
                return;
        n = spool_flush(c->broker->spool, *id ? id : NULL);
        if (n == -ENOENT || n == -EBUSY) {
                admin_send_error(c, ADMIN_NOT_FOUND,
                                 n == -ENOENT ? "No such message in the spool."
                                              : "The message has failed for good; delete it.");
                return;
        }
        log_info("Spool flushed by the administrator: %d messages due now.", n);
        reply = admin_reply_new();
        admin_send(c, reply && json_add_uint(reply, "flushed", n > 0 ? (unsigned)n : 0) ? reply
                                                                                        : NULL);
}

void admin_queue_delete(struct admin_connection *c, const cJSON *request, const char *account)
{
        const char *id;
        int r;

        if (!spool_ready(c) || !(id = request_id(c, request, true)))
                return;
        r = spool_delete(c->broker->spool, id);
        if (r == -ENOENT)
                admin_send_error(c, ADMIN_NOT_FOUND, "No such message in the spool.");
        else if (r == -EBUSY)
                admin_send_error(c, ADMIN_UNAVAILABLE,
                                 "The message is being delivered right now; try again.");
        else if (r < 0)
                admin_send_error(c, ADMIN_INTERNAL, "The message could not be deleted.");
        else {
                _cleanup_json_ cJSON *reply = admin_reply_new();
                admin_send(c, reply);
        }
}
