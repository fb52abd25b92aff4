/* Unit tests for the journald mirror of the audit log (issue 12): the fields each record gets,
 * and that the writer hands every record, with its seq and line hash, to the mirror. */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit-journal.h"
#include "audit.h"
#include "json.h"
#include "log.h"
#include "tap.h"

static char dir[] = "/tmp/test-audit-journal.XXXXXX";

/* The value of KEY= among fields, or NULL. */
static const char *field(char **fields, size_t n, const char *key)
{
        size_t len = strlen(key);

        for (size_t i = 0; i < n; i++)
                if (strncmp(fields[i], key, len) == 0 && fields[i][len] == '=')
                        return fields[i] + len + 1;
        return NULL;
}

static void test_fields(void)
{
        static const char issue[] =
            "{\"v\":1,\"boot_id\":\"00\",\"event\":\"issue\",\"peer\":{\"uid\":1000,\"gid\":1000,"
            "\"pid\":7,\"exe\":\"/usr/bin/"
            "job\",\"unit\":\"backup.service\"},\"profile\":\"alerts\","
            "\"account\":\"ops\",\"decision\":\"allow\",\"rule\":\"alerts:3\","
            "\"token_fingerprint\":\"0123456789abcdef\",\"seq\":5,\"time\":\"t\",\"prev\":\"p\"}";
        static const char deny[] = "{\"v\":1,\"event\":\"deny\",\"peer\":{\"uid\":1001},"
                                   "\"profile\":\"payroll\",\"decision\":\"deny\",\"seq\":6}";
        static const char checkpoint[] = "{\"v\":1,\"event\":\"checkpoint\",\"count\":7,"
                                         "\"note\":\"credbroker/x\\n7\\nh=\\n\",\"seq\":7}";
        char *f[AUDIT_JOURNAL_MAX_FIELDS];
        size_t n;

        is_int(audit_journal_fields(issue, strlen(issue), 5, "ab", f, &n), 0, "an issue record");
        is_str(field(f, n, "MESSAGE_ID"), audit_journal_message_id("issue"), "its MESSAGE_ID");
        is_str(field(f, n, "PRIORITY"), "5", "notice");
        is_str(field(f, n, "CREDBROKER_SEQ"), "5", "seq");
        is_str(field(f, n, "CREDBROKER_LINE_HASH"), "ab", "line hash");
        is_str(field(f, n, "CREDBROKER_PEER_UID"), "1000", "peer uid");
        is_str(field(f, n, "CREDBROKER_PEER_UNIT"), "backup.service", "peer unit");
        is_str(field(f, n, "CREDBROKER_PEER_EXE"), "/usr/bin/job", "peer exe");
        is_str(field(f, n, "CREDBROKER_PROFILE"), "alerts", "profile");
        is_str(field(f, n, "CREDBROKER_ACCOUNT"), "ops", "account");
        is_str(field(f, n, "CREDBROKER_OUTCOME"), "allow", "outcome");
        is_str(field(f, n, "CREDBROKER_TOKEN_FINGERPRINT"), "0123456789abcdef", "fingerprint");
        ok(field(f, n, "MESSAGE") && strstr(field(f, n, "MESSAGE"), "uid 1000"),
           "a one-line MESSAGE naming the uid");
        audit_journal_fields_free(f, n);

        is_int(audit_journal_fields(deny, strlen(deny), 6, "cd", f, &n), 0, "a deny record");
        is_str(field(f, n, "PRIORITY"), "4", "a denial is a warning");
        is_str(field(f, n, "MESSAGE_ID"), audit_journal_message_id("deny"), "its MESSAGE_ID");
        ok(strcmp(audit_journal_message_id("deny"), audit_journal_message_id("issue")) != 0,
           "MESSAGE_ID differs per event");
        audit_journal_fields_free(f, n);

        is_int(audit_journal_fields(checkpoint, strlen(checkpoint), 7, "ef", f, &n), 0,
               "a checkpoint record");
        is_str(field(f, n, "CREDBROKER_CHECKPOINT_NOTE"), "credbroker/x\n7\nh=\n",
               "the note, newlines kept");
        is_str(field(f, n, "PRIORITY"), "6", "info");
        audit_journal_fields_free(f, n);

        ok(audit_journal_fields("{not json", 9, 1, "00", f, &n) < 0, "a line that is not JSON");
}

struct mirrored {
        unsigned calls;
        uint64_t last_seq;
        bool hash_matches;
};

static void mirror(void *userdata, const char *line, size_t len, uint64_t seq, const char *hash_hex)
{
        struct mirrored *m = userdata;
        uint8_t digest[32];
        char hex[65];

        gnutls_hash_fast(GNUTLS_DIG_SHA256, line, len, digest);
        for (size_t i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", digest[i]);
        if (m->calls++ == 0)
                m->hash_matches = true;
        m->hash_matches = m->hash_matches && strcmp(hex, hash_hex) == 0 && line[len - 1] == '}';
        m->last_seq = seq;
}

static void test_mirror(void)
{
        struct secret *key = NULL;
        struct audit *a = NULL;
        struct mirrored m = {0};
        struct audit_options o = {.group = (gid_t)-1, .mirror = mirror, .mirror_userdata = &m};
        struct peer peer = {.uid = 1000, .gid = 1000, .pid = 42, .exe = (char *)"/usr/bin/job"};
        struct audit_record deny = {
            .event = "deny", .peer = &peer, .profile = "alerts", .decision = "deny", .reason = "x"};
        char path[300];

        snprintf(path, sizeof(path), "%s/audit.log", dir);
        if (secret_new_from("0123456789abcdef0123456789abcdef", 32, &key) < 0)
                abort();
        is_int(audit_open_with(path, key, &o, &a), 0, "open with a mirror");
        is_int(audit_write(a, &deny), 0, "a record");
        is_int(audit_write(a, &deny), 0, "another");
        audit_close(a);
        is_int(m.calls, 3, "the genesis and both records went to the mirror");
        is_int(m.last_seq, 2, "with their seq");
        ok(m.hash_matches, "and the SHA-256 of each line as written, without its newline");
        unlink(path);
        secret_free(key);
}

int main(void)
{
        json_init();
        log_set_level(LOG_LEVEL_ERROR - 1);
        if (!mkdtemp(dir))
                abort();
        test_fields();
        test_mirror();
        rmdir(dir);
        return done_testing();
}
