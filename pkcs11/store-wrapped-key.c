/* The wrapped backend's key-encryption key and AES-GCM sealing: one CKO_SECRET_KEY AES-256,
 * sensitive and never extractable, generated in the token on first use and found once per
 * session; every seal and open is one C_EncryptInit/C_DecryptInit and one single-part call. */
#include "store-wrapped.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <p11-kit/pkcs11.h>

#include "log.h"
#include "util.h"

void p11_wrapped_blob_clear(struct p11_wrapped_blob *blob)
{
        if (!blob)
                return;
        free(blob->sealed);
        *blob = (struct p11_wrapped_blob){0};
}

/* Handles live as long as the session that found them. */
void p11_wrapped_check_epoch(struct store *s)
{
        struct p11_wrapped *w = s->wrapped;

        if (w->epoch == s->session_epoch)
                return;
        w->epoch = s->session_epoch;
        w->keks_loaded = false;
        w->n_keks = 0;
}

static int compare_kek(const void *a, const void *b)
{
        return memcmp(((const struct p11_wrapped_kek *)a)->id,
                      ((const struct p11_wrapped_kek *)b)->id, WRAPPED_KEK_ID_LEN);
}

/* One found key: its CKA_ID, and that it is what we generate (sensitive, not extractable); a key
 * under our label that is not is ignored with a warning, never used. */
static int kek_check(struct store *s, CK_OBJECT_HANDLE handle, struct p11_wrapped_kek *ret)
{
        CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
        CK_KEY_TYPE type = 0;
        CK_ATTRIBUTE attributes[] = {
            {CKA_ID, ret->id, WRAPPED_KEK_ID_LEN},
            {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
            {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
            {CKA_KEY_TYPE, &type, sizeof(type)},
        };
        CK_RV rv;

        rv = s->module->C_GetAttributeValue(s->session, handle, attributes, ELEMENTSOF(attributes));
        if (rv == CKR_OBJECT_HANDLE_INVALID)
                return -ENOENT;
        if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_BUFFER_TOO_SMALL ||
            attributes[0].ulValueLen != WRAPPED_KEK_ID_LEN || !sensitive || extractable ||
            type != CKK_AES) {
                log_warning("Ignoring key \"%s\" on token \"%s\": not a sensitive, "
                            "non-extractable AES key with a %d-byte CKA_ID.",
                            WRAPPED_KEK_LABEL, s->token_label, WRAPPED_KEK_ID_LEN);
                return -ENOENT;
        }
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_GetAttributeValue", WRAPPED_KEK_LABEL, rv);
        }
        ret->handle = handle;
        return 0;
}

static int kek_load(struct store *s)
{
        struct p11_wrapped *w = s->wrapped;
        _cleanup_free_ CK_OBJECT_HANDLE *handles = NULL;
        CK_OBJECT_CLASS class = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_KEY_TYPE, &type, sizeof(type)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_LABEL, (void *)WRAPPED_KEK_LABEL, strlen(WRAPPED_KEK_LABEL)},
        };
        struct p11_wrapped_kek *keks;
        size_t n, n_keks = 0;
        int r;

        r = p11_find_objects(s, template, ELEMENTSOF(template), WRAPPED_KEK_LABEL, &handles, &n);
        if (r < 0)
                return r;
        p11_wrapped_check_epoch(s); /* the search may have opened the session again */
        keks = calloc(n ? n : 1, sizeof(*keks));
        if (!keks)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = kek_check(s, handles[i], &keks[n_keks]);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        free(keks);
                        return r;
                }
                n_keks++;
        }
        qsort(keks, n_keks, sizeof(*keks), compare_kek);
        free(w->keks);
        w->keks = keks;
        w->n_keks = n_keks;
        w->keks_loaded = true;
        return 0;
}

static int kek_generate(struct store *s)
{
        CK_OBJECT_CLASS class = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ULONG len = 32;
        CK_BBOOL no = CK_FALSE;
        uint8_t id[WRAPPED_KEK_ID_LEN];
        CK_ATTRIBUTE template[] = {
            {CKA_CLASS, &class, sizeof(class)},
            {CKA_KEY_TYPE, &type, sizeof(type)},
            {CKA_VALUE_LEN, &len, sizeof(len)},
            {CKA_TOKEN, &p11_true, sizeof(p11_true)},
            {CKA_PRIVATE, &p11_true, sizeof(p11_true)},
            {CKA_SENSITIVE, &p11_true, sizeof(p11_true)},
            {CKA_EXTRACTABLE, &no, sizeof(no)},
            {CKA_ENCRYPT, &p11_true, sizeof(p11_true)},
            {CKA_DECRYPT, &p11_true, sizeof(p11_true)},
            {CKA_LABEL, (void *)WRAPPED_KEK_LABEL, strlen(WRAPPED_KEK_LABEL)},
            {CKA_ID, id, sizeof(id)},
        };
        CK_MECHANISM mechanism = {CKM_AES_KEY_GEN, NULL, 0};
        CK_OBJECT_HANDLE handle;
        CK_RV rv;

        if (gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof(id)) < 0)
                return -EIO;
        rv = s->module->C_GenerateKey(s->session, &mechanism, template, ELEMENTSOF(template),
                                      &handle);
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_GenerateKey(CKM_AES_KEY_GEN)", WRAPPED_KEK_LABEL, rv);
        }
        log_info("Generated the key-encryption key \"%s\" in token \"%s\".", WRAPPED_KEK_LABEL,
                 s->token_label);
        return 0;
}

/* Seals with the key of the smallest CKA_ID: when two processes generated one each at once, both
 * settle on the same key, and a blob names the key that sealed it, so either opens. */
int p11_wrapped_kek_for_seal(struct store *s, CK_OBJECT_HANDLE *ret,
                             uint8_t ret_id[static WRAPPED_KEK_ID_LEN])
{
        struct p11_wrapped *w = s->wrapped;
        int r;

        p11_wrapped_check_epoch(s);
        if (!w->keks_loaded || w->n_keks == 0) {
                r = kek_load(s);
                if (r < 0)
                        return r;
        }
        if (w->n_keks == 0) {
                r = kek_generate(s);
                if (r < 0)
                        return r;
                r = kek_load(s);
                if (r < 0)
                        return r;
                if (w->n_keks == 0)
                        return log_error_errno(-ENOKEY,
                                               "Token \"%s\" does not show the key \"%s\" it "
                                               "generated.",
                                               s->token_label, WRAPPED_KEK_LABEL);
        }
        *ret = w->keks[0].handle;
        memcpy(ret_id, w->keks[0].id, WRAPPED_KEK_ID_LEN);
        return 0;
}

int p11_wrapped_kek_for_open(struct store *s, const uint8_t id[static WRAPPED_KEK_ID_LEN],
                             CK_OBJECT_HANDLE *ret)
{
        struct p11_wrapped *w = s->wrapped;
        int r;

        p11_wrapped_check_epoch(s);
        for (int attempt = 0; attempt < 2; attempt++) {
                if (attempt > 0 || !w->keks_loaded) {
                        r = kek_load(s);
                        if (r < 0)
                                return r;
                }
                for (size_t i = 0; i < w->n_keks; i++)
                        if (memcmp(w->keks[i].id, id, WRAPPED_KEK_ID_LEN) == 0) {
                                *ret = w->keks[i].handle;
                                return 0;
                        }
                if (!w->keks_loaded)
                        break;
        }
        return -ENOKEY;
}

/* ---- AES-GCM ---- */

static int aad_build(const struct p11_wrapped_aad *aad, char **ret, size_t *ret_len)
{
        char generation[21];
        size_t len;
        char *text;

        if (!aad || !aad->account || !aad->kind || !aad->context)
                return -EINVAL;
        format_u64(aad->generation, generation);
        /* NUL separators: no field may contain one, so the fields cannot be shifted. */
        len = strlen(WRAPPED_FORMAT) + 1 + strlen(aad->account) + 1 + strlen(aad->kind) + 1 +
              strlen(generation) + 1 + strlen(aad->context);
        text = malloc(len + 1);
        if (!text)
                return -ENOMEM;
        snprintf(text, len + 1, "%s%c%s%c%s%c%s%c%s", WRAPPED_FORMAT, 0, aad->account, 0, aad->kind,
                 0, generation, 0, aad->context);
        *ret = text;
        *ret_len = len;
        return 0;
}

static CK_GCM_PARAMS gcm_params(uint8_t *iv, char *aad, size_t aad_len)
{
        return (CK_GCM_PARAMS){
            .pIv = iv,
            .ulIvLen = WRAPPED_IV_LEN,
            .ulIvBits = WRAPPED_IV_LEN * 8,
            .pAAD = (CK_BYTE_PTR)aad,
            .ulAADLen = aad_len,
            .ulTagBits = WRAPPED_TAG_LEN * 8,
        };
}

int p11_wrapped_seal(struct store *s, const struct p11_wrapped_aad *aad, const struct secret *plain,
                     struct p11_wrapped_blob *ret)
{
        struct p11_wrapped_blob blob = {0};
        _cleanup_free_ char *aad_text = NULL;
        CK_OBJECT_HANDLE key;
        CK_GCM_PARAMS params;
        CK_MECHANISM mechanism = {CKM_AES_GCM, &params, sizeof(params)};
        CK_ULONG out_len;
        size_t aad_len;
        CK_RV rv;
        int r;

        if (!s || !s->wrapped || !plain || secret_len(plain) == 0 ||
            secret_len(plain) > WRAPPED_PLAIN_MAX || !ret)
                return -EINVAL;
        r = aad_build(aad, &aad_text, &aad_len);
        if (r < 0)
                return r;
        r = p11_wrapped_kek_for_seal(s, &key, blob.kek_id);
        if (r < 0)
                return r;
        if (gnutls_rnd(GNUTLS_RND_NONCE, blob.iv, sizeof(blob.iv)) < 0)
                return -EIO;
        blob.sealed_len = secret_len(plain) + WRAPPED_TAG_LEN;
        blob.sealed = malloc(blob.sealed_len);
        if (!blob.sealed)
                return -ENOMEM;
        params = gcm_params(blob.iv, aad_text, aad_len);
        rv = s->module->C_EncryptInit(s->session, &mechanism, key);
        if (rv == CKR_OK) {
                out_len = blob.sealed_len;
                rv = s->module->C_Encrypt(s->session, (CK_BYTE_PTR)secret_str(plain),
                                          secret_len(plain), blob.sealed, &out_len);
        }
        if (rv != CKR_OK || out_len != blob.sealed_len) {
                p11_wrapped_blob_clear(&blob);
                if (rv == CKR_OK)
                        return log_error_errno(-EIO, "C_Encrypt(CKM_AES_GCM) returned %lu bytes.",
                                               (unsigned long)out_len);
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_Encrypt(CKM_AES_GCM)", aad->account, rv);
        }
        *ret = blob;
        return 0;
}

/* Whether a failed C_Decrypt means the tag did not match. SoftHSM2 says so with
 * CKR_GENERAL_ERROR, which a dead p11-kit connection gives too: the session, still there and
 * logged in, tells them apart. */
static bool decrypt_failed_on_tag(struct store *s, CK_RV rv)
{
        CK_SESSION_INFO info;

        if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
            rv == CKR_DATA_INVALID)
                return true;
        if (rv != CKR_GENERAL_ERROR && rv != CKR_FUNCTION_FAILED)
                return false;
        return p11_session_is_logged_in(s, &info);
}

int p11_wrapped_open(struct store *s, const struct p11_wrapped_aad *aad,
                     const struct p11_wrapped_blob *blob, struct secret **ret)
{
        _cleanup_secret_ struct secret *plain = NULL;
        _cleanup_free_ char *aad_text = NULL;
        uint8_t iv[WRAPPED_IV_LEN];
        CK_OBJECT_HANDLE key;
        CK_GCM_PARAMS params;
        CK_MECHANISM mechanism = {CKM_AES_GCM, &params, sizeof(params)};
        CK_ULONG out_len;
        size_t aad_len;
        CK_RV rv;
        int r;

        if (!s || !s->wrapped || !blob || !blob->sealed || !ret)
                return -EINVAL;
        if (blob->sealed_len <= WRAPPED_TAG_LEN ||
            blob->sealed_len > WRAPPED_PLAIN_MAX + WRAPPED_TAG_LEN)
                return -EBADMSG;
        r = aad_build(aad, &aad_text, &aad_len);
        if (r < 0)
                return r;
        r = p11_wrapped_kek_for_open(s, blob->kek_id, &key);
        if (r < 0)
                return r;
        /* SoftHSM2 buffers a GCM decryption whole, and may want the tag's room too. */
        r = secret_new(blob->sealed_len, &plain);
        if (r < 0)
                return r;
        memcpy(iv, blob->iv, sizeof(iv));
        params = gcm_params(iv, aad_text, aad_len);
        rv = s->module->C_DecryptInit(s->session, &mechanism, key);
        if (rv == CKR_OK) {
                out_len = blob->sealed_len;
                rv = s->module->C_Decrypt(s->session, blob->sealed, blob->sealed_len,
                                          secret_data(plain), &out_len);
        }
        if (rv != CKR_OK && decrypt_failed_on_tag(s, rv))
                return -EBADMSG; /* the tag: tampered, or bound to something else */
        if (rv != CKR_OK) {
                p11_note_rv(s, rv);
                return p11_ck_fail(s, "C_Decrypt(CKM_AES_GCM)", aad->account, rv);
        }
        if (out_len != blob->sealed_len - WRAPPED_TAG_LEN)
                return -EBADMSG;
        r = secret_set_len(plain, out_len);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(plain);
        return 0;
}
