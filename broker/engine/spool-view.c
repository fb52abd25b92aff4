/* The administrator's view of the spool (admin/admin-queue.c) and its figures for monitoring
 * (metrics): list, show, flush, delete. */
#include "build-config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "spool-internal.h"

static struct spool_entry_view view_of(const struct spool_entry *e)
{
        uint64_t now = now_boottime_usec(), wall = now_realtime_usec() / USEC_PER_SEC;

        return (struct spool_entry_view){
            .id = e->id,
            .profile = e->profile,
            .message_id = e->message_id,
            .state = e->state,
            .uid = e->uid,
            .size = e->size,
            .n_recipients = e->n_recipients,
            .queued_at = e->queued_at,
            .next_at = e->state != SPOOL_QUEUED ? 0
                       : e->next_usec > now     ? wall + (e->next_usec - now) / USEC_PER_SEC
                                                : wall,
            .attempts = e->attempts,
            .reason = e->reason,
        };
}

void spool_foreach(struct spool *s, void (*fn)(const struct spool_entry_view *v, void *userdata),
                   void *userdata)
{
        for (struct spool_entry *e = s->entries; e; e = e->next) {
                struct spool_entry_view v = view_of(e);
                fn(&v, userdata);
        }
        for (struct spool_entry *e = s->failed; e; e = e->next) {
                struct spool_entry_view v = view_of(e);
                fn(&v, userdata);
        }
}

static struct spool_entry *find(struct spool_entry *list, const char *id)
{
        for (; list; list = list->next)
                if (strcmp(list->id, id) == 0)
                        return list;
        return NULL;
}

int spool_lookup(struct spool *s, const char *id, struct spool_entry_view *ret)
{
        struct spool_entry *e = find(s->entries, id);

        if (!e)
                e = find(s->failed, id);
        if (!e)
                return -ENOENT;
        *ret = view_of(e);
        return 0;
}

/* A held message goes back into queue/ first: its file is still in inflight/. */
static void unheld(struct spool *s, struct spool_entry *e, int result)
{
        if (result < 0)
                return;
        e->state = SPOOL_QUEUED;
        e->next_usec = 0;
        e->reason[0] = 0;
        if (e->deleted)
                (void)spool_delete(s, e->id);
}

static bool flush_one(struct spool *s, struct spool_entry *e)
{
        if (e->moving)
                return false;
        if (e->state == SPOOL_HELD) {
                log_notice("Spool: %s released by the administrator.", e->id);
                return spool_move(s, e, SPOOL_DIR_INFLIGHT, SPOOL_DIR_QUEUE, unheld) == 0;
        }
        if (e->state != SPOOL_QUEUED)
                return false;
        e->next_usec = 0;
        e->token_retried = false;
        return true;
}

int spool_flush(struct spool *s, const char *id)
{
        int n = 0;

        for (struct spool_entry *e = s->entries; e; e = e->next)
                if ((!id || strcmp(e->id, id) == 0) && flush_one(s, e))
                        n++;
        if (id && n == 0 && !find(s->entries, id))
                return find(s->failed, id) ? -EBUSY : -ENOENT;
        spool_deliver_due(s);
        return n;
}

static void deleted(struct spool *s, struct spool_entry *e, int result)
{
        if (result < 0) {
                e->deleted = false;
                return;
        }
        if (e->state == SPOOL_FAILED) {
                for (struct spool_entry **l = &s->failed; *l; l = &(*l)->next)
                        if (*l == e) {
                                *l = e->next;
                                s->bytes -= e->size <= s->bytes ? e->size : s->bytes;
                                s->count -= s->count > 0;
                                break;
                        }
        } else {
                spool_unlink_entry(s, e);
        }
        spool_audit(s, e, "mail.deleted", "deleted by the administrator");
        spool_entry_free(e);
}

int spool_delete(struct spool *s, const char *id)
{
        struct spool_entry *e = find(s->entries, id);
        enum spool_dir from = SPOOL_DIR_QUEUE;

        if (!e) {
                e = find(s->failed, id);
                from = SPOOL_DIR_FAILED;
        }
        if (!e)
                return -ENOENT;
        if (e->state == SPOOL_RUNNING || e->moving)
                return -EBUSY;
        if (e->state == SPOOL_HELD)
                from = SPOOL_DIR_INFLIGHT;
        e->deleted = true;
        return spool_move(s, e, from, _SPOOL_DIR_MAX, deleted);
}

void spool_figures(struct spool *s, struct spool_figures *ret)
{
        uint64_t wall = now_realtime_usec() / USEC_PER_SEC;

        *ret = (struct spool_figures){.bytes = s ? s->bytes : 0};
        if (!s)
                return;
        for (struct spool_entry *e = s->entries; e; e = e->next) {
                ret->queued++;
                if (e->state == SPOOL_QUEUED && e->attempts > 0)
                        ret->deferred++;
                if (e->state == SPOOL_HELD)
                        ret->held++;
                if (e->state == SPOOL_RUNNING)
                        ret->running++;
                if (wall > e->queued_at && wall - e->queued_at > ret->oldest_age_sec)
                        ret->oldest_age_sec = wall - e->queued_at;
        }
        for (struct spool_entry *e = s->failed; e; e = e->next)
                ret->failed++;
}
