/* Opening the credential store: loads an allow-listed PKCS#11 module through p11-kit, selects one
 * token by URI and logs in with a PIN read from a protected file. The objects it keeps are in
 * store-object.c (how), store-account.c, store-refresh-token.c and store-install-key.c (what). */
#include "store.h"
#include "store-internal.h"
#include "store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
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

#define PIN_MAX 256

/* The names of the return values we can meet, for log lines an administrator can search for. */
const char *rv_name(CK_RV rv)
{
        static char unknown[32];

#define RV_CASE(x)                                                                                 \
        case x:                                                                                    \
                return #x
        switch (rv) {
                RV_CASE(CKR_OK);
                RV_CASE(CKR_CANCEL);
                RV_CASE(CKR_HOST_MEMORY);
                RV_CASE(CKR_SLOT_ID_INVALID);
                RV_CASE(CKR_GENERAL_ERROR);
                RV_CASE(CKR_FUNCTION_FAILED);
                RV_CASE(CKR_ARGUMENTS_BAD);
                RV_CASE(CKR_CANT_LOCK);
                RV_CASE(CKR_ATTRIBUTE_READ_ONLY);
                RV_CASE(CKR_ATTRIBUTE_SENSITIVE);
                RV_CASE(CKR_ATTRIBUTE_TYPE_INVALID);
                RV_CASE(CKR_ATTRIBUTE_VALUE_INVALID);
                RV_CASE(CKR_DATA_INVALID);
                RV_CASE(CKR_DATA_LEN_RANGE);
                RV_CASE(CKR_DEVICE_ERROR);
                RV_CASE(CKR_DEVICE_MEMORY);
                RV_CASE(CKR_DEVICE_REMOVED);
                RV_CASE(CKR_FUNCTION_CANCELED);
                RV_CASE(CKR_FUNCTION_NOT_PARALLEL);
                RV_CASE(CKR_FUNCTION_NOT_SUPPORTED);
                RV_CASE(CKR_OBJECT_HANDLE_INVALID);
                RV_CASE(CKR_OPERATION_ACTIVE);
                RV_CASE(CKR_OPERATION_NOT_INITIALIZED);
                RV_CASE(CKR_PIN_INCORRECT);
                RV_CASE(CKR_PIN_INVALID);
                RV_CASE(CKR_PIN_LEN_RANGE);
                RV_CASE(CKR_PIN_EXPIRED);
                RV_CASE(CKR_PIN_LOCKED);
                RV_CASE(CKR_SESSION_CLOSED);
                RV_CASE(CKR_SESSION_COUNT);
                RV_CASE(CKR_SESSION_HANDLE_INVALID);
                RV_CASE(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
                RV_CASE(CKR_SESSION_READ_ONLY);
                RV_CASE(CKR_SESSION_EXISTS);
                RV_CASE(CKR_SESSION_READ_ONLY_EXISTS);
                RV_CASE(CKR_SESSION_READ_WRITE_SO_EXISTS);
                RV_CASE(CKR_TEMPLATE_INCOMPLETE);
                RV_CASE(CKR_TEMPLATE_INCONSISTENT);
                RV_CASE(CKR_TOKEN_NOT_PRESENT);
                RV_CASE(CKR_TOKEN_NOT_RECOGNIZED);
                RV_CASE(CKR_TOKEN_WRITE_PROTECTED);
                RV_CASE(CKR_USER_ALREADY_LOGGED_IN);
                RV_CASE(CKR_USER_NOT_LOGGED_IN);
                RV_CASE(CKR_USER_PIN_NOT_INITIALIZED);
                RV_CASE(CKR_USER_TYPE_INVALID);
                RV_CASE(CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
                RV_CASE(CKR_USER_TOO_MANY_TYPES);
                RV_CASE(CKR_BUFFER_TOO_SMALL);
                RV_CASE(CKR_CRYPTOKI_NOT_INITIALIZED);
                RV_CASE(CKR_CRYPTOKI_ALREADY_INITIALIZED);
        }
#undef RV_CASE
        /* The store is used from one thread (store.h), so a static buffer is enough. */
        snprintf(unknown, sizeof(unknown), "CKR_0x%08lx", (unsigned long)rv);
        return unknown;
}

/* The one place a CK_RV becomes an errno; everything above it speaks negative errno only. */
int rv_to_errno(CK_RV rv)
{
        switch (rv) {
        case CKR_OK:
                return 0;
        case CKR_HOST_MEMORY:
        case CKR_DEVICE_MEMORY:
                return -ENOMEM;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_USER_PIN_NOT_INITIALIZED:
        case CKR_ATTRIBUTE_SENSITIVE:
                return -EACCES;
        case CKR_PIN_LOCKED:
        case CKR_PIN_EXPIRED:
                return -EPERM;
        case CKR_ARGUMENTS_BAD:
        case CKR_ATTRIBUTE_TYPE_INVALID:
        case CKR_ATTRIBUTE_VALUE_INVALID:
        case CKR_TEMPLATE_INCOMPLETE:
        case CKR_TEMPLATE_INCONSISTENT:
        case CKR_USER_TYPE_INVALID:
        case CKR_DATA_INVALID:
                return -EINVAL;
        case CKR_DATA_LEN_RANGE:
                return -E2BIG;
        case CKR_ATTRIBUTE_READ_ONLY:
        case CKR_TOKEN_WRITE_PROTECTED:
        case CKR_SESSION_READ_ONLY:
                return -EROFS;
        case CKR_OBJECT_HANDLE_INVALID:
                return -ENOENT;
        case CKR_BUFFER_TOO_SMALL:
                return -ENOBUFS;
        case CKR_FUNCTION_NOT_SUPPORTED:
        case CKR_SESSION_PARALLEL_NOT_SUPPORTED:
                return -EOPNOTSUPP;
        case CKR_OPERATION_ACTIVE:
        case CKR_SESSION_COUNT:
        case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
                return -EBUSY;
        case CKR_SESSION_CLOSED:
        case CKR_SESSION_HANDLE_INVALID:
                return -ENOTCONN;
        case CKR_SLOT_ID_INVALID:
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_TOKEN_NOT_RECOGNIZED:
                return -ENODEV;
        case CKR_FUNCTION_CANCELED:
        case CKR_CANCEL:
                return -ECANCELED;
        default:
                return -EIO;
        }
}

/* Logs a failed call with its CK_RV name, because the errno it turns into loses that detail.
 * An object destroyed by another process between our search and our use is a race the callers
 * handle, so it stays at debug level. */
int ck_fail(const struct store *s, const char *call, const char *what, CK_RV rv)
{
        const char *token = s && s->token_label ? s->token_label : NULL;

        if (rv == CKR_OBJECT_HANDLE_INVALID)
                return log_debug_errno(rv_to_errno(rv), "PKCS#11 %s for %s: %s", call, what,
                                       rv_name(rv));
        if (!token)
                return log_error_errno(rv_to_errno(rv), "PKCS#11 %s failed for %s: %s", call, what,
                                       rv_name(rv));
        return log_error_errno(rv_to_errno(rv), "PKCS#11 %s failed for %s on token \"%s\": %s",
                               call, what, token, rv_name(rv));
}

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
                struct stat st;

                if (slash == dir)
                        slash[1] = 0; /* "/" itself, last */
                else
                        *slash = 0;
                if (stat(dir, &st) < 0)
                        return log_error_errno(errno,
                                               "Failed to check directory %s of PKCS#11 "
                                               "module %s",
                                               dir, resolved);
                if (st.st_uid != 0 && st.st_uid != geteuid()) {
                        log_error("Directory %s of PKCS#11 module %s is owned by uid %u, who "
                                  "could replace the module; it must be owned by root "
                                  "(chown root %s).",
                                  dir, resolved, (unsigned)st.st_uid, dir);
                        return -EPERM;
                }
                if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
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

static int check_module_path(const char *path, char *const *dirs, size_t n_dirs, char **ret)
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
                return log_error_errno(errno,
                                       "PKCS#11 module %s cannot be used (check module in [pkcs11] "
                                       "and that the module's package is installed)",
                                       path);
        resolved = realpath(path, NULL);
        if (!resolved)
                return log_error_errno(errno, "Failed to resolve PKCS#11 module path %s", path);

        slash = strrchr(resolved, '/');
        if (!slash || (size_t)(slash - resolved) >= sizeof(dir))
                return log_error_errno(EINVAL,
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

        if (stat(resolved, &st) < 0)
                return log_error_errno(errno, "Failed to stat PKCS#11 module %s", resolved);
        if (!S_ISREG(st.st_mode)) {
                log_error(
                    "PKCS#11 module %s is not a regular file; point module in [pkcs11] at the "
                    "module's shared library.",
                    resolved);
                return -EINVAL;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                log_error("PKCS#11 module %s is owned by uid %u; it must be owned by root "
                          "(chown root %s).",
                          resolved, (unsigned)st.st_uid, resolved);
                return -EPERM;
        }
        if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                log_error("PKCS#11 module %s is writable by group or others; fix with: "
                          "chmod go-w %s",
                          resolved, resolved);
                return -EPERM;
        }
        r = check_module_directories(resolved);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(resolved);
        return 0;
}

/* ---- PIN ---- */

/* Checks pin_source's syntax and returns the file to read, before any module is loaded. */
static int pin_source_path(const char *pin_source, char **ret_path, bool *ret_check_mode)
{
        const char *arg;
        char *path;

        if (!pin_source) {
                log_error("No pin_source configured; set pin_source = file:/path or "
                          "credential:NAME.");
                return -EINVAL;
        }
        if ((arg = startswith(pin_source, "file:"))) {
                if (arg[0] != '/') {
                        log_error("pin_source %s: the file must be given as an absolute path, "
                                  "e.g. file:/etc/credbroker/pin.",
                                  pin_source);
                        return -EINVAL;
                }
                path = strdup(arg);
                if (!path)
                        return -ENOMEM;
                *ret_path = path;
                *ret_check_mode = true;
                return 0;
        }
        if ((arg = startswith(pin_source, "credential:"))) {
                const char *dir;

                if (arg[0] == 0 || strchr(arg, '/') || strcmp(arg, ".") == 0 ||
                    strcmp(arg, "..") == 0 || strlen(arg) > NAME_MAX) {
                        log_error("pin_source %s: the credential name must be a plain file name "
                                  "as given to LoadCredential=.",
                                  pin_source);
                        return -EINVAL;
                }
                dir = secure_getenv("CREDENTIALS_DIRECTORY");
                if (!dir || dir[0] != '/') {
                        log_error("pin_source %s needs $CREDENTIALS_DIRECTORY, which is %s; "
                                  "add LoadCredential=%s:/path/to/pin (or "
                                  "LoadCredentialEncrypted=) to the service unit.",
                                  pin_source, dir ? "not an absolute path" : "not set", arg);
                        return -EINVAL;
                }
                if (asprintf(&path, "%s/%s", dir, arg) < 0)
                        return -ENOMEM;
                *ret_path = path;
                /* systemd owns $CREDENTIALS_DIRECTORY (read-only, private to the unit) and may
                 * grant our user access by ACL, which shows up as group bits in the mode. */
                *ret_check_mode = false;
                return 0;
        }
        log_error("pin_source \"%s\" is neither file:/path nor credential:NAME.", pin_source);
        return -EINVAL;
}

static int read_pin(const char *path, bool check_mode, struct secret **ret)
{
        _cleanup_close_ int fd = -1;
        char fd_path[64];
        struct stat st;
        int r;

        /* O_NONBLOCK so a FIFO planted at the path cannot hang us before fstat() refuses it. */
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ELOOP)
                        return log_error_errno(errno,
                                               "PIN file %s is a symbolic link; point "
                                               "pin_source at the file itself.",
                                               path);
                return log_error_errno(errno, "Failed to open PIN file %s", path);
        }
        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Failed to stat PIN file %s", path);
        if (!S_ISREG(st.st_mode)) {
                log_error("PIN file %s is not a regular file.", path);
                return -EBADF;
        }
        if (check_mode) {
                if (st.st_uid != 0 && st.st_uid != geteuid()) {
                        log_error("PIN file %s is owned by uid %u; it must be owned by root or "
                                  "uid %u; fix with: chown %u %s",
                                  path, (unsigned)st.st_uid, (unsigned)geteuid(),
                                  (unsigned)geteuid(), path);
                        return -EPERM;
                }
                if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                        log_error("PIN file %s is accessible by group or others (mode %04o); "
                                  "fix with: chmod 0600 %s",
                                  path, (unsigned)(st.st_mode & 07777), path);
                        return -EPERM;
                }
        }

        /* Read the file we checked, not whatever the path names by now. */
        snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", fd);
        r = secret_from_file(fd_path, PIN_MAX, ret);
        if (r == -EFBIG)
                return log_error_errno(r, "PIN file %s is longer than %d bytes.", path, PIN_MAX);
        if (r == -ENODATA)
                return log_error_errno(r, "PIN file %s is empty.", path);
        if (r < 0)
                return log_error_errno(r, "Failed to read PIN file %s", path);
        return 0;
}

/* ---- module, token, session ---- */

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

static int find_token(struct store *s, const char *module_path, const char *token_uri,
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

        /* The slot list may grow between the two calls (hot-plug): retry a few times. */
        for (unsigned attempt = 0;; attempt++) {
                rv = s->module->C_GetSlotList(CK_TRUE, NULL, &n_slots);
                if (rv != CKR_OK)
                        return ck_fail(s, "C_GetSlotList", module_path, rv);
                free(slots);
                slots = calloc(n_slots ? n_slots : 1, sizeof(CK_SLOT_ID));
                if (!slots)
                        return -ENOMEM;
                rv = s->module->C_GetSlotList(CK_TRUE, slots, &n_slots);
                if (rv == CKR_BUFFER_TOO_SMALL && attempt < 3)
                        continue;
                if (rv != CKR_OK)
                        return ck_fail(s, "C_GetSlotList", module_path, rv);
                break;
        }

        matches = calloc(n_slots ? n_slots : 1, sizeof(CK_SLOT_ID));
        if (!matches)
                return -ENOMEM;
        for (CK_ULONG i = 0; i < n_slots; i++) {
                rv = s->module->C_GetTokenInfo(slots[i], &info);
                if (rv != CKR_OK) {
                        /* Removed since the slot list was taken: not a candidate. */
                        log_debug("Skipping slot %lu: C_GetTokenInfo: %s", (unsigned long)slots[i],
                                  rv_name(rv));
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

/* What a failed C_Login means to an administrator. There is never a second attempt: a PIN from a
 * file does not change between tries, so retrying only runs the token's counter down to a
 * lockout. */
int login_error(const struct store *s, CK_RV rv, const char *pin_source, const char *pin_path)
{
        /* $CREDENTIALS_DIRECTORY is systemd's runtime copy: the fix goes into its source. */
        bool credential = startswith(pin_source, "credential:") != NULL;

        switch (rv) {
        case CKR_PIN_INCORRECT:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_INVALID:
                log_error("The PIN from %s is wrong for token \"%s\" (%s); not retrying. Put the "
                          "token's user PIN into %s%s.",
                          pin_source, s->token_label, rv_name(rv),
                          credential ? "the file the service unit's LoadCredential= names, not "
                                     : "",
                          pin_path);
                return rv_to_errno(rv);
        case CKR_PIN_LOCKED:
                log_error("The user PIN of token \"%s\" is locked; the token's security officer "
                          "must unlock it by setting the user PIN again with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so), then put that PIN "
                          "into %s.",
                          s->token_label, pin_source);
                return rv_to_errno(rv);
        case CKR_PIN_EXPIRED:
                log_error("The user PIN of token \"%s\" has expired; set a new one "
                          "(pkcs11-tool --change-pin) and put it into %s.",
                          s->token_label, pin_source);
                return rv_to_errno(rv);
        default:
                return ck_fail(s, "C_Login", pin_source, rv);
        }
}

static int login(struct store *s, const char *pin_source, const char *pin_path, bool check_mode,
                 CK_SLOT_ID slot, const CK_TOKEN_INFO *info)
{
        _cleanup_secret_ struct secret *pin = NULL;
        sigset_t termination, saved;
        CK_TOKEN_INFO after;
        bool masked;
        CK_RV rv;
        int r;

        /* Reported by the token before any attempt: no C_Login, the same message. */
        if (info->flags & CKF_USER_PIN_LOCKED)
                return login_error(s, CKR_PIN_LOCKED, pin_source, pin_path);
        if (!(info->flags & CKF_USER_PIN_INITIALIZED)) {
                log_error("Token \"%s\" has no user PIN yet; set one with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so).",
                          s->token_label);
                return -EACCES;
        }

        r = read_pin(pin_path, check_mode, &pin);
        if (r < 0)
                return r;
        /* SoftHSM2 rewrites its token.object in place (ftruncate, then write) on every
         * successful login; dying in between leaves the token uninitialized, every object in
         * it lost (docs/softhsm-torn-writes.md). SIGKILL cannot be held off, but Ctrl-C on the
         * CLI or a stop request can wait the few microseconds until the login is done. The
         * broker already blocks these for its signalfd; this covers the CLI. */
        sigemptyset(&termination);
        sigaddset(&termination, SIGINT);
        sigaddset(&termination, SIGTERM);
        sigaddset(&termination, SIGHUP);
        sigaddset(&termination, SIGQUIT);
        masked = pthread_sigmask(SIG_BLOCK, &termination, &saved) == 0;
        rv = s->module->C_Login(s->session, CKU_USER, secret_data(pin), secret_len(pin));
        if (masked)
                (void)pthread_sigmask(SIG_SETMASK, &saved, NULL);
        /* The PIN is needed for exactly this one call. */
        secret_free(TAKE_PTR(pin));

        switch (rv) {
        case CKR_OK:
                s->logged_in = true;
                return 0;
        case CKR_USER_ALREADY_LOGGED_IN:
                /* Another user of the module in this process logged in; the login is theirs
                 * to end, so store_close() must not log out. */
                return 0;
        default:
                r = login_error(s, rv, pin_source, pin_path);
                if (rv == CKR_PIN_INCORRECT && s->module->C_GetTokenInfo(slot, &after) == CKR_OK &&
                    (after.flags & CKF_USER_PIN_FINAL_TRY))
                        log_error("One more wrong PIN will lock token \"%s\".", s->token_label);
                return r;
        }
}

int store_open(const struct store_options *options, struct store **ret)
{
        _cleanup_(store_closep) struct store *s = NULL;
        _cleanup_free_ char *module = NULL, *pin_path = NULL;
        CK_TOKEN_INFO info;
        CK_SLOT_ID slot = 0;
        bool check_mode;
        CK_RV rv;
        int r;

        if (!options || !ret)
                return -EINVAL;

        r = check_module_path(options->module_path, options->module_dirs, options->n_module_dirs,
                              &module);
        if (r < 0)
                return r;
        /* Syntax only: a typo in pin_source should not need a trip to the HSM to show up. */
        r = pin_source_path(options->pin_source, &pin_path, &check_mode);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        /* The resolved path, so what we load is what we checked: its directories let no one but
         * root (or us) replace it in between. Not /proc/self/fd/N: glibc's dlopen() matches an
         * already loaded library by that name, whatever the descriptor now is. */
        s->module = p11_kit_module_load(module, 0);
        if (!s->module) {
                const char *why = p11_kit_message();

                log_error("Failed to load PKCS#11 module %s: %s", module,
                          why ? why : "unknown error");
                return -ELIBBAD;
        }
        rv = p11_kit_module_initialize(s->module);
        if (rv != CKR_OK)
                return ck_fail(s, "C_Initialize", module, rv);
        s->initialized = true;

        r = find_token(s, module, options->token_uri, &slot, &info);
        if (r < 0)
                return r;
        s->token_label = p11_kit_space_strdup(info.label, sizeof(info.label));
        if (!s->token_label)
                return -ENOMEM;

        rv = s->module->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &s->session);
        if (rv != CKR_OK)
                return ck_fail(s, "C_OpenSession", options->token_uri, rv);
        s->session_open = true;

        r = login(s, options->pin_source, pin_path, check_mode, slot, &info);
        if (r < 0)
                return r;
        r = store_remember_session(s, module, options->token_uri, options->pin_source, pin_path,
                                   check_mode);
        if (r < 0)
                return r;

        log_debug("Opened PKCS#11 token \"%s\" through %s.", s->token_label, module);
        *ret = TAKE_PTR(s);
        return 0;
}

void store_close(struct store *s)
{
        if (!s)
                return;
        if (s->module) {
                if (s->logged_in)
                        (void)s->module->C_Logout(s->session);
                if (s->session_open)
                        (void)s->module->C_CloseSession(s->session);
                if (s->initialized)
                        (void)p11_kit_module_finalize(s->module);
                p11_kit_module_release(s->module);
        }
        generation_hints_free(s);
        free(s->token_label);
        free(s->module_path);
        free(s->token_uri);
        free(s->pin_source);
        free(s->pin_path);
        free(s);
}

/* ---- losing the session and opening it again ---- */

/* The return values after which the session cannot be used any more. p11-kit-client answers
 * CKR_DEVICE_ERROR (and some modules CKR_GENERAL_ERROR) once its server has gone away. */
static bool rv_means_session_lost(CK_RV rv)
{
        switch (rv) {
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_DEVICE_ERROR:
        case CKR_GENERAL_ERROR:
        case CKR_CRYPTOKI_NOT_INITIALIZED:
                return true;
        default:
                return false;
        }
}

bool store_note_rv(struct store *s, CK_RV rv)
{
        if (!s || !rv_means_session_lost(rv))
                return false;
        if (!s->session_lost)
                log_warning("Lost the session to token \"%s\" (%s); it is opened again on the "
                            "next operation.",
                            s->token_label ? s->token_label : "?", rv_name(rv));
        s->session_lost = true;
        return true;
}

int store_remember_session(struct store *s, const char *module_path, const char *token_uri,
                           const char *pin_source, const char *pin_path, bool pin_check_mode)
{
        s->module_path = strdup(module_path);
        s->token_uri = strdup(token_uri);
        s->pin_source = strdup(pin_source);
        s->pin_path = strdup(pin_path);
        if (!s->module_path || !s->token_uri || !s->pin_source || !s->pin_path)
                return -ENOMEM;
        s->pin_check_mode = pin_check_mode;
        return 0;
}

bool store_session_lost(const struct store *s)
{
        return s && s->session_lost;
}

/* Backoff between reopen attempts: 1, 2, 4 … 60 s, so a dead HSM costs one attempt a period. */
#define REOPEN_BACKOFF_CAP_SEC 60

static uint64_t reopen_delay_usec(unsigned failures)
{
        uint64_t delay = 1;

        for (unsigned i = 1; i < failures && delay < REOPEN_BACKOFF_CAP_SEC; i++)
                delay *= 2;
        if (delay > REOPEN_BACKOFF_CAP_SEC)
                delay = REOPEN_BACKOFF_CAP_SEC;
        return delay * USEC_PER_SEC;
}

/* Everything from C_Initialize on, as store_open() did it. Always the whole way: a remote
 * module (p11-kit-client) whose server went away fails every call, C_OpenSession and
 * C_GetSlotList included, until it is initialized again, which reconnects; and the slot may
 * have changed when the token came back. */
static int store_reopen(struct store *s)
{
        CK_TOKEN_INFO info;
        CK_SLOT_ID slot = 0;
        CK_RV rv;
        int r;

        if (s->session_open)
                (void)s->module->C_CloseSession(s->session);
        s->session_open = false;
        s->logged_in = false;
        if (s->initialized)
                (void)p11_kit_module_finalize(s->module);
        s->initialized = false;

        rv = p11_kit_module_initialize(s->module);
        if (rv != CKR_OK)
                return ck_fail(s, "C_Initialize", s->module_path, rv);
        s->initialized = true;
        r = find_token(s, s->module_path, s->token_uri, &slot, &info);
        if (r < 0)
                return r;
        rv = s->module->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &s->session);
        if (rv != CKR_OK)
                return ck_fail(s, "C_OpenSession", s->token_uri, rv);
        s->session_open = true;
        r = login(s, s->pin_source, s->pin_path, s->pin_check_mode, slot, &info);
        if (r == -EACCES || r == -EPERM) {
                /* A wrong or locked PIN stays wrong: another try only counts down the token's
                 * retry counter towards a lockout. */
                s->login_refused = true;
                log_error("Not logging in to token \"%s\" again until credbrokerd is "
                          "restarted with a working PIN.",
                          s->token_label);
        }
        return r;
}

int store_ensure_session(struct store *s)
{
        uint64_t now;
        int r;

        if (!s)
                return -EINVAL;
        if (!s->session_lost)
                return 0;
        if (s->login_refused)
                return -EACCES;
        now = now_boottime_usec();
        if (now < s->reopen_at_usec)
                return -EAGAIN;

        r = store_reopen(s);
        if (r < 0) {
                if (s->reopen_failures < 30)
                        s->reopen_failures++;
                s->reopen_at_usec = now + reopen_delay_usec(s->reopen_failures);
                if (s->login_refused)
                        return r;
                log_warning_errno(r, "Cannot open token \"%s\" again; next attempt in %llu s",
                                  s->token_label,
                                  (unsigned long long)((s->reopen_at_usec - now) / USEC_PER_SEC));
                return -EAGAIN;
        }
        s->session_lost = false;
        s->reopen_failures = 0;
        s->reopen_at_usec = 0;
        log_notice("Opened the session to token \"%s\" again.", s->token_label);
        return 0;
}

void store_private_session(struct store *s, CK_FUNCTION_LIST **ret_module,
                           CK_SESSION_HANDLE *ret_session)
{
        *ret_module = s->module;
        *ret_session = s->session;
}

void store_private_forget_generations(struct store *s)
{
        generation_hints_free(s);
}
