/* The policy modules: parsing each one's arguments into a rule, and deciding whether a rule
 * succeeds for a peer or a request. Names are resolved here, at load, never while deciding. */
#include "policy-internal.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const control_names[] = {
    [CONTROL_REQUIRED] = "required",
    [CONTROL_REQUISITE] = "requisite",
    [CONTROL_SUFFICIENT] = "sufficient",
    [CONTROL_OPTIONAL] = "optional",
};

struct module_info {
        const char *name;
        bool peer, request; /* the stacks it may appear in */
};

static const struct module_info modules[] = {
    [MODULE_UID] = {"uid", true, false},         [MODULE_GROUP] = {"group", true, false},
    [MODULE_EXE] = {"exe", true, false},         [MODULE_UNIT] = {"unit", true, false},
    [MODULE_TIME] = {"time", true, false},       [MODULE_RATE] = {"rate", false, true},
    [MODULE_MIN_TTL] = {"min_ttl", false, true}, [MODULE_DENY] = {"deny", true, true},
    [MODULE_PERMIT] = {"permit", true, true},
};

const char *policy_module_name(enum policy_module m)
{
        return modules[m].name;
}

const char *policy_control_name(enum policy_control c)
{
        return control_names[c];
}

static int resolve_uid(const char *word, uint32_t *ret)
{
        char buffer[4096];
        struct passwd pw, *found = NULL;
        uint32_t id;

        /* (uid_t)-1 means "no uid" to the kernel; it can never be a peer's. */
        if (parse_u32(word, &id) == 0)
                return id == UINT32_MAX ? -ERANGE : (*ret = id, 0);
        if (getpwnam_r(word, &pw, buffer, sizeof(buffer), &found) != 0 || !found)
                return -ENOENT;
        *ret = found->pw_uid;
        return 0;
}

static int resolve_gid(const char *word, uint32_t *ret)
{
        char buffer[16384];
        struct group gr, *found = NULL;
        uint32_t id;

        if (parse_u32(word, &id) == 0)
                return id == UINT32_MAX ? -ERANGE : (*ret = id, 0);
        if (getgrnam_r(word, &gr, buffer, sizeof(buffer), &found) != 0 || !found)
                return -ENOENT;
        *ret = found->gr_gid;
        return 0;
}

static bool has_glob_characters(const char *s)
{
        return strpbrk(s, "*?[") != NULL;
}

static bool unit_character_is_valid(char c)
{
        /* systemd's unit name alphabet, plus the glob characters and the '/' that joins a user
         * manager to its unit. */
        return isalnum((unsigned char)c) || strchr(":_.@\\-*?[]!/", c);
}

/* A unit pattern is one unit name, or a user manager's unit named with its manager
 * ("user@1000.service/backup.service", "user@*.service/backup.service"): at most one '/', with
 * a name on each side, as the broker names units (peer.h). */
static bool unit_pattern_is_valid(const char *w)
{
        const char *slash = strchr(w, '/');

        if (!slash)
                return true;
        return slash != w && slash[1] != 0 && !strchr(slash + 1, '/');
}

static int parse_patterns(struct rule *rule, char **words, size_t n, const char *file,
                          unsigned line, struct policy_reporter *rep)
{
        bool exe = rule->module == MODULE_EXE;

        if (n == 0) {
                policy_report(rep, file, line, "%s wants at least one %s",
                              modules[rule->module].name,
                              exe ? "absolute path or glob" : "unit name or glob");
                return -EINVAL;
        }
        if (n > POLICY_MAX_PATTERNS) {
                policy_report(rep, file, line, "more than %d patterns in one rule",
                              POLICY_MAX_PATTERNS);
                return -EINVAL;
        }
        rule->u.match.patterns = calloc(n, sizeof(*rule->u.match.patterns));
        rule->u.match.globs = calloc(n, sizeof(*rule->u.match.globs));
        if (!rule->u.match.patterns || !rule->u.match.globs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *w = words[i];
                size_t len = strlen(w), stars = 0;

                if (len >= POLICY_PATTERN_MAX) {
                        policy_report(rep, file, line, "pattern longer than %d bytes",
                                      POLICY_PATTERN_MAX - 1);
                        return -EINVAL;
                }
                for (size_t k = 0; k < len; k++) {
                        stars += w[k] == '*';
                        unsigned char c = (unsigned char)w[k];
                        /* Paths may hold any byte but controls (UTF-8 names included). */
                        if (exe ? (c < 0x20 || c == 0x7f) : !unit_character_is_valid(w[k])) {
                                policy_report(rep, file, line,
                                              "\"%.64s\" is not a valid %s pattern", w,
                                              exe ? "executable" : "unit");
                                return -EINVAL;
                        }
                }
                if (!exe && !unit_pattern_is_valid(w)) {
                        policy_report(rep, file, line,
                                      "unit \"%.64s\": a '/' only joins a user manager to its "
                                      "unit, like user@*.service/backup.service",
                                      w);
                        return -EINVAL;
                }
                if (exe && w[0] != '/') {
                        policy_report(rep, file, line,
                                      "exe \"%.64s\" must be an absolute path or glob", w);
                        return -EINVAL;
                }
                if (stars > POLICY_GLOB_MAX_STAR) {
                        policy_report(rep, file, line, "more than %d '*' in one glob",
                                      POLICY_GLOB_MAX_STAR);
                        return -EINVAL;
                }
                rule->u.match.patterns[i] = strdup(w);
                if (!rule->u.match.patterns[i])
                        return -ENOMEM;
                rule->u.match.globs[i] = has_glob_characters(w);
                rule->u.match.n_patterns++;
        }
        return 0;
}

static int parse_ids(struct rule *rule, char **words, size_t n, const char *file, unsigned line,
                     struct policy_reporter *rep)
{
        bool uid = rule->module == MODULE_UID;

        if (n == 0 || n > POLICY_MAX_IDS) {
                policy_report(rep, file, line, "%s wants 1-%d names or numbers",
                              modules[rule->module].name, POLICY_MAX_IDS);
                return -EINVAL;
        }
        rule->u.id.ids = calloc(n, sizeof(*rule->u.id.ids));
        if (!rule->u.id.ids)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                uint32_t *id = &rule->u.id.ids[rule->u.id.n_ids];
                int r = uid ? resolve_uid(words[i], id) : resolve_gid(words[i], id);

                if (r < 0) {
                        policy_report(rep, file, line, "unknown %s \"%.64s\"",
                                      uid ? "user" : "group", words[i]);
                        return -EINVAL;
                }
                rule->u.id.n_ids++;
        }
        return 0;
}

static int parse_day(const char *s, size_t len, int *ret)
{
        /* Indexed by tm_wday. */
        static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

        if (len != 3)
                return -EINVAL;
        for (int i = 0; i < 7; i++)
                if (strncasecmp(s, days[i], 3) == 0) {
                        *ret = i;
                        return 0;
                }
        return -EINVAL;
}

/* "Mon-Fri", "Sat,Sun", "Mon,Wed-Fri", "Fri-Mon" (wrapping over the weekend). */
static int parse_days(const char *s, uint8_t *ret)
{
        uint8_t days = 0;

        for (;;) {
                size_t item = strcspn(s, ",");
                const char *dash = memchr(s, '-', item);
                int from, to;

                if (dash) {
                        if (parse_day(s, (size_t)(dash - s), &from) < 0 ||
                            parse_day(dash + 1, item - (size_t)(dash - s) - 1, &to) < 0)
                                return -EINVAL;
                } else {
                        if (parse_day(s, item, &from) < 0)
                                return -EINVAL;
                        to = from;
                }
                for (int d = from;; d = (d + 1) % 7) {
                        days |= (uint8_t)(1u << d);
                        if (d == to)
                                break;
                }
                if (s[item] == 0)
                        break;
                s += item + 1;
        }
        *ret = days;
        return 0;
}

static int parse_clock(const char *s, bool end, uint16_t *ret)
{
        unsigned hours, minutes;

        if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) || s[2] != ':' ||
            !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
                return -EINVAL;
        hours = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
        minutes = (unsigned)(s[3] - '0') * 10 + (unsigned)(s[4] - '0');
        /* 24:00 ends a day; it starts none. */
        if (minutes > 59 || hours > 24 || (hours == 24 && (minutes != 0 || !end)))
                return -EINVAL;
        *ret = (uint16_t)(hours * 60 + minutes);
        return 0;
}

static int parse_hours(const char *s, struct time_window *w)
{
        if (strlen(s) != 11 || s[5] != '-' || parse_clock(s, false, &w->start_minute) < 0 ||
            parse_clock(s + 6, true, &w->end_minute) < 0)
                return -EINVAL;
        /* A range that ends at 00:00 or before its start crosses midnight; one that ends where
         * it starts would be empty or ambiguous. */
        return w->start_minute == w->end_minute ? -EINVAL : 0;
}

static int parse_time(struct rule *rule, char **words, size_t n, const char *file, unsigned line,
                      struct policy_reporter *rep)
{
        size_t i = 0;

        if (n == 0) {
                policy_report(rep, file, line, "time wants windows like \"Mon-Fri 06:00-22:00\"");
                return -EINVAL;
        }
        while (i < n) {
                struct time_window w = {.days = 0x7f};

                if (rule->u.time.n_windows == POLICY_MAX_WINDOWS) {
                        policy_report(rep, file, line, "more than %d time windows",
                                      POLICY_MAX_WINDOWS);
                        return -EINVAL;
                }
                if (!strchr(words[i], ':')) {
                        if (parse_days(words[i], &w.days) < 0) {
                                policy_report(rep, file, line,
                                              "bad days \"%.64s\" (like Mon-Fri or Sat,Sun)",
                                              words[i]);
                                return -EINVAL;
                        }
                        if (++i == n) {
                                policy_report(rep, file, line,
                                              "days \"%.64s\" want hours after them", words[i - 1]);
                                return -EINVAL;
                        }
                }
                if (parse_hours(words[i], &w) < 0) {
                        policy_report(rep, file, line,
                                      "bad hours \"%.64s\" (HH:MM-HH:MM, 00:00-24:00, start and "
                                      "end differ)",
                                      words[i]);
                        return -EINVAL;
                }
                rule->u.time.windows[rule->u.time.n_windows++] = w;
                i++;
        }
        return 0;
}

static int parse_rate(struct rule *rule, char **words, size_t n, const char *file, unsigned line,
                      struct policy_reporter *rep)
{
        static const struct {
                const char *name, *canonical;
                uint64_t usec;
        } units[] = {
            {"s", "s", USEC_PER_SEC},
            {"sec", "s", USEC_PER_SEC},
            {"second", "s", USEC_PER_SEC},
            {"min", "min", 60 * USEC_PER_SEC},
            {"minute", "min", 60 * USEC_PER_SEC},
            {"h", "hour", 3600 * USEC_PER_SEC},
            {"hour", "hour", 3600 * USEC_PER_SEC},
        };
        char number[16];
        const char *slash;
        uint32_t tokens;
        bool found = false;

        if (n < 1 || n > 2) {
                policy_report(
                    rep, file, line,
                    "rate wants \"N/s|min|hour [per-uid|per-profile]\", like 60/min per-uid");
                return -EINVAL;
        }
        slash = strchr(words[0], '/');
        if (!slash || (size_t)(slash - words[0]) >= sizeof(number)) {
                policy_report(rep, file, line, "bad rate \"%.64s\" (like 60/min)", words[0]);
                return -EINVAL;
        }
        memcpy(number, words[0], (size_t)(slash - words[0]));
        number[slash - words[0]] = 0;
        if (parse_u32(number, &tokens) < 0 || tokens == 0 || tokens > POLICY_RATE_MAX) {
                policy_report(rep, file, line, "rate count \"%.16s\" must be 1-%d", number,
                              POLICY_RATE_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(slash + 1, units[i].name) == 0) {
                        rule->u.rate.period_usec = units[i].usec;
                        rule->u.rate.unit_name = units[i].canonical;
                        found = true;
                }
        if (!found) {
                policy_report(rep, file, line, "rate period \"%.16s\" must be s, min or hour",
                              slash + 1);
                return -EINVAL;
        }
        rule->u.rate.tokens = tokens;
        rule->u.rate.key = RATE_PER_PROFILE;
        if (n == 2) {
                if (strcmp(words[1], "per-uid") == 0)
                        rule->u.rate.key = RATE_PER_UID;
                else if (strcmp(words[1], "per-profile") != 0) {
                        policy_report(rep, file, line,
                                      "rate key \"%.32s\" must be per-uid or per-profile",
                                      words[1]);
                        return -EINVAL;
                }
        }
        return 0;
}

static int parse_min_ttl(struct rule *rule, char **words, size_t n, const char *file, unsigned line,
                         struct policy_reporter *rep)
{
        if (n != 1 || strncmp(words[0], "max=", 4) != 0 ||
            parse_u32(words[0] + 4, &rule->u.min_ttl.max) < 0) {
                policy_report(rep, file, line, "min_ttl wants \"max=SECONDS\"");
                return -EINVAL;
        }
        return 0;
}

static int join_arguments(struct rule *rule, char **words, size_t n)
{
        size_t len = 1;
        char *s;

        for (size_t i = 0; i < n; i++)
                len += strlen(words[i]) + 1;
        s = malloc(len);
        if (!s)
                return -ENOMEM;
        s[0] = 0;
        for (size_t i = 0, at = 0; i < n; i++) {
                size_t w = strlen(words[i]);
                if (i > 0)
                        s[at++] = ' ';
                memcpy(s + at, words[i], w + 1);
                at += w;
        }
        rule->arguments = s;
        return 0;
}

/* rule->where: "file:line", cut at POLICY_WHERE_MAX - 1 bytes as in the array it was. */
static int rule_where(struct rule *rule, const char *file, unsigned line)
{
        char where[POLICY_WHERE_MAX];

        snprintf(where, sizeof(where), "%s:%u", file, line);
        rule->where = strdup(where);
        return rule->where ? 0 : -ENOMEM;
}

void policy_rule_clear(struct rule *rule)
{
        if (rule->module == MODULE_EXE || rule->module == MODULE_UNIT) {
                for (size_t i = 0; i < rule->u.match.n_patterns; i++)
                        free(rule->u.match.patterns[i]);
                free(rule->u.match.patterns);
                free(rule->u.match.globs);
        }
        if (rule->module == MODULE_UID || rule->module == MODULE_GROUP)
                free(rule->u.id.ids);
        free(rule->where);
        free(rule->arguments);
        memset(rule, 0, sizeof(*rule));
}

/* The module's arguments, words[0..n) after CONTROL MODULE. */
static int parse_arguments(struct rule *rule, char **words, size_t n, const char *file,
                           unsigned line, struct policy_reporter *rep)
{
        switch (rule->module) {
        case MODULE_UID:
        case MODULE_GROUP:
                return parse_ids(rule, words, n, file, line, rep);
        case MODULE_EXE:
        case MODULE_UNIT:
                return parse_patterns(rule, words, n, file, line, rep);
        case MODULE_TIME:
                return parse_time(rule, words, n, file, line, rep);
        case MODULE_RATE:
                return parse_rate(rule, words, n, file, line, rep);
        case MODULE_MIN_TTL:
                return parse_min_ttl(rule, words, n, file, line, rep);
        case MODULE_DENY:
        case MODULE_PERMIT:
                if (n > 0) {
                        policy_report(rep, file, line, "%s takes no arguments",
                                      modules[rule->module].name);
                        return -EINVAL;
                }
                return 0;
        default:
                return -EINVAL;
        }
}

int policy_rule_parse(struct rule *rule, enum policy_stack stack, char **words, size_t n,
                      const char *file, unsigned line, struct policy_reporter *rep)
{
        const char *stack_name = stack == STACK_PEER ? "peer" : "request";
        bool found = false;
        int r;

        memset(rule, 0, sizeof(*rule));
        if (n < 2) {
                policy_report(rep, file, line, "expected \"%s CONTROL MODULE [ARGUMENTS...]\"",
                              stack_name);
                return -EINVAL;
        }
        for (size_t i = 0; i < ELEMENTSOF(control_names) && !found; i++)
                if (strcmp(words[0], control_names[i]) == 0) {
                        rule->control = (enum policy_control)i;
                        found = true;
                }
        if (!found) {
                policy_report(rep, file, line,
                              "unknown control \"%.64s\" (required, requisite, sufficient, "
                              "optional)",
                              words[0]);
                return -EINVAL;
        }
        found = false;
        for (size_t i = 0; i < ELEMENTSOF(modules) && !found; i++)
                if (strcmp(words[1], modules[i].name) == 0) {
                        rule->module = (enum policy_module)i;
                        found = true;
                }
        if (!found) {
                policy_report(rep, file, line,
                              "unknown module \"%.64s\" (peer: uid, group, exe, unit, time, deny, "
                              "permit; request: rate, min_ttl, deny, permit)",
                              words[1]);
                return -EINVAL;
        }
        if (stack == STACK_PEER ? !modules[rule->module].peer : !modules[rule->module].request) {
                policy_report(rep, file, line, "module %s belongs in the %s stack, not %s",
                              modules[rule->module].name, stack == STACK_PEER ? "request" : "peer",
                              stack_name);
                return -EINVAL;
        }

        words += 2;
        n -= 2;
        r = parse_arguments(rule, words, n, file, line, rep);
        if (r >= 0)
                r = join_arguments(rule, words, n);
        if (r >= 0)
                r = rule_where(rule, file, line);
        if (r < 0)
                policy_rule_clear(rule);
        return r;
}

static bool patterns_match(const struct rule *rule, const char *value, int flags)
{
        /* Unknown (the process is gone, or /proc could not be read) matches nothing. */
        if (!value)
                return false;
        for (size_t i = 0; i < rule->u.match.n_patterns; i++) {
                const char *pattern = rule->u.match.patterns[i];
                if (rule->u.match.globs[i] ? fnmatch(pattern, value, flags) == 0
                                           : strcmp(pattern, value) == 0)
                        return true;
        }
        return false;
}

static bool time_matches(const struct rule *rule, time_t wall, struct local_time *local)
{
        unsigned minute, today, yesterday;

        if (!local->known) {
                struct tm tm;

                /* Local time through the time zone rules, so windows follow DST changes. */
                local->known = true;
                local->valid = localtime_r(&wall, &tm) != NULL;
                if (local->valid) {
                        local->minute = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
                        local->wday = tm.tm_wday;
                }
        }
        if (!local->valid)
                return false;
        minute = local->minute;
        today = 1u << local->wday;
        yesterday = 1u << ((local->wday + 6) % 7);
        for (size_t i = 0; i < rule->u.time.n_windows; i++) {
                const struct time_window *w = &rule->u.time.windows[i];

                if (w->start_minute < w->end_minute) {
                        if ((w->days & today) && minute >= w->start_minute &&
                            minute < w->end_minute)
                                return true;
                } else {
                        /* Crossing midnight: the evening part on a listed day, the morning
                         * part on the day after one. */
                        if ((w->days & today) && minute >= w->start_minute)
                                return true;
                        if ((w->days & yesterday) && minute < w->end_minute)
                                return true;
                }
        }
        return false;
}

bool policy_rule_matches_peer(const struct rule *rule, const struct policy_peer *peer,
                              const struct policy_time *now, struct local_time *local)
{
        switch (rule->module) {
        case MODULE_UID:
                for (size_t i = 0; i < rule->u.id.n_ids; i++)
                        if (peer->uid == rule->u.id.ids[i])
                                return true;
                return false;
        case MODULE_GROUP:
                for (size_t i = 0; i < rule->u.id.n_ids; i++) {
                        if (peer->gid == rule->u.id.ids[i])
                                return true;
                        for (size_t g = 0; g < peer->n_groups; g++)
                                if (peer->groups[g] == rule->u.id.ids[i])
                                        return true;
                }
                return false;
        case MODULE_EXE:
                return patterns_match(rule, peer->exe, FNM_PATHNAME);
        case MODULE_UNIT:
                /* FNM_PATHNAME: "*backup.service" must not reach into a user manager's units
                 * ("user@1000.service/evil-backup.service"); those are matched only by patterns
                 * that name a manager. FNM_NOESCAPE: a backslash is a character of unit names
                 * ("dev-disk-by\x2duuid"), never an escape. */
                return patterns_match(rule, peer->unit, FNM_PATHNAME | FNM_NOESCAPE);
        case MODULE_TIME:
                return time_matches(rule, now->wall, local);
        case MODULE_PERMIT:
                return true;
        default:
                return false;
        }
}

bool policy_rule_matches_request(const struct rule *rule, const struct policy_request *req)
{
        switch (rule->module) {
        case MODULE_MIN_TTL:
                return req->min_ttl <= rule->u.min_ttl.max;
        case MODULE_PERMIT:
                return true;
        default:
                return false;
        }
}
