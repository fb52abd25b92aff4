/* The one place a PKCS#11 return value (CK_RV) is named for a log line and turned into the
 * negative errno everything above it speaks. */
#include "store-internal.h"

#include <errno.h>
#include <stdio.h>

#include <p11-kit/pkcs11.h>

#include "log.h"

/* The names of the return values we can meet, for log lines an administrator can search for. */
const char *p11_rv_name(CK_RV rv)
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
int p11_rv_to_errno(CK_RV rv)
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
int p11_ck_fail(const struct store *s, const char *call, const char *what, CK_RV rv)
{
        const char *token = s && s->token_label ? s->token_label : NULL;

        if (rv == CKR_OBJECT_HANDLE_INVALID)
                return log_debug_errno(p11_rv_to_errno(rv), "PKCS#11 %s for %s: %s", call, what,
                                       p11_rv_name(rv));
        if (!token)
                return log_error_errno(p11_rv_to_errno(rv), "PKCS#11 %s failed for %s: %s", call,
                                       what, p11_rv_name(rv));
        return log_error_errno(p11_rv_to_errno(rv), "PKCS#11 %s failed for %s on token \"%s\": %s",
                               call, what, token, p11_rv_name(rv));
}
