/* Which PKCS#11 module may be loaded (the allow-list of module_dirs and the ownership of the
 * module and every directory above it), loading it, and selecting the one token the configured
 * URI names. */
#include "store-internal.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "log.h"
#include "util.h"
#include "trusted-file.h"

static void uri_freep(P11KitUri **uri)
{
        if (*uri)
                p11_kit_uri_free(*uri);
}

/* ---- module path ---- */

static bool path_has_dotdot(const char *path)
{
        for (const char *p = path; *p;) {
                const char *end = strchrnul(p, '/');

                if (end - p == 2 && p[0] == '.' && p[1] == '.')
                        return true;
                p = *end ? end + 1 : end;
        }
        return false;
}

/* Whether some '/'-prefix of dir ("/usr", "/usr/lib", …) matches pattern, so "/usr/lib*" allows
 * modules anywhere below /usr/lib, /usr/lib64 and /usr/lib/x86_64-linux-gnu alike. */
static bool dir_matches(const char *dir, const char *pattern)
{
        char prefix[PATH_MAX];
        size_t len = strlen(dir);

        if (len >= sizeof(prefix))
                return false;
        for (size_t k = 1; k <= len; k++) {
                if (dir[k] != '/' && dir[k] != 0)
                        continue;
                memcpy(prefix, dir, k);
                prefix[k] = 0;
                if (fnmatch(pattern, prefix, FNM_PATHNAME) == 0)
                        return true;
        }
        return false;
}

static bool dir_is_allowed(const char *dir, char *const *patterns, size_t n_patterns)
{
        for (size_t i = 0; i < n_patterns; i++) {
                char pattern[PATH_MAX];
                size_t len = patterns[i] ? strlen(patterns[i]) : 0;

                if (len == 0 || len >= sizeof(pattern) || patterns[i][0] != '/') {
                        log_warning("Ignoring module directory pattern \"%s\": it must be an "
                                    "absolute path.",
                                    patterns[i] ? patterns[i] : "");
                        continue;
                }
                /* The design's default is written "/usr/lib*\/"; a directory has no slash. */
                memcpy(pattern, patterns[i], len + 1);
                while (len > 1 && pattern[len - 1] == '/')
                        pattern[--len] = 0;
                if (dir_matches(dir, pattern))
                        return true;
        }
        return false;
}

/* Loading a module runs its code in our address space with the token PIN at hand, so only a
 * module an administrator placed in a system library directory is acceptable. */
/* Whoever may write a directory on the module's path may swap the module: every directory from
 * / down must belong to root (or us) and be writable by nobody else, as OpenSSH asks of the
 * paths to its keys. A sticky directory (/tmp) is the exception: there others cannot rename
 * what is ours. resolved has no symbolic links left (realpath()). */
static int check_module_directories(const char *resolved)
{
        char dir[PATH_MAX];
        size_t len = strlen(resolved);

        if (len >= sizeof(dir))
                return -ENAMETOOLONG;
        memcpy(dir, resolved, len + 1);
        for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
                unsigned problems;
                struct stat st;

                if (slash == dir)
                        slash[1] = 0; /* "/" itself, last */
                else
                        *slash = 0;
                if (stat(dir, &st) < 0)
                        return log_error_errno(-errno,
                                               "Failed to check directory %s of PKCS#11 "
                                               "module %s",
                                               dir, resolved);
                problems = trusted_file_problems(&st, TRUSTED_FILE_STICKY_OK);
                if (problems & TRUSTED_FILE_FOREIGN_OWNER) {
                        log_error("Directory %s of PKCS#11 module %s is owned by uid %u, who "
                                  "could replace the module; it must be owned by root "
                                  "(chown root %s).",
                                  dir, resolved, (unsigned)st.st_uid, dir);
                        return -EPERM;
                }
                if (problems & TRUSTED_FILE_WRITABLE) {
                        log_error("Directory %s of PKCS#11 module %s is writable by group or "
                                  "others, who could replace the module; fix with: chmod go-w %s",
                                  dir, resolved, dir);
                        return -EPERM;
                }
                if (slash == dir)
                        break;
        }
        return 0;
}

/* The module file itself: a regular file only root (or we) can change. */
static int check_module_file(const char *resolved)
{
        struct stat st;
        unsigned problems;

        if (stat(resolved, &st) < 0)
                return log_error_errno(-errno, "Failed to stat PKCS#11 module %s", resolved);
        problems = trusted_file_problems(&st, TRUSTED_FILE_REGULAR);
        if (problems & TRUSTED_FILE_NOT_REGULAR) {
                log_error(
                    "PKCS#11 module %s is not a regular file; point module in [pkcs11] at the "
                    "module's shared library.",
                    resolved);
                return -EINVAL;
        }
        if (problems & TRUSTED_FILE_FOREIGN_OWNER) {
                log_error("PKCS#11 module %s is owned by uid %u; it must be owned by root "
                          "(chown root %s).",
                          resolved, (unsigned)st.st_uid, resolved);
                return -EPERM;
        }
        if (problems & TRUSTED_FILE_WRITABLE) {
                log_error("PKCS#11 module %s is writable by group or others; fix with: "
                          "chmod go-w %s",
                          resolved, resolved);
                return -EPERM;
        }
        return 0;
}

int p11_check_module_path(const char *path, char *const *dirs, size_t n_dirs, char **ret)
{
        _cleanup_free_ char *resolved = NULL;
        char dir[PATH_MAX];
        struct stat st;
        char *slash;
        int r;

        if (!path || path[0] != '/') {
                log_error("PKCS#11 module path \"%s\" is not absolute; set module in [pkcs11] to "
                          "the full path, e.g. /usr/lib/softhsm/libsofthsm2.so.",
                          path ? path : "");
                return -EINVAL;
        }
        if (path_has_dotdot(path)) {
                log_error("PKCS#11 module path %s contains a \"..\" component; set module in "
                          "[pkcs11] to the module's path without \"..\".",
                          path);
                return -EINVAL;
        }
        if (stat(path, &st) < 0)
                return log_error_errno(-errno,
                                       "PKCS#11 module %s cannot be used (check module in [pkcs11] "
                                       "and that the module's package is installed)",
                                       path);
        resolved = realpath(path, NULL);
        if (!resolved)
                return log_error_errno(-errno, "Failed to resolve PKCS#11 module path %s", path);

        slash = strrchr(resolved, '/');
        if (!slash || (size_t)(slash - resolved) >= sizeof(dir))
                return log_error_errno(-EINVAL,
                                       "PKCS#11 module path %s resolves to %s, which "
                                       "has no usable directory.",
                                       path, resolved);
        if (slash == resolved) {
                memcpy(dir, "/", 2);
        } else {
                memcpy(dir, resolved, (size_t)(slash - resolved));
                dir[slash - resolved] = 0;
        }

        if (n_dirs == 0 || !dirs) {
                log_error("No allowed PKCS#11 module directory is configured, so %s is refused; "
                          "set module_dirs (e.g. /usr/lib*).",
                          path);
                return -EPERM;
        }
        if (!dir_is_allowed(dir, dirs, n_dirs)) {
                log_error("PKCS#11 module %s (resolved to %s) is outside the allowed module "
                          "directories; install the module under one of them or add its "
                          "directory %s to module_dirs.",
                          path, resolved, dir);
                return -EPERM;
        }

        r = check_module_file(resolved);
        if (r < 0)
                return r;
        r = check_module_directories(resolved);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(resolved);
        return 0;
}

#define TOKEN_LIST_MAX 1024

/* "label" (serial S, manufacturer M, model X), … for every initialized token in slots, for the
 * error that has to tell an administrator what a URI could have selected. Truncated, never
 * overflowing, when there are many. */
static void describe_tokens(struct store *s, const CK_SLOT_ID *slots, size_t n_slots,
                            char list[static TOKEN_LIST_MAX])
{
        size_t used = 0;

        list[0] = 0;
        for (size_t i = 0; i < n_slots; i++) {
                _cleanup_free_ char *label = NULL, *serial = NULL, *manufacturer = NULL,
                                    *model = NULL;
                CK_TOKEN_INFO info;
                int n;

                if (s->module->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
                    !(info.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                label = p11_kit_space_strdup(info.label, sizeof(info.label));
                serial = p11_kit_space_strdup(info.serialNumber, sizeof(info.serialNumber));
                manufacturer =
                    p11_kit_space_strdup(info.manufacturerID, sizeof(info.manufacturerID));
                model = p11_kit_space_strdup(info.model, sizeof(info.model));
                n = snprintf(list + used, TOKEN_LIST_MAX - used,
                             "%s\"%s\" (serial %s, manufacturer %s, model %s)", used ? ", " : "",
                             label ? label : "?", serial ? serial : "?",
                             manufacturer ? manufacturer : "?", model ? model : "?");
                if (n < 0) {
                        list[used] = 0;
                        return;
                }
                if ((size_t)n >= TOKEN_LIST_MAX - used) {
                        /* snprintf() filled the buffer: end it with a sign that more
                         * followed. */
                        memcpy(list + TOKEN_LIST_MAX - 4, "...", 4);
                        return;
                }
                used += (size_t)n;
        }
}

/* The token URI, refused unless it describes a token and nothing else (no objects, slots,
 * library or PIN). */
static int parse_token_uri(const char *token_uri, P11KitUri **ret)
{
        _cleanup_(uri_freep) P11KitUri *uri = NULL;
        int r;

        if (!token_uri || !*token_uri) {
                log_error(
                    "No token configured; set token in [pkcs11] to the PKCS#11 URI of the token, "
                    "e.g. pkcs11:token=credbroker.");
                return -EINVAL;
        }
        uri = p11_kit_uri_new();
        if (!uri)
                return -ENOMEM;
        r = p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_TOKEN, uri);
        if (r != P11_KIT_URI_OK) {
                log_error("token \"%s\" is not a valid PKCS#11 URI: %s; write it like "
                          "pkcs11:token=credbroker.",
                          token_uri, p11_kit_uri_message(r));
                return -EINVAL;
        }
        /* A URI that names objects, slots or a library would be silently half-honoured. */
        if (p11_kit_uri_any_unrecognized(uri)) {
                log_error("token %s has attributes that do not describe a token; keep only "
                          "token=, manufacturer=, model= and serial=.",
                          token_uri);
                return -EINVAL;
        }
        if (p11_kit_uri_get_pin_value(uri) || p11_kit_uri_get_pin_source(uri)) {
                log_error("token %s carries a PIN; remove it and use pin_source instead.",
                          token_uri);
                return -EINVAL;
        }
        *ret = TAKE_PTR(uri);
        return 0;
}

/* The slots with a token present. The list may grow between the two calls (hot-plug): retry a
 * few times. */
static int list_slots(struct store *s, const char *module_path, CK_SLOT_ID **ret, CK_ULONG *ret_n)
{
        _cleanup_free_ CK_SLOT_ID *slots = NULL;
        CK_ULONG n_slots = 0;
        CK_RV rv;

        for (unsigned attempt = 0;; attempt++) {
                rv = s->module->C_GetSlotList(CK_TRUE, NULL, &n_slots);
                if (rv != CKR_OK)
                        return p11_ck_fail(s, "C_GetSlotList", module_path, rv);
                free(slots);
                slots = calloc(n_slots ? n_slots : 1, sizeof(CK_SLOT_ID));
                if (!slots)
                        return -ENOMEM;
                rv = s->module->C_GetSlotList(CK_TRUE, slots, &n_slots);
                if (rv == CKR_BUFFER_TOO_SMALL && attempt < 3)
                        continue;
                if (rv != CKR_OK)
                        return p11_ck_fail(s, "C_GetSlotList", module_path, rv);
                break;
        }
        *ret = TAKE_PTR(slots);
        *ret_n = n_slots;
        return 0;
}

int p11_find_token(struct store *s, const char *module_path, const char *token_uri,
                   CK_SLOT_ID *ret_slot, CK_TOKEN_INFO *ret_info)
{
        _cleanup_free_ CK_SLOT_ID *slots = NULL;
        _cleanup_free_ CK_SLOT_ID *matches = NULL;
        CK_TOKEN_INFO info, found_info;
        CK_ULONG n_slots = 0;
        size_t n_matches = 0;
        _cleanup_(uri_freep) P11KitUri *uri = NULL;
        CK_RV rv;
        int r;

        r = parse_token_uri(token_uri, &uri);
        if (r < 0)
                return r;
        r = list_slots(s, module_path, &slots, &n_slots);
        if (r < 0)
                return r;

        matches = calloc(n_slots ? n_slots : 1, sizeof(CK_SLOT_ID));
        if (!matches)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < n_slots; i++) {
                rv = s->module->C_GetTokenInfo(slots[i], &info);
                if (rv != CKR_OK) {
                        /* Removed since the slot list was taken: not a candidate. */
                        log_debug("Skipping slot %lu: C_GetTokenInfo: %s", (unsigned long)slots[i],
                                  p11_rv_name(rv));
                        continue;
                }
                /* An uninitialized token (SoftHSM's free slot) can hold nothing of ours. */
                if (!(info.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                if (p11_kit_uri_match_token_info(uri, &info) != 1)
                        continue;
                matches[n_matches++] = slots[i];
                found_info = info;
        }

        if (n_matches == 0) {
                char list[TOKEN_LIST_MAX];

                describe_tokens(s, slots, n_slots, list);
                log_error("No initialized PKCS#11 token matches %s in module %s; the module has "
                          "%s.",
                          token_uri, module_path, list[0] ? list : "no initialized token");
                return -ENODEV;
        }
        if (n_matches > 1) {
                char list[TOKEN_LIST_MAX];

                describe_tokens(s, matches, n_matches, list);
                log_error(
                    "PKCS#11 URI %s matches %zu tokens: %s; make token in [pkcs11] select one, "
                    "e.g. by adding ;serial=…",
                    token_uri, n_matches, list);
                return -ENOTUNIQ;
        }

        *ret_slot = matches[0];
        *ret_info = found_info;
        return 0;
}

bool p11_token_is_softhsm(const CK_TOKEN_INFO *info)
{
        static const char softhsm[] = "SoftHSM project";

        /* Blank-padded, not NUL-terminated. */
        return memcmp(info->manufacturerID, softhsm, sizeof(softhsm) - 1) == 0 &&
               p11_kit_space_strlen(info->manufacturerID, sizeof(info->manufacturerID)) ==
                   sizeof(softhsm) - 1;
}

/* The resolved path, so what we load is what we checked: its directories let no one but root (or
 * us) replace it in between. Not /proc/self/fd/N: glibc's dlopen() matches an already loaded
 * library by that name, whatever the descriptor now is. */
int p11_load_module(struct store *s, const char *module)
{
        CK_RV rv;

        s->module = p11_kit_module_load(module, 0);
        if (!s->module) {
                const char *why = p11_kit_message();

                log_error("Failed to load PKCS#11 module %s: %s", module,
                          why ? why : "unknown error");
                return -ELIBBAD;
        }
        rv = p11_kit_module_initialize(s->module);
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_Initialize", module, rv);
        s->initialized = true;
        return 0;
}
