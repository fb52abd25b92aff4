/* The systemd unit of a peer, parsed from /proc/<pid>/cgroup (cgroup v2 path, or the
 * name=systemd v1 hierarchy), with the user manager's units seen through. */
#include "build-config.h"

#include "peer.h"
#include "peer-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "util.h"

static bool unit_name_is_valid(const char *name, size_t len)
{
        static const char *const suffixes[] = {".service", ".scope"};
        bool suffix_ok = false;

        if (len == 0 || len >= PEER_UNIT_MAX)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t n = strlen(suffixes[i]);
                if (len > n && memcmp(name + len - n, suffixes[i], n) == 0)
                        suffix_ok = true;
        }
        if (!suffix_ok)
                return false;
        /* systemd's unit name alphabet (systemd.unit(5)); "\" for its escapes. */
        for (size_t i = 0; i < len; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr(":-_.\\@", c)))
                        return false;
        }
        return true;
}

static bool component_is(const char *s, size_t len, const char *word)
{
        return len == strlen(word) && memcmp(s, word, len) == 0;
}

static bool has_suffix(const char *s, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);

        return len > n && memcmp(s + len - n, suffix, n) == 0;
}

/* "user@<uid>.service": a user's service manager, whose own units are below it. */
static bool is_user_manager(const char *s, size_t len)
{
        static const char prefix[] = "user@", suffix[] = ".service";
        const size_t p = sizeof(prefix) - 1, q = sizeof(suffix) - 1;

        if (len <= p + q || memcmp(s, prefix, p) != 0 || !has_suffix(s, len, suffix))
                return false;
        for (size_t i = p; i < len - q; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* The unit of one cgroup path. Slices are skipped; the first component below them is the
 * unit. Deeper components are not looked at (but below a user manager, see there): a unit with
 * Delegate= creates its own sub-cgroups and may name them anything, "nagios.service"
 * included, so the innermost name would be the peer's own words. A user manager's unit is
 * named with its manager, "user@1000.service/backup.service": any user can start a unit
 * called nagios.service under their own manager, and it must never pass for the system's. */
static int unit_from_path(const char *path, size_t len, char ret[static PEER_UNIT_MAX])
{
        const char *p = path, *end = path + len;
        const char *unit = NULL, *manager = NULL;
        size_t unit_len = 0, manager_len = 0;
        bool below_user_manager = false, done = false;

        if (len == 0 || *p != '/')
                return -EINVAL;
        while (p < end) {
                const char *c;
                size_t n;

                p++; /* the '/' */
                c = p;
                while (p < end && *p != '/')
                        p++;
                n = (size_t)(p - c);
                if (n == 0 && p == end && c == path + 1)
                        break; /* "/": the root cgroup */
                /* A path outside our cgroup namespace shows as "/../.."; it is not one we can
                 * name. */
                if (n == 0 || component_is(c, n, ".") || component_is(c, n, ".."))
                        return -EINVAL;
                if (done)
                        continue; /* only checked: the kernel never writes such a path */
                if (has_suffix(c, n, ".slice"))
                        continue;
                if (!below_user_manager && is_user_manager(c, n)) {
                        unit = manager = c;
                        unit_len = manager_len = n;
                        below_user_manager = true;
                        continue;
                }
                if (below_user_manager) {
                        /* The manager's own process lives in init.scope below it. */
                        if (!component_is(c, n, "init.scope")) {
                                unit = c;
                                unit_len = n;
                        }
                        done = true;
                        continue;
                }
                unit = c;
                unit_len = n;
                done = true;
        }
        if (!unit)
                return -ENOENT;
        if (!unit_name_is_valid(unit, unit_len))
                return -ENOENT;
        if (manager && unit != manager) {
                if (manager_len + 1 + unit_len >= PEER_UNIT_MAX)
                        return -ENOENT;
                memcpy(ret, manager, manager_len);
                ret[manager_len] = '/';
                memcpy(ret + manager_len + 1, unit, unit_len);
                ret[manager_len + 1 + unit_len] = 0;
                return 0;
        }
        memcpy(ret, unit, unit_len);
        ret[unit_len] = 0;
        return 0;
}

int peer_unit_from_cgroup(const char *text, size_t len, char ret[static PEER_UNIT_MAX])
{
        const char *p = text, *end = text + len;
        const char *v2 = NULL, *v1 = NULL;
        size_t v2_len = 0, v1_len = 0;
        int r;

        while (p < end) {
                const char *line = p, *nl = memchr(p, '\n', (size_t)(end - p));
                const char *line_end = nl ? nl : end;
                const char *colon1, *colon2;

                p = nl ? nl + 1 : end;
                if (!nl)
                        return -EINVAL; /* the kernel ends every line; a torn file is not used */
                /* "hierarchy-ID:controller-list:cgroup-path" (proc(5)); the path may hold ':'. */
                colon1 = memchr(line, ':', (size_t)(line_end - line));
                if (!colon1)
                        return -EINVAL;
                colon2 = memchr(colon1 + 1, ':', (size_t)(line_end - colon1 - 1));
                if (!colon2)
                        return -EINVAL;
                /* One line per hierarchy: the kernel refuses '\n' in cgroup names so that no
                 * name can fake a line; a second one means the text is not the kernel's. */
                if (colon1 - line == 1 && line[0] == '0' && colon2 == colon1 + 1) {
                        if (v2)
                                return -EINVAL;
                        v2 = colon2 + 1;
                        v2_len = (size_t)(line_end - v2);
                } else if (component_is(colon1 + 1, (size_t)(colon2 - colon1 - 1),
                                        "name=systemd")) {
                        if (v1)
                                return -EINVAL;
                        v1 = colon2 + 1;
                        v1_len = (size_t)(line_end - v1);
                }
        }
        /* cgroup v2 is systemd's own on unified systems; on hybrid ones systemd keeps its tree
         * in name=systemd as well, and on legacy ones only there. */
        r = v2 ? unit_from_path(v2, v2_len, ret) : -ENOENT;
        if (r == -ENOENT && v1)
                r = unit_from_path(v1, v1_len, ret);
        return r;
}

char *peer_read_unit(int procfd)
{
        char text[PEER_CGROUP_FILE_MAX], unit[PEER_UNIT_MAX];
        size_t len;

        if (peer_read_small_file(procfd, "cgroup", text, sizeof(text), &len) < 0 ||
            peer_unit_from_cgroup(text, len, unit) < 0)
                return NULL;
        return strdup(unit);
}
