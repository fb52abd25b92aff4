/* INI configuration parser; see config.h. Lines are "key = value", sections "[name]", comments
 * start with '#' or ';'. Values are taken verbatim after trimming. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "trusted-file.h"
#include "util.h"

static int set_string(char **field, const char *value)
{
        char *copy = strdup(value);

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

static int config_mail_defaults(struct config_mail *m)
{
        if (set_string(&m->spool_dir, CONFIG_MAIL_SPOOL_DIR_DEFAULT) < 0 ||
            set_string(&m->maildrop_dir, CONFIG_MAIL_SPOOL_DIR_DEFAULT "/maildrop") < 0 ||
            set_string(&m->deliver_helper, LIBEXECDIR "/credbroker-deliver") < 0)
                return -ENOMEM;
        m->lifetime_sec = CONFIG_MAIL_LIFETIME_DEFAULT;
        m->retry_min_sec = CONFIG_MAIL_RETRY_MIN_DEFAULT;
        m->retry_max_sec = CONFIG_MAIL_RETRY_MAX_DEFAULT;
        m->deliver_timeout_sec = 600;
        m->concurrency = 4;
        m->rate_per_minute = 30;
        m->max_message_mb = 150;
        m->max_spool_mb = 2048;
        m->max_uid_mb = 512;
        m->max_messages = 100000;
        m->max_submits_per_uid = 4;
        m->scan_interval_sec = 60;
        return 0;
}

int config_new_default(struct config **ret)
{
        struct config *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        if (set_string(&c->socket_path, DEFAULT_SOCKET) < 0 ||
            set_string(&c->admin_socket_path, DEFAULT_ADMIN_SOCKET) < 0 ||
            set_string(&c->policy_dir, SYSCONFDIR "/policy.d") < 0 ||
            set_string(&c->audit_log, "/var/log/credbroker/audit.log") < 0 ||
            set_string(&c->log_level, "info") < 0 ||
            set_string(&c->module_path, "/usr/lib/softhsm/libsofthsm2.so") < 0 ||
            set_string(&c->token_uri, "pkcs11:token=credbroker") < 0 ||
            set_string(&c->pin_source, "credential:pkcs11-pin") < 0 ||
            set_string(&c->authority, "https://login.microsoftonline.com") < 0 ||
            set_string(&c->graph_url, "https://graph.microsoft.com") < 0 ||
            set_string(&c->ca_bundle, "/etc/ssl/certs/ca-certificates.crt") < 0 ||
            set_string(&c->module_dirs[0], "/usr/lib*") < 0 ||
            set_string(&c->module_dirs[1], "/usr/local/lib*") < 0 ||
            set_string(&c->wrapped_dir, CONFIG_WRAPPED_DIR_DEFAULT) < 0) {
                config_free(c);
                return -ENOMEM;
        }
        c->n_module_dirs = 2;
        c->softhsm_reopen_after = CONFIG_SOFTHSM_REOPEN_AFTER_DEFAULT;
        c->keepalive_days = CONFIG_KEEPALIVE_DAYS_DEFAULT;
        c->connect_timeout_sec = 10;
        c->timeout_sec = 30;
        c->warn_days = CONFIG_WARN_DAYS_DEFAULT;
        c->max_connections_per_uid = 64;
        c->idle_timeout_sec = 60;
        c->frame_timeout_sec = 5;
        c->request_rate_per_uid = 50;
        c->request_burst_per_uid = 200;
        c->audit_aggregate_sec = 10;
        c->refresh_concurrency_per_authority = CONFIG_REFRESH_CONCURRENCY_DEFAULT;
        c->refresh_ahead_spread = CONFIG_REFRESH_AHEAD_SPREAD_DEFAULT;
        c->min_refresh_interval_sec = CONFIG_MIN_REFRESH_INTERVAL_DEFAULT;
        c->audit_checkpoint_sec = 60;
        c->audit_checkpoint_records = 1000;
        c->audit_journal = HAVE_SYSTEMD;
        if (config_mail_defaults(&c->mail) < 0) {
                config_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void config_free(struct config *c)
{
        if (!c)
                return;
        free(c->socket_path);
        free(c->admin_socket_path);
        free(c->policy_dir);
        free(c->audit_log);
        free(c->audit_group);
        free(c->log_level);
        free(c->module_path);
        free(c->token_uri);
        free(c->pin_source);
        for (unsigned i = 0; i < c->n_module_dirs; i++)
                free(c->module_dirs[i]);
        free(c->wrapped_dir);
        free(c->authority);
        free(c->graph_url);
        free(c->ca_bundle);
        free(c->proxy);
        free(c->no_proxy);
        free(c->mail.spool_dir);
        free(c->mail.maildrop_dir);
        free(c->mail.deliver_helper);
        free(c);
}

static char *trim(char *s)
{
        char *end;

        while (*s == ' ' || *s == '\t')
                s++;
        end = s + strlen(s);
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                *--end = 0;
        return s;
}

static int parse_seconds(const char *value, uint32_t *ret)
{
        uint32_t v;

        if (parse_u32(value, &v) < 0 || v == 0 || v > 3600)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int set_module_dirs(struct config *c, char *value)
{
        char *save = NULL;
        unsigned n = 0;
        char *dirs[CONFIG_MAX_MODULE_DIRS] = {0};

        for (char *w = strtok_r(value, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                if (w[0] != '/' || n == CONFIG_MAX_MODULE_DIRS) {
                        for (unsigned i = 0; i < n; i++)
                                free(dirs[i]);
                        return -EINVAL;
                }
                dirs[n] = strdup(w);
                if (!dirs[n]) {
                        for (unsigned i = 0; i < n; i++)
                                free(dirs[i]);
                        return -ENOMEM;
                }
                n++;
        }
        if (n == 0)
                return -EINVAL;
        for (unsigned i = 0; i < c->n_module_dirs; i++)
                free(c->module_dirs[i]);
        memcpy(c->module_dirs, dirs, sizeof(dirs));
        c->n_module_dirs = n;
        return 0;
}

/* [broker] limits: name, field, smallest and largest value. */
static int set_limit(struct config *c, const char *key, const char *value)
{
        static const struct {
                const char *key;
                size_t offset;
                uint32_t min, max;
        } limits[] = {
            {"max_connections_per_uid", offsetof(struct config, max_connections_per_uid), 1, 4096},
            {"idle_timeout", offsetof(struct config, idle_timeout_sec), 1, 86400},
            {"frame_timeout", offsetof(struct config, frame_timeout_sec), 1, 600},
            {"request_rate_per_uid", offsetof(struct config, request_rate_per_uid), 0, 1000000},
            {"request_burst_per_uid", offsetof(struct config, request_burst_per_uid), 1, 1000000},
            {"audit_aggregate_interval", offsetof(struct config, audit_aggregate_sec), 1, 3600},
            {"refresh_concurrency_per_authority",
             offsetof(struct config, refresh_concurrency_per_authority), 1, 1024},
            {"refresh_ahead_spread", offsetof(struct config, refresh_ahead_spread), 0, 50},
        };
        uint32_t v;

        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                if (strcmp(key, limits[i].key) != 0)
                        continue;
                if (parse_u32(value, &v) < 0 || v < limits[i].min || v > limits[i].max)
                        return -EINVAL;
                *(uint32_t *)((char *)c + limits[i].offset) = v;
                return 0;
        }
        return -ENOENT;
}

/* [mail]: numbers with their bounds, then paths. */
static int set_mail(struct config_mail *m, const char *key, const char *value)
{
        static const struct {
                const char *key;
                size_t offset;
                uint32_t min, max;
        } numbers[] = {
            {"lifetime", offsetof(struct config_mail, lifetime_sec), 1, 30u * 86400u},
            {"retry_min", offsetof(struct config_mail, retry_min_sec), 1, 86400},
            {"retry_max", offsetof(struct config_mail, retry_max_sec), 1, 86400},
            {"deliver_timeout", offsetof(struct config_mail, deliver_timeout_sec), 1, 86400},
            {"concurrency", offsetof(struct config_mail, concurrency), 1, 64},
            {"rate_per_minute", offsetof(struct config_mail, rate_per_minute), 1, 100000},
            {"max_message_mb", offsetof(struct config_mail, max_message_mb), 1, 150},
            {"max_spool_mb", offsetof(struct config_mail, max_spool_mb), 1, 1048576},
            {"max_uid_mb", offsetof(struct config_mail, max_uid_mb), 1, 1048576},
            {"max_messages", offsetof(struct config_mail, max_messages), 1, 10000000},
            {"max_submits_per_uid", offsetof(struct config_mail, max_submits_per_uid), 1, 64},
            {"scan_interval", offsetof(struct config_mail, scan_interval_sec), 1, 86400},
        };
        static const struct {
                const char *key;
                size_t offset;
        } paths[] = {
            {"spool_dir", offsetof(struct config_mail, spool_dir)},
            {"maildrop_dir", offsetof(struct config_mail, maildrop_dir)},
            {"deliver_helper", offsetof(struct config_mail, deliver_helper)},
        };
        uint32_t v;

        for (size_t i = 0; i < ELEMENTSOF(numbers); i++) {
                if (strcmp(key, numbers[i].key) != 0)
                        continue;
                if (parse_u32(value, &v) < 0 || v < numbers[i].min || v > numbers[i].max)
                        return -EINVAL;
                *(uint32_t *)((char *)m + numbers[i].offset) = v;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (strcmp(key, paths[i].key) == 0)
                        return value[0] != '/'
                                   ? -EINVAL
                                   : set_string((char **)((char *)m + paths[i].offset), value);
        return -ENOENT;
}

static int set_store(struct config *c, const char *value)
{
        if (strcmp(value, "objects") == 0)
                c->store = CONFIG_STORE_OBJECTS;
        else if (strcmp(value, "wrapped") == 0)
                c->store = CONFIG_STORE_WRAPPED;
        else
                return -EINVAL;
        return 0;
}

/* The [pkcs11] keys with a syntax of their own; -ENOENT for any other. */
static int set_pkcs11(struct config *c, const char *key, char *value)
{
        if (strcmp(key, "module_dirs") == 0)
                return set_module_dirs(c, value);
        if (strcmp(key, "store") == 0)
                return set_store(c, value);
        if (strcmp(key, "wrapped_dir") == 0)
                return value[0] != '/' ? -EINVAL : set_string(&c->wrapped_dir, value);
        if (strcmp(key, "softhsm_reopen_after") == 0)
                return parse_u32(value, &c->softhsm_reopen_after) < 0 ||
                               c->softhsm_reopen_after > 1000000
                           ? -EINVAL
                           : 0;
        return -ENOENT;
}

/* [broker] keys of the audit log: its checkpoints and readers; -ENOENT for any other key. */
static int set_audit(struct config *c, const char *key, const char *value)
{
        if (strcmp(key, "audit_checkpoint_interval") == 0)
                return parse_u32(value, &c->audit_checkpoint_sec) < 0 ||
                               c->audit_checkpoint_sec < 1 || c->audit_checkpoint_sec > 86400
                           ? -EINVAL
                           : 0;
        if (strcmp(key, "audit_checkpoint_records") == 0)
                return parse_u32(value, &c->audit_checkpoint_records) < 0 ||
                               c->audit_checkpoint_records < 1 ||
                               c->audit_checkpoint_records > 100000
                           ? -EINVAL
                           : 0;
        if (strcmp(key, "audit_group") == 0)
                return *value && strlen(value) <= 64 && !value[strcspn(value, " \t:/,")]
                           ? set_string(&c->audit_group, value)
                           : -EINVAL;
        if (strcmp(key, "audit_journal") == 0) {
                if (strcmp(value, "yes") == 0)
                        c->audit_journal = true;
                else if (strcmp(value, "no") == 0)
                        c->audit_journal = false;
                else
                        return -EINVAL;
                return 0;
        }
        return -ENOENT;
}

static int config_set(struct config *c, const char *section, const char *key, char *value)
{
        static const struct {
                const char *section, *key;
                size_t offset;
        } strings[] = {
            {"broker", "socket", offsetof(struct config, socket_path)},
            {"broker", "admin_socket", offsetof(struct config, admin_socket_path)},
            {"broker", "policy_dir", offsetof(struct config, policy_dir)},
            {"broker", "audit_log", offsetof(struct config, audit_log)},
            {"broker", "log_level", offsetof(struct config, log_level)},
            {"pkcs11", "module", offsetof(struct config, module_path)},
            {"pkcs11", "token", offsetof(struct config, token_uri)},
            {"pkcs11", "pin_source", offsetof(struct config, pin_source)},
            {"identity", "authority", offsetof(struct config, authority)},
            {"identity", "graph", offsetof(struct config, graph_url)},
            {"identity", "ca_bundle", offsetof(struct config, ca_bundle)},
            {"identity", "proxy", offsetof(struct config, proxy)},
            {"identity", "no_proxy", offsetof(struct config, no_proxy)},
        };

        /* Below the 90 days after which Microsoft lets an unused refresh token expire. */
        if (strcmp(section, "identity") == 0 && strcmp(key, "keepalive_days") == 0)
                return parse_u32(value, &c->keepalive_days) < 0 || c->keepalive_days > 80 ? -EINVAL
                                                                                          : 0;
        if (strcmp(section, "identity") == 0 && strcmp(key, "cloud") == 0)
                return cloud_from_string(value, &c->cloud);
        if (strcmp(section, "identity") == 0 && strcmp(key, "authority") == 0)
                c->authority_set = true;
        if (strcmp(section, "identity") == 0 && strcmp(key, "graph") == 0)
                c->graph_set = true;
        if (strcmp(section, "identity") == 0 && strcmp(key, "connect_timeout") == 0)
                return parse_seconds(value, &c->connect_timeout_sec);
        if (strcmp(section, "identity") == 0 && strcmp(key, "timeout") == 0)
                return parse_seconds(value, &c->timeout_sec);
        if (strcmp(section, "broker") == 0 && strcmp(key, "warn_days") == 0)
                return parse_u32(value, &c->warn_days) < 0 || c->warn_days > CONFIG_WARN_DAYS_MAX
                           ? -EINVAL
                           : 0;
        if (strcmp(section, "broker") == 0) {
                int r = set_audit(c, key, value);
                if (r != -ENOENT)
                        return r;
        }
        if (strcmp(section, "mail") == 0)
                return set_mail(&c->mail, key, value);
        if (strcmp(section, "broker") == 0) {
                int r = set_limit(c, key, value);
                if (r != -ENOENT)
                        return r;
        }
        /* Bounds what a request's min_ttl can make the broker ask upstream (engine keys). */
        if (strcmp(section, "identity") == 0 && strcmp(key, "min_refresh_interval") == 0)
                return parse_u32(value, &c->min_refresh_interval_sec) < 0 ||
                               c->min_refresh_interval_sec > CONFIG_MIN_REFRESH_INTERVAL_MAX
                           ? -EINVAL
                           : 0;
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (strcmp(section, strings[i].section) == 0 && strcmp(key, strings[i].key) == 0) {
                        if (!*value)
                                return -EINVAL;
                        return set_string((char **)((char *)c + strings[i].offset), value);
                }
        return strcmp(section, "pkcs11") == 0 ? set_pkcs11(c, key, value) : -ENOENT;
}

/* The cloud's endpoints for what the file did not give explicitly. */
static int config_apply_cloud(struct config *c)
{
        if (!c->authority_set && set_string(&c->authority, cloud_authority(c->cloud)) < 0)
                return -ENOMEM;
        if (!c->graph_set && set_string(&c->graph_url, cloud_graph(c->cloud)) < 0)
                return -ENOMEM;
        return 0;
}

const char *config_graph_resource(const struct config *c)
{
        return cloud_graph_resource(c->graph_url, c->cloud);
}

/* Where the user information of a URL ends ('@' before the host), or NULL. */
static const char *url_userinfo_end(const char *url)
{
        const char *start = strstr(url, "://");
        size_t authority_len;
        const char *at;

        if (!start)
                return NULL;
        start += 3;
        authority_len = strcspn(start, "/?#");
        at = memrchr(start, '@', authority_len);
        return at;
}

int config_proxy_redacted(const char *proxy, char **ret)
{
        const char *at;
        char *out;

        *ret = NULL;
        if (!proxy)
                return 0;
        at = url_userinfo_end(proxy);
        if (at) {
                const char *scheme_end = strstr(proxy, "://") + 3;
                if (asprintf(&out, "%.*s***%s", (int)(scheme_end - proxy), proxy, at) < 0)
                        out = NULL;
        } else
                out = strdup(proxy);
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

/* proxy: http://, https://, socks5:// or socks5h://, printable, bounded; no_proxy: host names,
 * domains and addresses separated by commas (or "*"), as libcurl reads them. */
static bool proxy_settings_valid(const struct config *c)
{
        static const char *const schemes[] = {"http://", "https://", "socks5://", "socks5h://"};
        bool scheme_ok = false;

        if (c->proxy) {
                for (size_t i = 0; i < ELEMENTSOF(schemes); i++)
                        scheme_ok =
                            scheme_ok || strncmp(c->proxy, schemes[i], strlen(schemes[i])) == 0;
                if (!scheme_ok || strlen(c->proxy) > 512)
                        return false;
                for (const char *p = c->proxy; *p; p++)
                        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
                                return false;
        }
        if (c->no_proxy) {
                if (strlen(c->no_proxy) > 1024)
                        return false;
                for (const char *p = c->no_proxy; *p; p++)
                        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                              (*p >= '0' && *p <= '9') || strchr(".-_:,*[]/ ", *p)))
                                return false;
        }
        return true;
}

static int config_validate(const struct config *c, const char *path)
{
        enum log_level level;

        if (log_parse_level(c->log_level, &level) < 0) {
                log_error("%s: log_level must be error, warning, notice, info or debug.", path);
                return -EINVAL;
        }
        if (strncmp(c->authority, "https://", 8) != 0 ||
            strncmp(c->graph_url, "https://", 8) != 0) {
                log_error("%s: authority and graph must be https:// URLs.", path);
                return -EINVAL;
        }
        if (!proxy_settings_valid(c)) {
                log_error("%s: proxy must be an http://, https://, socks5:// or socks5h:// URL "
                          "and no_proxy a comma-separated list of hosts.",
                          path);
                return -EINVAL;
        }
        if (strncmp(c->pin_source, "file:", 5) != 0 &&
            strncmp(c->pin_source, "credential:", 11) != 0) {
                log_error("%s: pin_source must be file:PATH or credential:NAME.", path);
                return -EINVAL;
        }
        if (c->socket_path[0] != '/' || strlen(c->socket_path) >= 108) {
                log_error("%s: socket must be an absolute path shorter than 108 bytes.", path);
                return -EINVAL;
        }
        if (c->admin_socket_path[0] != '/' || strlen(c->admin_socket_path) >= 108 ||
            strcmp(c->admin_socket_path, c->socket_path) == 0) {
                log_error("%s: admin_socket must be an absolute path shorter than 108 bytes, "
                          "other than socket.",
                          path);
                return -EINVAL;
        }
        return 0;
}

#define SECTION_MAX 32

/* One line of the file: blank, a comment, a [section] header or "key = value" inside one. */
static int parse_line(struct config *c, const char *path, unsigned lineno, char *line,
                      char section[static SECTION_MAX])
{
        char *s, *eq;
        int r;

        s = trim(line);
        if (*s == 0 || *s == '#' || *s == ';')
                return 0;
        if (*s == '[') {
                char *end = strchr(s, ']');
                if (!end || end[1] != 0 || (size_t)(end - s - 1) >= SECTION_MAX) {
                        log_error("%s:%u: malformed section header.", path, lineno);
                        return -EINVAL;
                }
                *end = 0;
                memcpy(section, s + 1, (size_t)(end - s));
                if (strcmp(section, "broker") != 0 && strcmp(section, "pkcs11") != 0 &&
                    strcmp(section, "identity") != 0 && strcmp(section, "mail") != 0) {
                        log_error("%s:%u: unknown section [%s].", path, lineno, section);
                        return -EINVAL;
                }
                return 0;
        }
        eq = strchr(s, '=');
        if (!eq || !section[0]) {
                log_error("%s:%u: expected \"key = value\" inside a [section].", path, lineno);
                return -EINVAL;
        }
        *eq = 0;
        r = config_set(c, section, trim(s), trim(eq + 1));
        if (r == -ENOENT) {
                log_error("%s:%u: unknown key \"%s\" in [%s].", path, lineno, trim(s), section);
                return r;
        }
        if (r < 0) {
                log_error("%s:%u: invalid value for \"%s\".", path, lineno, trim(s));
                return r;
        }
        return 0;
}

int config_load(const char *path, bool check_owner, struct config **ret)
{
        _cleanup_close_ int fd = -1;
        _cleanup_fclose_ FILE *f = NULL;
        struct config *c = NULL;
        char section[SECTION_MAX] = "";
        char line[1024];
        unsigned lineno = 0;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to open configuration %s", path);
        if (check_owner) {
                r = trusted_file_check(fd, path, TRUSTED_FILE_REGULAR);
                if (r < 0)
                        return r;
        }
        f = fdopen(fd, "re");
        if (!f)
                return -errno;
        TAKE_FD(fd);

        r = config_new_default(&c);
        if (r < 0)
                return r;

        while (fgets(line, sizeof(line), f)) {
                char *s;

                lineno++;
                s = strchr(line, '\n');
                if (s)
                        *s = 0;
                else if (!feof(f)) {
                        log_error("%s:%u: line longer than %zu bytes.", path, lineno,
                                  sizeof(line) - 2);
                        r = -EINVAL;
                        goto fail;
                }
                r = parse_line(c, path, lineno, line, section);
                if (r < 0)
                        goto fail;
        }
        if (ferror(f)) {
                r = log_error_errno(-EIO, "Failed to read %s", path);
                goto fail;
        }
        r = config_apply_cloud(c);
        if (r == 0)
                r = config_validate(c, path);
        if (r < 0)
                goto fail;
        *ret = c;
        return 0;
fail:
        config_free(c);
        return r;
}
