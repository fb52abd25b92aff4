/* The audit log verifier's core: one pass over the lines of the log files (oldest first),
 * checking the hash chain, seq numbering, checkpoints and their signed notes (docs/audit.md).
 * Memory is bounded: the hashes of the last NOTE_MAX_LAG(checkpoint_records) + 1 records (at
 * least RING_MIN), for checkpoint heads. */
#include "audit-chain.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "util.h"

#define RING_MIN  16384                    /* a checkpoint's head may be this many records back */
#define MAX_NAMES (CHAIN_MAX_LINE / 4 + 1) /* members of one object in a line ("":0,) */
#define FEW_NAMES 16                       /* compared pairwise; more are sorted */
#define PENDING   3                        /* decided by the next line */
#define MAX_SEQ   9007199254740992.0       /* 2^53: seq is a JSON number */

struct where {
        size_t file;
        uint64_t line;
};

struct record {
        cJSON *root;
        uint64_t seq;
        uint8_t prev[32];
        const char *event;
};

struct ring_entry {
        uint64_t seq;
        uint8_t hash[32];
        bool used;
};

enum pending { PENDING_NONE, PENDING_BAD_LINE, PENDING_JUMP };

/* What one chain's checkpoints have sealed so far: all of it is forgotten when a new chain
 * starts (seal_reset()), so a field added here cannot be carried into the next chain. */
struct seal {
        bool have_base;
        uint64_t base_count;     /* the latest checkpoint's count (0 at a genesis) */
        uint64_t last_plain_seq; /* of the latest record that is not a checkpoint or file.start */
        char *last_note;
        uint64_t cp_seq, cp_count;
        uint8_t cp_head[32];
        bool have_cp; /* cp_*: of the latest checkpoint (or the note a first file.start repeats) */
};

static void seal_reset(struct seal *s)
{
        free(s->last_note);
        *s = (struct seal){0};
}

struct chain {
        struct chain_options o;
        struct note_key key;
        bool have_key;
        char **files;
        size_t n_files;
        uint64_t line;
        bool file_first_record;
        bool started;
        char log_id[33];
        uint64_t last_seq, first_seq, records;
        uint8_t last_hash[32];
        struct where last_where;
        struct seal seal;
        bool unsealed;
        uint64_t unsealed_seq;
        struct where unsealed_where;
        enum pending pending;
        struct where pending_where;
        uint64_t pending_seq, pending_found;
        uint8_t pending_hash[32];
        bool pending_no_newline, pending_too_long;
        bool expect_seen;
        struct ring_entry *ring;
        size_t ring_size;
        int status;
        char message[1024];
        const char *names[MAX_NAMES]; /* scratch: one object's member names */
};

int chain_new(const struct chain_options *o, struct chain **ret)
{
        struct chain *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        /* A checkpoint at seq S may name the hash of seq S - 1 - NOTE_MAX_LAG(n) (the broker
         * writes it at a lag of at most NOTE_MAX_LAG(n), audit-checkpoint.c): the ring holds seq
         * S - ring_size .. S - 1 when it is checked. */
        c->ring_size = RING_MIN;
        if (o->checkpoint_records && NOTE_MAX_LAG(o->checkpoint_records) + 1 > RING_MIN)
                c->ring_size = (size_t)NOTE_MAX_LAG(o->checkpoint_records) + 1;
        c->ring = calloc(c->ring_size, sizeof(*c->ring));
        if (!c->ring) {
                free(c);
                return -ENOMEM;
        }
        c->o = *o;
        if (o->key) {
                c->key = *o->key;
                c->have_key = true;
        }
        *ret = c;
        return 0;
}

void chain_free(struct chain *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_files; i++)
                free(c->files[i]);
        free(c->files);
        free(c->seal.last_note);
        free(c->ring);
        free(c);
}

void chain_begin_file(struct chain *c, const char *name)
{
        char **files = realloc(c->files, (c->n_files + 1) * sizeof(*files));
        char *copy = strdup(name);

        if (!files || !copy)
                abort(); /* a few file names */
        c->files = files;
        c->files[c->n_files++] = copy;
        c->line = 0;
        c->file_first_record = true;
}

const char *chain_message(const struct chain *c)
{
        return c->message;
}

uint64_t chain_records(const struct chain *c)
{
        return c->records;
}

static int report(struct chain *c, int status, struct where w, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int report(struct chain *c, int status, struct where w, uint64_t seq, const char *fmt, ...)
{
        va_list ap;
        int n;

        n = snprintf(c->message, sizeof(c->message), "%s:%" PRIu64 ": seq %" PRIu64 ": ",
                     c->files[w.file], w.line, seq);
        if (n < 0 || (size_t)n >= sizeof(c->message))
                n = 0;
        va_start(ap, fmt);
        vsnprintf(c->message + n, sizeof(c->message) - (size_t)n, fmt, ap);
        va_end(ap);
        c->status = status;
        return status;
}

static uint64_t expected_seq(const struct chain *c)
{
        return c->started ? c->last_seq + 1 : 0;
}

static bool is_lower_hex(const char *s, size_t len)
{
        if (strlen(s) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool is_time(const char *s)
{
        static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";

        if (strlen(s) != sizeof(shape) - 1)
                return false;
        for (size_t i = 0; s[i]; i++)
                if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
                        return false;
        return true;
}

static bool get_u64(const cJSON *item, uint64_t *ret)
{
        if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble > MAX_SEQ ||
            item->valuedouble != (double)(uint64_t)item->valuedouble)
                return false;
        *ret = (uint64_t)item->valuedouble;
        return true;
}

static const char *get_string(const cJSON *root, const char *name)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);

        return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* The chain's members in their places: v and boot_id first, seq, time and prev last (the record's
 * own members, an event among them, in between). */
static int parse_chain_members(const cJSON *m, struct record *r)
{
        const cJSON *seq, *time, *prev;
        uint64_t v;

        if (!m || strcmp(m->string, "v") != 0 || !get_u64(m, &v) || v != 1)
                return -EBADMSG;
        m = m->next;
        if (!m || strcmp(m->string, "boot_id") != 0 || !cJSON_IsString(m) ||
            !is_lower_hex(m->valuestring, 32))
                return -EBADMSG;
        while (m->next)
                m = m->next;
        prev = m;
        time = prev->prev;
        seq = time ? time->prev : NULL;
        if (!seq || strcmp(seq->string, "seq") != 0 || !get_u64(seq, &r->seq))
                return -EBADMSG;
        if (strcmp(time->string, "time") != 0 || !cJSON_IsString(time) ||
            !is_time(time->valuestring))
                return -EBADMSG;
        if (strcmp(prev->string, "prev") != 0 || !cJSON_IsString(prev) ||
            !is_lower_hex(prev->valuestring, 64))
                return -EBADMSG;
        return hex_decode(prev->valuestring, 64, r->prev, 32) < 0 ? -EBADMSG : 0;
}

static int by_name(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether an object has a member name twice: readers disagree on which one counts (cJSON takes
 * the first, jq and most SIEMs the last), so no record may have one, at any depth. */
static bool has_duplicate_name(struct chain *c, const cJSON *item)
{
        size_t n = 0;

        if (cJSON_IsObject(item)) {
                for (const cJSON *m = item->child; m; m = m->next) {
                        if (n == MAX_NAMES)
                                return true; /* cannot be in a line of CHAIN_MAX_LINE */
                        c->names[n++] = m->string;
                }
                if (n > FEW_NAMES) {
                        qsort(c->names, n, sizeof(*c->names), by_name);
                        for (size_t i = 1; i < n; i++)
                                if (strcmp(c->names[i - 1], c->names[i]) == 0)
                                        return true;
                } else
                        for (size_t i = 0; i < n; i++)
                                for (size_t j = i + 1; j < n; j++)
                                        if (c->names[i][0] == c->names[j][0] &&
                                            strcmp(c->names[i], c->names[j]) == 0)
                                                return true;
        }
        if (cJSON_IsObject(item) || cJSON_IsArray(item))
                for (const cJSON *m = item->child; m; m = m->next)
                        if (has_duplicate_name(c, m))
                                return true;
        return false;
}

/* "\u0000" in a string: cJSON ends the name or value there, other readers do not (the broker
 * never writes one: its strings are C strings). */
static bool has_nul_escape(const char *line, size_t len)
{
        const char *p = line, *end = line + len;

        while ((p = memchr(p, '\\', (size_t)(end - p)))) {
                if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
                        return true;
                p += 2; /* past the escaped character */
                if (p >= end)
                        break;
        }
        return false;
}

static int parse_record(struct chain *c, const char *line, size_t len, struct record *r)
{
        const char *end = NULL;

        *r = (struct record){0};
        if (len + 1 > CHAIN_MAX_LINE || len == 0 || line[0] != '{' || has_nul_escape(line, len))
                return -EBADMSG;
        r->root = cJSON_ParseWithLengthOpts(line, len, &end, false);
        if (!r->root || end != line + len || !cJSON_IsObject(r->root) ||
            has_duplicate_name(c, r->root) || parse_chain_members(r->root->child, r) < 0 ||
            !(r->event = get_string(r->root, "event"))) {
                cJSON_Delete(r->root);
                r->root = NULL;
                return -EBADMSG;
        }
        return 0;
}

/* The chain's own records have exactly these members between boot_id and seq, in this order
 * (broker/engine/audit.c writes them so): nothing an unsigned copy could add. */
struct member {
        const char *name;
        bool optional, number;
};

struct role {
        const char *event, *names;
        struct member members[6];
};

static const struct role roles[] = {
    {"genesis",
     "event, log_id and key",
     {{.name = "event"}, {.name = "log_id"}, {.name = "key", .optional = true}}},
    {"checkpoint",
     "event, log_id, count, head and note",
     {{.name = "event"},
      {.name = "log_id"},
      {.name = "count", .number = true},
      {.name = "head"},
      {.name = "note"}}},
    {"file.start",
     "event, log_id and checkpoint",
     {{.name = "event"}, {.name = "log_id"}, {.name = "checkpoint", .optional = true}}},
};

static bool has_members(const cJSON *root, const struct member *list)
{
        const cJSON *m = root->child->next->next; /* after v and boot_id */

        for (; list->name; list++)
                if (m && strcmp(m->string, list->name) == 0 &&
                    (list->number ? cJSON_IsNumber(m) : cJSON_IsString(m)))
                        m = m->next;
                else if (!list->optional)
                        return false;
        /* seq, time and prev follow (parse_chain_members()) */
        return m && m->next && m->next->next && !m->next->next->next;
}

static int check_members(struct chain *c, const struct record *r, struct where w)
{
        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
                if (strcmp(r->event, roles[i].event) == 0 &&
                    !has_members(r->root, roles[i].members))
                        return report(c, CHAIN_BROKEN, w, r->seq,
                                      "not a v1 record (a %s record has members other than "
                                      "v, boot_id, %s, seq, time and prev)",
                                      r->event, roles[i].names);
        return 0;
}

static const char *note_error(int r)
{
        return r == -EKEYREJECTED ? "signed by another key"
               : r == -EBADE      ? "bad signature"
                                  : "bad signature (malformed note)";
}

/* A note carried by a record (checkpoint or file.start), verified with the chain's key. */
static int check_note(struct chain *c, const char *note, struct where w, uint64_t seq,
                      struct note_checkpoint *ret)
{
        int r;

        if (!note)
                return report(c, CHAIN_BROKEN, w, seq, "not a v1 record (no note)");
        r = note_verify(note, strlen(note), &c->key, ret);
        if (r < 0)
                return report(c, CHAIN_BROKEN, w, seq, "%s", note_error(r));
        if (strcmp(ret->log_id, c->log_id) != 0)
                return report(c, CHAIN_BROKEN, w, seq,
                              "checkpoint does not match the chain (note of log %s)", ret->log_id);
        return 0;
}

/* The note's head against the hash of the line with seq count-1, already seen. */
static int check_head(struct chain *c, const struct note_checkpoint *cp, struct where w,
                      uint64_t seq)
{
        const struct ring_entry *e;
        char hex[65];

        if (cp->count == 0 || cp->count > seq)
                return report(c, CHAIN_BROKEN, w, seq,
                              "checkpoint does not match the chain (count %" PRIu64 ")", cp->count);
        if (cp->count - 1 < c->first_seq)
                return 0; /* before the first file given: nothing to compare with */
        e = &c->ring[(cp->count - 1) % c->ring_size];
        if (e->used && e->seq == cp->count - 1 && memcmp(e->hash, cp->head, 32) == 0)
                return 0;
        for (size_t i = 0; i < c->ring_size; i++)
                if (c->ring[i].used && memcmp(c->ring[i].hash, cp->head, 32) == 0)
                        return report(c, CHAIN_BROKEN, w, seq,
                                      "checkpoint does not match the chain (its head, for "
                                      "count %" PRIu64 ", is the hash of seq %" PRIu64
                                      ": records %s before it)",
                                      cp->count, c->ring[i].seq,
                                      c->ring[i].seq > cp->count - 1 ? "inserted" : "removed");
        hex_encode(cp->head, 32, hex);
        return report(c, CHAIN_BROKEN, w, seq,
                      "checkpoint does not match the chain (head %s is not the hash of seq "
                      "%" PRIu64 ")",
                      hex, cp->count - 1);
}

static int set_checkpoint(struct chain *c, const char *note, const struct note_checkpoint *cp,
                          uint64_t seq)
{
        free(c->seal.last_note);
        c->seal.last_note = strdup(note);
        c->seal.have_cp = true;
        c->seal.cp_seq = seq;
        c->seal.cp_count = cp->count;
        memcpy(c->seal.cp_head, cp->head, 32);
        return c->seal.last_note ? 0 : -ENOMEM;
}

static int check_checkpoint(struct chain *c, const struct record *r, struct where w)
{
        const char *head = get_string(r->root, "head"), *note = get_string(r->root, "note");
        const char *log_id = get_string(r->root, "log_id");
        struct note_checkpoint cp;
        uint64_t count;
        uint8_t head_bytes[32];
        int k;

        if (!log_id || strcmp(log_id, c->log_id) != 0 ||
            !get_u64(cJSON_GetObjectItemCaseSensitive(r->root, "count"), &count) || !head ||
            hex_decode(head, strlen(head), head_bytes, 32) < 0)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "checkpoint does not match the chain (log_id, count or head)");
        k = check_note(c, note, w, r->seq, &cp);
        if (k != 0)
                return k;
        if (cp.count != count || memcmp(cp.head, head_bytes, 32) != 0)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "checkpoint does not match the chain (count or head differ from "
                              "the signed note's)");
        if (c->seal.have_cp && cp.count <= c->seal.cp_count)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "inserted record (a checkpoint that covers no more than the one "
                              "before it: count %" PRIu64 " after %" PRIu64 ")",
                              cp.count, c->seal.cp_count);
        k = check_head(c, &cp, w, r->seq);
        if (k != 0)
                return k;
        /* The broker asks for a checkpoint every checkpoint_records records, signed or not yet:
         * consecutive notes' counts are at most that far apart, and one more is allowed (a
         * writer that counts n records after the genesis; common/signed-note.h). */
        if (c->seal.have_base && cp.count > c->seal.base_count &&
            cp.count - c->seal.base_count > c->o.checkpoint_records + 1)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "gap between checkpoints longer than configured (this one covers "
                              "%" PRIu64 " records, the one before %" PRIu64 ": %" PRIu64
                              " apart; at most %" PRIu64 ")",
                              cp.count, c->seal.base_count, cp.count - c->seal.base_count,
                              c->o.checkpoint_records + 1);
        if (!c->seal.have_base || cp.count > c->seal.base_count)
                c->seal.base_count = cp.count;
        c->seal.have_base = true;
        /* Sealed when the note covers every record that needs it; records written while its
         * signature was made are the next one's. */
        if (c->unsealed && cp.count > c->seal.last_plain_seq)
                c->unsealed = false;
        else if (c->unsealed && c->unsealed_seq < cp.count) {
                c->unsealed_seq = cp.count;
                c->unsealed_where = w;
        }
        return set_checkpoint(c, note, &cp, r->seq);
}

static int check_file_start(struct chain *c, const struct record *r, struct where w)
{
        const char *note = get_string(r->root, "checkpoint");
        const char *log_id = get_string(r->root, "log_id");
        struct note_checkpoint cp;
        int k;

        /* Only the broker's reopen writes one, at the start of the new file. */
        if (!c->file_first_record)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "inserted record (a file.start that is not the first record of its "
                              "file)");
        if (!log_id || strcmp(log_id, c->log_id) != 0)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "checkpoint does not match the chain (file.start of another log)");
        if (!note)
                return 0; /* a broker that wrote no checkpoint since it started */
        k = check_note(c, note, w, r->seq, &cp);
        if (k != 0)
                return k;
        if (c->seal.last_note && strcmp(c->seal.last_note, note) != 0)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "checkpoint does not match the chain (file.start repeats another "
                              "checkpoint than the last one)");
        if (c->seal.last_note)
                return 0;
        if (c->started) {
                /* Its checkpoint record should be in these files: the note must at least be of
                 * this chain. */
                k = check_head(c, &cp, w, r->seq);
                if (k != 0)
                        return k;
        }
        if (!c->seal.have_base) {
                c->seal.have_base = true;
                c->seal.base_count = cp.count;
        }
        return set_checkpoint(c, note, &cp, r->seq);
}

static bool is_zero(const uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (p[i])
                        return false;
        return true;
}

static bool same_key(const struct note_key *a, const struct note_key *b)
{
        return a->type == b->type && a->pub_len == b->pub_len &&
               memcmp(a->pub, b->pub, a->pub_len) == 0;
}

/* A genesis record: the start of the chain, the first record of all (check_record()); its key is
 * trusted on first use without --key. */
static int check_genesis(struct chain *c, const struct record *r, struct where w)
{
        const char *log_id = get_string(r->root, "log_id"), *key = get_string(r->root, "key");
        struct note_key k;

        if (r->seq != 0 || !is_zero(r->prev, 32) || !log_id || !is_lower_hex(log_id, 32) ||
            (key && note_key_parse(key, &k) < 0))
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "not a v1 record (genesis without seq 0, zero prev, log_id, key)");
        if (!key && !c->have_key)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "no key to check the checkpoints with: the genesis record names "
                              "none (pass --key)");
        if (key && c->have_key && !same_key(&k, &c->key))
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "signed by another key (the genesis record names %s)", key);
        if (!c->have_key && c->o.warnings)
                fprintf(c->o.warnings,
                        "credbroker: warning: no --key: trusting the key the genesis record "
                        "names (trust on first use): %s\n",
                        key);
        if (!c->have_key) {
                c->key = k;
                c->have_key = true;
        }
        memcpy(c->log_id, log_id, 33);
        c->seal.have_base = true;
        c->seal.base_count = 0;
        c->first_seq = 0;
        return 0;
}

/* The first record seen: a genesis, or a file.start when older files are not given. */
static int start_chain(struct chain *c, const struct record *r, struct where w)
{
        const char *log_id = get_string(r->root, "log_id");

        if (strcmp(r->event, "genesis") == 0)
                return check_genesis(c, r, w);
        if (strcmp(r->event, "file.start") != 0)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "removed record(s) (the first record is neither a genesis nor a "
                              "file.start)");
        if (!c->have_key)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "no key to check the checkpoints with: the chain's genesis record "
                              "is not in these files (pass --key)");
        if (!log_id || !is_lower_hex(log_id, 32))
                return report(c, CHAIN_BROKEN, w, r->seq, "not a v1 record (log_id)");
        memcpy(c->log_id, log_id, 33);
        c->first_seq = r->seq;
        return 0;
}

/* seq and prev against the previous record. PENDING: a jump left pending for the next line. */
static int check_link(struct chain *c, const struct record *r, struct where w)
{
        uint64_t expected = c->last_seq + 1;
        const char *reason = get_string(r->root, "reason");

        if (r->seq == expected && memcmp(r->prev, c->last_hash, 32) == 0)
                return 0;
        if (r->seq != expected && c->file_first_record && w.file > 0)
                return report(c, CHAIN_BROKEN, w, expected,
                              "missing file (the chain breaks across files: seq %" PRIu64
                              " follows seq %" PRIu64 " of %s)",
                              r->seq, c->last_seq, c->files[c->last_where.file]);
        if (r->seq == expected)
                return report(c, CHAIN_BROKEN, c->last_where, c->last_seq,
                              "changed record (its hash does not match the next record's prev)");
        if (r->seq > expected && strcmp(r->event, "audit.alarm") == 0 && reason &&
            strcmp(reason, "truncated") == 0)
                return report(c, CHAIN_BROKEN, w, expected,
                              "removed record(s) (the broker found the file truncated: "
                              "audit.alarm at seq %" PRIu64 ")",
                              r->seq);
        if (r->seq > expected) {
                c->pending = PENDING_JUMP;
                c->pending_where = w;
                c->pending_seq = expected;
                c->pending_found = r->seq;
                return PENDING;
        }
        if (r->seq == c->last_seq)
                return report(c, CHAIN_BROKEN, w, r->seq,
                              "inserted record (seq %" PRIu64 " twice: also at line %" PRIu64 ")",
                              r->seq, c->last_where.line);
        return report(c, CHAIN_BROKEN, w, r->seq,
                      "reordered records (seq goes back from %" PRIu64 ")", c->last_seq);
}

static int check_role(struct chain *c, const struct record *r, struct where w)
{
        if (strcmp(r->event, "checkpoint") == 0)
                return check_checkpoint(c, r, w);
        if (strcmp(r->event, "file.start") == 0)
                return check_file_start(c, r, w);
        c->seal.last_plain_seq = r->seq;
        if (!c->unsealed) {
                c->unsealed = true;
                c->unsealed_seq = r->seq;
                c->unsealed_where = w;
        }
        return 0;
}

/* Whether a genesis may start a new chain here; if so, the old chain's state is dropped. Its log
 * must be new (a copy of the old genesis starts nothing) and the old chain must end sealed. */
static bool new_chain_at_file_start(struct chain *c, const struct record *r, struct where w)
{
        const char *log_id = get_string(r->root, "log_id");

        if (!c->file_first_record || w.file == 0 || c->unsealed || !log_id ||
            strcmp(log_id, c->log_id) == 0)
                return false;
        if (c->o.warnings)
                fprintf(c->o.warnings,
                        "credbroker: note: %s starts a new chain (log_id %s) after the sealed "
                        "chain %s\n",
                        c->files[w.file], log_id, c->log_id);
        seal_reset(&c->seal);
        return true;
}

static int check_record(struct chain *c, const struct record *r, const uint8_t hash[32],
                        struct where w)
{
        int k = check_members(c, r, w);

        if (k != 0)
                return k;
        /* A chain has one genesis, its first record: a later one starts nothing and is checked
         * no less than any other record, except as the first record of a later file with a
         * log_id of its own after a sealed chain: a broker that found no log (renamed while it
         * was stopped) starts a new chain there. */
        if (c->started && strcmp(r->event, "genesis") == 0) {
                if (!new_chain_at_file_start(c, r, w))
                        return report(c, CHAIN_BROKEN, w, r->seq,
                                      "inserted record (a genesis record after the chain's start)");
                c->started = false;
        }
        if (!c->started)
                k = start_chain(c, r, w);
        else
                k = check_link(c, r, w);
        if (k == 0)
                k = check_role(c, r, w);
        if (k == PENDING)
                return k;
        if (k != 0)
                return k < 0 ? report(c, CHAIN_BROKEN, w, r->seq, "out of memory") : k;
        if (c->o.expect_head && r->seq == c->o.expect_seq) {
                if (memcmp(hash, c->o.expect_hash, 32) != 0)
                        return report(c, CHAIN_BROKEN, w, r->seq,
                                      "changed record (its hash does not match --expect-head)");
                c->expect_seen = true;
        }
        c->started = true;
        c->last_seq = r->seq;
        memcpy(c->last_hash, hash, 32);
        c->last_where = w;
        c->ring[r->seq % c->ring_size] = (struct ring_entry){.seq = r->seq, .used = true};
        memcpy(c->ring[r->seq % c->ring_size].hash, hash, 32);
        c->records++;
        c->file_first_record = false;
        return 0;
}

/* The line after a seq jump says whether records were removed or reordered. */
static int resolve_jump(struct chain *c, const struct record *r)
{
        if (r && r->seq >= c->pending_seq && r->seq < c->pending_found)
                return report(c, CHAIN_BROKEN, c->pending_where, c->pending_found,
                              "reordered records (seq %" PRIu64 " before seq %" PRIu64 ")",
                              c->pending_found, r->seq);
        return report(c, CHAIN_BROKEN, c->pending_where, c->pending_seq,
                      "removed record(s) (seq jumps from %" PRIu64 " to %" PRIu64 ")",
                      c->pending_seq - 1, c->pending_found);
}

static int report_bad_line(struct chain *c)
{
        if (c->pending_too_long)
                return report(c, CHAIN_BROKEN, c->pending_where, c->pending_seq,
                              "not a v1 record (longer than %d bytes)", CHAIN_MAX_LINE);
        if (c->pending_no_newline)
                return report(c, CHAIN_BROKEN, c->pending_where, c->pending_seq,
                              "not a v1 record (a line without a newline before the end)");
        return report(c, CHAIN_BROKEN, c->pending_where, c->pending_seq, "not a v1 record");
}

/* A line that is not a record may be a line torn by a crash: then the next record is an
 * audit.alarm "torn_line" whose prev is that line's hash. */
static int resolve_bad_line(struct chain *c, const struct record *r)
{
        const char *reason = r ? get_string(r->root, "reason") : NULL;

        /* A crash during a broker's very first write: the torn bytes, then the genesis of the
         * chain it started on the next line (nothing before them to chain to). */
        if (r && !c->started && !c->pending_too_long && strcmp(r->event, "genesis") == 0 &&
            c->pending_where.file == 0 && c->pending_where.line == 1) {
                c->pending = PENDING_NONE;
                return 0;
        }
        if (!r || c->pending_too_long || strcmp(r->event, "audit.alarm") != 0 || !reason ||
            strcmp(reason, "torn_line") != 0 || memcmp(r->prev, c->pending_hash, 32) != 0 ||
            r->seq != expected_seq(c) || !c->started)
                return report_bad_line(c);
        memcpy(c->last_hash, c->pending_hash, 32);
        c->pending = PENDING_NONE;
        return 0;
}

static void set_bad_line(struct chain *c, struct where w, const uint8_t hash[32], bool newline,
                         size_t len)
{
        c->pending = PENDING_BAD_LINE;
        c->pending_where = w;
        c->pending_seq = expected_seq(c);
        memcpy(c->pending_hash, hash, 32);
        c->pending_no_newline = !newline;
        c->pending_too_long = len + 1 > CHAIN_MAX_LINE;
}

int chain_line(struct chain *c, const char *line, size_t len, bool newline)
{
        struct where w = {c->n_files - 1, ++c->line};
        struct record r;
        uint8_t hash[32];
        bool parsed;
        int k = 0;

        if (c->status == CHAIN_BROKEN || c->n_files == 0)
                return CHAIN_BROKEN;
        parsed = parse_record(c, line, len, &r) == 0;
        if (c->pending == PENDING_JUMP)
                k = resolve_jump(c, parsed ? &r : NULL);
        else if (c->pending == PENDING_BAD_LINE)
                k = resolve_bad_line(c, parsed ? &r : NULL);
        if (k == 0) {
                note_sha256(line, len, hash);
                if (!parsed || !newline)
                        set_bad_line(c, w, hash, newline, len);
                else
                        k = check_record(c, &r, hash, w);
        }
        cJSON_Delete(r.root);
        return k == CHAIN_BROKEN ? CHAIN_BROKEN : 0;
}

static int end_sealed(struct chain *c)
{
        char hex[65];

        hex_encode(c->seal.cp_head, 32, hex);
        snprintf(c->message, sizeof(c->message),
                 "intact: %" PRIu64 " records in %zu file(s), sealed by the checkpoint at seq "
                 "%" PRIu64 " (count %" PRIu64 ", head %s)",
                 c->records, c->n_files, c->seal.cp_seq, c->seal.cp_count, hex);
        return CHAIN_INTACT;
}

int chain_end(struct chain *c)
{
        if (c->status == CHAIN_BROKEN || c->n_files == 0)
                return c->n_files
                           ? CHAIN_BROKEN
                           : (snprintf(c->message, sizeof(c->message), "no files"), CHAIN_BROKEN);
        if (c->pending == PENDING_JUMP)
                return resolve_jump(c, NULL);
        if (c->pending == PENDING_BAD_LINE && (!c->pending_no_newline || c->pending_too_long))
                return report_bad_line(c);
        if (c->o.expect_head && !c->expect_seen)
                return report(c, CHAIN_BROKEN, c->last_where, c->o.expect_seq,
                              "removed record(s) (the record --expect-head names is not in "
                              "these files)");
        if (c->pending == PENDING_BAD_LINE)
                return report(c, CHAIN_UNSEALED, c->pending_where, c->pending_seq,
                              "truncated tail (the last line has no newline)");
        if (!c->started)
                return report(c, CHAIN_BROKEN, (struct where){c->n_files - 1, c->line}, 0,
                              "no records");
        if (c->unsealed)
                return report(c, CHAIN_UNSEALED, c->unsealed_where, c->unsealed_seq,
                              "unsealed: %" PRIu64 " record(s) after the last checkpoint "
                              "(seq %" PRIu64 "..%" PRIu64 ")",
                              c->last_seq - c->unsealed_seq + 1, c->unsealed_seq, c->last_seq);
        return end_sealed(c);
}
