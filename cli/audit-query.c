/* credbroker audit [FILTERS] and credbroker audit summary: read the audit log (its rotated and
 * compressed predecessors too) without the broker, as a table, JSON lines or a monthly summary
 * (docs/audit.md, "Reading the log"). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit-files.h"
#include "audit.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "json.h"
#include "util.h"

#define USEC_PER_SEC         1000000ULL
#define FOLLOW_INTERVAL_USEC 250000

struct query {
        uint64_t since, until; /* usec; records with since <= time < until */
        bool has_uid;
        uint64_t uid;
        const char *profile, *account, *event, *config;
        bool json, follow, summary, header_done;
        char **files;  /* NULL-terminated */
        cJSON *report; /* summary */
};

/* ---- times ---- */

static bool take_digits(const char **p, size_t n, int *ret)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if ((*p)[i] < '0' || (*p)[i] > '9')
                        return false;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

/* "hh:mm[:ss[.frac]]" into tm and *usec. */
static bool take_clock(const char **p, struct tm *tm, uint64_t *usec)
{
        int frac = 0, digits = 0;

        if (!take_digits(p, 2, &tm->tm_hour) || *(*p)++ != ':' || !take_digits(p, 2, &tm->tm_min))
                return false;
        if (**p == ':' && (++*p, !take_digits(p, 2, &tm->tm_sec)))
                return false;
        if (**p == '.') {
                for (++*p; **p >= '0' && **p <= '9'; ++*p, digits++)
                        if (digits < 6)
                                frac = frac * 10 + (**p - '0');
                if (digits == 0)
                        return false;
                for (int i = digits; i < 6; i++)
                        frac *= 10;
        }
        *usec = (uint64_t)frac;
        return tm->tm_hour < 24 && tm->tm_min < 60 && tm->tm_sec <= 60;
}

/* "Z" (0), "+hh:mm"/"-hh:mm" (seconds east) or nothing (local time: *local). */
static bool take_zone(const char **p, long *offset, bool *local)
{
        int h, m, sign;

        *local = **p == 0;
        *offset = 0;
        if (*local)
                return true;
        if (**p == 'Z' || **p == 'z')
                return (*p)[1] == 0;
        sign = **p == '+' ? 1 : **p == '-' ? -1 : 0;
        ++*p;
        if (!sign || !take_digits(p, 2, &h) || *(*p)++ != ':' || !take_digits(p, 2, &m) || **p ||
            h > 23 || m > 59)
                return false;
        *offset = sign * (h * 3600L + m * 60L);
        return true;
}

/* An ISO date, date and time, or RFC 3339 time: unix usec. Without a zone: local time. */
static int parse_absolute(const char *s, uint64_t *ret)
{
        struct tm tm = {0}, back;
        int year, month, day;
        uint64_t usec = 0;
        long offset;
        bool local;
        time_t t;

        if (!take_digits(&s, 4, &year) || *s++ != '-' || !take_digits(&s, 2, &month) ||
            *s++ != '-' || !take_digits(&s, 2, &day) || year < 1970 || month < 1 || month > 12 ||
            day < 1 || day > 31)
                return -EINVAL;
        if ((*s == 'T' || *s == 't' || *s == ' ') && (++s, !take_clock(&s, &tm, &usec)))
                return -EINVAL;
        if (!take_zone(&s, &offset, &local))
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = month - 1;
        tm.tm_mday = day;
        back = tm;
        if (timegm(&back) < 0 || back.tm_mday != day) /* 2026-02-30 */
                return -EINVAL;
        tm.tm_isdst = -1;
        t = local ? mktime(&tm) : timegm(&tm) - offset;
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t)t * USEC_PER_SEC + usec;
        return 0;
}

/* "90s", "15m", "1h", "7d", "2w" before now, or an absolute time. */
static int parse_time(const char *s, uint64_t *ret)
{
        static const struct {
                char unit;
                uint64_t sec;
        } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
        size_t n = strspn(s, "0123456789");
        _cleanup_free_ char *num = NULL;
        uint64_t v, now = now_realtime_usec();

        if (n == 0 || n > 9 || !s[n] || s[n + 1])
                return parse_absolute(s, ret);
        num = strndup(s, n);
        if (!num || parse_u64(num, &v) < 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (s[n] == units[i].unit) {
                        uint64_t back = v * units[i].sec * USEC_PER_SEC;
                        *ret = back > now ? 0 : now - back;
                        return 0;
                }
        return -EINVAL;
}

/* ---- records ---- */

static const char *user_name(uint64_t uid, char buf[static 21])
{
        static struct {
                uint64_t uid;
                char *name;
        } cache[32];
        static size_t n;
        struct passwd *pw;
        const char *name = NULL;
        size_t i;

        for (i = 0; i < n && cache[i].uid != uid; i++)
                ;
        if (i < n) {
                name = cache[i].name;
        } else {
                pw = uid <= UINT32_MAX ? getpwuid((uid_t)uid) : NULL;
                name = pw ? pw->pw_name : NULL;
                if (n < ELEMENTSOF(cache)) {
                        cache[n].uid = uid;
                        cache[n].name = name ? strdup(name) : NULL;
                        name = cache[n++].name;
                }
        }
        if (name)
                return name;
        format_u64(uid, buf);
        return buf;
}

static bool peer_uid(const cJSON *rec, uint64_t *ret)
{
        const cJSON *peer = cJSON_GetObjectItemCaseSensitive(rec, "peer");

        return cJSON_IsObject(peer) && json_get_u64(peer, "uid", ret) == 0;
}

static bool string_is(const cJSON *rec, const char *key, const char *want)
{
        const char *s = json_get_string(rec, key);

        return !want || (s && strcmp(s, want) == 0);
}

static bool matches(const struct query *q, const cJSON *rec, uint64_t time)
{
        uint64_t uid;

        if (time < q->since || time >= q->until)
                return false;
        if (q->has_uid && (!peer_uid(rec, &uid) || uid != q->uid))
                return false;
        return string_is(rec, "profile", q->profile) && string_is(rec, "account", q->account) &&
               string_is(rec, "event", q->event);
}

/* A terminal-safe copy: control bytes (a peer chose its executable's name) become '?'. */
static const char *clean(const char *s, char *out, size_t size)
{
        size_t i = 0;

        if (!s)
                return "-";
        for (; s[i] && i + 1 < size; i++)
                out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        out[i] = 0;
        return out;
}

/* An executable's path cut to width columns at its start, where it says least: the tail names
 * the program. */
static const char *tail_of(const char *s, size_t width)
{
        size_t len = strlen(s);

        if (len <= width || width < 4)
                return s;
        return s + len - (width - 3);
}

static void print_header(void)
{
        printf("%-19s  %-10s  %-28s  %-12s  %-12s  %-14s  %s\n", "TIME", "USER", "EXE", "PROFILE",
               "ACCOUNT", "OUTCOME", "RULE");
}

static void print_row(const cJSON *rec, uint64_t time)
{
        const cJSON *peer = cJSON_GetObjectItemCaseSensitive(rec, "peer");
        const char *outcome = json_get_string(rec, "decision");
        char when[32] = "-", num[21], user[64], exe[256], prof[128], acct[128], out[96], rule[256];
        time_t sec = (time_t)(time / USEC_PER_SEC);
        struct tm tm;
        uint64_t uid, count;

        if (localtime_r(&sec, &tm))
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        clean(peer_uid(rec, &uid) ? user_name(uid, num) : NULL, user, sizeof(user));
        clean(outcome ? outcome : json_get_string(rec, "event"), out, sizeof(out) - 24);
        if (json_get_u64(rec, "count", &count) == 0)
                snprintf(out + strlen(out), 24, " x%llu", (unsigned long long)count);
        const char *path =
            clean(cJSON_IsObject(peer) ? json_get_string(peer, "exe") : NULL, exe, sizeof(exe));
        const char *shown = tail_of(path, 28);
        printf("%-19s  %-10s  %s%-*s  %-12s  %-12s  %-14s  %s\n", when,
               peer_uid(rec, &uid) ? user : "-", shown == path ? "" : "...",
               shown == path ? 28 : 25, shown,
               clean(json_get_string(rec, "profile"), prof, sizeof(prof)),
               clean(json_get_string(rec, "account"), acct, sizeof(acct)), out,
               clean(json_get_string(rec, "rule"), rule, sizeof(rule)));
}

/* ---- summary ---- */

/* Adds by to the number obj[key] (created at 0). */
static void bump(cJSON *obj, const char *key, double by)
{
        cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (item)
                cJSON_SetNumberValue(item, item->valuedouble + by);
        else
                cJSON_AddNumberToObject(obj, key, by);
}

static bool same(const cJSON *item, const char *s)
{
        return s ? cJSON_IsString(item) && strcmp(item->valuestring, s) == 0 : cJSON_IsNull(item);
}

static cJSON *add_string_or_null(cJSON *obj, const char *key, const char *s)
{
        return s ? cJSON_AddStringToObject(obj, key, s) : cJSON_AddNullToObject(obj, key);
}

/* The report's group of an account and a profile (either may be absent: null). */
static cJSON *group_of(cJSON *report, const char *account, const char *profile)
{
        cJSON *groups = cJSON_GetObjectItemCaseSensitive(report, "groups"), *g;
        static const char *const counters[] = {"tokens", "denials", "refresh_failed",
                                               "reauth_required"};
        static const char *const maps[] = {"users", "executables", "denials_by_reason",
                                           "denials_by_user", "refresh_errors"};

        cJSON_ArrayForEach(
            g, groups) if (same(cJSON_GetObjectItemCaseSensitive(g, "account"), account) &&
                           same(cJSON_GetObjectItemCaseSensitive(g, "profile"), profile)) return g;
        g = cJSON_CreateObject();
        if (!g || !cJSON_AddItemToArray(groups, g))
                return NULL;
        add_string_or_null(g, "account", account);
        add_string_or_null(g, "profile", profile);
        for (size_t i = 0; i < ELEMENTSOF(counters); i++)
                cJSON_AddNumberToObject(g, counters[i], 0);
        for (size_t i = 0; i < ELEMENTSOF(maps); i++)
                cJSON_AddObjectToObject(g, maps[i]);
        return g;
}

static void count_record(cJSON *report, const cJSON *rec)
{
        const char *event = json_get_string(rec, "event"), *reason, *exe = NULL;
        const cJSON *peer = cJSON_GetObjectItemCaseSensitive(rec, "peer");
        char num[21];
        const char *user = "-";
        uint64_t uid, count = 1;
        cJSON *g;

        if (!event || (strcmp(event, "issue") != 0 && strcmp(event, "deny") != 0 &&
                       strcmp(event, "bad_request") != 0 && strcmp(event, "refresh_failed") != 0 &&
                       strcmp(event, "reauth_required") != 0))
                return;
        if (peer_uid(rec, &uid))
                user = user_name(uid, num);
        if (cJSON_IsObject(peer))
                exe = json_get_string(peer, "exe");
        g = group_of(report, json_get_string(rec, "account"), json_get_string(rec, "profile"));
        if (!g)
                return;
        if (strcmp(event, "issue") == 0) {
                bump(g, "tokens", 1);
                bump(cJSON_GetObjectItemCaseSensitive(g, "users"), user, 1);
                bump(cJSON_GetObjectItemCaseSensitive(g, "executables"), exe ? exe : "(unknown)",
                     1);
        } else if (strcmp(event, "deny") == 0 || strcmp(event, "bad_request") == 0) {
                (void)json_get_u64(rec, "count", &count); /* an aggregated record: count denials */
                reason = json_get_string(rec, "reason");
                bump(g, "denials", (double)count);
                bump(cJSON_GetObjectItemCaseSensitive(g, "denials_by_reason"),
                     reason ? reason : "(none)", (double)count);
                bump(cJSON_GetObjectItemCaseSensitive(g, "denials_by_user"), user, (double)count);
        } else if (strcmp(event, "refresh_failed") == 0) {
                reason = json_get_string(rec, "error");
                bump(g, "refresh_failed", 1);
                bump(cJSON_GetObjectItemCaseSensitive(g, "refresh_errors"),
                     reason ? reason : "(none)", 1);
        } else if (strcmp(event, "reauth_required") == 0) {
                bump(g, "reauth_required", 1);
        }
}

static void summarise(struct query *q, const cJSON *rec, const char *time)
{
        cJSON *first = cJSON_GetObjectItemCaseSensitive(q->report, "first");

        bump(q->report, "records", 1);
        if (cJSON_IsNull(first))
                cJSON_ReplaceItemInObjectCaseSensitive(q->report, "first",
                                                       cJSON_CreateString(time));
        cJSON_ReplaceItemInObjectCaseSensitive(q->report, "last", cJSON_CreateString(time));
        count_record(q->report, rec);
}

/* "a 3, b 1" from a map of counts, sanitised. */
static void print_map(const char *title, const cJSON *map)
{
        const cJSON *item;
        char text[256];

        if (!cJSON_GetArraySize(map))
                return;
        printf("    %s:", title);
        cJSON_ArrayForEach(item, map)
            printf("%s %s %.0f", item == map->child ? "" : ",",
                   clean(item->string, text, sizeof(text)), item->valuedouble);
        putchar('\n');
}

static double number(const cJSON *obj, const char *key)
{
        return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static void print_group(const cJSON *g)
{
        const cJSON *account = cJSON_GetObjectItemCaseSensitive(g, "account");
        const cJSON *profile = cJSON_GetObjectItemCaseSensitive(g, "profile");
        char a[128], p[128];

        printf("\naccount %s, profile %s\n", clean(cJSON_GetStringValue(account), a, sizeof(a)),
               clean(cJSON_GetStringValue(profile), p, sizeof(p)));
        printf("  tokens issued: %.0f\n", number(g, "tokens"));
        print_map("to users", cJSON_GetObjectItemCaseSensitive(g, "users"));
        print_map("to executables", cJSON_GetObjectItemCaseSensitive(g, "executables"));
        printf("  denials: %.0f\n", number(g, "denials"));
        print_map("by reason", cJSON_GetObjectItemCaseSensitive(g, "denials_by_reason"));
        print_map("by user", cJSON_GetObjectItemCaseSensitive(g, "denials_by_user"));
        printf("  refresh failures: %.0f\n", number(g, "refresh_failed"));
        print_map("by error", cJSON_GetObjectItemCaseSensitive(g, "refresh_errors"));
        printf("  reauthentication required: %.0f\n", number(g, "reauth_required"));
}

static int print_report(const struct query *q)
{
        const cJSON *g, *groups = cJSON_GetObjectItemCaseSensitive(q->report, "groups");
        char *text;

        if (q->json) {
                text = cJSON_PrintUnformatted(q->report);
                if (!text)
                        return EXIT_SOFTWARE;
                puts(text);
                json_free_string(text);
                return 0;
        }
        printf("Audit summary: %.0f records", number(q->report, "records"));
        if (cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q->report, "first")))
                printf(", %s to %s",
                       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q->report, "first")),
                       cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(q->report, "last")));
        putchar('\n');
        cJSON_ArrayForEach(g, groups) print_group(g);
        return 0;
}

/* ---- reading ---- */

static void handle_line(struct query *q, struct audit_reader *r, const char *line, size_t len)
{
        _cleanup_json_ cJSON *rec = NULL;
        const char *time;
        uint64_t usec;

        if (memchr(line, 0, len) || json_parse(line, len, &rec) < 0 || !cJSON_IsObject(rec) ||
            !json_get_string(rec, "event") || !(time = json_get_string(rec, "time")) ||
            parse_absolute(time, &usec) < 0) {
                fprintf(stderr, "credbroker: %s:%lu: not an audit record, skipped\n",
                        audit_reader_path(r), audit_reader_lineno(r));
                return;
        }
        if (!matches(q, rec, usec))
                return;
        if (q->summary)
                summarise(q, rec, time);
        else if (q->json)
                printf("%s\n", line);
        else {
                if (!q->header_done)
                        print_header();
                q->header_done = true;
                print_row(rec, usec);
        }
}

/* Reads r to its end (hold: a partial last line waits for more). 0 or an exit status. */
static int drain(struct query *q, struct audit_reader *r, bool hold)
{
        const char *line;
        size_t len;
        bool complete;
        int k;

        while ((k = audit_reader_next(r, hold, &line, &len, &complete)) != 0) {
                if (k == -E2BIG)
                        fprintf(stderr, "credbroker: %s:%lu: line longer than %d bytes, skipped\n",
                                audit_reader_path(r), audit_reader_lineno(r), AUDIT_LINE_MAX);
                else if (k < 0)
                        return audit_files_open_error(audit_reader_path(r), -k);
                else
                        handle_line(q, r, line, len);
        }
        return 0;
}

/* Whether path now names another file than r reads (the log was rotated). */
static bool replaced(struct audit_reader *r, const char *path)
{
        struct stat st;
        dev_t dev;
        ino_t ino;

        return stat(path, &st) == 0 && audit_reader_stat(r, &dev, &ino) == 0 &&
               (st.st_dev != dev || st.st_ino != ino);
}

/* tail -F: reads what is appended; when the path is replaced, finishes the old file and goes
 * on with the new one. Returns only on a read error. */
static int follow(struct query *q, struct audit_reader *r, const char *path)
{
        _cleanup_(audit_reader_freep) struct audit_reader *cur = r;
        struct timespec pause = {0, FOLLOW_INTERVAL_USEC * 1000};
        int k;

        for (;;) {
                k = drain(q, cur, true);
                fflush(stdout);
                if (k != 0)
                        return k;
                nanosleep(&pause, NULL);
                if (replaced(cur, path)) {
                        struct audit_reader *next = NULL;
                        k = drain(q, cur, false);
                        if (k != 0)
                                return k;
                        k = audit_reader_open(path, &next);
                        if (k < 0)
                                return audit_files_open_error(path, -k);
                        audit_reader_free(cur);
                        cur = next;
                }
        }
}

static int read_files(struct query *q)
{
        for (size_t i = 0; q->files[i]; i++) {
                struct audit_reader *r = NULL;
                bool last = !q->files[i + 1];
                int k = audit_reader_open(q->files[i], &r);

                if (k < 0)
                        return audit_files_open_error(q->files[i], -k);
                if (last && q->follow)
                        return follow(q, r, q->files[i]);
                k = drain(q, r, false);
                audit_reader_free(r);
                if (k != 0)
                        return k;
        }
        return 0;
}

/* ---- options ---- */

static void usage(FILE *f, bool summary)
{
        fprintf(f,
                "Usage: credbroker audit%s [--since T] [--until T] [--uid U|--user NAME]\n"
                "         [--profile P] [--account A] [--event E] [--json]%s [--config PATH] "
                "[FILE...]\n"
                "\n"
                "Reads the configured audit_log and its rotated (.N, .N.gz) predecessors, or "
                "FILEs.\n"
                "T: 2026-12-04, 2026-12-04T10:00, RFC 3339, or before now: 90s, 15m, 1h, 7d, 2w.\n",
                summary ? " summary" : "", summary ? "" : " [-f]");
}

static int parse_uid_option(struct query *q, int c, const char *arg)
{
        struct passwd *pw;

        q->has_uid = true;
        if (c == 'U') {
                if (parse_u64(arg, &q->uid) == 0)
                        return 0;
                fprintf(stderr, "credbroker: --uid wants a number: %s\n", arg);
                return -EINVAL;
        }
        pw = getpwnam(arg);
        if (!pw) {
                fprintf(stderr, "credbroker: no such user: %s\n", arg);
                return -EINVAL;
        }
        q->uid = pw->pw_uid;
        return 0;
}

static int parse_one(struct query *q, int c, const char *arg)
{
        switch (c) {
        case 's':
        case 'u':
                if (parse_time(arg, c == 's' ? &q->since : &q->until) == 0)
                        return 0;
                fprintf(stderr,
                        "credbroker: not a time: %s (2026-12-04, 2026-12-04T10:00, RFC 3339, or "
                        "90s, 15m, 1h, 7d before now)\n",
                        arg);
                return -EINVAL;
        case 'U':
        case 'N':
                return parse_uid_option(q, c, arg);
        case 'p':
                q->profile = arg;
                return 0;
        case 'a':
                q->account = arg;
                return 0;
        case 'e':
                q->event = arg;
                return 0;
        case 'j':
                q->json = true;
                return 0;
        case 'f':
                q->follow = !q->summary;
                return q->summary ? -EINVAL : 0;
        case 'c':
                q->config = arg;
                return 0;
        }
        return -EINVAL;
}

/* 0, or the exit status when the command is over (--help, a bad option). */
static int parse_options(struct query *q, int argc, char **argv)
{
        static const struct option options[] = {
            {"since", required_argument, NULL, 's'},   {"until", required_argument, NULL, 'u'},
            {"uid", required_argument, NULL, 'U'},     {"user", required_argument, NULL, 'N'},
            {"profile", required_argument, NULL, 'p'}, {"account", required_argument, NULL, 'a'},
            {"event", required_argument, NULL, 'e'},   {"json", no_argument, NULL, 'j'},
            {"follow", no_argument, NULL, 'f'},        {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},          {0},
        };
        int c;

        q->until = UINT64_MAX;
        optind = 1;
        while ((c = getopt_long(argc, argv, "fc:h", options, NULL)) >= 0) {
                if (c == 'h') {
                        usage(stdout, q->summary);
                        return -1;
                }
                if (c == '?' || parse_one(q, c, optarg) < 0) {
                        usage(stderr, q->summary);
                        return EXIT_USAGE;
                }
        }
        return 0;
}

/* The configured audit_log and its predecessors. 0 or an exit status. */
static int configured_files(const char *config_option, char ***ret)
{
        _cleanup_(config_freep) struct config *c = NULL;
        const char *path = cli_config_path(config_option),
                   *env = secure_getenv("CREDBROKER_CONFIG");
        int r;

        if (!config_option && !(env && *env) && access(path, F_OK) < 0)
                r = config_new_default(&c);
        else
                r = config_load(path, false, &c);
        if (r < 0)
                return EXIT_CONFIG;
        return audit_files_list(c->audit_log, ret) < 0 ? EXIT_SOFTWARE : 0;
}

static void free_files(char **files)
{
        for (size_t i = 0; files && files[i]; i++)
                free(files[i]);
        free(files);
}

static cJSON *new_report(const struct query *q)
{
        cJSON *report = cJSON_CreateObject();
        char since[25], until[25];

        if (!report)
                return NULL;
        format_rfc3339_ms(q->since, since);
        format_rfc3339_ms(q->until == UINT64_MAX ? 0 : q->until, until);
        add_string_or_null(report, "since", q->since ? since : NULL);
        add_string_or_null(report, "until", q->until != UINT64_MAX ? until : NULL);
        cJSON_AddNumberToObject(report, "records", 0);
        cJSON_AddNullToObject(report, "first");
        cJSON_AddNullToObject(report, "last");
        if (!cJSON_AddArrayToObject(report, "groups")) {
                cJSON_Delete(report);
                return NULL;
        }
        return report;
}

static int run(struct query *q, int argc, char **argv)
{
        char **owned = NULL;
        int r = parse_options(q, argc, argv);

        if (r != 0)
                return r < 0 ? 0 : r;
        if (q->summary && !(q->report = new_report(q)))
                return EXIT_SOFTWARE;
        if (optind < argc)
                q->files = argv + optind;
        else if ((r = configured_files(q->config, &owned)) != 0)
                return r;
        else
                q->files = owned;
        r = read_files(q);
        if (r == 0 && q->summary)
                r = print_report(q);
        free_files(owned);
        return r;
}

int audit_query_main(int argc, char **argv)
{
        struct query q = {0};

        return run(&q, argc, argv);
}

int audit_summary_main(int argc, char **argv)
{
        struct query q = {.summary = true};
        int r = run(&q, argc, argv);

        cJSON_Delete(q.report);
        return r;
}
