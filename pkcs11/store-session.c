/* The store's session: logging in (once per open, never retried with the same PIN), noticing
 * that a call lost the session (the HSM restarted, a p11-kit server went away) and opening it
 * again, the whole way from C_Initialize, with a backoff. */
#include "store-internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"
#include "secret.h"

/* What a failed C_Login means to an administrator. There is never a second attempt: a PIN from a
 * file does not change between tries, so retrying only runs the token's counter down to a
 * lockout. */
int p11_login_error(const struct store *s, CK_RV rv, const char *pin_source, const char *pin_path)
{
        /* $CREDENTIALS_DIRECTORY is systemd's runtime copy: the fix goes into its source. */
        bool credential = p11_startswith(pin_source, "credential:") != NULL;

        switch (rv) {
        case CKR_PIN_INCORRECT:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_INVALID:
                log_error("The PIN from %s is wrong for token \"%s\" (%s); not retrying. Put the "
                          "token's user PIN into %s%s.",
                          pin_source, s->token_label, p11_rv_name(rv),
                          credential ? "the file the service unit's LoadCredential= names, not "
                                     : "",
                          pin_path);
                return p11_rv_to_errno(rv);
        case CKR_PIN_LOCKED:
                log_error("The user PIN of token \"%s\" is locked; the token's security officer "
                          "must unlock it by setting the user PIN again with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so), then put that PIN "
                          "into %s.",
                          s->token_label, pin_source);
                return p11_rv_to_errno(rv);
        case CKR_PIN_EXPIRED:
                log_error("The user PIN of token \"%s\" has expired; set a new one "
                          "(pkcs11-tool --change-pin) and put it into %s.",
                          s->token_label, pin_source);
                return p11_rv_to_errno(rv);
        default:
                return p11_ck_fail(s, "C_Login", pin_source, rv);
        }
}

int p11_login(struct store *s, const char *pin_source, const char *pin_path, bool check_mode,
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
                return p11_login_error(s, CKR_PIN_LOCKED, pin_source, pin_path);
        if (!(info->flags & CKF_USER_PIN_INITIALIZED)) {
                log_error("Token \"%s\" has no user PIN yet; set one with the SO PIN "
                          "(pkcs11-tool --init-pin --login --login-type so).",
                          s->token_label);
                return -EACCES;
        }

        r = p11_read_pin(pin_path, check_mode, &pin);
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
                r = p11_login_error(s, rv, pin_source, pin_path);
                if (rv == CKR_PIN_INCORRECT && s->module->C_GetTokenInfo(slot, &after) == CKR_OK &&
                    (after.flags & CKF_USER_PIN_FINAL_TRY))
                        log_error("One more wrong PIN will lock token \"%s\".", s->token_label);
                return r;
        }
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

bool p11_note_rv(struct store *s, CK_RV rv)
{
        if (!s || !rv_means_session_lost(rv))
                return false;
        if (!s->session_lost)
                log_warning("Lost the session to token \"%s\" (%s); it is opened again on the "
                            "next operation.",
                            s->token_label ? s->token_label : "?", p11_rv_name(rv));
        s->session_lost = true;
        return true;
}

int p11_remember_session(struct store *s, const char *module_path, const char *token_uri,
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
                return p11_ck_fail(s, "C_Initialize", s->module_path, rv);
        s->initialized = true;
        s->destroyed = 0;
        r = p11_find_token(s, s->module_path, s->token_uri, &slot, &info);
        if (r < 0)
                return r;
        rv = s->module->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &s->session);
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_OpenSession", s->token_uri, rv);
        s->session_open = true;
        /* Object handles are the old session's: a reused session number must not revive them. */
        s->audit_key_handle = CK_INVALID_HANDLE;
        s->session_epoch++;
        r = p11_login(s, s->pin_source, s->pin_path, s->pin_check_mode, slot, &info);
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

/* After a reopen that failed: the next operation tries again after the backoff. */
static int reopen_failed(struct store *s, int r, uint64_t now)
{
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
        if (r < 0)
                return reopen_failed(s, r, now);
        s->session_lost = false;
        s->reopen_failures = 0;
        s->reopen_at_usec = 0;
        log_notice("Opened the session to token \"%s\" again.", s->token_label);
        return 0;
}

int store_reopen_if_due(struct store *s)
{
        unsigned destroyed;
        int r;

        if (!s || s->reopen_after == 0 || s->destroyed < s->reopen_after || s->session_lost)
                return 0;
        destroyed = s->destroyed;
        r = store_reopen(s);
        if (r < 0) {
                /* Handled as a lost session from here on: the next operation opens it. */
                s->session_lost = true;
                return reopen_failed(s, r, now_boottime_usec());
        }
        log_debug("Opened token \"%s\" again after %u destroyed objects: SoftHSM2 gives back "
                  "what it kept for them only when finalized.",
                  s->token_label, destroyed);
        return 1;
}
