/* The journald mirror of the audit log; see audit-journal.h. */
#include "build-config.h"

#include "audit-journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#if HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

#include "json.h"
#include "log.h"
#include "util.h"

static const struct {
        const char *event, *id;
} message_ids[] = {
    {"issue", "b9e85985d89cb04f2936c0916dbaf7d2"},
    {"deny", "d3b11c41958d61cbebd52631bca40a4e"},
    {"rate_limited", "788ecc2437a27b69dbf74ac05634b0aa"},
    {"refresh", "f630f7fa94b305b2b38030a115f80405"},
    {"refresh_failed", "2da4c4dc2e505ac93b72342af41ea14f"},
    {"reauth_required", "03e49d3952d932218fc8cbf09d73de28"},
    {"rotation_failed", "c179a1a8b79c1540e85d06ec459ac7a6"},
    {"refresh_token_stored", "fd6feee4e6792cabf36d48e3c3dd9e7f"},
    {"account_removed", "dabdea1daada8614619991e96456e9c0"},
    {"genesis", "88f0c06da24ac2e3c82fd25340bdcd0d"},
    {"checkpoint", "717fa9e832e18fee577f8b04317f4def"},
    {"file.start", "c867444b429e4859c5c4955423390ca4"},
    {"audit.alarm", "857b31820c47d48f3aa687ccd5c6febf"},
};
#define OTHER_ID "1a6f9e7e03964a7012765fc6aba5354b"

const char *audit_journal_message_id(const char *event)
{
        for (size_t i = 0; event && i < ELEMENTSOF(message_ids); i++)
                if (strcmp(event, message_ids[i].event) == 0)
                        return message_ids[i].id;
        return OTHER_ID;
}

/* deny and alarm: warning (4); checkpoints and chain records: info (6); the rest notice (5). */
static int priority(const char *event, const char *decision)
{
        if ((event && (strcmp(event, "deny") == 0 || strcmp(event, "audit.alarm") == 0 ||
                       strcmp(event, "rate_limited") == 0)) ||
            (decision && strcmp(decision, "allow") != 0))
                return 4;
        if (event && (strcmp(event, "checkpoint") == 0 || strcmp(event, "genesis") == 0 ||
                      strcmp(event, "file.start") == 0))
                return 6;
        return 5;
}

static int add(char **fields, size_t *n, const char *key, const char *value)
{
        if (!value)
                return 0;
        if (*n >= AUDIT_JOURNAL_MAX_FIELDS)
                return -E2BIG;
        /* Journal fields are one value each: a newline would still be kept by the native
         * protocol, so the note's lines stay as they are. */
        if (asprintf(&fields[*n], "%s=%s", key, value) < 0)
                return -ENOMEM;
        (*n)++;
        return 0;
}

void audit_journal_fields_free(char **fields, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
}

int audit_journal_fields(const char *line, size_t len, uint64_t seq, const char *hash_hex,
                         char *fields[static AUDIT_JOURNAL_MAX_FIELDS], size_t *ret_n)
{
        _cleanup_json_ cJSON *json = NULL;
        const cJSON *peer;
        const char *event, *decision, *outcome, *profile, *account, *who = NULL;
        char message[512], num[21], uid[21] = "";
        size_t n = 0;
        int r;

        r = json_parse(line, len, &json);
        if (r < 0)
                return r;
        event = json_get_string(json, "event");
        decision = json_get_string(json, "decision");
        outcome = decision ? decision : json_get_string(json, "reason");
        profile = json_get_string(json, "profile");
        account = json_get_string(json, "account");
        peer = cJSON_GetObjectItemCaseSensitive(json, "peer");
        if (cJSON_IsObject(peer)) {
                uint64_t u;
                if (json_get_u64(peer, "uid", &u) == 0)
                        (void)format_u64(u, uid);
                who = json_get_string(peer, "exe");
        }
        snprintf(message, sizeof(message), "audit %s%s%s%s%s%s%s%s%s (seq %" PRIu64 ")",
                 event ? event : "record", *uid ? " uid " : "", uid, who ? " exe " : "",
                 who ? who : "", profile ? " profile " : "", profile ? profile : "",
                 account ? " account " : "", account ? account : "", seq);
        (void)format_u64(seq, num);
        r = add(fields, &n, "MESSAGE", message);
        r = r < 0 ? r : add(fields, &n, "MESSAGE_ID", audit_journal_message_id(event));
        r = r < 0 ? r
                  : add(fields, &n, "PRIORITY",
                        priority(event, decision) == 4   ? "4"
                        : priority(event, decision) == 6 ? "6"
                                                         : "5");
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_SEQ", num);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_LINE_HASH", hash_hex);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_EVENT", event);
        if (cJSON_IsObject(peer)) {
                r = r < 0 ? r : add(fields, &n, "CREDBROKER_PEER_UID", *uid ? uid : NULL);
                r = r < 0 ? r
                          : add(fields, &n, "CREDBROKER_PEER_UNIT", json_get_string(peer, "unit"));
                r = r < 0 ? r : add(fields, &n, "CREDBROKER_PEER_EXE", who);
        }
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_PROFILE", profile);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_ACCOUNT", account);
        r = r < 0 ? r : add(fields, &n, "CREDBROKER_OUTCOME", outcome);
        r = r < 0 ? r
                  : add(fields, &n, "CREDBROKER_TOKEN_FINGERPRINT",
                        json_get_string(json, "token_fingerprint"));
        r = r < 0 ? r
                  : add(fields, &n, "CREDBROKER_CHECKPOINT_NOTE", json_get_string(json, "note"));
        if (r < 0) {
                audit_journal_fields_free(fields, n);
                return r;
        }
        *ret_n = n;
        return 0;
}

#if HAVE_SYSTEMD
static void mirror(void *userdata, const char *line, size_t len, uint64_t seq, const char *hash_hex)
{
        char *fields[AUDIT_JOURNAL_MAX_FIELDS];
        struct iovec iov[AUDIT_JOURNAL_MAX_FIELDS];
        size_t n;

        (void)userdata;
        if (audit_journal_fields(line, len, seq, hash_hex, fields, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec){.iov_base = fields[i], .iov_len = strlen(fields[i])};
        /* Best effort: no journald (a container, a test) fails at once and is ignored. */
        (void)sd_journal_sendv(iov, (int)n);
        audit_journal_fields_free(fields, n);
}
#endif

void audit_journal_setup(struct audit_options *o)
{
#if HAVE_SYSTEMD
        /* Without journald (a container, a test machine) every record would be parsed and
         * sent for nothing: mirror only when its socket is there at start. */
        if (access("/run/systemd/journal/socket", F_OK) < 0) {
                log_info("journald is not running: the audit log is not mirrored to it.");
                return;
        }
        o->mirror = mirror;
#else
        (void)o;
#endif
}
