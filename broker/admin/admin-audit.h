/* The audit log's admin operations (docs/admin-protocol.md): audit.checkpoint, audit.rotate and
 * audit.key, rows of admin-ops.c's table. */
#pragma once

struct admin_connection;
struct cJSON;

void admin_audit_checkpoint(struct admin_connection *c, const struct cJSON *request,
                            const char *account);
void admin_audit_rotate(struct admin_connection *c, const struct cJSON *request,
                        const char *account);
void admin_audit_key(struct admin_connection *c, const struct cJSON *request, const char *account);
