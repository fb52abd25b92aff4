/* Unit tests for pkcs11/store against a private SoftHSM2 token: module allow-list, token URI
 * selection, PIN sources, metadata, refresh-token rotation (including a corrupt newest
 * generation, planted through PKCS#11 and torn on disk), account removal and the install key. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#include "build-config.h"
#include "secret.h"
#include "store-internal.h"
#include "store-private.h"
#include "store.h"
#include "softhsm-token.h"
#include "tap.h"
#include "util.h"

#define TOKEN_LABEL "credbroker-test"
#define OTHER_LABEL "credbroker-other"
#define USER_PIN    "1234"
#define SO_PIN      "5678"

static struct test_token softhsm;
/* softhsm.module and softhsm.pin_source, set by setup(). */
static const char *module;
static const char *pin_source;
static char pattern_lib[] = "/usr/lib*";
static char pattern_lib_slash[] = "/usr/lib*/";
static char pattern_opt[] = "/opt/*";
static char *const lib_dirs[] = {pattern_lib};

static void copy_file(const char *from, const char *to, mode_t mode)
{
        int in = open(from, O_RDONLY | O_CLOEXEC);
        int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        char buf[65536];
        ssize_t n;

        if (in < 0 || out < 0)
                test_die(to);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t)n) != n)
                        test_die(to);
        if (n < 0)
                test_die(from);
        close(in);
        close(out);
}

static void setup(void)
{
        test_token_init(&softhsm, TOKEN_LABEL, USER_PIN, SO_PIN);
        test_token_add(&softhsm, OTHER_LABEL);
        module = softhsm.module;
        pin_source = softhsm.pin_source;
        unsetenv("CREDENTIALS_DIRECTORY");
}

static int open_with(const char *module_path, char *const *dirs, size_t n_dirs, const char *uri,
                     const char *pin, struct store **ret)
{
        struct store_options options = {
            .module_path = module_path,
            .token_uri = uri,
            .pin_source = pin,
            .module_dirs = dirs,
            .n_module_dirs = n_dirs,
        };

        return store_open(&options, ret);
}

static int open_default(struct store **ret)
{
        return open_with(module, lib_dirs, 1, "pkcs11:token=" TOKEN_LABEL, pin_source, ret);
}

/* Expects store_open to fail with want, and to leave the out-param alone. */
static void refused(const char *module_path, char *const *dirs, size_t n_dirs, const char *uri,
                    const char *pin, int want, const char *what)
{
        struct store *s = (struct store *)0x1;
        int r = open_with(module_path, dirs, n_dirs, uri, pin, &s);

        is_int(r, want, what);
        if (r == 0)
                store_close(s);
        else if (s != (struct store *)0x1)
                ok(0, "store_open touched ret on failure");
}

/* The labels of every credbroker CKO_DATA object, through a raw search that bypasses the store
 * API, so tests see exactly what the token holds. */
static size_t raw_labels(struct store *s, char labels[][256], size_t max)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_CLASS class = CKO_DATA;
        char application[] = "credbroker";
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_APPLICATION, application, sizeof(application) - 1},
        };
        CK_OBJECT_HANDLE handles[256];
        CK_ULONG n = 0;
        size_t count = 0;

        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, template, 2) != CKR_OK)
                return 0;
        if (m->C_FindObjects(session, handles, 256, &n) != CKR_OK)
                n = 0;
        m->C_FindObjectsFinal(session);
        for (CK_ULONG i = 0; i < n && count < max; i++) {
                CK_ATTRIBUTE a = {CKA_LABEL, labels[count], 255};

                if (m->C_GetAttributeValue(session, handles[i], &a, 1) != CKR_OK)
                        continue;
                labels[count][a.ulValueLen] = 0;
                count++;
        }
        return count;
}

static bool has_label(struct store *s, const char *label)
{
        char labels[64][256];
        size_t n = raw_labels(s, labels, 64);

        for (size_t i = 0; i < n; i++)
                if (strcmp(labels[i], label) == 0)
                        return true;
        return false;
}

static size_t count_prefix(struct store *s, const char *prefix)
{
        char labels[64][256];
        size_t n = raw_labels(s, labels, 64), count = 0;

        for (size_t i = 0; i < n; i++)
                if (strncmp(labels[i], prefix, strlen(prefix)) == 0)
                        count++;
        return count;
}

/* Plants an object the way a crash or another writer could have left it. */
static CK_RV raw_create(struct store *s, const char *label, const void *value, size_t len)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_OBJECT_CLASS class = CKO_DATA;
        CK_BBOOL yes = CK_TRUE;
        char application[] = "credbroker";
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_TOKEN, &yes, sizeof(yes)},
            {CKA_PRIVATE, &yes, sizeof(yes)},
            {CKA_APPLICATION, application, sizeof(application) - 1},
            {CKA_LABEL, (void *)label, strlen(label)},
            {CKA_VALUE, (void *)value, len},
        };
        CK_OBJECT_HANDLE handle;

        store_private_session(s, &m, &session);
        return m->C_CreateObject(session, template, 6, &handle);
}

/* Destroys every credbroker data object whose label starts with prefix; returns how many. */
static int raw_destroy_prefix(struct store *s, const char *prefix)
{
        char labels[64][256];
        size_t n = raw_labels(s, labels, 64);
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        int destroyed = 0;

        store_private_session(s, &m, &session);
        for (size_t i = 0; i < n; i++) {
                CK_ATTRIBUTE find = {CKA_LABEL, labels[i], strlen(labels[i])};
                CK_OBJECT_HANDLE handle;
                CK_ULONG found = 0;

                if (strncmp(labels[i], prefix, strlen(prefix)) != 0)
                        continue;
                if (m->C_FindObjectsInit(session, &find, 1) != CKR_OK)
                        continue;
                if (m->C_FindObjects(session, &handle, 1, &found) != CKR_OK)
                        found = 0;
                m->C_FindObjectsFinal(session);
                if (found == 1 && m->C_DestroyObject(session, handle) == CKR_OK)
                        destroyed++;
        }
        return destroyed;
}

static struct secret *make_secret(const char *text)
{
        struct secret *t;

        if (secret_new_from(text, strlen(text), &t) < 0)
                abort();
        return t;
}

static void test_module_paths(void)
{
        char path[PATH_MAX], real[PATH_MAX];
        struct store *s = NULL;
        char *const slash_dirs[] = {pattern_lib_slash};
        char *const opt_dirs[] = {pattern_opt};
        const char *uri = "pkcs11:token=" TOKEN_LABEL;

        refused("softhsm/libsofthsm2.so", lib_dirs, 1, uri, pin_source, -EINVAL,
                "a relative module path is refused");
        refused("/usr/lib/softhsm/../softhsm/libsofthsm2.so", lib_dirs, 1, uri, pin_source, -EINVAL,
                "a module path with .. is refused");
        refused("/usr/lib/softhsm/no-such-module.so", lib_dirs, 1, uri, pin_source, -ENOENT,
                "a nonexistent module is refused");
        refused(module, opt_dirs, 1, uri, pin_source, -EPERM,
                "a module outside the allow-list is refused");
        refused(module, NULL, 0, uri, pin_source, -EPERM, "an empty allow-list refuses everything");

        test_token_path(&softhsm, path, sizeof(path), "libsofthsm2-copy.so");
        copy_file(module, path, 0755);
        refused(path, lib_dirs, 1, uri, pin_source, -EPERM, "a module copied to /tmp is refused");

        /* A symlink is judged by where it points: this one resolves inside /usr/lib*. */
        if (!realpath(module, real))
                test_die("realpath");
        test_token_path(&softhsm, path, sizeof(path), "module-link.so");
        if (symlink(real, path) < 0)
                test_die("symlink");
        is_int(open_with(path, lib_dirs, 1, uri, pin_source, &s), 0,
               "a symlink in /tmp to the real module is accepted");
        store_close(s);
        s = NULL;

        /* The resolved file sits two levels below /usr/lib (…/x86_64-linux-gnu/softhsm). */
        is_int(open_with(real, lib_dirs, 1, uri, pin_source, &s), 0,
               "the resolved module path is accepted by /usr/lib*");
        store_close(s);
        s = NULL;

        is_int(open_with(module, slash_dirs, 1, uri, pin_source, &s), 0,
               "an allow-list pattern with a trailing slash works");
        store_close(s);
}

/* A CK_TOKEN_INFO whose manufacturerID is text, blank-padded as PKCS#11 has it. */
static CK_TOKEN_INFO token_info_of(const char *text)
{
        CK_TOKEN_INFO info;

        memset(&info, 0, sizeof(info));
        memset(info.manufacturerID, ' ', sizeof(info.manufacturerID));
        memcpy(info.manufacturerID, text, strlen(text));
        return info;
}

/* store_reopen_if_due() reopens SoftHSM2 only: another module is never finalized under it. */
static void test_token_is_softhsm(void)
{
        CK_TOKEN_INFO info = token_info_of("SoftHSM project");

        ok(p11_token_is_softhsm(&info), "SoftHSM2's manufacturer is recognised");
        info = token_info_of("SoftHSM projectX");
        ok(!p11_token_is_softhsm(&info), "a longer name is not SoftHSM2's");
        info = token_info_of("SoftHSM");
        ok(!p11_token_is_softhsm(&info), "nor a prefix of it");
        info = token_info_of("OpenSC Project");
        ok(!p11_token_is_softhsm(&info), "nor another manufacturer's");
}

static void test_token_uri(void)
{
        refused(module, lib_dirs, 1, "pkcs11:token=no-such-token", pin_source, -ENODEV,
                "a URI matching no token is refused");
        refused(module, lib_dirs, 1, "pkcs11:manufacturer=SoftHSM%20project", pin_source, -ENOTUNIQ,
                "a URI matching two tokens is refused");
        refused(module, lib_dirs, 1, "not-a-uri", pin_source, -EINVAL,
                "a malformed URI is refused");
        refused(module, lib_dirs, 1, "pkcs11:token=" TOKEN_LABEL ";object=x", pin_source, -EINVAL,
                "a URI naming an object is refused");
        refused(module, lib_dirs, 1, "pkcs11:token=" TOKEN_LABEL "?pin-value=" USER_PIN, pin_source,
                -EINVAL, "a URI carrying a PIN is refused");
}

static void test_pin_sources(void)
{
        char path[PATH_MAX], link_path[PATH_MAX], source[PATH_MAX + 16];
        const char *uri = "pkcs11:token=" TOKEN_LABEL;
        struct store *s = NULL;

        test_token_path(&softhsm, path, sizeof(path), "pin-0644");
        test_write_file(path, USER_PIN, 0644);
        snprintf(source, sizeof(source), "file:%s", path);
        refused(module, lib_dirs, 1, uri, source, -EPERM, "a world-readable PIN file is refused");

        test_token_path(&softhsm, path, sizeof(path), "pin-0640");
        test_write_file(path, USER_PIN, 0640);
        snprintf(source, sizeof(source), "file:%s", path);
        refused(module, lib_dirs, 1, uri, source, -EPERM, "a group-readable PIN file is refused");

        if (geteuid() == 0) {
                test_token_path(&softhsm, path, sizeof(path), "pin-nobody");
                test_write_file(path, USER_PIN, 0600);
                if (chown(path, 65534, 65534) < 0)
                        test_die("chown");
                snprintf(source, sizeof(source), "file:%s", path);
                refused(module, lib_dirs, 1, uri, source, -EPERM,
                        "a PIN file owned by another user is refused");
        } else {
                ok(1, "# SKIP PIN file owner test needs root");
        }

        test_token_path(&softhsm, path, sizeof(path), "pin");
        test_token_path(&softhsm, link_path, sizeof(link_path), "pin-link");
        if (symlink(path, link_path) < 0)
                test_die("symlink");
        snprintf(source, sizeof(source), "file:%s", link_path);
        refused(module, lib_dirs, 1, uri, source, -ELOOP, "a symlinked PIN file is refused");

        test_token_path(&softhsm, path, sizeof(path), "pin-wrong");
        test_write_file(path, "9999\n", 0600);
        snprintf(source, sizeof(source), "file:%s", path);
        refused(module, lib_dirs, 1, uri, source, -EACCES, "a wrong PIN is refused");
        refused(module, lib_dirs, 1, uri, source, -EACCES, "a wrong PIN is refused again");
        is_int(open_default(&s), 0, "the right PIN still works: no lockout");
        store_close(s);
        s = NULL;

        test_token_path(&softhsm, path, sizeof(path), "pin-empty");
        test_write_file(path, "", 0600);
        snprintf(source, sizeof(source), "file:%s", path);
        refused(module, lib_dirs, 1, uri, source, -ENODATA, "an empty PIN file is refused");

        refused(module, lib_dirs, 1, uri, "file:relative/pin", -EINVAL,
                "a relative PIN file is refused");
        refused(module, lib_dirs, 1, uri, "env:PIN", -EINVAL, "an unknown pin_source is refused");
        refused(module, lib_dirs, 1, uri, "credential:pin", -EINVAL,
                "credential: without $CREDENTIALS_DIRECTORY is refused");

        test_token_path(&softhsm, path, sizeof(path), "credentials");
        if (mkdir(path, 0700) < 0)
                test_die(path);
        if (setenv("CREDENTIALS_DIRECTORY", path, 1) < 0)
                test_die("setenv");
        test_token_path(&softhsm, path, sizeof(path), "credentials/token-pin");
        test_write_file(path, USER_PIN, 0400);
        is_int(open_with(module, lib_dirs, 1, uri, "credential:token-pin", &s), 0,
               "credential:NAME reads $CREDENTIALS_DIRECTORY/NAME");
        store_close(s);
        refused(module, lib_dirs, 1, uri, "credential:../pin", -EINVAL,
                "a credential name with a slash is refused");
        refused(module, lib_dirs, 1, uri, "credential:..", -EINVAL,
                "the credential name .. is refused");
        unsetenv("CREDENTIALS_DIRECTORY");
}

/* ---- files on disk ---- */

static size_t read_whole_file(const char *path, uint8_t *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                test_die(path);
        n = read(fd, buf, size);
        if (n < 0)
                test_die(path);
        close(fd);
        return (size_t)n;
}

static void write_whole_file(const char *path, const uint8_t *buf, size_t len)
{
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

        if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
                test_die(path);
        close(fd);
}

static uint64_t be64_at(const uint8_t *p)
{
        uint64_t v = 0;

        for (size_t i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

/* ---- what an administrator reads: log lines captured from stderr ---- */

static char captured[16384];
static int saved_stderr = -1;

static void capture_start(void)
{
        char path[PATH_MAX];
        int fd;

        test_token_path(&softhsm, path, sizeof(path), "stderr.txt");
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        saved_stderr = dup(STDERR_FILENO);
        if (fd < 0 || saved_stderr < 0 || dup2(fd, STDERR_FILENO) < 0)
                test_die("capture stderr");
        close(fd);
}

/* Ends the capture, echoes what was caught to the real stderr, and returns it. */
static const char *capture_end(void)
{
        char path[PATH_MAX];
        int fd;
        ssize_t n;

        if (dup2(saved_stderr, STDERR_FILENO) < 0)
                test_die("restore stderr");
        close(saved_stderr);
        test_token_path(&softhsm, path, sizeof(path), "stderr.txt");
        fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd < 0 ? -1 : read(fd, captured, sizeof(captured) - 1);
        if (n < 0)
                test_die("read captured stderr");
        close(fd);
        captured[n] = 0;
        fputs(captured, stderr);
        return captured;
}

/* Opens with the arguments, expects want, and expects each of the needles in what it logged. */
static void refused_saying(const char *module_path, char *const *dirs, size_t n_dirs,
                           const char *uri, const char *pin, int want, const char *what,
                           const char *const *needles)
{
        const char *log;

        capture_start();
        refused(module_path, dirs, n_dirs, uri, pin, want, what);
        log = capture_end();
        for (size_t i = 0; needles[i]; i++) {
                char name[256];

                snprintf(name, sizeof(name), "  ... and the error says \"%s\"", needles[i]);
                if (!ok(strstr(log, needles[i]) != NULL, name))
                        printf("#   logged: %s\n", log);
        }
}

/* ---- more of opening: module allow-list, URI, PIN edge cases ---- */

static void test_module_allow_list(void)
{
        char allowed[PATH_MAX], outside[PATH_MAX], pattern[PATH_MAX], path[PATH_MAX],
            real[PATH_MAX];
        char *const dirs[] = {pattern};
        const char *uri = "pkcs11:token=" TOKEN_LABEL;
        struct store *s = NULL;

        test_token_path(&softhsm, allowed, sizeof(allowed), "allowed");
        test_token_path(&softhsm, outside, sizeof(outside), "outside");
        if (mkdir(allowed, 0755) < 0 || mkdir(outside, 0755) < 0)
                test_die("mkdir");
        snprintf(pattern, sizeof(pattern), "%s", allowed);

        /* A module really inside a configured directory loads, even a copy under /tmp. */
        test_token_path(&softhsm, path, sizeof(path), "allowed/libsofthsm2.so");
        copy_file(module, path, 0755);
        if (chmod(path, 0755) < 0)
                test_die("chmod");
        is_int(open_with(path, dirs, 1, uri, pin_source, &s), 0,
               "module_dirs is honoured: a module in a configured directory loads");
        store_close(s);
        s = NULL;

        /* A symlink inside the allowed directory that points out of it is judged by its
         * target. */
        test_token_path(&softhsm, real, sizeof(real), "outside/libsofthsm2.so");
        copy_file(module, real, 0755);
        if (chmod(real, 0755) < 0)
                test_die("chmod");
        test_token_path(&softhsm, path, sizeof(path), "allowed/escape.so");
        if (symlink(real, path) < 0)
                test_die("symlink");
        refused_saying(path, dirs, 1, uri, pin_source, -EPERM,
                       "a symlink in an allowed directory pointing out of it is refused",
                       (const char *const[]){"resolved to", outside, "module_dirs", NULL});

        /* The same with "..": refused before anything is resolved. */
        test_token_path(&softhsm, path, sizeof(path), "allowed/../outside/libsofthsm2.so");
        refused_saying(path, dirs, 1, uri, pin_source, -EINVAL, "a path through .. is refused",
                       (const char *const[]){"\"..\"", NULL});
        refused_saying("libsofthsm2.so", dirs, 1, uri, pin_source, -EINVAL,
                       "a bare file name is refused", (const char *const[]){"not absolute", NULL});
        test_token_path(&softhsm, path, sizeof(path), "allowed/missing.so");
        refused_saying(path, dirs, 1, uri, pin_source, -ENOENT, "a missing module is refused",
                       (const char *const[]){path, "No such file", NULL});

        test_token_path(&softhsm, path, sizeof(path), "allowed/writable.so");
        copy_file(module, path, 0775);
        if (chmod(path, 0775) < 0)
                test_die("chmod");
        refused_saying(path, dirs, 1, uri, pin_source, -EPERM, "a group-writable module is refused",
                       (const char *const[]){"chmod go-w", NULL});
        refused_saying(allowed, dirs, 1, uri, pin_source, -EPERM,
                       "a directory is not a module (its parent is not allowed)",
                       (const char *const[]){"outside the allowed module directories", NULL});

        /* Whoever may write a directory on the path may swap the module. */
        test_token_path(&softhsm, path, sizeof(path), "allowed/libsofthsm2.so");
        if (chmod(allowed, 0775) < 0)
                test_die("chmod");
        refused_saying(path, dirs, 1, uri, pin_source, -EPERM,
                       "a module in a group-writable directory is refused",
                       (const char *const[]){"Directory", allowed, "chmod go-w", NULL});
        if (chmod(allowed, 0755) < 0 || chown(allowed, 65534, (gid_t)-1) < 0)
                test_die("chmod/chown");
        refused_saying(path, dirs, 1, uri, pin_source, -EPERM,
                       "a module in a directory another user owns is refused",
                       (const char *const[]){"owned by uid 65534", "chown root", NULL});
        if (chown(allowed, 0, (gid_t)-1) < 0)
                test_die("chown");
}

/* The serial number of the token behind an open store. */
static void token_serial(struct store *s, char serial[static 17])
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_SESSION_INFO session_info;
        CK_TOKEN_INFO info;
        size_t len = 16;

        store_private_session(s, &m, &session);
        if (m->C_GetSessionInfo(session, &session_info) != CKR_OK ||
            m->C_GetTokenInfo(session_info.slotID, &info) != CKR_OK)
                test_die("token info");
        memcpy(serial, info.serialNumber, 16);
        while (len > 0 && serial[len - 1] == ' ')
                len--;
        serial[len] = 0;
}

static void test_token_uri_selection(void)
{
        char serial[17], uri[256];
        struct store *s = NULL;

        if (open_default(&s) < 0 || !s)
                test_die("open");
        token_serial(s, serial);
        store_close(s);
        s = NULL;

        refused_saying(module, lib_dirs, 1, "pkcs11:manufacturer=SoftHSM%20project", pin_source,
                       -ENOTUNIQ, "two matching tokens: refused, both listed",
                       (const char *const[]){"matches 2 tokens", "\"" TOKEN_LABEL "\"",
                                             "\"" OTHER_LABEL "\"", serial, NULL});
        refused_saying(module, lib_dirs, 1, "pkcs11:token=nothing-like-it", pin_source, -ENODEV,
                       "no matching token: refused, and the tokens that exist are listed",
                       (const char *const[]){"\"" TOKEN_LABEL "\"", "\"" OTHER_LABEL "\"",
                                             "SoftHSM project", serial, NULL});

        snprintf(uri, sizeof(uri), "pkcs11:manufacturer=SoftHSM%%20project;serial=%s", serial);
        is_int(open_with(module, lib_dirs, 1, uri, pin_source, &s), 0,
               "manufacturer plus serial selects one token");
        store_close(s);
        s = NULL;
        snprintf(uri, sizeof(uri), "pkcs11:token=%s;serial=%s", TOKEN_LABEL, serial);
        is_int(open_with(module, lib_dirs, 1, uri, pin_source, &s), 0,
               "label plus serial selects the token");
        store_close(s);
        s = NULL;
        snprintf(uri, sizeof(uri), "pkcs11:token=%s;serial=%s;model=SoftHSM%%20v2", TOKEN_LABEL,
                 serial);
        is_int(open_with(module, lib_dirs, 1, uri, pin_source, &s), 0,
               "label, serial and model together select the token");
        store_close(s);
        s = NULL;
        snprintf(uri, sizeof(uri), "pkcs11:token=%s;serial=%s", OTHER_LABEL, serial);
        refused(module, lib_dirs, 1, uri, pin_source, -ENODEV,
                "a label with another token's serial matches nothing");
}

/* The directory of the SoftHSM2 token whose (plain-text) label is label. */
static void token_object_of(const char *label, char path[static PATH_MAX])
{
        char tokens[PATH_MAX];
        DIR *top;
        struct dirent *t;

        path[0] = 0;
        test_token_path(&softhsm, tokens, sizeof(tokens), "tokens");
        top = opendir(tokens);
        if (!top)
                test_die(tokens);
        while ((t = readdir(top))) {
                uint8_t buf[4096];
                size_t len;
                char candidate[PATH_MAX];

                if (t->d_name[0] == '.')
                        continue;
                if ((size_t)snprintf(candidate, sizeof(candidate), "%s/%s/token.object", tokens,
                                     t->d_name) >= sizeof(candidate))
                        continue;
                len = read_whole_file(candidate, buf, sizeof(buf));
                if (memmem(buf, len, label, strlen(label))) {
                        snprintf(path, PATH_MAX, "%s", candidate);
                        break;
                }
        }
        closedir(top);
        if (!path[0])
                test_die("token.object not found");
}

/* SoftHSM2 never locks a PIN by itself (it only sets CKF_USER_PIN_COUNT_LOW after failures, see
 * docs/softhsm-torn-writes.md), so the test sets CKF_USER_PIN_LOCKED in the token flags it
 * keeps in clear in token.object: the only u64 ("kind 2") attribute there. */
static void set_pin_locked(const char *path, bool locked)
{
        uint8_t buf[4096];
        size_t len = read_whole_file(path, buf, sizeof(buf)), at = 8;
        bool done = false;

        while (len - at >= 16 && at < len) {
                uint64_t kind = be64_at(buf + at + 8), flags;

                at += 16;
                if (kind == 1) {
                        at += 1;
                        continue;
                }
                if (kind == 2 && len - at >= 8) {
                        flags = be64_at(buf + at);
                        flags = locked ? flags | CKF_USER_PIN_LOCKED : flags & ~CKF_USER_PIN_LOCKED;
                        for (size_t i = 0; i < 8; i++)
                                buf[at + i] = (uint8_t)(flags >> (56 - 8 * i));
                        done = true;
                        at += 8;
                        continue;
                }
                if (len - at < 8 || be64_at(buf + at) > (uint64_t)(len - at - 8))
                        break;
                at += 8 + be64_at(buf + at);
        }
        if (!done)
                test_die("no token flags in token.object");
        write_whole_file(path, buf, len);
}

/* How many times the PKCS#11 spy (opensc's pkcs11-spy.so, which logs every call it forwards)
 * saw C_Login. */
static int count_logins(const char *spy_log)
{
        static char buf[1 << 22];
        int fd = open(spy_log, O_RDONLY | O_CLOEXEC), count = 0;
        size_t len = 0;
        ssize_t n;

        /* A missing log is zero calls: the spy creates it on its first. */
        if (fd < 0)
                return 0;
        while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
                len += (size_t)n;
        close(fd);
        if (len == sizeof(buf) - 1)
                test_die("spy log too large");
        buf[len] = 0;
        for (const char *p = buf; (p = strstr(p, "C_Login")); p++)
                count++;
        return count;
}

static void test_pin_edge_cases(void)
{
        static const char spy[] = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
        char path[PATH_MAX], source[PATH_MAX + 16], spy_log[PATH_MAX], real[PATH_MAX],
            credentials[PATH_MAX], token_object[PATH_MAX];
        const char *uri = "pkcs11:token=" TOKEN_LABEL;
        struct store fake = {.token_label = (char *)"fake-token"};
        struct store *s = NULL;
        int logins;

        test_token_path(&softhsm, path, sizeof(path), "pin-0604");
        test_write_file(path, USER_PIN, 0604);
        snprintf(source, sizeof(source), "file:%s", path);
        refused_saying(module, lib_dirs, 1, uri, source, -EPERM,
                       "a PIN file readable by others only (0604) is refused",
                       (const char *const[]){"0604", "chmod 0600", NULL});

        test_token_path(&softhsm, path, sizeof(path), "no-such-pin");
        snprintf(source, sizeof(source), "file:%s", path);
        refused_saying(module, lib_dirs, 1, uri, source, -ENOENT, "a missing PIN file is refused",
                       (const char *const[]){path, "No such file", NULL});

        test_token_path(&softhsm, path, sizeof(path), "pin-newline-only");
        test_write_file(path, "\n", 0600);
        snprintf(source, sizeof(source), "file:%s", path);
        refused_saying(module, lib_dirs, 1, uri, source, -ENODATA,
                       "a PIN file of only a newline is refused as empty",
                       (const char *const[]){"is empty", NULL});

        test_token_path(&softhsm, path, sizeof(path), "pin-newline");
        test_write_file(path, USER_PIN "\n", 0600);
        snprintf(source, sizeof(source), "file:%s", path);
        is_int(open_with(module, lib_dirs, 1, uri, source, &s), 0,
               "a PIN with a trailing newline works");
        store_close(s);
        s = NULL;
        test_token_path(&softhsm, path, sizeof(path), "pin-crlf");
        test_write_file(path, USER_PIN "\r\n", 0600);
        snprintf(source, sizeof(source), "file:%s", path);
        is_int(open_with(module, lib_dirs, 1, uri, source, &s), 0,
               "a PIN with a trailing CR LF works");
        store_close(s);
        s = NULL;
        test_token_path(&softhsm, path, sizeof(path), "pin-bare");
        test_write_file(path, USER_PIN, 0600);
        snprintf(source, sizeof(source), "file:%s", path);
        is_int(open_with(module, lib_dirs, 1, uri, source, &s), 0,
               "a PIN without a trailing newline works");
        store_close(s);
        s = NULL;

        /* credential: */
        refused_saying(module, lib_dirs, 1, uri, "credential:pin", -EINVAL,
                       "credential: without $CREDENTIALS_DIRECTORY says how to fix it",
                       (const char *const[]){"CREDENTIALS_DIRECTORY", "LoadCredential=", NULL});
        setenv("CREDENTIALS_DIRECTORY", "relative/dir", 1);
        refused_saying(module, lib_dirs, 1, uri, "credential:pin", -EINVAL,
                       "a relative $CREDENTIALS_DIRECTORY is refused",
                       (const char *const[]){"not an absolute path", NULL});
        unsetenv("CREDENTIALS_DIRECTORY");
        refused(module, lib_dirs, 1, uri, "credential:", -EINVAL,
                "an empty credential name is refused");
        refused(module, lib_dirs, 1, uri, "credential:a/b", -EINVAL,
                "a credential name with a slash is refused");
        refused(module, lib_dirs, 1, uri, "credential:.", -EINVAL,
                "the credential name . is refused");
        test_token_path(&softhsm, credentials, sizeof(credentials), "credentials-2");
        if (mkdir(credentials, 0700) < 0 || setenv("CREDENTIALS_DIRECTORY", credentials, 1) < 0)
                test_die(credentials);
        refused_saying(module, lib_dirs, 1, uri, "credential:absent", -ENOENT,
                       "a credential that systemd did not provide is refused",
                       (const char *const[]){"absent", NULL});
        /* systemd may grant the service user access by ACL: group bits are fine here. */
        test_token_path(&softhsm, path, sizeof(path), "credentials-2/pin");
        test_write_file(path, USER_PIN "\n", 0440);
        is_int(open_with(module, lib_dirs, 1, uri, "credential:pin", &s), 0,
               "a credential readable through its group (an ACL) is accepted");
        store_close(s);
        s = NULL;
        test_token_path(&softhsm, path, sizeof(path), "credentials-2/wrong");
        test_write_file(path, "4321", 0400);
        refused_saying(module, lib_dirs, 1, uri, "credential:wrong", -EACCES,
                       "a wrong PIN from a credential points at the unit's LoadCredential=",
                       (const char *const[]){"wrong for token", "LoadCredential=", NULL});
        unsetenv("CREDENTIALS_DIRECTORY");

        /* A wrong PIN: one clear error naming the token, and exactly one C_Login. */
        test_token_path(&softhsm, spy_log, sizeof(spy_log), "spy.log");
        if (access(spy, R_OK) == 0 && realpath(module, real)) {
                setenv("PKCS11SPY", real, 1);
                setenv("PKCS11SPY_OUTPUT", spy_log, 1);
                test_token_path(&softhsm, path, sizeof(path), "pin-wrong-2");
                test_write_file(path, "4321\n", 0600);
                snprintf(source, sizeof(source), "file:%s", path);
                logins = count_logins(spy_log);
                refused_saying(spy, lib_dirs, 1, uri, source, -EACCES,
                               "a wrong PIN is refused with one error naming the token",
                               (const char *const[]){"wrong for token \"" TOKEN_LABEL "\"",
                                                     "not retrying", NULL});
                is_int(count_logins(spy_log) - logins, 1, "a wrong PIN: exactly one C_Login");

                /* A locked PIN: reported from the token info, without any C_Login. */
                token_object_of(OTHER_LABEL, token_object);
                set_pin_locked(token_object, true);
                logins = count_logins(spy_log);
                refused_saying(spy, lib_dirs, 1, "pkcs11:token=" OTHER_LABEL, pin_source, -EPERM,
                               "a locked user PIN is refused with its own message",
                               (const char *const[]){"\"" OTHER_LABEL "\" is locked",
                                                     "security officer", "--init-pin", NULL});
                is_int(count_logins(spy_log) - logins, 0, "a locked PIN: no C_Login at all");
                set_pin_locked(token_object, false);
                is_int(open_with(module, lib_dirs, 1, "pkcs11:token=" OTHER_LABEL, pin_source, &s),
                       0, "unlocked again, the token opens");
                store_close(s);
                s = NULL;
                unsetenv("PKCS11SPY");
                unsetenv("PKCS11SPY_OUTPUT");
        } else {
                ok(1, "# SKIP pkcs11-spy.so (opensc-pkcs11) is not installed");
        }

        {
                sigset_t mask;

                if (open_default(&s) < 0)
                        test_die("open");
                store_close(s);
                s = NULL;
                pthread_sigmask(SIG_SETMASK, NULL, &mask);
                ok(!sigismember(&mask, SIGINT) && !sigismember(&mask, SIGTERM),
                   "the signals held off during C_Login are unblocked again");
        }

        /* The C_Login results SoftHSM2 cannot produce, through the one function that turns
         * them into messages. */
        capture_start();
        is_int(p11_login_error(&fake, CKR_PIN_LOCKED, "file:/x", "/x"), -EPERM,
               "CKR_PIN_LOCKED is -EPERM");
        ok(strstr(capture_end(), "security officer") != NULL,
           "  ... and tells the security officer to unlock it");
        capture_start();
        is_int(p11_login_error(&fake, CKR_PIN_EXPIRED, "file:/x", "/x"), -EPERM,
               "CKR_PIN_EXPIRED is -EPERM");
        ok(strstr(capture_end(), "expired") != NULL, "  ... and says it expired");
        capture_start();
        is_int(p11_login_error(&fake, CKR_PIN_LEN_RANGE, "file:/x", "/x"), -EACCES,
               "CKR_PIN_LEN_RANGE is a wrong PIN");
        ok(strstr(capture_end(), "wrong for token \"fake-token\"") != NULL,
           "  ... and names the token");
        capture_start();
        is_int(p11_login_error(&fake, CKR_DEVICE_ERROR, "file:/x", "/x"), -EIO,
               "another failure is -EIO");
        ok(strstr(capture_end(), "CKR_DEVICE_ERROR") != NULL, "  ... and names the CK_RV");
}

static void test_meta(struct store *s)
{
        char *json = (char *)0x1;
        char **names = NULL;
        size_t n = 0;

        is_int(store_get_meta(s, "alerts", &json), -ENOENT, "get of absent meta is -ENOENT");
        ok(json == (char *)0x1, "get leaves ret_json untouched on failure");

        is_int(store_put_meta(s, "alerts", "{\"tenant\":\"t1\"}"), 0, "put meta");
        is_int(store_get_meta(s, "alerts", &json), 0, "get meta");
        is_str(json, "{\"tenant\":\"t1\"}", "meta reads back");
        free(json);

        is_int(store_put_meta(s, "alerts", "{\"tenant\":\"t2\"}"), 0, "replace meta");
        is_int(store_get_meta(s, "alerts", &json), 0, "get replaced meta");
        is_str(json, "{\"tenant\":\"t2\"}", "replaced meta reads back");
        free(json);
        is_int(count_prefix(s, "alerts/meta"), 1, "replace leaves exactly one meta object");

        is_int(store_put_meta(s, "zeta", "{}"), 0, "put meta zeta");
        is_int(store_put_meta(s, "backup-1", "{}"), 0, "put meta backup-1");
        is_int(store_list_accounts(s, &names, &n), 0, "list accounts");
        is_int(n, 3, "three accounts");
        if (n == 3) {
                is_str(names[0], "alerts", "sorted 1");
                is_str(names[1], "backup-1", "sorted 2");
                is_str(names[2], "zeta", "sorted 3");
        }
        store_names_free(names, n);

        is_int(store_put_meta(s, "alerts", ""), -EINVAL, "empty meta is refused");
        is_int(store_put_meta(s, "alerts", "\xff\xfe"), -EINVAL, "non-UTF-8 meta is refused");
}

static void test_invalid_names(struct store *s)
{
        char too_long[NAME_MAX_LEN + 2];
        const char *const bad[] = {"", ".hidden", "Upper", "a/b", "a b", "credbroker", too_long};
        _cleanup_secret_ struct secret *t = make_secret("token");
        struct secret *out = NULL;
        unsigned removed;
        char *json;
        uint64_t g;

        memset(too_long, 'a', sizeof(too_long) - 1);
        too_long[sizeof(too_long) - 1] = 0;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char what[128];

                snprintf(what, sizeof(what), "account name \"%.20s\" is refused", bad[i]);
                ok(store_put_meta(s, bad[i], "{}") == -EINVAL &&
                       store_get_meta(s, bad[i], &json) == -EINVAL &&
                       store_write_refresh_token(s, bad[i], t, &g) == -EINVAL &&
                       store_read_refresh_token(s, bad[i], &out, &g) == -EINVAL &&
                       store_remove_account(s, bad[i], &removed) == -EINVAL,
                   what);
        }
        is_int(store_put_meta(s, NULL, "{}"), -EINVAL, "a NULL account name is refused");
}

static void test_refresh_tokens(struct store *s)
{
        _cleanup_secret_ struct secret *first = make_secret("0.AAAA-first_token.x~y");
        _cleanup_secret_ struct secret *second = make_secret("0.BBBB-second_token");
        _cleanup_secret_ struct secret *third = make_secret("0.CCCC-third");
        _cleanup_secret_ struct secret *spaced = make_secret("has space");
        struct secret *out = (struct secret *)0x1;
        uint64_t g = 0;

        is_int(store_read_refresh_token(s, "alerts", &out, &g), -ENOENT,
               "no refresh token yet: -ENOENT");
        ok(out == (struct secret *)0x1, "read leaves ret_token untouched on failure");

        is_int(store_write_refresh_token(s, "alerts", first, &g), 0, "write first token");
        is_int(g, 1, "first write is generation 1");
        is_int(store_read_refresh_token(s, "alerts", &out, &g), 0, "read first token");
        ok(out && secret_equal(out, first), "first token reads back equal");
        is_int(g, 1, "read reports generation 1");
        secret_free(out);

        is_int(store_write_refresh_token(s, "alerts", second, &g), 0, "write second token");
        is_int(g, 2, "second write is generation 2");
        ok(has_label(s, "alerts/refresh_token/2"), "generation 2 exists");
        ok(!has_label(s, "alerts/refresh_token/1"), "generation 1 is gone");
        is_int(store_read_refresh_token(s, "alerts", &out, &g), 0, "read newest token");
        ok(secret_equal(out, second), "newest token reads back equal");
        is_int(g, 2, "read reports generation 2");
        secret_free(out);

        g = 77;
        is_int(store_write_refresh_token(s, "alerts", spaced, &g), -EINVAL,
               "a refresh token with a space is refused");
        is_int(g, 77, "write leaves ret_generation untouched on failure");

        /* A crash or a broken token can leave a newer, unusable generation behind. */
        is_int(raw_create(s, "alerts/refresh_token/9", "bad token", 9), CKR_OK,
               "plant generation 9 with a space");
        CK_RV rv = raw_create(s, "alerts/refresh_token/10", "", 0);
        if (rv != CKR_OK)
                rv = raw_create(s, "alerts/refresh_token/10", "\x01", 1);
        is_int(rv, CKR_OK, "plant generation 10 with an empty (or control) value");
        is_int(raw_create(s, "alerts/refresh_token/012", "leading-zero", 12), CKR_OK,
               "plant a leading-zero generation label");
        is_int(raw_create(s, "alerts/refresh_token/x", "garbage", 7), CKR_OK,
               "plant a garbage generation label");
        is_int(raw_create(s, "alerts/refresh_token/99999999999999999999", "overflow", 8), CKR_OK,
               "plant an overflowing generation label");

        /* Planted behind the store's back: what it remembers of alerts' generations would
         * hide them until a restart, so forget it as a restart does; and so would the index,
         * which leads only to consecutive generations from the oldest present: without it (a
         * token written before the index existed) the read scans. */
        is_int(raw_destroy_prefix(s, "alerts/refresh_index/"), 1, "remove alerts' index");
        store_private_forget_generations(s);
        is_int(store_read_refresh_token(s, "alerts", &out, &g), 0,
               "read skips corrupt newer generations");
        ok(secret_equal(out, second), "read returns the older valid token");
        is_int(g, 2, "read reports generation 2");
        secret_free(out);

        is_int(store_write_refresh_token(s, "alerts", third, &g), 0, "write after corruption");
        is_int(g, 11, "the new generation follows the highest present, corrupt or not");
        ok(!has_label(s, "alerts/refresh_token/9") && !has_label(s, "alerts/refresh_token/10") &&
               !has_label(s, "alerts/refresh_token/2"),
           "every older generation is destroyed");
        ok(has_label(s, "alerts/refresh_token/012") && has_label(s, "alerts/refresh_token/x"),
           "labels that are not generations are left alone");
        is_int(store_read_refresh_token(s, "alerts", &out, &g), 0, "read after rotation");
        ok(secret_equal(out, third), "third token reads back");
        is_int(g, 11, "read reports generation 11");
        secret_free(out);

        is_int(store_write_refresh_token(s, "zeta", first, NULL), 0,
               "write for another account, without ret_generation");
        ok(has_label(s, "zeta/refresh_token/1"), "zeta has its own generation 1");
        ok(has_label(s, "alerts/refresh_token/11"), "alerts is untouched by zeta's write");

        /* Another process rotates alerts (an import while the broker runs): the generation this
         * store remembers is gone, so it scans and finds the newer one. */
        {
                struct store *other = NULL;

                if (open_default(&other) < 0 || !other)
                        test_die("open a second store");
                is_int(store_write_refresh_token(other, "alerts", second, &g), 0,
                       "a second store rotates alerts");
                is_int(g, 12, "to generation 12");
                store_close(other);
        }
        is_int(store_read_refresh_token(s, "alerts", &out, &g), 0,
               "the first store reads after the other's rotation");
        ok(secret_equal(out, second), "and gets the other's token");
        is_int(g, 12, "generation 12");
        secret_free(out);
        is_int(store_write_refresh_token(s, "alerts", third, &g), 0, "and rotates after it");
        is_int(g, 13, "to generation 13");
        ok(!has_label(s, "alerts/refresh_token/12"), "destroying generation 12");
}

/* A rotation whose read-back differs from what it wrote (the token garbled or lost the write):
 * the write fails, the unverified generation is destroyed, and the previous generation is left
 * exactly as it was, still the one read. The read-back is made to differ by the test build's
 * CREDBROKER_FAULT=readback-differs (store-refresh-token.c). */
static void test_readback_failure(struct store *s)
{
        _cleanup_secret_ struct secret *old = make_secret("0.OLD-readback-token");
        _cleanup_secret_ struct secret *new = make_secret("0.NEW-readback-token");
        struct secret *out = NULL;
        uint64_t g = 0;

#if !ENABLE_FAULT_POINTS
        (void)s;
        (void)old;
        (void)new;
        (void)out;
        (void)g;
        ok(true, "# SKIP read-back failure needs -Dfault_points=true");
        return;
#else
        is_int(store_write_refresh_token(s, "readback", old, &g), 0, "write generation 1");
        is_int(g, 1, "generation 1");

        setenv("CREDBROKER_FAULT", "readback-differs", 1);
        g = 77;
        is_int(store_write_refresh_token(s, "readback", new, &g), -EIO,
               "a rotation whose read-back differs fails with -EIO");
        unsetenv("CREDBROKER_FAULT");
        is_int(g, 77, "and reports no generation");
        ok(has_label(s, "readback/refresh_token/1"), "the old generation survives");
        ok(!has_label(s, "readback/refresh_token/2"), "the unverified generation is destroyed");
        is_int(store_read_refresh_token(s, "readback", &out, &g), 0, "the account still reads");
        ok(out && secret_equal(out, old), "the old token, intact");
        is_int(g, 1, "from generation 1");
        secret_free(out);
        out = NULL;

        /* Without the hint (as after a restart) the scan finds the same. */
        store_private_forget_generations(s);
        is_int(store_read_refresh_token(s, "readback", &out, &g), 0, "read after a rescan");
        ok(out && secret_equal(out, old) && g == 1, "still the old token, generation 1");
        secret_free(out);
        out = NULL;

        is_int(store_write_refresh_token(s, "readback", new, &g), 0,
               "the next rotation with a good read-back works");
        is_int(g, 2, "as generation 2");
        ok(!has_label(s, "readback/refresh_token/1"), "and only then is generation 1 destroyed");
        is_int(store_read_refresh_token(s, "readback", &out, &g), 0, "read the new token");
        ok(out && secret_equal(out, new), "the new token");
        secret_free(out);
#endif
}

/* ---- generations torn on disk ----
 *
 * SoftHSM2's file backend keeps each object in <tokendir>/<token uuid>/<object uuid>.object
 * (docs/softhsm-torn-writes.md). These tests find the file a write created by listing the
 * object files before and after it, then damage it the ways a crash or the disk can. */

#define MAX_OBJECT_FILES 64

struct object_files {
        char paths[MAX_OBJECT_FILES][PATH_MAX];
        size_t n;
};

static void list_object_files(struct object_files *out)
{
        char tokens[PATH_MAX];
        DIR *top;
        struct dirent *t;

        out->n = 0;
        test_token_path(&softhsm, tokens, sizeof(tokens), "tokens");
        top = opendir(tokens);
        if (!top)
                test_die(tokens);
        while ((t = readdir(top))) {
                char dir_path[PATH_MAX];
                DIR *dir;
                struct dirent *e;

                if (t->d_name[0] == '.')
                        continue;
                if ((size_t)snprintf(dir_path, sizeof(dir_path), "%s/%s", tokens, t->d_name) >=
                    sizeof(dir_path))
                        continue;
                dir = opendir(dir_path);
                if (!dir)
                        continue;
                while ((e = readdir(dir))) {
                        size_t len = strlen(e->d_name);

                        if (len < 8 || strcmp(e->d_name + len - 7, ".object") != 0 ||
                            strcmp(e->d_name, "token.object") == 0 || out->n == MAX_OBJECT_FILES)
                                continue;
                        if ((size_t)snprintf(out->paths[out->n], PATH_MAX, "%s/%s", dir_path,
                                             e->d_name) < PATH_MAX)
                                out->n++;
                }
                closedir(dir);
        }
        closedir(top);
}

static bool object_files_contain(const struct object_files *files, const char *path)
{
        for (size_t i = 0; i < files->n; i++)
                if (strcmp(files->paths[i], path) == 0)
                        return true;
        return false;
}

/* Writes token for account and returns the object file that write created. */
static void write_and_find_file(struct store *s, const char *account, const char *token,
                                uint64_t want_generation, char file[static PATH_MAX])
{
        _cleanup_secret_ struct secret *t = make_secret(token);
        struct object_files before, after;
        uint64_t g = 0;
        char what[128];

        list_object_files(&before);
        snprintf(what, sizeof(what), "write %s generation %" PRIu64, account, want_generation);
        is_int(store_write_refresh_token(s, account, t, &g), 0, what);
        is_int(g, want_generation, "the write reports that generation");
        list_object_files(&after);
        file[0] = 0;
        /* An account's first write also makes its refresh token index: of the new files, the
         * generation's is the larger (its envelope outweighs the index's short value). */
        for (size_t i = 0, largest = 0; i < after.n; i++) {
                struct stat st;

                if (object_files_contain(&before, after.paths[i]) ||
                    stat(after.paths[i], &st) < 0 || (size_t)st.st_size <= largest)
                        continue;
                largest = (size_t)st.st_size;
                snprintf(file, PATH_MAX, "%s", after.paths[i]);
        }
        ok(file[0] != 0, "the write created the generation's object file");
}

/* The offset of CKA_VALUE's bytes in a SoftHSM2 object file: a u64 generation, then per attribute
 * a u64 type, a u64 kind (1 bool, 2 ulong, 3 bytes, 4 attribute map, 5 mechanism set) and the
 * value; byte strings and maps carry a u64 length first. 0 when not found. */
static size_t value_offset(const uint8_t *buf, size_t len)
{
        size_t at = 8;

        while (len - at >= 16 && at < len) {
                uint64_t type = be64_at(buf + at), kind = be64_at(buf + at + 8), size;

                at += 16;
                if (kind == 1) {
                        at += 1;
                        continue;
                }
                if (kind == 2) {
                        at += 8;
                        continue;
                }
                if (len - at < 8)
                        return 0;
                size = be64_at(buf + at);
                at += 8;
                if (kind == 5)
                        size *= 8;
                if (size > len - at)
                        return 0;
                if (type == CKA_VALUE && kind == 3)
                        return at;
                at += size;
        }
        return 0;
}

enum damage {
        DAMAGE_EMPTY,       /* killed between SoftHSM's ftruncate() and its write() */
        DAMAGE_HEADER_ONLY, /* killed after the first write of a new object: no attributes */
        DAMAGE_HALF,        /* a write cut in the middle (disk full, power loss) */
        DAMAGE_LAST_BYTE,   /* one byte short */
        DAMAGE_GARBAGE,     /* overwritten with bytes that parse as nothing */
        DAMAGE_FLIPPED,     /* one bit of the encrypted value flipped: decrypts "fine" */
};

static void damage_file(const char *path, enum damage how)
{
        uint8_t buf[65536];
        size_t len = read_whole_file(path, buf, sizeof(buf)), offset;

        switch (how) {
        case DAMAGE_EMPTY:
                len = 0;
                break;
        case DAMAGE_HEADER_ONLY:
                len = 8;
                break;
        case DAMAGE_HALF:
                len /= 2;
                break;
        case DAMAGE_LAST_BYTE:
                len -= 1;
                break;
        case DAMAGE_GARBAGE:
                /* Every u64 reads as 0xa5a5…: no valid kind, and no huge length either
                 * (SoftHSM2 exit()s on an allocation that large, see the doc). */
                memset(buf + 8, 0xa5, len - 8);
                break;
        case DAMAGE_FLIPPED:
                /* AES-CBC: flipping IV byte k flips plaintext byte k and nothing else. Byte 14
                 * is the first byte of the token inside the envelope. */
                offset = value_offset(buf, len);
                ok(offset > 0, "found CKA_VALUE in the object file");
                if (offset > 0)
                        buf[offset + 14] ^= 0x01;
                break;
        }
        write_whole_file(path, buf, len);
}

/* Account "torn": generation g1 holds older, g2 holds newer and is damaged on disk; a fresh
 * session (SoftHSM2 caches what it read) must fall back to older, and the next write must go on
 * from there. Returns the store, reopened. */
static struct store *torn_newest(struct store *s, enum damage how, const char *name)
{
        char first[PATH_MAX], second[PATH_MAX], lock[PATH_MAX], what[160];
        uint8_t saved[65536];
        size_t saved_len;
        _cleanup_secret_ struct secret *older = make_secret("0.OLDER-intact-token");
        _cleanup_secret_ struct secret *next = make_secret("0.NEXT-after-damage");
        struct store_refresh_token_info info;
        struct secret *out = NULL;
        unsigned removed;
        uint64_t g = 0;

        (void)store_remove_account(s, "torn", &removed);
        write_and_find_file(s, "torn", secret_str(older), 1, first);
        saved_len = read_whole_file(first, saved, sizeof(saved));
        write_and_find_file(s, "torn", "0.NEWER-to-be-damaged", 2, second);
        store_close(s);

        /* Bring generation 1 back as a crash between create and destroy would have left it. */
        snprintf(lock, sizeof(lock), "%.*s.lock", (int)(strlen(first) - strlen(".object")), first);
        test_write_file(first, "", 0600);
        test_write_file(lock, "", 0600);
        write_whole_file(first, saved, saved_len);
        damage_file(second, how);

        s = NULL;
        if (open_default(&s) < 0 || !s)
                test_die("reopen after damage");
        snprintf(what, sizeof(what), "%s newest: the older generation is read", name);
        is_int(store_read_refresh_token(s, "torn", &out, &g), 0, what);
        ok(out && secret_equal(out, older), "it is the older token");
        is_int(g, 1, "generation 1");
        secret_free(out);
        out = NULL;
        is_int(store_refresh_token_info(s, "torn", &info), 0, "info skips it as well");
        is_int(info.generation, 1, "info: generation 1");

        snprintf(what, sizeof(what), "%s newest: the next rotation succeeds", name);
        is_int(store_write_refresh_token(s, "torn", next, &g), 0, what);
        ok(g >= 2, "and goes on past generation 1");
        is_int(store_read_refresh_token(s, "torn", &out, &g), 0, "read after that rotation");
        ok(out && secret_equal(out, next), "the new token is read");
        secret_free(out);
        return s;
}

static struct store *test_torn_generations(struct store *s)
{
        _cleanup_secret_ struct secret *legacy = make_secret("0.LEGACY-raw-token");
        struct store_refresh_token_info info;
        struct secret *out = NULL;
        char only[PATH_MAX];
        unsigned removed;
        time_t before = time(NULL);
        uint64_t g = 0;

        /* stored_at: recorded for new writes, unknown (0) for a legacy raw value. */
        write_and_find_file(s, "dated", "0.DATED-token", 1, only);
        is_int(store_refresh_token_info(s, "dated", &info), 0, "info of a new write");
        ok(info.stored_at >= (uint64_t)before && info.stored_at <= (uint64_t)time(NULL) + 1,
           "stored_at is the time of the write");
        is_int(info.n_generations, 1, "one generation");
        is_int(raw_create(s, "legacy/refresh_token/1", "0.LEGACY-raw-token", 18), CKR_OK,
               "plant a legacy raw-token generation");
        is_int(store_read_refresh_token(s, "legacy", &out, &g), 0, "a legacy value is read");
        ok(out && secret_equal(out, legacy), "as the raw token it is");
        secret_free(out);
        out = NULL;
        is_int(store_refresh_token_info(s, "legacy", &info), 0, "info of a legacy value");
        is_int(info.stored_at, 0, "stored_at of a legacy value is unknown (0)");
        is_int(raw_create(s, "legacy/refresh_token/2", "\0cbrt\x01", 6), CKR_OK,
               "plant a truncated envelope as generation 2");
        is_int(raw_create(s, "legacy/refresh_token/3", "\0cbrt\x02xxxxxxxx0.TOKENyyyyyyyy", 27),
               CKR_OK, "plant an envelope of an unknown version as generation 3");
        is_int(store_read_refresh_token(s, "legacy", &out, &g), 0, "bad envelopes are skipped");
        is_int(g, 1, "the legacy generation 1 is chosen");
        secret_free(out);
        out = NULL;

        /* A valid envelope under another generation's label (a flipped label) is not taken. */
        {
                CK_FUNCTION_LIST *m;
                CK_SESSION_HANDLE session;
                CK_OBJECT_HANDLE handle;
                CK_ULONG found = 0;
                char label[] = "dated/refresh_token/1";
                uint8_t value[256];
                CK_ATTRIBUTE find[] = {{CKA_LABEL, label, sizeof(label) - 1}};
                CK_ATTRIBUTE get = {CKA_VALUE, value, sizeof(value)};

                store_private_session(s, &m, &session);
                if (m->C_FindObjectsInit(session, find, 1) != CKR_OK ||
                    m->C_FindObjects(session, &handle, 1, &found) != CKR_OK || found != 1 ||
                    m->C_FindObjectsFinal(session) != CKR_OK ||
                    m->C_GetAttributeValue(session, handle, &get, 1) != CKR_OK)
                        test_die("read dated/refresh_token/1");
                is_int(raw_create(s, "dated/refresh_token/5", value, get.ulValueLen), CKR_OK,
                       "plant generation 1's envelope as generation 5");
                is_int(store_read_refresh_token(s, "dated", &out, &g), 0,
                       "read with a relabelled envelope present");
                is_int(g, 1, "the relabelled one fails its check; generation 1 is used");
                secret_free(out);
                out = NULL;
        }

        s = torn_newest(s, DAMAGE_EMPTY, "a zero-length");
        s = torn_newest(s, DAMAGE_HEADER_ONLY, "an attribute-less");
        s = torn_newest(s, DAMAGE_HALF, "a half-written");
        s = torn_newest(s, DAMAGE_LAST_BYTE, "a one-byte-short");
        s = torn_newest(s, DAMAGE_GARBAGE, "a garbage");
        s = torn_newest(s, DAMAGE_FLIPPED, "a bit-flipped");

        /* The only generation torn: no token (so needs_reauth upstream), but no error either. */
        (void)store_remove_account(s, "alone", &removed);
        write_and_find_file(s, "alone", "0.ALONE-token", 1, only);
        store_close(s);
        damage_file(only, DAMAGE_HALF);
        s = NULL;
        if (open_default(&s) < 0 || !s)
                test_die("reopen after damage");
        out = (struct secret *)0x1;
        is_int(store_read_refresh_token(s, "alone", &out, &g), -ENOENT,
               "the only generation torn: -ENOENT, not a failure of the store");
        ok(out == (struct secret *)0x1, "ret_token untouched");
        is_int(store_refresh_token_info(s, "alone", &info), -ENOENT, "info: -ENOENT");
        /* A session that lost its login sees no private object: unavailable, not "none". */
        {
                CK_FUNCTION_LIST *m;
                CK_SESSION_HANDLE session;

                store_private_session(s, &m, &session);
                is_int(m->C_Logout(session), CKR_OK, "log the store's session out behind its back");
                out = (struct secret *)0x1;
                is_int(store_read_refresh_token(s, "torn", &out, &g), -ENOTCONN,
                       "a logged-out session: -ENOTCONN, not -ENOENT (needs_reauth)");
                is_int(m->C_Login(session, CKU_USER, (CK_UTF8CHAR *)USER_PIN, strlen(USER_PIN)),
                       CKR_OK, "log in again");
                is_int(store_read_refresh_token(s, "torn", &out, &g), 0, "and it reads again");
                if (out != (struct secret *)0x1)
                        secret_free(out);
                out = NULL;
        }

        (void)store_remove_account(s, "alone", &removed);
        (void)store_remove_account(s, "torn", &removed);
        (void)store_remove_account(s, "dated", &removed);
        (void)store_remove_account(s, "legacy", &removed);
        return s;
}

/* ---- PKCS#11 calls of an account's first token ----
 *
 * A counting shim between the store and SoftHSM2: a copy of the module's function list whose
 * object calls count themselves, swapped in for the store's for the span of one measurement. */

static CK_FUNCTION_LIST *real_module;
static CK_FUNCTION_LIST counting_module;
static unsigned pkcs11_calls;
static unsigned pkcs11_searches;

static CK_RV counted_find_init(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
        pkcs11_calls++;
        pkcs11_searches++;
        return real_module->C_FindObjectsInit(h, t, n);
}

static CK_RV counted_find(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n)
{
        pkcs11_calls++;
        return real_module->C_FindObjects(h, o, max, n);
}

static CK_RV counted_find_final(CK_SESSION_HANDLE h)
{
        pkcs11_calls++;
        return real_module->C_FindObjectsFinal(h);
}

static CK_RV counted_get(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
        pkcs11_calls++;
        return real_module->C_GetAttributeValue(h, o, t, n);
}

static CK_RV counted_set(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
        pkcs11_calls++;
        return real_module->C_SetAttributeValue(h, o, t, n);
}

static CK_RV counted_create(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                            CK_OBJECT_HANDLE_PTR o)
{
        pkcs11_calls++;
        return real_module->C_CreateObject(h, t, n, o);
}

static CK_RV counted_destroy(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
        pkcs11_calls++;
        return real_module->C_DestroyObject(h, o);
}

static CK_RV counted_session_info(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
        pkcs11_calls++;
        return real_module->C_GetSessionInfo(h, info);
}

static void count_calls(struct store *s)
{
        real_module = s->module;
        counting_module = *real_module;
        counting_module.C_FindObjectsInit = counted_find_init;
        counting_module.C_FindObjects = counted_find;
        counting_module.C_FindObjectsFinal = counted_find_final;
        counting_module.C_GetAttributeValue = counted_get;
        counting_module.C_SetAttributeValue = counted_set;
        counting_module.C_CreateObject = counted_create;
        counting_module.C_DestroyObject = counted_destroy;
        counting_module.C_GetSessionInfo = counted_session_info;
        s->module = &counting_module;
        pkcs11_calls = 0;
        pkcs11_searches = 0;
}

static unsigned counted_calls(struct store *s)
{
        s->module = real_module;
        return pkcs11_calls;
}

/* What the broker asks of the store for an account's first token after start: its metadata,
 * its refresh token, the refresh marker, and the rotated token's write. Returns the calls. */
static unsigned first_token_calls(struct store *s, const char *account, const char *token,
                                  bool with_meta)
{
        _cleanup_secret_ struct secret *next = make_secret(token);
        _cleanup_free_ char *json = NULL;
        struct secret *out = NULL;
        bool interrupted = true;
        uint64_t g = 0, read_g = 0;
        unsigned calls;

        count_calls(s);
        if (with_meta)
                is_int(store_get_meta(s, account, &json), 0, "first token: the metadata");
        is_int(store_read_refresh_token(s, account, &out, &read_g), 0,
               "first token: the refresh token");
        is_int(store_mark_refresh(s, account, read_g, &interrupted), 0, "first token: marked");
        is_int(store_write_refresh_token(s, account, next, &g), 0, "first token: rotated");
        calls = counted_calls(s);
        is_int(g, read_g + 1, "the rotation follows the generation read");
        secret_free(out);
        return calls;
}

/* Accounts many<from>…many<to - 1>, each with metadata and two rotations behind it. */
static void add_accounts(struct store *s, unsigned from, unsigned to)
{
        _cleanup_secret_ struct secret *a = make_secret("0.MANY-first");
        _cleanup_secret_ struct secret *b = make_secret("0.MANY-second");

        for (unsigned i = from; i < to; i++) {
                char name[32];

                snprintf(name, sizeof(name), "many%02u", i);
                if (store_put_meta(s, name, "{\"tenant\":\"t\"}") < 0 ||
                    store_write_refresh_token(s, name, a, NULL) < 0 ||
                    store_write_refresh_token(s, name, b, NULL) < 0)
                        test_die("add an account");
        }
}

static struct store *reopen(struct store *s)
{
        store_close(s);
        s = NULL;
        if (open_default(&s) < 0 || !s)
                test_die("reopen the store");
        return s;
}

#define FIRST_TOKEN_CALLS_MAX 40

/* An account's first token after start costs the same few calls with 5 accounts in the token as
 * with 50: exact-label and index look-ups, never a scan of every object's label (which would be
 * two calls per object, over 300 here). */
static struct store *test_first_token_calls(struct store *s)
{
        struct store_refresh_token_info info;
        unsigned few, many;

        add_accounts(s, 0, 5);
        s = reopen(s);
        few = first_token_calls(s, "many02", "0.MANY-third-a", true);
        add_accounts(s, 5, 50);
        s = reopen(s);
        many = first_token_calls(s, "many03", "0.MANY-third-b", true);
        printf("# an account's first token: %u PKCS#11 calls with 5 accounts, %u with 50\n", few,
               many);
        ok(many <= FIRST_TOKEN_CALLS_MAX, "the first token with 50 accounts: a bounded number");
        is_int(many, few, "the same number with 50 accounts as with 5");
        /* Then a refresh of the loaded account: its objects' handles are checked by their
         * labels, never searched for (a search re-reads a file-backed token's directory). */
        many = first_token_calls(s, "many03", "0.MANY-fourth", false);
        printf("# a refresh of a loaded account: %u PKCS#11 calls, %u searches\n", many,
               pkcs11_searches);
        is_int(pkcs11_searches, 0, "a refresh of a loaded account searches nothing");
        ok(many <= 12, "and makes at most 12 calls");

        /* The keep-alive's walk asks every account's generation info: bounded per account. */
        s = reopen(s);
        count_calls(s);
        for (unsigned i = 0; i < 50; i++) {
                char name[32];

                snprintf(name, sizeof(name), "many%02u", i);
                if (store_refresh_token_info(s, name, &info) < 0 || info.n_generations != 1)
                        break;
        }
        many = counted_calls(s);
        printf("# refresh token info of 50 accounts after start: %u PKCS#11 calls\n", many);
        ok(many <= 50 * 20, "info of 50 accounts: at most 20 calls each");
        is_int(info.n_generations, 1, "one generation each");
        return s;
}

/* Relabels the one object labelled from as to, through the raw session. */
static CK_RV raw_relabel(struct store *s, const char *from, const char *to)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_ATTRIBUTE find = {CKA_LABEL, (void *)from, strlen(from)};
        CK_ATTRIBUTE label = {CKA_LABEL, (void *)to, strlen(to)};
        CK_OBJECT_HANDLE handle;
        CK_ULONG found = 0;

        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, &find, 1) != CKR_OK)
                return CKR_GENERAL_ERROR;
        if (m->C_FindObjects(session, &handle, 1, &found) != CKR_OK)
                found = 0;
        m->C_FindObjectsFinal(session);
        if (found != 1)
                return CKR_OBJECT_HANDLE_INVALID;
        return m->C_SetAttributeValue(session, handle, &label, 1);
}

/* How many objects carry exactly this label, through the raw session (whatever the token holds
 * besides: has_label() sees only the first 64 labels). */
static unsigned raw_count(struct store *s, const char *label)
{
        CK_FUNCTION_LIST *m;
        CK_SESSION_HANDLE session;
        CK_ATTRIBUTE find = {CKA_LABEL, (void *)label, strlen(label)};
        CK_OBJECT_HANDLE handles[8];
        CK_ULONG found = 0;

        store_private_session(s, &m, &session);
        if (m->C_FindObjectsInit(session, &find, 1) != CKR_OK)
                return 0;
        if (m->C_FindObjects(session, handles, 8, &found) != CKR_OK)
                found = 0;
        m->C_FindObjectsFinal(session);
        return (unsigned)found;
}

/* Reads account after a restart: the token and generation, and the calls that took. */
static unsigned read_after_restart(struct store **s, const char *account, const char *want,
                                   uint64_t want_g, const char *what)
{
        _cleanup_secret_ struct secret *expect = make_secret(want);
        struct secret *out = NULL;
        uint64_t g = 0;
        unsigned calls;

        *s = reopen(*s);
        count_calls(*s);
        is_int(store_read_refresh_token(*s, account, &out, &g), 0, what);
        calls = counted_calls(*s);
        ok(out && secret_equal(out, expect), "the newest token");
        is_int(g, want_g, "its generation");
        secret_free(out);
        return calls;
}

/* The index is a lower bound that may lag, be missing, doubled or wrong; never the truth. */
static struct store *test_index_recovery(struct store *s)
{
        _cleanup_secret_ struct secret *t4 = make_secret("0.IDX-four");
        _cleanup_secret_ struct secret *t5 = make_secret("0.IDX-five");
        static const char value[] = "\0cbix\x01"
                                    "many07";
        uint64_t g = 0;
        unsigned calls;

        /* many07 is at generation 2, its index at 2. A crash between a rotation's destroys
         * and the index's move leaves the index one behind: one leading miss. */
        is_int(raw_relabel(s, "many07/refresh_index/2", "many07/refresh_index/1"), CKR_OK,
               "move many07's index back to 1, as a crash before its move leaves it");
        calls = read_after_restart(&s, "many07", "0.MANY-second", 2, "read with a lagging index");
        printf("# %u calls\n", calls);
        ok(calls <= FIRST_TOKEN_CALLS_MAX, "without a scan");
        is_int(store_write_refresh_token(s, "many07", t4, &g), 0, "rotate to 3");
        ok(raw_count(s, "many07/refresh_index/3") == 1 &&
               raw_count(s, "many07/refresh_token/3") == 1 &&
               raw_count(s, "many07/refresh_token/2") == 0,
           "the index moved on to 3; generation 2 is gone");

        /* Two index objects (two writers, or a token copied together): the lower one leads,
         * and the next rotation removes the other. */
        is_int(raw_create(s, "many07/refresh_index/9", value, sizeof(value) - 1), CKR_OK,
               "plant a second index naming 9");
        calls = read_after_restart(&s, "many07", "0.IDX-four", 3, "read with two indexes");
        printf("# %u calls\n", calls);
        ok(calls <= FIRST_TOKEN_CALLS_MAX, "without a scan");
        is_int(store_write_refresh_token(s, "many07", t5, &g), 0, "rotate to 4");
        ok(raw_count(s, "many07/refresh_index/4") == 1 &&
               raw_count(s, "many07/refresh_index/9") == 0 &&
               raw_count(s, "many07/refresh_token/3") == 0,
           "one index left, at 4");

        /* An index past every generation (a token restored from an older backup with a newer
         * index, or tampering): misses, then the scan. */
        is_int(raw_relabel(s, "many07/refresh_index/4", "many07/refresh_index/40"), CKR_OK,
               "move the index past every generation");
        read_after_restart(&s, "many07", "0.IDX-five", 4, "read with an index ahead: a scan");

        /* No index at all (written before it existed): the scan, then the rotation makes one. */
        is_int(raw_destroy_prefix(s, "many07/refresh_index/"), 1, "destroy many07's index");
        calls = read_after_restart(&s, "many07", "0.IDX-five", 4, "read without an index");
        printf("# %u calls\n", calls);
        ok(calls > FIRST_TOKEN_CALLS_MAX, "scans");
        is_int(store_write_refresh_token(s, "many07", t4, &g), 0, "rotate to 5");
        ok(raw_count(s, "many07/refresh_index/5") == 1, "the rotation made the index");
        calls = read_after_restart(&s, "many07", "0.IDX-four", 5, "read with the new index");
        printf("# %u calls\n", calls);
        ok(calls <= FIRST_TOKEN_CALLS_MAX, "without a scan again");

        /* The tests after these count labels among the first 64 objects: leave them few. */
        for (unsigned i = 0; i < 50; i++) {
                char name[32];
                unsigned removed;

                snprintf(name, sizeof(name), "many%02u", i);
                (void)store_remove_account(s, name, &removed);
        }
        is_int(raw_count(s, "many07/refresh_index/5"), 0, "the index goes with its account");
        return s;
}

static void test_remove(struct store *s)
{
        unsigned removed = 0;
        char **names = NULL;
        size_t n = 0;
        char *json;

        /* alerts/meta, refresh_token/13, /012, /x and the overflowing label (the refresh token
         * index goes too, unreported: count_prefix() below sees it gone). */
        is_int(store_remove_account(s, "alerts", &removed), 0, "remove account");
        is_int(removed, 5, "remove reports every object it destroyed");
        is_int(count_prefix(s, "alerts/"), 0, "nothing of the account is left");
        is_int(store_get_meta(s, "alerts", &json), -ENOENT, "meta is gone");
        ok(has_label(s, "zeta/refresh_token/1") && has_label(s, "zeta/meta"),
           "other accounts are untouched");

        is_int(store_remove_account(s, "alerts", &removed), 0, "remove of an absent account");
        is_int(removed, 0, "removes nothing");

        is_int(store_list_accounts(s, &names, &n), 0, "list after remove");
        is_int(n, 2, "two accounts left");
        store_names_free(names, n);
}

static void test_install_key(struct store *s)
{
        _cleanup_secret_ struct secret *a = NULL, *b = NULL, *c = NULL;
        struct store *again = NULL;
        unsigned removed;

        is_int(store_get_install_key(s, &a), 0, "install key is created on first use");
        is_int(a ? secret_len(a) : 0, 32, "install key is 32 bytes");
        is_int(store_get_install_key(s, &b), 0, "install key again");
        ok(a && b && secret_equal(a, b), "install key is stable across calls");
        is_int(count_prefix(s, "credbroker/audit-hmac-key"), 1, "exactly one install key object");
        store_close(s);

        is_int(open_default(&again), 0, "reopen");
        if (!again)
                return;
        is_int(store_get_install_key(again, &c), 0, "install key after reopen");
        ok(a && c && secret_equal(a, c), "install key is stable across close and reopen");
        is_int(store_remove_account(again, "zeta", &removed), 0, "remove zeta");
        ok(has_label(again, "credbroker/audit-hmac-key"),
           "removing accounts keeps the install key");
        store_close(again);
}

int main(void)
{
        struct store *s = NULL;

        setup();
        test_module_paths();
        test_token_uri();
        test_token_is_softhsm();
        test_pin_sources();
        test_module_allow_list();
        test_token_uri_selection();
        test_pin_edge_cases();

        is_int(open_default(&s), 0, "open the test token");
        if (s) {
                test_meta(s);
                test_invalid_names(s);
                test_refresh_tokens(s);
                test_readback_failure(s);
                s = test_torn_generations(s);
                test_remove(s);
                s = test_first_token_calls(s);
                s = test_index_recovery(s);
                test_install_key(s); /* closes s */
        }
        test_token_cleanup(&softhsm);
        return done_testing();
}
