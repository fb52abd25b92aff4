/* The spool's admin operations (admin-queue.c), rows of admin-ops.c's table. */
#pragma once

struct admin_connection;
struct cJSON;

void admin_queue_list(struct admin_connection *c, const struct cJSON *request, const char *account);
void admin_queue_show(struct admin_connection *c, const struct cJSON *request, const char *account);
void admin_queue_flush(struct admin_connection *c, const struct cJSON *request,
                       const char *account);
void admin_queue_delete(struct admin_connection *c, const struct cJSON *request,
                        const char *account);
