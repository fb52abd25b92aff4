/* Unit tests for the audit writer: every line a v1 record, a genesis first, sequence numbers
 * and the hash chain continuous across reopening and torn lines, large records, prepared
 * records. */
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit.h"
#include "json.h"
#include "log.h"
#include "tap.h"

static char dir[] = "/tmp/test-audit.XXXXXX";
static char path[256];

static bool streq_ptr(const char *a, const char *b)
{
        return a && strcmp(a, b) == 0;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Parses every line; returns how many there are, or -1 if one is not a v1 record whose seq
 * follows the previous one's and whose prev is the previous line's SHA-256. A line that is not
 * JSON (torn) is allowed only when followed by an audit.alarm torn_line chained to it, or, as the
 * file's first line, by a genesis. */
static int check_lines(uint64_t *ret_last_seq)
{
        FILE *f = fopen(path, "re");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int count = 0;
        char prev[65];
        uint64_t next = 0;
        bool torn = false;

        memset(prev, '0', 64);
        prev[64] = 0;
        if (!f)
                return -1;
        while ((n = getline(&line, &cap, f)) > 0) {
                cJSON *json = NULL;
                uint64_t seq, v;
                const char *p, *event;
                uint8_t digest[32];

                count++;
                if (line[n - 1] == '\n')
                        line[--n] = 0;
                if (json_parse(line, (size_t)n, &json) < 0) {
                        if (torn)
                                goto bad;
                        torn = true;
                        if (count == 1)
                                continue; /* nothing to chain to: a genesis must follow */
                } else if (!cJSON_IsObject(json) || json_get_u64(json, "v", &v) < 0 || v != 1 ||
                           json_get_u64(json, "seq", &seq) < 0 || seq != next ||
                           !(p = json_get_string(json, "prev")) || strcmp(p, prev) != 0 ||
                           (seq == 0) !=
                               streq_ptr(event = json_get_string(json, "event"), "genesis") ||
                           (torn && !streq_ptr(event, seq == 0 ? "genesis" : "audit.alarm")) ||
                           strncmp(line, "{\"v\":1,\"boot_id\":\"", 18) != 0 ||
                           !strstr(line, ",\"seq\":") || n < 76 ||
                           strncmp(line + n - 76, "\",\"prev\":\"", 10) != 0)
                        goto bad;
                else {
                        torn = false;
                        next = seq + 1;
                        *ret_last_seq = seq;
                }
                cJSON_Delete(json);
                gnutls_hash_fast(GNUTLS_DIG_SHA256, line, (size_t)n, digest);
                hex(digest, 32, prev);
                continue;
        bad:
                cJSON_Delete(json);
                count = -1;
                break;
        }
        free(line);
        fclose(f);
        return count;
}

/* How many of the first n pages of path are in the page cache. */
static size_t resident_pages(const char *file, size_t n)
{
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        long page = sysconf(_SC_PAGESIZE);
        unsigned char *vec = calloc(n, 1);
        size_t count = 0;
        void *map;

        if (fd < 0 || !vec)
                abort();
        map = mmap(NULL, n * (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED || mincore(map, n * (size_t)page, vec) < 0)
                abort();
        for (size_t i = 0; i < n; i++)
                count += vec[i] & 1;
        munmap(map, n * (size_t)page);
        free(vec);
        close(fd);
        return count;
}

/* Whether this file system drops clean pages on POSIX_FADV_DONTNEED (tmpfs keeps them). */
static bool drops_pages(void)
{
        char probe[300], block[4096] = {0};
        bool dropped;
        int fd;

        snprintf(probe, sizeof(probe), "%s/probe", dir);
        fd = open(probe, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        for (int i = 0; fd >= 0 && i < 64; i++)
                if (write(fd, block, sizeof(block)) != sizeof(block))
                        abort();
        if (fd < 0 || fdatasync(fd) < 0)
                abort();
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
        dropped = resident_pages(probe, 64) < 32;
        unlink(probe);
        return dropped;
}

/* 16 MiB of records: the log's first pages leave the page cache behind the writer. */
static void test_drop_behind(const struct secret *key)
{
        struct peer peer = {.uid = 1000, .gid = 1000, .pid = 42, .exe = (char *)"/usr/bin/job"};
        struct audit_record deny = {
            .event = "deny",
            .peer = &peer,
            .profile = "alerts",
            .account = "alerts",
            .decision = "deny",
            .rule = "alerts:3",
            .reason = "x",
        };
        char big[300];
        struct audit *a = NULL;
        size_t pages = 14 * 256; /* the first 14 MiB */

        if (!drops_pages()) {
                ok(1, "# SKIP the file system keeps pages on POSIX_FADV_DONTNEED");
                return;
        }
        snprintf(big, sizeof(big), "%s/big.log", dir);
        if (audit_open(big, key, &a) < 0)
                abort();
        for (size_t written = 0; written < 16u << 20; written += 200)
                if (audit_write(a, &deny) < 0)
                        abort();
        audit_close(a);
        size_t resident = resident_pages(big, pages);
        if (!ok(resident < pages, "the log's written pages are dropped from the page cache"))
                printf("#   %zu of the first %zu pages are resident\n", resident, pages);
        unlink(big);
}

/* The issue record from parts printed once (a connection asking for another token each time)
 * is the record audit_prepare() prints, byte for byte, and hashes the same. */
static void test_issue_parts(struct audit *a, const struct audit_record *issue)
{
        struct audit_prepared whole = {0}, made = {0};
        struct audit_part peer_part = {0}, token_part = {0};

        is_int(audit_issue_peer_part(issue, &peer_part), 0, "the peer's part");
        is_int(audit_issue_token_part(issue, &token_part), 0, "the token's part");
        is_int(audit_prepare(a, issue, &whole), 0, "the whole record");
        is_int(audit_prepare_issue(a, &peer_part, &token_part, issue->expires_at, &made), 0,
               "the record from its parts");
        ok(whole.body && made.body && whole.len == made.len && strcmp(whole.body, made.body) == 0,
           "the same bytes");
        ok(memcmp(&whole.start, &made.start, sizeof(whole.start)) == 0, "the same hash state");
        audit_part_clear(&peer_part);
        audit_part_clear(&token_part);
        audit_prepared_clear(&whole);
        audit_prepared_clear(&made);
}

int main(void)
{
        struct secret *key = NULL;
        struct audit *a = NULL;
        struct peer peer = {.uid = 1000, .gid = 1000, .pid = 42};
        char *scopes[2048];
        uint64_t seq = 0;

        json_init();
        log_set_level(LOG_LEVEL_ERROR - 1);
        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof(path), "%s/audit.log", dir);
        if (secret_new_from("0123456789abcdef0123456789abcdef", 32, &key) < 0)
                abort();

        is_int(audit_open(path, key, &a), 0, "open creates the log");
        struct audit_record deny = {
            .event = "deny",
            .peer = &peer,
            .profile = "alerts",
            .account = "alerts",
            .scope_key = "b a",
            .decision = "deny",
            .rule = "alerts:3",
            .reason = "x",
        };
        /* An exe full of control characters and quotes is escaped, not written raw. */
        static char hostile_exe[256];
        for (size_t i = 0; i < sizeof(hostile_exe) - 1; i++)
                hostile_exe[i] = (char)(i % 2 ? 1 : '"');
        peer.exe = hostile_exe;
        peer.unit = (char *)"backup.service";
        is_int(audit_write(a, &deny), 0, "a deny record is written");

        /* 1024 scopes: a record far larger than a page (but within the 64 KiB a line may
         * take). */
        for (size_t i = 0; i < 2048; i++)
                scopes[i] = (char *)"https://graph.microsoft.com/Mail.Send";
        struct audit_record issue = {
            .event = "issue",
            .peer = &peer,
            .profile = "alerts",
            .account = "alerts",
            .scopes = scopes,
            .n_scopes = 1024,
            .decision = "allow",
            .rule = "alerts:3",
            .fingerprint = "0123456789abcdef",
            .expires_at = 1795863744,
        };
        is_int(audit_write(a, &issue), 0, "a very large record is written");
        issue.n_scopes = 2048;
        ok(audit_write(a, &issue) < 0, "a record over 64 KiB is refused");
        issue.n_scopes = 1024;

        test_issue_parts(a, &issue);

        struct audit_prepared prepared = {0};
        is_int(audit_prepare(a, &issue, &prepared), 0, "a record can be prepared");
        is_int(audit_write_prepared(a, &prepared), 0, "a prepared record is written");
        is_int(audit_write_prepared(a, &prepared), 0, "and written again");
        audit_prepared_clear(&prepared);
        ok(!prepared.body, "a cleared prepared record holds nothing");
        struct audit_prepared empty = {.body = (char *)"{}", .len = 2};
        is_int(audit_write_prepared(a, &empty), 0, "an empty body still makes a record");
        struct audit_prepared array = {.body = (char *)"[]", .len = 2};
        ok(audit_write_prepared(a, &array) < 0, "a body that is not an object is refused");
        audit_close(a);
        a = NULL;

        test_drop_behind(key);
        is_int(check_lines(&seq), 6, "a genesis and five records, chained");
        is_int(seq, 5, "sequence numbers count from 0");

        /* Reopening continues the chain instead of starting another. */
        is_int(audit_open(path, key, &a), 0, "reopen");
        is_int(audit_write(a, &deny), 0, "write after reopening");
        audit_close(a);
        a = NULL;
        is_int(check_lines(&seq), 7, "the chain goes on across reopening, without a genesis");
        is_int(seq, 6, "at the next seq");

        /* A torn last line (crash mid-write) is skipped when the numbering resumes. */
        {
                int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
                if (fd < 0 || write(fd, "{\"time\":\"2026", 13) != 13)
                        abort();
                close(fd);
        }
        is_int(audit_open(path, key, &a), 0, "reopen after a torn line");
        is_int(audit_write(a, &deny), 0, "write after reopening");
        audit_close(a);
        {
                /* The torn line stays as evidence, on its own line; the new record is whole. */
                FILE *f = fopen(path, "re");
                char *line = NULL;
                size_t cap = 0;
                ssize_t n;
                int lines = 0, torn = 0;
                uint64_t last = 0;

                while (f && (n = getline(&line, &cap, f)) > 0) {
                        cJSON *json = NULL;
                        lines++;
                        if (json_parse(line, (size_t)n, &json) < 0) {
                                torn++;
                                continue;
                        }
                        (void)json_get_u64(json, "seq", &last);
                        cJSON_Delete(json);
                }
                free(line);
                if (f)
                        fclose(f);
                is_int(lines, 10, "the torn line is kept on a line of its own");
                is_int(torn, 1, "only the torn line is not JSON");
                is_int(last, 8, "numbering continues from the last whole line");
                is_int(check_lines(&seq), 10, "an audit.alarm chained to the torn line follows it");
        }

        /* A crash during the very first write: the file holds only a torn line. A new chain
         * starts on a line of its own. */
        {
                int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
                if (fd < 0 || write(fd, "{\"v\":1,\"boot", 13) != 13)
                        abort();
                close(fd);
        }
        is_int(audit_open(path, key, &a), 0, "open a log that is only a torn line");
        is_int(audit_write(a, &deny), 0, "write after it");
        audit_close(a);
        a = NULL;
        is_int(check_lines(&seq), 3, "the torn line, then a genesis and a record, chained");
        is_int(seq, 1, "a new chain from 0");

        secret_free(key);
        unlink(path);
        rmdir(dir);
        return done_testing();
}
