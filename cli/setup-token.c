/* credbroker setup: a new SoftHSM2 token and the tokens a module offers, through p11-kit
 * (setup-token.h). */
#include <errno.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cleanup.h"
#include "log.h"
#include "setup-token.h"

#define SLOTS_MAX 256

int setup_random_pin(size_t len, struct secret **ret)
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        _cleanup_secret_ struct secret *pin = NULL;
        uint8_t *out;
        size_t n = 0;
        int r;

        r = secret_new(len + 1, &pin);
        if (r < 0)
                return r;
        out = secret_data(pin);
        while (n < len) {
                uint8_t byte;

                if (getrandom(&byte, 1, 0) != 1)
                        return log_error_errno(-errno, "Failed to get random bytes for a PIN");
                /* 248 = 4 * 62: no modulo bias. */
                if (byte < 248)
                        out[n++] = (uint8_t)alphabet[byte % 62];
        }
        r = secret_set_len(pin, len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(pin);
        return 0;
}

struct module {
        CK_FUNCTION_LIST *f;
        bool initialized;
};

static void module_close(struct module *m)
{
        if (m->f) {
                if (m->initialized)
                        (void)p11_kit_module_finalize(m->f);
                p11_kit_module_release(m->f);
        }
        *m = (struct module){0};
}

static int pkcs11_fail(const char *call, const char *what, CK_RV rv)
{
        log_error("PKCS#11 %s failed for %s: %s (0x%lx)", call, what, p11_kit_strerror(rv),
                  (unsigned long)rv);
        return rv == CKR_HOST_MEMORY ? -ENOMEM : -EIO;
}

static int module_open(const char *path, struct module *ret)
{
        CK_RV rv;

        *ret = (struct module){0};
        ret->f = p11_kit_module_load(path, 0);
        if (!ret->f) {
                const char *why = p11_kit_message();

                log_error("Failed to load PKCS#11 module %s: %s", path, why ? why : "unknown");
                return -ELIBBAD;
        }
        rv = p11_kit_module_initialize(ret->f);
        if (rv != CKR_OK) {
                module_close(ret);
                return pkcs11_fail("C_Initialize", path, rv);
        }
        ret->initialized = true;
        return 0;
}

static int slot_list(struct module *m, const char *path, CK_SLOT_ID *slots, CK_ULONG *n)
{
        CK_RV rv;

        *n = SLOTS_MAX;
        rv = m->f->C_GetSlotList(CK_TRUE, slots, n);
        if (rv != CKR_OK)
                return pkcs11_fail("C_GetSlotList", path, rv);
        return 0;
}

/* The slot whose token is initialised (or not) and, when label is given, carries that label. */
static int find_slot(struct module *m, const char *path, bool initialized, const char *label,
                     CK_SLOT_ID *ret)
{
        CK_SLOT_ID slots[SLOTS_MAX];
        CK_ULONG n;
        int r;

        r = slot_list(m, path, slots, &n);
        if (r < 0)
                return r;
        for (CK_ULONG i = 0; i < n; i++) {
                _cleanup_free_ char *have = NULL;
                CK_TOKEN_INFO info;

                if (m->f->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
                    !(info.flags & CKF_TOKEN_INITIALIZED) != !initialized)
                        continue;
                have = p11_kit_space_strdup(info.label, sizeof(info.label));
                if (label && (!have || strcmp(have, label) != 0))
                        continue;
                *ret = slots[i];
                return 0;
        }
        return -ENODEV;
}

static int init_user_pin(struct module *m, const char *module, CK_SLOT_ID slot,
                         struct secret *so_pin, struct secret *user_pin)
{
        CK_SESSION_HANDLE session;
        CK_RV rv;

        rv = m->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session);
        if (rv != CKR_OK)
                return pkcs11_fail("C_OpenSession", module, rv);
        rv = m->f->C_Login(session, CKU_SO, secret_data(so_pin), secret_len(so_pin));
        if (rv == CKR_OK) {
                rv = m->f->C_InitPIN(session, secret_data(user_pin), secret_len(user_pin));
                (void)m->f->C_Logout(session);
                if (rv != CKR_OK)
                        (void)pkcs11_fail("C_InitPIN", module, rv);
        } else
                (void)pkcs11_fail("C_Login (security officer)", module, rv);
        (void)m->f->C_CloseSession(session);
        return rv == CKR_OK ? 0 : -EIO;
}

int setup_init_token(const char *module, const char *label, struct secret *so_pin,
                     struct secret *user_pin)
{
        _cleanup_(module_close) struct module m = {0};
        CK_UTF8CHAR padded[32];
        CK_SLOT_ID slot;
        size_t len = strlen(label);
        CK_RV rv;
        int r;

        if (len > sizeof(padded))
                return -EINVAL;
        memset(padded, ' ', sizeof(padded));
        memcpy(padded, label, len);

        r = module_open(module, &m);
        if (r < 0)
                return r;
        if (find_slot(&m, module, false, NULL, &slot) < 0) {
                log_error("PKCS#11 module %s offers no uninitialised token to set up.", module);
                return -ENODEV;
        }
        rv = m.f->C_InitToken(slot, secret_data(so_pin), secret_len(so_pin), padded);
        if (rv != CKR_OK)
                return pkcs11_fail("C_InitToken", module, rv);
        /* SoftHSM2 gives an initialised token a new slot id, seen after C_Initialize again. */
        module_close(&m);
        r = module_open(module, &m);
        if (r < 0)
                return r;
        if (find_slot(&m, module, true, label, &slot) < 0) {
                log_error("The token \"%s\" just initialised is not in module %s.", label, module);
                return -ENODEV;
        }
        return init_user_pin(&m, module, slot, so_pin, user_pin);
}

static int print_token(FILE *out, const CK_TOKEN_INFO *info)
{
        _cleanup_free_ char *uri_text = NULL, *label = NULL, *model = NULL, *maker = NULL;
        P11KitUri *uri = p11_kit_uri_new();
        int r;

        if (!uri)
                return -ENOMEM;
        *p11_kit_uri_get_token_info(uri) = *info;
        r = p11_kit_uri_format(uri, P11_KIT_URI_FOR_TOKEN, &uri_text);
        p11_kit_uri_free(uri);
        if (r != P11_KIT_URI_OK)
                return -ENOMEM;
        label = p11_kit_space_strdup(info->label, sizeof(info->label));
        model = p11_kit_space_strdup(info->model, sizeof(info->model));
        maker = p11_kit_space_strdup(info->manufacturerID, sizeof(info->manufacturerID));
        fprintf(out, "  %s\n      label \"%s\", model %s, manufacturer %s%s\n", uri_text,
                label ? label : "?", model ? model : "?", maker ? maker : "?",
                info->flags & CKF_USER_PIN_INITIALIZED ? "" : " (no user PIN set yet)");
        return 0;
}

int setup_list_tokens(const char *module, FILE *out)
{
        _cleanup_(module_close) struct module m = {0};
        CK_SLOT_ID slots[SLOTS_MAX];
        CK_ULONG n;
        int r, count = 0;

        r = module_open(module, &m);
        if (r < 0)
                return r;
        r = slot_list(&m, module, slots, &n);
        if (r < 0)
                return r;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO info;

                if (m.f->C_GetTokenInfo(slots[i], &info) != CKR_OK ||
                    !(info.flags & CKF_TOKEN_INITIALIZED))
                        continue;
                r = print_token(out, &info);
                if (r < 0)
                        return r;
                count++;
        }
        return count;
}
