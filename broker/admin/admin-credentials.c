/* The admin operations that write an account's credential objects, so that the CLI needs not
 * open the token while the broker runs (docs/admin-protocol.md): account.keygen, account.cert
 * and account.secret. Every store call runs on the store worker. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "accounts.h"
#include "audit.h"
#include "store-worker.h"
#include "util.h"
#include "broker.h"
#include "json.h"
#include "log.h"
#include "provision.h"
#include "secret.h"
#include "store.h"

enum credential_kind {
        CREDENTIAL_KEYGEN,
        CREDENTIAL_CERT,
        CREDENTIAL_SECRET,
};

struct credential_operation {
        struct admin_operation op;
        enum credential_kind kind;
        char account[NAME_MAX_LEN + 1];
        struct store_keygen_options keygen;
        char subject[STORE_SUBJECT_MAX + 1];
        char *data; /* account.cert: the certificate (public) */
        size_t len;
        struct secret *secret; /* account.secret */
        struct store_certificate_info info;
        char *csr;
};

static void credential_operation_free(struct credential_operation *co)
{
        if (!co)
                return;
        free(co->data);
        secret_free(co->secret);
        store_certificate_info_clear(&co->info);
        free(co->csr);
        free(co);
}

static int credential_call(struct store *store, void *userdata)
{
        struct credential_operation *co = userdata;

        store_certificate_info_clear(&co->info);
        free(co->csr);
        co->csr = NULL;
        switch (co->kind) {
        case CREDENTIAL_KEYGEN:
                return store_keygen(store, co->account, &co->keygen, &co->info,
                                    co->keygen.csr ? &co->csr : NULL);
        case CREDENTIAL_CERT:
                return store_import_certificate(store, co->account, co->data, co->len, &co->info);
        case CREDENTIAL_SECRET:
                return store_put_client_secret(store, co->account, co->secret);
        }
        return -EINVAL;
}

static bool add_certificate(cJSON *o, const struct store_certificate_info *info)
{
        return cJSON_AddStringToObject(o, "subject", info->subject ? info->subject : "") &&
               cJSON_AddStringToObject(o, "issuer", info->issuer ? info->issuer : "") &&
               json_add_uint(o, "not_before", info->not_before) &&
               json_add_uint(o, "not_after", info->not_after) &&
               json_add_uint(o, "bits", info->bits) &&
               cJSON_AddStringToObject(o, "sha1", info->sha1_hex) &&
               cJSON_AddStringToObject(o, "sha256", info->sha256_hex);
}

static void fail_for(struct credential_operation *co, int result)
{
        if (co->kind == CREDENTIAL_KEYGEN && result == -EEXIST)
                admin_operation_fail(&co->op, ADMIN_EXISTS,
                                     "The account already has an assertion key; ask with "
                                     "\"replace\":true to make a new one.");
        else if (co->kind == CREDENTIAL_KEYGEN && result == -EINVAL)
                admin_operation_fail(&co->op, ADMIN_BAD_REQUEST,
                                     "The subject is not a distinguished name such as "
                                     "\"CN=alerts,O=Contoso\".");
        else if (co->kind == CREDENTIAL_CERT && result == -EBADMSG)
                admin_operation_fail(&co->op, ADMIN_BAD_REQUEST,
                                     "\"pem\" is not a PEM X.509 certificate.");
        else if (co->kind == CREDENTIAL_CERT && result == -ENOKEY)
                admin_operation_fail(&co->op, ADMIN_NOT_FOUND,
                                     "The certificate is not for a key of the account; make the "
                                     "key with keygen --csr and have the CA sign that request.");
        else if (co->kind == CREDENTIAL_SECRET && result == -EINVAL)
                admin_operation_fail(&co->op, ADMIN_BAD_REQUEST,
                                     "The client secret must be printable ASCII without spaces, "
                                     "quotes or backslashes.");
        else
                admin_operation_fail(&co->op, ADMIN_UNAVAILABLE,
                                     "The credential store could not be written; try again later.");
}

static void on_credential_done(struct store_job *job, void *userdata)
{
        struct credential_operation *co = userdata;
        struct broker *b = co->op.broker;
        _cleanup_json_ cJSON *reply = NULL;
        const char *event = co->op.desc->audit;
        bool good;

        if (job->result < 0) {
                log_error_errno(job->result, "Admin: %s of account %s failed", event, co->account);
                fail_for(co, job->result);
                goto out;
        }
        /* The account's runtime state is read from the store afresh on its next refresh. */
        token_cache_drop_account(&b->cache, co->account);
        log_info("Admin: %s for account %s.", event, co->account);
        admin_operation_audit(&co->op, co->account);
        reply = admin_reply_new();
        good = reply && cJSON_AddStringToObject(reply, "account", co->account);
        if (good && co->kind != CREDENTIAL_SECRET)
                good = add_certificate(reply, &co->info);
        if (good && co->kind == CREDENTIAL_KEYGEN)
                good = cJSON_AddStringToObject(reply, "pem", co->info.pem ? co->info.pem : "") &&
                       cJSON_AddBoolToObject(reply, "csr", co->csr != NULL) &&
                       (!co->csr || cJSON_AddStringToObject(reply, "csr_pem", co->csr));
        admin_operation_finish(&co->op, good ? reply : NULL);
out:
        credential_operation_free(co);
}

static int optional_bool(const cJSON *request, const char *key, bool *ret)
{
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(request, key);

        if (!item)
                return 0;
        if (!cJSON_IsBool(item))
                return -EINVAL;
        *ret = cJSON_IsTrue(item);
        return 0;
}

static int optional_u32(const cJSON *request, const char *key, unsigned min, unsigned max,
                        unsigned *ret)
{
        uint64_t value;

        if (!cJSON_GetObjectItemCaseSensitive(request, key))
                return 0;
        if (json_get_u64(request, key, &value) < 0 || value < min || value > max)
                return -EINVAL;
        *ret = (unsigned)value;
        return 0;
}

/* Reads the request into co; the message of a bad_request, or NULL. */
static const char *read_request(struct credential_operation *co, const cJSON *request)
{
        const cJSON *item;
        const char *s;
        size_t len;

        switch (co->kind) {
        case CREDENTIAL_KEYGEN:
                co->keygen.bits = STORE_KEY_BITS_DEFAULT;
                co->keygen.days = STORE_CERT_DAYS_DEFAULT;
                if (optional_u32(request, "bits", 2048, 4096, &co->keygen.bits) < 0 ||
                    (co->keygen.bits != 2048 && co->keygen.bits != 3072 && co->keygen.bits != 4096))
                        return "\"bits\" must be 2048, 3072 or 4096.";
                if (optional_u32(request, "days", 1, STORE_CERT_DAYS_MAX, &co->keygen.days) < 0)
                        return "\"days\" must be 1 to 3650.";
                if (optional_bool(request, "csr", &co->keygen.csr) < 0 ||
                    optional_bool(request, "replace", &co->keygen.replace) < 0)
                        return "\"csr\" and \"replace\" must be true or false.";
                item = cJSON_GetObjectItemCaseSensitive(request, "subject");
                if (item && !cJSON_IsNull(item)) {
                        if (!cJSON_IsString(item) ||
                            (len = strnlen(item->valuestring, STORE_SUBJECT_MAX + 1)) == 0 ||
                            len > STORE_SUBJECT_MAX)
                                return "\"subject\" must be 1 to 256 characters.";
                        memcpy(co->subject, item->valuestring, len + 1);
                        co->keygen.subject = co->subject;
                }
                co->keygen.now = now_realtime_usec() / USEC_PER_SEC;
                return NULL;
        case CREDENTIAL_CERT:
                s = json_get_string(request, "pem");
                if (!s || (len = strnlen(s, STORE_CERTIFICATE_FILE_MAX + 1)) == 0 ||
                    len > STORE_CERTIFICATE_FILE_MAX)
                        return "\"pem\" must be a PEM certificate of at most 32 KiB.";
                co->data = malloc(len);
                if (!co->data)
                        return "";
                memcpy(co->data, s, len);
                co->len = len;
                return NULL;
        case CREDENTIAL_SECRET:
                s = json_get_string(request, "client_secret");
                if (!s || (len = strnlen(s, STORE_CLIENT_SECRET_MAX + 1)) == 0 ||
                    len > STORE_CLIENT_SECRET_MAX)
                        return "\"client_secret\" must be 1 to 1024 bytes.";
                if (secret_new_from(s, len, &co->secret) < 0)
                        return "";
                return NULL;
        }
        return "";
}

void admin_credential_start(struct admin_connection *c, const cJSON *request, const char *op)
{
        struct broker *b = c->broker;
        struct credential_operation *co = calloc(1, sizeof(*co));
        const char *account = json_get_string(request, "account"), *message;
        struct store_job *job = NULL;

        if (!co) {
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        if (provision_busy(b, account)) {
                free(co);
                admin_send_error(c, ADMIN_UNAVAILABLE,
                                 "The account is being signed in; try again when that is done.");
                return;
        }
        co->kind = strcmp(op, "account.keygen") == 0 ? CREDENTIAL_KEYGEN
                   : strcmp(op, "account.cert") == 0 ? CREDENTIAL_CERT
                                                     : CREDENTIAL_SECRET;
        memcpy(co->account, account, strlen(account) + 1);
        message = read_request(co, request);
        if (message) {
                admin_send_error(c, *message ? ADMIN_BAD_REQUEST : ADMIN_INTERNAL,
                                 *message ? message : "Out of memory.");
                credential_operation_free(co);
                return;
        }
        if (store_job_new(STORE_JOB_CALL, co->account, &job) < 0) {
                credential_operation_free(co);
                admin_send_error(c, ADMIN_INTERNAL, "Out of memory.");
                return;
        }
        job->call = credential_call;
        job->call_arg = co;
        admin_operation_begin(c, &co->op);
        if (store_worker_submit(b->store_worker, job, on_credential_done, co) < 0) {
                store_job_free(job);
                admin_operation_fail(&co->op, ADMIN_UNAVAILABLE,
                                     "The credential store is busy; try again later.");
                credential_operation_free(co);
        }
}
