/* Opening and closing the credential store: checks the module against the allow-list and
 * loads it (store-module.c), selects one token by URI, and logs in with a PIN read from a
 * protected file (store-pin.c, store-session.c, which also reopens a lost session). CK_RV
 * mapping is in store-rv.c. The objects it keeps are in store-object.c (how), store-account.c,
 * store-refresh-token.c, store-install-key.c and store-key.c (what). */
#include "store.h"
#include "store-internal.h"
#include "store-private.h"
#include "store-wrapped.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"

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

        r = p11_check_module_path(options->module_path, options->module_dirs,
                                  options->n_module_dirs, &module);
        if (r < 0)
                return r;
        /* Syntax only: a typo in pin_source should not need a trip to the HSM to show up. */
        r = p11_pin_source_path(options->pin_source, &pin_path, &check_mode);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        if (options->backend == STORE_BACKEND_WRAPPED) {
                r = p11_wrapped_new(options->wrapped_dir, &s->wrapped);
                if (r < 0)
                        return r;
        } else if (options->backend != STORE_BACKEND_OBJECTS)
                return -EINVAL;

        r = p11_load_module(s, module); /* the resolved path: what we load is what we checked */
        if (r < 0)
                return r;

        r = p11_find_token(s, module, options->token_uri, &slot, &info);
        if (r < 0)
                return r;
        s->token_label = p11_kit_space_strdup(info.label, sizeof(info.label));
        if (!s->token_label)
                return -ENOMEM;
        if (p11_token_is_softhsm(&info))
                s->reopen_after = options->softhsm_reopen_after;

        rv = s->module->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                      &s->session);
        if (rv != CKR_OK)
                return p11_ck_fail(s, "C_OpenSession", options->token_uri, rv);
        s->session_open = true;

        r = p11_login(s, options->pin_source, pin_path, check_mode, slot, &info);
        if (r < 0)
                return r;
        r = p11_remember_session(s, module, options->token_uri, options->pin_source, pin_path,
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
        p11_generation_hints_free(s);
        p11_wrapped_free(s->wrapped);
        free(s->token_label);
        free(s->module_path);
        free(s->token_uri);
        free(s->pin_source);
        free(s->pin_path);
        free(s);
}

enum store_backend store_get_backend(const struct store *s)
{
        return s && s->wrapped ? STORE_BACKEND_WRAPPED : STORE_BACKEND_OBJECTS;
}

void store_private_session(struct store *s, CK_FUNCTION_LIST **ret_module,
                           CK_SESSION_HANDLE *ret_session)
{
        *ret_module = s->module;
        *ret_session = s->session;
}

void store_private_forget_generations(struct store *s)
{
        p11_generation_hints_free(s);
}
