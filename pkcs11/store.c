/* The credential store: loads an allow-listed PKCS#11 module through p11-kit, selects one token by
 * URI, logs in with a PIN read from a protected file, and keeps every account's CKO_DATA objects
 * (design.md §4) with the refresh-token rotation order of §6. */
#include "store.h"
#include "store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "fault.h"
#include "log.h"
#include "util.h"

/* Every object we own carries this CKA_APPLICATION; it is also the one account name we refuse,
 * because install-wide objects ("credbroker/audit-hmac-key", "credbroker/audit-key") live under
 * it and store_remove_account("credbroker") must never reach them. */
#define STORE_APPLICATION "credbroker"
#define INSTALL_KEY_LABEL STORE_APPLICATION "/audit-hmac-key"
#define INSTALL_KEY_SIZE  32

#define PIN_MAX  256
#define META_MAX 65536
/* Our labels are at most 64 + strlen("/refresh_token/") + 20 bytes; longer ones are not ours. */
#define LABEL_MAX 256
/* A token holding more of our objects than this is broken or hostile; refuse to scan it. */
#define OBJECTS_MAX 65536

#define REFRESH_TOKEN_INFIX "/refresh_token/"
#define META_SUFFIX         "/meta"

struct store {
        CK_FUNCTION_LIST *module;
        bool initialized;
        CK_SESSION_HANDLE session;
        bool session_open;
        bool logged_in;
        char *token_label; /* for log messages only */
};

/* A CKO_DATA object of ours and its label. */
struct data_object {
        CK_OBJECT_HANDLE handle;
        char *label;
};

struct generation {
        CK_OBJECT_HANDLE handle;
        uint64_t generation;
};

static char application[] = STORE_APPLICATION;
static CK_BBOOL ck_true = CK_TRUE;

/* The names of the return values we can meet, for log lines an administrator can search for. */
static const char *rv_name(CK_RV rv)
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
static int rv_to_errno(CK_RV rv)
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
static int ck_fail(const struct store *s, const char *call, const char *what, CK_RV rv)
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

/* Account names are file-name-safe by name_is_valid(); "credbroker" is reserved, see above. */
static bool account_is_valid(const char *account)
{
        return name_is_valid(account) && strcmp(account, STORE_APPLICATION) != 0;
}

static const char *startswith(const char *s, const char *prefix)
{
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* Strict: the digits after "<account>/refresh_token/" with no sign, no leading zero, no junk. */
static bool parse_generation(const char *label, const char *prefix, uint64_t *ret)
{
        size_t n = strlen(prefix);
        const char *digits;

        if (strncmp(label, prefix, n) != 0)
                return false;
        digits = label + n;
        if (digits[0] == '0' && digits[1] != 0)
                return false;
        return parse_u64(digits, ret) >= 0;
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
static int check_module_path(const char *path, char *const *dirs, size_t n_dirs, char **ret)
{
        _cleanup_free_ char *resolved = NULL;
        char dir[PATH_MAX];
        struct stat st;
        char *slash;

        if (!path || path[0] != '/') {
                log_error("PKCS#11 module path \"%s\" is not absolute; set module_path to the "
                          "full path, e.g. /usr/lib/softhsm/libsofthsm2.so.",
                          path ? path : "");
                return -EINVAL;
        }
        if (path_has_dotdot(path)) {
                log_error("PKCS#11 module path %s contains a \"..\" component; set module_path "
                          "to the module's path without \"..\".",
                          path);
                return -EINVAL;
        }
        if (stat(path, &st) < 0)
                return log_error_errno(errno,
                                       "PKCS#11 module %s cannot be used (check module_path "
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
                log_error("PKCS#11 module %s is not a regular file; point module_path at the "
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
                        log_error("pin_source %s needs $CREDENTIALS_DIRECTORY, which is not set; "
                                  "add LoadCredential=%s:/path/to/pin (or "
                                  "LoadCredentialEncrypted=) to the service unit.",
                                  pin_source, arg);
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
                log_error("No token_uri configured; set it to the PKCS#11 URI of the token, "
                          "e.g. pkcs11:token=credbroker.");
                return -EINVAL;
        }
        uri = p11_kit_uri_new();
        if (!uri)
                return -ENOMEM;
        r = p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_TOKEN, uri);
        if (r != P11_KIT_URI_OK) {
                log_error("token_uri \"%s\" is not a valid PKCS#11 URI: %s; write it like "
                          "pkcs11:token=credbroker.",
                          token_uri, p11_kit_uri_message(r));
                return -EINVAL;
        }
        /* A URI that names objects, slots or a library would be silently half-honoured. */
        if (p11_kit_uri_any_unrecognized(uri)) {
                log_error("token_uri %s has attributes that do not describe a token; keep only "
                          "token=, manufacturer=, model= and serial=.",
                          token_uri);
                return -EINVAL;
        }
        if (p11_kit_uri_get_pin_value(uri) || p11_kit_uri_get_pin_source(uri)) {
                log_error("token_uri %s carries a PIN; remove it and use pin_source instead.",
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
                log_error("No initialized PKCS#11 token matches %s in module %s; list the "
                          "tokens with: p11tool --provider=%s --list-tokens",
                          token_uri, module_path, module_path);
                return -ENODEV;
        }
        if (n_matches > 1) {
                char list[1024];
                size_t used = 0;

                list[0] = 0;
                for (size_t i = 0; i < n_matches; i++) {
                        _cleanup_free_ char *label = NULL, *serial = NULL;

                        if (s->module->C_GetTokenInfo(matches[i], &info) != CKR_OK)
                                continue;
                        label = p11_kit_space_strdup(info.label, sizeof(info.label));
                        serial = p11_kit_space_strdup(info.serialNumber, sizeof(info.serialNumber));
                        int n = snprintf(list + used, sizeof(list) - used, "%s\"%s\" (serial %s)",
                                         i ? ", " : "", label ? label : "?", serial ? serial : "?");
                        if (n < 0 || (size_t)n >= sizeof(list) - used)
                                break;
                        used += (size_t)n;
                }
                log_error("PKCS#11 URI %s matches %zu tokens: %s; make token_uri select one, "
                          "e.g. by adding ;serial=…",
                          token_uri, n_matches, list);
                return -ENOTUNIQ;
        }

        *ret_slot = matches[0];
        *ret_info = found_info;
        return 0;
}

static int login(struct store *s, const char *pin_source, const char *pin_path, bool check_mode,
                 CK_SLOT_ID slot, const CK_TOKEN_INFO *info)
{
        _cleanup_secret_ struct secret *pin = NULL;
        CK_TOKEN_INFO after;
        CK_RV rv;
        int r;

        if (info->flags & CKF_USER_PIN_LOCKED) {
                log_error("The user PIN of token \"%s\" is locked; unlock it with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so) and start again.",
                          s->token_label);
                return -EPERM;
        }
        if (!(info->flags & CKF_USER_PIN_INITIALIZED)) {
                log_error("Token \"%s\" has no user PIN yet; set one with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so).",
                          s->token_label);
                return -EACCES;
        }

        r = read_pin(pin_path, check_mode, &pin);
        if (r < 0)
                return r;
        rv = s->module->C_Login(s->session, CKU_USER, secret_data(pin), secret_len(pin));
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
        case CKR_PIN_INCORRECT:
                /* One attempt only: retrying a wrong PIN from a file just runs the token's
                 * retry counter down to a lockout. */
                log_error("The PIN from %s is wrong for token \"%s\"; not retrying. Put the "
                          "token's user PIN into %s.",
                          pin_source, s->token_label, pin_path);
                if (s->module->C_GetTokenInfo(slot, &after) == CKR_OK &&
                    (after.flags & CKF_USER_PIN_FINAL_TRY))
                        log_error("One more wrong PIN will lock token \"%s\".", s->token_label);
                return rv_to_errno(rv);
        case CKR_PIN_LOCKED:
                log_error("The user PIN of token \"%s\" is locked; unlock it with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so), then fix %s.",
                          s->token_label, pin_source);
                return rv_to_errno(rv);
        default:
                return ck_fail(s, "C_Login", pin_source, rv);
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

        /* The resolved path, so what we load is what we checked. */
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
        free(s->token_label);
        free(s);
}

void store_private_session(struct store *s, CK_FUNCTION_LIST **ret_module,
                           CK_SESSION_HANDLE *ret_session)
{
        *ret_module = s->module;
        *ret_session = s->session;
}

/* ---- objects ---- */

static int find_objects(struct store *s, CK_ATTRIBUTE *template, CK_ULONG n_template,
                        const char *what, CK_OBJECT_HANDLE **ret, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        size_t n = 0, allocated = 0;
        CK_RV rv;
        int r = 0;

        rv = s->module->C_FindObjectsInit(s->session, template, n_template);
        if (rv != CKR_OK)
                return ck_fail(s, "C_FindObjectsInit", what, rv);
        for (;;) {
                CK_ULONG got = 0;

                if (n == allocated) {
                        size_t more = allocated ? allocated * 2 : 16;
                        CK_OBJECT_HANDLE *p;

                        if (more > OBJECTS_MAX) {
                                r = log_error_errno(E2BIG,
                                                    "Token \"%s\" holds more than %d objects "
                                                    "matching %s; refusing to scan it.",
                                                    s->token_label, OBJECTS_MAX, what);
                                break;
                        }
                        p = reallocarray(handles, more, sizeof(*handles));
                        if (!p) {
                                r = -ENOMEM;
                                break;
                        }
                        handles = p;
                        allocated = more;
                }
                rv = s->module->C_FindObjects(s->session, handles + n, allocated - n, &got);
                if (rv != CKR_OK) {
                        r = ck_fail(s, "C_FindObjects", what, rv);
                        break;
                }
                /* Only a zero count means the end (PKCS#11 §5.14); a short batch does not. */
                if (got == 0)
                        break;
                n += got;
        }
        /* Always end the search, or the session refuses the next one with OPERATION_ACTIVE. */
        rv = s->module->C_FindObjectsFinal(s->session);
        if (r < 0)
                return r;
        if (rv != CKR_OK)
                return ck_fail(s, "C_FindObjectsFinal", what, rv);

        *ret = TAKE_PTR(handles);
        *ret_n = n;
        return 0;
}

/* Our CKO_DATA objects, optionally only those with one exact label. CKA_PRIVATE=TRUE is part of
 * the search: only a logged-in user can create private objects, so a public look-alike planted
 * through an unauthenticated session is never taken for ours. */
static int find_data_objects(struct store *s, const char *label, CK_OBJECT_HANDLE **ret,
                             size_t *ret_n)
{
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &ck_true, sizeof(ck_true)},
            {CKA_PRIVATE, &ck_true, sizeof(ck_true)},
            {CKA_APPLICATION, application, sizeof(application) - 1},
            {CKA_LABEL, (void *)label, label ? strlen(label) : 0},
        };

        return find_objects(s, template, label ? 5 : 4, label ? label : "credbroker objects", ret,
                            ret_n);
}

/* The label in one call: a label that does not fit LABEL_MAX is not one of ours. Returns
 * -ENOENT for an object gone since the search and -EBADMSG for a label that is not ours. */
static int get_label(struct store *s, CK_OBJECT_HANDLE handle, char label[static LABEL_MAX + 1])
{
        CK_ATTRIBUTE a = {CKA_LABEL, label, LABEL_MAX};
        CK_RV rv;

        rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
        if (rv == CKR_BUFFER_TOO_SMALL)
                return -EBADMSG;
        if (rv != CKR_OK)
                return ck_fail(s, "C_GetAttributeValue(CKA_LABEL)", "an object", rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > LABEL_MAX)
                return -EBADMSG;
        label[a.ulValueLen] = 0;
        if (strlen(label) != a.ulValueLen)
                return -EBADMSG;
        return 0;
}

static void data_objects_free(struct data_object *objects, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(objects[i].label);
        free(objects);
}

/* Every CKO_DATA object of ours with its label. Searches cannot match a label prefix, so the
 * callers that need "<account>/…" filter this list. */
static int list_data_objects(struct store *s, struct data_object **ret, size_t *ret_n)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        struct data_object *objects;
        size_t n_handles, n = 0;
        int r;

        r = find_data_objects(s, NULL, &handles, &n_handles);
        if (r < 0)
                return r;
        objects = calloc(n_handles ? n_handles : 1, sizeof(*objects));
        if (!objects)
                return -ENOMEM;
        for (size_t i = 0; i < n_handles; i++) {
                char label[LABEL_MAX + 1];

                r = get_label(s, handles[i], label);
                if (r == -ENOENT || r == -EBADMSG)
                        continue;
                if (r < 0) {
                        data_objects_free(objects, n);
                        return r;
                }
                objects[n].label = strdup(label);
                if (!objects[n].label) {
                        data_objects_free(objects, n);
                        return -ENOMEM;
                }
                objects[n++].handle = handles[i];
        }
        *ret = objects;
        *ret_n = n;
        return 0;
}

static int compare_generation_desc(const void *a, const void *b)
{
        const struct generation *x = a, *y = b;

        return x->generation < y->generation ? 1 : x->generation > y->generation ? -1 : 0;
}

/* Every "<account>/refresh_token/<g>" object, whatever its value, newest first. */
static int list_generations(struct store *s, const char *account, struct generation **ret,
                            size_t *ret_n)
{
        struct data_object *objects = NULL;
        char prefix[NAME_MAX_LEN + sizeof(REFRESH_TOKEN_INFIX)];
        struct generation *generations;
        size_t n_objects, n = 0;
        int r;

        snprintf(prefix, sizeof(prefix), "%s" REFRESH_TOKEN_INFIX, account);
        r = list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        generations = calloc(n_objects ? n_objects : 1, sizeof(*generations));
        if (!generations) {
                data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objects; i++) {
                uint64_t g;

                if (!startswith(objects[i].label, prefix))
                        continue;
                if (!parse_generation(objects[i].label, prefix, &g)) {
                        log_warning("Ignoring object \"%s\" on token \"%s\": not a valid "
                                    "refresh token generation.",
                                    objects[i].label, s->token_label);
                        continue;
                }
                generations[n].handle = objects[i].handle;
                generations[n++].generation = g;
        }
        data_objects_free(objects, n_objects);
        qsort(generations, n, sizeof(*generations), compare_generation_desc);
        *ret = generations;
        *ret_n = n;
        return 0;
}

/* The size of an attribute, asked for first so the buffer is exactly as large as the value and
 * a hostile or broken token cannot make us allocate more than max. */
static int get_value_size(struct store *s, CK_OBJECT_HANDLE handle, CK_ATTRIBUTE_TYPE type,
                          size_t max, const char *what, size_t *ret)
{
        CK_ATTRIBUTE a = {type, NULL, 0};
        CK_RV rv;

        rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
        if (rv != CKR_OK)
                return ck_fail(s, "C_GetAttributeValue", what, rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
                log_error("The value of %s on token \"%s\" cannot be read.", what, s->token_label);
                return -EACCES;
        }
        if (a.ulValueLen > max)
                return -EFBIG;
        *ret = a.ulValueLen;
        return 0;
}

static int read_secret_value(struct store *s, CK_OBJECT_HANDLE handle, size_t max, const char *what,
                             struct secret **ret)
{
        _cleanup_secret_ struct secret *value = NULL;
        CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
        size_t size;
        CK_RV rv;
        int r;

        r = get_value_size(s, handle, CKA_VALUE, max, what, &size);
        if (r < 0)
                return r;
        r = secret_new(size ? size : 1, &value);
        if (r < 0)
                return r;
        if (size > 0) {
                a.pValue = secret_data(value);
                a.ulValueLen = size;
                rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
                /* BUFFER_TOO_SMALL: changed since we asked its size. Not what we wrote. */
                if (rv == CKR_BUFFER_TOO_SMALL)
                        return -EFBIG;
                if (rv != CKR_OK)
                        return ck_fail(s, "C_GetAttributeValue", what, rv);
                if (a.ulValueLen > size)
                        return -EFBIG;
                r = secret_set_len(value, a.ulValueLen);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(value);
        return 0;
}

/* For values that are not secret (meta JSON): a NUL-terminated malloc()ed copy. */
static int read_plain_value(struct store *s, CK_OBJECT_HANDLE handle, size_t max, const char *what,
                            char **ret, size_t *ret_len)
{
        _cleanup_free_ char *value = NULL;
        CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
        size_t size;
        CK_RV rv;
        int r;

        r = get_value_size(s, handle, CKA_VALUE, max, what, &size);
        if (r < 0)
                return r;
        value = malloc(size + 1);
        if (!value)
                return -ENOMEM;
        if (size > 0) {
                a.pValue = value;
                a.ulValueLen = size;
                rv = s->module->C_GetAttributeValue(s->session, handle, &a, 1);
                if (rv == CKR_BUFFER_TOO_SMALL)
                        return -EFBIG;
                if (rv != CKR_OK)
                        return ck_fail(s, "C_GetAttributeValue", what, rv);
                if (a.ulValueLen > size)
                        return -EFBIG;
                size = a.ulValueLen;
        }
        value[size] = 0;
        *ret = TAKE_PTR(value);
        *ret_len = size;
        return 0;
}

static int create_data_object(struct store *s, const char *label, const void *value, size_t len,
                              CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &ck_true, sizeof(ck_true)},
            {CKA_PRIVATE, &ck_true, sizeof(ck_true)},
            {CKA_APPLICATION, application, sizeof(application) - 1},
            {CKA_LABEL, (void *)label, strlen(label)},
            {CKA_VALUE, (void *)value, len},
        };
        CK_OBJECT_HANDLE handle;
        CK_RV rv;

        rv = s->module->C_CreateObject(s->session, template, ELEMENTSOF(template), &handle);
        if (rv != CKR_OK)
                return ck_fail(s, "C_CreateObject", label, rv);
        *ret = handle;
        return 0;
}

static int destroy_object(struct store *s, CK_OBJECT_HANDLE handle, const char *what)
{
        CK_RV rv;

        rv = s->module->C_DestroyObject(s->session, handle);
        if (rv != CKR_OK)
                return ck_fail(s, "C_DestroyObject", what, rv);
        return 0;
}

/* ---- account metadata ---- */

int store_put_meta(struct store *s, const char *account, const char *json)
{
        _cleanup_free_ CK_OBJECT_HANDLE *old = NULL;
        char label[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        CK_OBJECT_HANDLE handle;
        size_t n_old, len;
        int r, ret = 0;

        if (!s || !account_is_valid(account) || !json)
                return -EINVAL;
        len = strlen(json);
        if (len == 0 || len > META_MAX || !utf8_is_valid((const uint8_t *)json, len))
                return -EINVAL;

        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        r = find_data_objects(s, label, &old, &n_old);
        if (r < 0)
                return r;
        /* New first: a crash in between leaves two copies, never none. */
        r = create_data_object(s, label, json, len, &handle);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_old; i++) {
                r = destroy_object(s, old[i], label);
                /* Unlike refresh tokens, two meta objects cannot be told apart, so a leftover
                 * makes get ambiguous: report it (the next put retries the cleanup). */
                if (r < 0 && r != -ENOENT && ret == 0)
                        ret = r;
        }
        return ret;
}

int store_get_meta(struct store *s, const char *account, char **ret_json)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        char label[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        char *json = NULL;
        size_t n, len = 0;
        int r;

        if (!s || !account_is_valid(account) || !ret_json)
                return -EINVAL;

        snprintf(label, sizeof(label), "%s" META_SUFFIX, account);
        r = find_data_objects(s, label, &handles, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                log_warning("Token \"%s\" holds %zu objects \"%s\" (an interrupted update?); "
                            "using one of them. Store the metadata again to clean up.",
                            s->token_label, n, label);

        r = read_plain_value(s, handles[0], META_MAX, label, &json, &len);
        if (r == -EFBIG)
                return log_error_errno(EBADMSG,
                                       "Object \"%s\" on token \"%s\" is larger than %d "
                                       "bytes.",
                                       label, s->token_label, META_MAX);
        if (r < 0)
                return r;
        if (strlen(json) != len) {
                free(json);
                return log_error_errno(EBADMSG,
                                       "Object \"%s\" on token \"%s\" contains a NUL "
                                       "byte.",
                                       label, s->token_label);
        }
        *ret_json = json;
        return 0;
}

static int compare_names(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

void store_names_free(char **names, size_t n)
{
        if (!names)
                return;
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

int store_list_accounts(struct store *s, char ***ret_names, size_t *ret_n)
{
        struct data_object *objects = NULL;
        size_t n_objects, n = 0;
        char **names;
        int r;

        if (!s || !ret_names || !ret_n)
                return -EINVAL;

        r = list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        names = calloc(n_objects ? n_objects : 1, sizeof(char *));
        if (!names) {
                data_objects_free(objects, n_objects);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_objects; i++) {
                char *label = objects[i].label;
                size_t len = strlen(label);

                if (len <= strlen(META_SUFFIX) ||
                    strcmp(label + len - strlen(META_SUFFIX), META_SUFFIX) != 0)
                        continue;
                label[len - strlen(META_SUFFIX)] = 0;
                if (!account_is_valid(label))
                        continue;
                names[n++] = TAKE_PTR(objects[i].label);
        }
        data_objects_free(objects, n_objects);

        qsort(names, n, sizeof(char *), compare_names);
        /* An interrupted store_put_meta() leaves two "<account>/meta": one name each. */
        size_t unique = 0;
        for (size_t i = 0; i < n; i++) {
                if (unique > 0 && strcmp(names[unique - 1], names[i]) == 0) {
                        free(names[i]);
                        continue;
                }
                names[unique++] = names[i];
        }

        *ret_names = names;
        *ret_n = unique;
        return 0;
}

/* ---- refresh tokens ---- */

int store_read_refresh_token(struct store *s, const char *account, struct secret **ret_token,
                             uint64_t *ret_generation)
{
        _cleanup_free_ struct generation *generations = NULL;
        size_t n;
        int r;

        if (!s || !account_is_valid(account) || !ret_token)
                return -EINVAL;

        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 1)
                log_debug("Account %s has %zu refresh token generations (normal after an "
                          "interrupted rotation).",
                          account, n);

        for (size_t i = 0; i < n; i++) {
                _cleanup_secret_ struct secret *token = NULL;
                char what[LABEL_MAX];

                snprintf(what, sizeof(what), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i].generation);
                r = read_secret_value(s, generations[i].handle, TOKEN_MAX_LEN, what, &token);
                if (r == -ENOENT)
                        continue; /* destroyed by a concurrent rotation */
                if (r == -EFBIG) {
                        log_warning("Skipping refresh token object \"%s\" on token \"%s\": "
                                    "larger than %d bytes.",
                                    what, s->token_label, TOKEN_MAX_LEN);
                        continue;
                }
                if (r < 0)
                        return r;
                if (!token_is_valid(secret_str(token), secret_len(token))) {
                        log_warning("Skipping refresh token object \"%s\" on token \"%s\": its "
                                    "value is empty or not a refresh token.",
                                    what, s->token_label);
                        continue;
                }
                *ret_token = TAKE_PTR(token);
                if (ret_generation)
                        *ret_generation = generations[i].generation;
                return 0;
        }
        return -ENOENT;
}

int store_write_refresh_token(struct store *s, const char *account, const struct secret *token,
                              uint64_t *ret_generation)
{
        _cleanup_free_ struct generation *generations = NULL;
        _cleanup_secret_ struct secret *back = NULL;
        char label[LABEL_MAX];
        CK_OBJECT_HANDLE handle;
        uint64_t next;
        size_t n;
        int r;

        if (!s || !account_is_valid(account) || !token)
                return -EINVAL;
        /* Refuse what store_read_refresh_token() would skip as corrupt. */
        if (secret_len(token) > TOKEN_MAX_LEN ||
            !token_is_valid(secret_str(token), secret_len(token)))
                return -EINVAL;

        /* g is the highest generation present in any state: a corrupt newest one still
         * occupies its number, and reusing it would make two objects claim it. */
        r = list_generations(s, account, &generations, &n);
        if (r < 0)
                return r;
        if (n > 0 && generations[0].generation == UINT64_MAX)
                return log_error_errno(EOVERFLOW,
                                       "Account %s has used up its refresh token "
                                       "generations; remove and re-add it.",
                                       account);
        next = n > 0 ? generations[0].generation + 1 : 1;
        snprintf(label, sizeof(label), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account, next);

        r = create_data_object(s, label, secret_str(token), secret_len(token), &handle);
        if (r < 0)
                return r;
        fault_point("after-create");

        r = read_secret_value(s, handle, TOKEN_MAX_LEN, label, &back);
        if (r < 0 || !secret_equal(back, token)) {
                /* The old generations stay: they are the last token known to be intact. */
                if (destroy_object(s, handle, label) < 0)
                        log_warning("Could not destroy the unverified object \"%s\"; the next "
                                    "rotation removes it.",
                                    label);
                if (r >= 0 || r == -EFBIG)
                        r = log_error_errno(EIO,
                                            "Refresh token \"%s\" read back from token "
                                            "\"%s\" differs from what was written; "
                                            "keeping the previous generation.",
                                            label, s->token_label);
                return r;
        }
        fault_point("after-readback");

        /* Only now is the new token safely stored. A failure here leaves an extra old
         * generation, which the next rotation removes: no reason to fail the write. */
        for (size_t i = 0; i < n; i++) {
                char old[LABEL_MAX];

                snprintf(old, sizeof(old), "%s" REFRESH_TOKEN_INFIX "%" PRIu64, account,
                         generations[i].generation);
                r = destroy_object(s, generations[i].handle, old);
                if (r < 0 && r != -ENOENT)
                        log_warning("Could not destroy old refresh token \"%s\"; the next "
                                    "rotation retries.",
                                    old);
        }
        fault_point("after-destroy");

        if (ret_generation)
                *ret_generation = next;
        return 0;
}

/* ---- accounts ---- */

/* Objects of other classes (the assertion key pair and certificate) carry no CKA_APPLICATION,
 * so they are found by exact label among token objects of any class but CKO_DATA. */
static int destroy_labeled_non_data(struct store *s, const char *label, unsigned *removed)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        CK_ATTRIBUTE template[] = {
            {CKA_TOKEN, &ck_true, sizeof(ck_true)},
            {CKA_LABEL, (void *)label, strlen(label)},
        };
        size_t n;
        int r, ret = 0;

        r = find_objects(s, template, ELEMENTSOF(template), label, &handles, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                CK_OBJECT_CLASS class;
                CK_ATTRIBUTE a = {CKA_CLASS, &class, sizeof(class)};
                CK_RV rv;

                rv = s->module->C_GetAttributeValue(s->session, handles[i], &a, 1);
                if (rv == CKR_OBJECT_HANDLE_INVALID)
                        continue;
                if (rv != CKR_OK) {
                        r = ck_fail(s, "C_GetAttributeValue(CKA_CLASS)", label, rv);
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                if (class == CKO_DATA)
                        continue;
                r = destroy_object(s, handles[i], label);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                (*removed)++;
        }
        return ret;
}

int store_remove_account(struct store *s, const char *account, unsigned *ret_removed)
{
        struct data_object *objects = NULL;
        static const char *const key_suffixes[] = {"/assertion-key", "/assertion-cert"};
        char prefix[NAME_MAX_LEN + 2];
        char meta[NAME_MAX_LEN + sizeof(META_SUFFIX)];
        unsigned removed = 0;
        size_t n_objects;
        int r, ret = 0;

        if (!s || !account_is_valid(account))
                return -EINVAL;

        snprintf(prefix, sizeof(prefix), "%s/", account);
        snprintf(meta, sizeof(meta), "%s" META_SUFFIX, account);

        for (size_t i = 0; i < ELEMENTSOF(key_suffixes); i++) {
                char label[LABEL_MAX];

                snprintf(label, sizeof(label), "%s%s", account, key_suffixes[i]);
                r = destroy_labeled_non_data(s, label, &removed);
                if (r < 0 && ret == 0)
                        ret = r;
        }

        r = list_data_objects(s, &objects, &n_objects);
        if (r < 0)
                return r;
        /* Meta goes last: while it exists the account is listed, so an interrupted removal
         * can be seen and repeated rather than leaving invisible orphans. */
        for (int pass = 0; pass < 2; pass++) {
                for (size_t i = 0; i < n_objects; i++) {
                        bool is_meta = strcmp(objects[i].label, meta) == 0;

                        if (!startswith(objects[i].label, prefix))
                                continue;
                        if (is_meta != (pass == 1))
                                continue;
                        if (is_meta && ret < 0)
                                continue;
                        r = destroy_object(s, objects[i].handle, objects[i].label);
                        if (r == -ENOENT)
                                continue;
                        if (r < 0) {
                                if (ret == 0)
                                        ret = r;
                                continue;
                        }
                        removed++;
                }
        }
        data_objects_free(objects, n_objects);
        if (ret < 0)
                return ret;

        if (ret_removed)
                *ret_removed = removed;
        return 0;
}

/* ---- install key ---- */

int store_get_install_key(struct store *s, struct secret **ret)
{
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        _cleanup_secret_ struct secret *best = NULL;
        _cleanup_secret_ struct secret *key = NULL, *back = NULL;
        CK_OBJECT_HANDLE handle;
        size_t n;
        int r;

        if (!s || !ret)
                return -EINVAL;

        r = find_data_objects(s, INSTALL_KEY_LABEL, &handles, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_secret_ struct secret *candidate = NULL;

                r = read_secret_value(s, handles[i], INSTALL_KEY_SIZE, INSTALL_KEY_LABEL,
                                      &candidate);
                if (r == -ENOENT || r == -EFBIG)
                        continue;
                if (r < 0)
                        return r;
                if (secret_len(candidate) != INSTALL_KEY_SIZE)
                        continue;
                /* Two processes creating the key at once leave two: every caller picks the
                 * smallest, so fingerprints stay the same whichever process computes them. */
                if (!best ||
                    memcmp(secret_data(candidate), secret_data(best), INSTALL_KEY_SIZE) < 0) {
                        secret_free(best);
                        best = TAKE_PTR(candidate);
                }
        }
        if (best) {
                *ret = TAKE_PTR(best);
                return 0;
        }
        if (n > 0) {
                /* A fresh key would silently change every fingerprint in the audit log. */
                log_error("Object \"%s\" on token \"%s\" is not a %d-byte key; remove it to have "
                          "a new one made (audit fingerprints will change).",
                          INSTALL_KEY_LABEL, s->token_label, INSTALL_KEY_SIZE);
                return -EBADMSG;
        }

        r = secret_new(INSTALL_KEY_SIZE, &key);
        if (r < 0)
                return r;
        if (gnutls_rnd(GNUTLS_RND_KEY, secret_data(key), INSTALL_KEY_SIZE) < 0)
                return log_error_errno(EIO, "Failed to generate random bytes for the install key.");
        r = secret_set_len(key, INSTALL_KEY_SIZE);
        if (r < 0)
                return r;

        r = create_data_object(s, INSTALL_KEY_LABEL, secret_data(key), INSTALL_KEY_SIZE, &handle);
        if (r < 0)
                return r;
        r = read_secret_value(s, handle, INSTALL_KEY_SIZE, INSTALL_KEY_LABEL, &back);
        if (r < 0 || !secret_equal(back, key)) {
                (void)destroy_object(s, handle, INSTALL_KEY_LABEL);
                if (r >= 0 || r == -EFBIG)
                        r = log_error_errno(EIO,
                                            "The install key read back from token \"%s\" "
                                            "differs from what was written.",
                                            s->token_label);
                return r;
        }
        log_info("Created a new install key \"%s\" on token \"%s\".", INSTALL_KEY_LABEL,
                 s->token_label);
        *ret = TAKE_PTR(key);
        return 0;
}
