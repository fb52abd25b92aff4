/* Graph mail; see graph-send.h. The same libcurl discipline as the broker: HTTPS only, verified
 * TLS, no redirects, timeouts, capped responses. A proxy comes from the environment as for any
 * libcurl program (https_proxy, all_proxy, no_proxy and their upper-case forms): nothing here sets
 * CURLOPT_PROXY. The access token lives in a secret buffer, as the whole Authorization header
 * line; the copy libcurl's header list makes is wiped before it is freed, and the pre-authenticated
 * upload URL (it carries its own token) is never logged or shown. */
#include "build-config.h"

#include "graph-send.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "cleanup.h"
#include "config.h"
#include "json.h"
#include "secret.h"

#include "mime.h"

#define GRAPH_RESPONSE_MAX   (64 * 1024)
#define GRAPH_URL_MAX        4096
#define GRAPH_ID_MAX         1024
#define UPLOAD_RETRIES       3
#define RETRY_SLEEP_MAX      10
#define RETRY_AFTER_MAX      86400
#define SPLIT_THRESHOLD      (1024 * 1024)
#define SPLIT_THRESHOLD_LAST (64 * 1024)

enum graph_stage {
        STAGE_SENDMAIL,
        STAGE_DRAFT,
        STAGE_SESSION,
        STAGE_UPLOAD,
        STAGE_SEND,
};

struct graph_conn {
        const struct graph_mail_target *t;
        CURL *curl;
        struct secret *auth; /* "Authorization: Bearer <token>" */
        struct buf *response;
        char *base;            /* <graph>/v1.0/me or <graph>/v1.0/users/<escaped mailbox> */
        const char *acting_as; /* the mailbox of the path; NULL for /me */
        bool shared;           /* delegated token acting on another mailbox */
        graph_mail_progress_fn *progress;
        void *userdata;
        uint64_t done, total;
};

struct graph_reply {
        CURLcode curl;
        long status;
        unsigned retry_after;
};

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        return buf_put(userdata, data, size * n) < 0 ? 0 : size * n;
}

const char *graph_environment_proxy(const char **ret_name)
{
        static const char *const names[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                const char *v = secure_getenv(names[i]);
                if (v && *v) {
                        *ret_name = names[i];
                        return v;
                }
        }
        return NULL;
}

static bool same_address(const char *a, const char *b)
{
        return a && b && strcasecmp(a, b) == 0;
}

/* Which mailbox the path names: NULL for /me. */
static const char *path_mailbox(const struct graph_mail_target *t)
{
        if (!t->delegated)
                return t->mailbox;
        if (t->from && t->mailbox && !same_address(t->from, t->mailbox))
                return t->from;
        return NULL;
}

/* Percent-encodes a path segment (an address or a Graph id): all but RFC 3986 unreserved. */
static char *escape_segment(const char *s)
{
        size_t n = strlen(s), o = 0;
        char *out = n < SIZE_MAX / 3 ? malloc(3 * n + 1) : NULL;

        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
                        out[o++] = (char)*p;
                else {
                        out[o++] = '%';
                        out[o++] = "0123456789ABCDEF"[*p >> 4];
                        out[o++] = "0123456789ABCDEF"[*p & 15];
                }
        }
        out[o] = '\0';
        return out;
}

static int base_url(const struct graph_mail_target *t, const char *prefix, char **ret)
{
        const char *mailbox = path_mailbox(t);
        _cleanup_free_ char *escaped = NULL;

        if (!t->delegated && (!mailbox || !*mailbox))
                return -EINVAL;
        if (!mailbox)
                return asprintf(ret, "%s/v1.0/me", prefix) < 0 ? -ENOMEM : 0;
        escaped = escape_segment(mailbox);
        if (!escaped)
                return -ENOMEM;
        return asprintf(ret, "%s/v1.0/users/%s", prefix, escaped) < 0 ? -ENOMEM : 0;
}

int graph_mail_send_path(const struct graph_mail_target *t, char **ret)
{
        _cleanup_free_ char *base = NULL;
        int r = base_url(t, "", &base);

        if (r < 0)
                return r;
        return asprintf(ret, "%s/sendMail", base) < 0 ? -ENOMEM : 0;
}

/* Standard base64 without line breaks, as Graph's MIME variant wants it. */
static char *base64_encode(const uint8_t *data, size_t len, size_t *ret_len)
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t out_len = (len + 2) / 3 * 4, o = 0;
        char *out = malloc(out_len + 1);

        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)data[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)data[i + 1] << 8;
                if (i + 2 < len)
                        v |= data[i + 2];
                out[o++] = alphabet[(v >> 18) & 63];
                out[o++] = alphabet[(v >> 12) & 63];
                out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
        }
        out[o] = '\0';
        *ret_len = o;
        return out;
}

/* Frees a header list after wiping the Authorization line libcurl copied into it. */
static void headers_free(struct curl_slist *headers)
{
        for (struct curl_slist *h = headers; h; h = h->next)
                if (strncasecmp(h->data, "Authorization:", 14) == 0)
                        explicit_bzero(h->data, strlen(h->data));
        curl_slist_free_all(headers);
}

static struct curl_slist *request_headers(struct graph_conn *c, bool authorize,
                                          const char *content_type, const char *range)
{
        struct curl_slist *h = NULL, *n;
        char line[128];

        /* No "Expect: 100-continue" round trip before each chunk. */
        if (!(h = curl_slist_append(NULL, "Expect:")))
                return NULL;
        if (authorize && !(n = curl_slist_append(h, secret_str(c->auth))))
                goto fail;
        if (content_type) {
                snprintf(line, sizeof(line), "Content-Type: %s", content_type);
                if (!(n = curl_slist_append(h, line)))
                        goto fail;
        }
        if (range && !(n = curl_slist_append(h, range)))
                goto fail;
        return h;
fail:
        headers_free(h);
        return NULL;
}

/* One HTTPS request; the answer's body is in c->response. Returns -ENOMEM only. */
static int graph_request(struct graph_conn *c, const char *method, const char *url, bool authorize,
                         const char *content_type, const char *range, const void *body, size_t len,
                         struct graph_reply *ret)
{
        struct curl_slist *headers = request_headers(c, authorize, content_type, range);
        CURL *e = c->curl;
        CURLcode r = CURLE_OK;
        curl_off_t retry_after = 0;

        if (!headers)
                return -ENOMEM;
        buf_reset(c->response);
        curl_easy_reset(e);
#define SET(opt, value)                                                                            \
        if (r == CURLE_OK)                                                                         \
        r = curl_easy_setopt(e, opt, value)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        if (c->t->ca_file)
                SET(CURLOPT_CAINFO, c->t->ca_file);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        SET(CURLOPT_CONNECTTIMEOUT, 10L);
        SET(CURLOPT_TIMEOUT, 300L);
        SET(CURLOPT_LOW_SPEED_LIMIT, 1024L);
        SET(CURLOPT_LOW_SPEED_TIME, 60L);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, "credbroker/" PACKAGE_VERSION);
        SET(CURLOPT_HTTPHEADER, headers);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, c->response);
        if (strcmp(method, "GET") == 0) {
                SET(CURLOPT_HTTPGET, 1L);
        } else {
                SET(CURLOPT_CUSTOMREQUEST, method);
                SET(CURLOPT_POSTFIELDS, body ? body : "");
                SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
#undef SET
        if (r == CURLE_OK)
                r = curl_easy_perform(e);
        *ret = (struct graph_reply){.curl = r};
        if (r == CURLE_OK) {
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &ret->status);
                if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
                    retry_after > 0)
                        ret->retry_after =
                            retry_after > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (unsigned)retry_after;
        }
        /* Drop libcurl's reference to the list before wiping and freeing it. */
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        headers_free(headers);
        return 0;
}

/* Graph's error code and message, filtered to printable ASCII and bounded. */
static void graph_error_text(const struct buf *body, char *code, size_t code_size, char *message,
                             size_t message_size)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *src[2] = {NULL, NULL};
        char *dst[2] = {code, message};
        size_t size[2] = {code_size, message_size};

        if (json_parse(buf_data(body), buf_len(body), &json) == 0) {
                const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
                src[0] = json_get_string(error, "code");
                src[1] = json_get_string(error, "message");
        }
        for (size_t k = 0; k < 2; k++) {
                size_t o = 0;
                for (const char *p = src[k]; p && *p && o + 1 < size[k]; p++)
                        dst[k][o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
                dst[k][o] = '\0';
        }
}

static void set_reason(struct graph_mail_outcome *ret, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_reason(struct graph_mail_outcome *ret, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(ret->reason, sizeof(ret->reason), fmt, ap);
        va_end(ap);
}

/* Why a 403: which permission or right the request lacked. */
static const char *deny_reason(const struct graph_conn *c, enum graph_stage stage, const char *code,
                               char *buf, size_t size)
{
        const char *as = c->acting_as ? c->acting_as : "the signed-in user's mailbox";

        if (strcmp(code, "ErrorSendAsDenied") == 0)
                snprintf(buf, size,
                         "sending From %s is denied: %s needs the Send As (or Send on Behalf) "
                         "right on it in Exchange, or the message must be From the mailbox",
                         c->t->from ? c->t->from : "that address", as);
        else if (stage == STAGE_DRAFT || stage == STAGE_SESSION || stage == STAGE_UPLOAD)
                snprintf(buf, size,
                         "a message over 3 MB, or one kept out of Sent Items, goes through a "
                         "draft (and upload sessions), which need the %s permission the token "
                         "lacks",
                         c->shared ? "Mail.ReadWrite.Shared" : "Mail.ReadWrite");
        else if (stage == STAGE_SEND)
                snprintf(buf, size,
                         "sending the draft of a message over 3 MB, or one kept out of Sent "
                         "Items, needs %s and %s; the token lacks one",
                         c->shared ? "Mail.Send.Shared" : "Mail.Send",
                         c->shared ? "Mail.ReadWrite.Shared" : "Mail.ReadWrite");
        else if (c->shared)
                snprintf(buf, size,
                         "sending as %s needs the delegated Mail.Send.Shared permission and the "
                         "Send As (or Send on Behalf) right on that mailbox; one is missing",
                         as);
        else if (!c->t->delegated)
                snprintf(buf, size,
                         "the app lacks the Mail.Send application permission (with admin "
                         "consent) for %s, or an application access policy excludes it",
                         as);
        else
                snprintf(buf, size, "the token lacks the Mail.Send permission");
        return buf;
}

/* Says why Graph was not reached; a proxy from the environment is named without its user name
 * and password (the same sentences as cli/graph.c's). */
static void describe_unreachable(const struct graph_conn *c, CURLcode r,
                                 struct graph_mail_outcome *ret)
{
        _cleanup_free_ char *shown = NULL;
        const char *variable = NULL, *proxy = graph_environment_proxy(&variable);
        long connect_code = 0;

        curl_easy_getinfo(c->curl, CURLINFO_HTTP_CONNECTCODE, &connect_code);
        if (proxy && config_proxy_redacted(proxy, &shown) == 0 && shown) {
                if (connect_code >= 300)
                        set_reason(ret,
                                   "the proxy %s (from %s) refused the connection to Microsoft "
                                   "Graph at %s (HTTP %ld to CONNECT)",
                                   shown, variable, c->t->graph_url, connect_code);
                else
                        set_reason(ret,
                                   "cannot reach Microsoft Graph at %s through the proxy %s (from "
                                   "%s; no_proxy lists the hosts reached directly): %s",
                                   c->t->graph_url, shown, variable, curl_easy_strerror(r));
                return;
        }
        set_reason(ret, "cannot reach Microsoft Graph at %s: %s", c->t->graph_url,
                   curl_easy_strerror(r));
}

/* Classifies an answer that was not the expected success. */
static void classify(const struct graph_conn *c, enum graph_stage stage,
                     const struct graph_reply *reply, struct graph_mail_outcome *ret)
{
        char code[81], message[301], why[300];
        long s = reply->status;

        *ret = (struct graph_mail_outcome){.http_status = s, .retry_after = reply->retry_after};
        if (reply->curl != CURLE_OK) {
                ret->result = GRAPH_MAIL_TEMPORARY;
                describe_unreachable(c, reply->curl, ret);
                return;
        }
        graph_error_text(c->response, code, sizeof(code), message, sizeof(message));
        if (s == 401) {
                ret->result = GRAPH_MAIL_TOKEN_REJECTED;
                set_reason(ret, "Graph rejected the access token (HTTP 401 %s): %s",
                           *code ? code : "InvalidAuthenticationToken", message);
        } else if (s == 403) {
                ret->result = GRAPH_MAIL_DENIED;
                set_reason(ret, "Graph denied the message (HTTP 403 %s): %s (Graph: %s)", code,
                           deny_reason(c, stage, code, why, sizeof(why)), message);
        } else if (s == 408 || s == 429 || s >= 500 ||
                   (s == 404 && stage != STAGE_SENDMAIL && stage != STAGE_DRAFT)) {
                /* A draft or upload session that vanished: the whole message goes again later. */
                ret->result = GRAPH_MAIL_TEMPORARY;
                set_reason(ret, "Graph is unavailable for now (HTTP %ld %s): %s", s, code,
                           *message ? message : "no error details");
        } else {
                ret->result = GRAPH_MAIL_PERMANENT;
                set_reason(ret, "Graph refused the message (HTTP %ld %s): %s", s, code,
                           *message ? message : "no error details");
        }
}

static void progress_add(struct graph_conn *c, uint64_t n)
{
        c->done += n;
        if (c->progress)
                c->progress(c->done, c->total, c->userdata);
}

static int send_direct(struct graph_conn *c, const uint8_t *message, size_t len,
                       struct graph_mail_outcome *ret)
{
        _cleanup_free_ char *url = NULL, *b64 = NULL;
        struct graph_reply reply;
        size_t b64_len;
        int r;

        b64 = base64_encode(message, len, &b64_len);
        if (!b64 || asprintf(&url, "%s/sendMail", c->base) < 0)
                return -ENOMEM;
        r = graph_request(c, "POST", url, true, "text/plain", NULL, b64, b64_len, &reply);
        if (r < 0)
                return r;
        if (reply.curl == CURLE_OK && reply.status == 202) {
                *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_SENT, .http_status = 202};
                progress_add(c, len);
                return 0;
        }
        classify(c, STAGE_SENDMAIL, &reply, ret);
        return 0;
}

/* A string member of the JSON answer, bounded and printable; NULL otherwise. */
static char *response_string(const struct graph_conn *c, const char *key, size_t max)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *v;

        if (json_parse(buf_data(c->response), buf_len(c->response), &json) < 0)
                return NULL;
        v = json_get_string(json, key);
        if (!v || !*v || strlen(v) > max)
                return NULL;
        for (const char *p = v; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f)
                        return NULL;
        return strdup(v);
}

/* POSTs the message without its large parts as a MIME draft: its URL in *ret_url. */
static int create_draft(struct graph_conn *c, const struct mail_split *split, char **ret_url,
                        struct graph_mail_outcome *ret)
{
        _cleanup_free_ char *url = NULL, *b64 = NULL, *id = NULL;
        struct graph_reply reply;
        size_t b64_len;
        char *escaped;
        int r;

        b64 = base64_encode(split->rest, split->rest_len, &b64_len);
        if (!b64 || asprintf(&url, "%s/messages", c->base) < 0)
                return -ENOMEM;
        r = graph_request(c, "POST", url, true, "text/plain", NULL, b64, b64_len, &reply);
        if (r < 0)
                return r;
        if (reply.curl != CURLE_OK || reply.status != 201) {
                classify(c, STAGE_DRAFT, &reply, ret);
                return 0;
        }
        id = response_string(c, "id", GRAPH_ID_MAX);
        if (!id) {
                *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_TEMPORARY,
                                                   .http_status = reply.status};
                set_reason(ret, "Graph created the draft but named no usable id");
                return 0;
        }
        escaped = escape_segment(id);
        if (!escaped)
                return -ENOMEM;
        r = asprintf(ret_url, "%s/%s", url, escaped);
        free(escaped);
        return r < 0 ? -ENOMEM : 1;
}

static cJSON *attachment_item(const struct mail_part *p)
{
        cJSON *doc = cJSON_CreateObject(), *item;

        item = doc ? cJSON_AddObjectToObject(doc, "AttachmentItem") : NULL;
        if (!item || !cJSON_AddStringToObject(item, "attachmentType", "file") ||
            !cJSON_AddStringToObject(item, "name", p->filename ? p->filename : "attachment") ||
            !cJSON_AddNumberToObject(item, "size", (double)p->len) ||
            !cJSON_AddStringToObject(item, "contentType",
                                     p->content_type ? p->content_type
                                                     : "application/octet-stream") ||
            !cJSON_AddBoolToObject(item, "isInline", p->is_inline) ||
            (p->content_id && !cJSON_AddStringToObject(item, "contentId", p->content_id))) {
                cJSON_Delete(doc);
                return NULL;
        }
        return doc;
}

/* Creates the upload session for one part: the pre-authenticated upload URL in *ret_url. */
static int create_session(struct graph_conn *c, const char *draft_url, const struct mail_part *p,
                          char **ret_url, struct graph_mail_outcome *ret)
{
        _cleanup_json_ cJSON *doc = attachment_item(p);
        _cleanup_free_ char *url = NULL;
        struct graph_reply reply;
        char *text, *upload;
        int r;

        if (!doc || asprintf(&url, "%s/attachments/createUploadSession", draft_url) < 0)
                return -ENOMEM;
        text = cJSON_PrintUnformatted(doc);
        if (!text)
                return -ENOMEM;
        r = graph_request(c, "POST", url, true, "application/json", NULL, text, strlen(text),
                          &reply);
        json_free_string(text);
        if (r < 0)
                return r;
        if (reply.curl != CURLE_OK || reply.status != 201) {
                classify(c, STAGE_SESSION, &reply, ret);
                return 0;
        }
        upload = response_string(c, "uploadUrl", GRAPH_URL_MAX);
        if (!upload || strncmp(upload, "https://", 8) != 0) {
                free(upload);
                *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_TEMPORARY,
                                                   .http_status = reply.status};
                set_reason(ret, "Graph created an upload session without a usable uploadUrl");
                return 0;
        }
        *ret_url = upload;
        return 1;
}

/* The offset nextExpectedRanges names ("N" or "N-..."), when within [0, len]. */
static bool next_expected(const struct graph_conn *c, size_t len, size_t *ret)
{
        _cleanup_json_ cJSON *json = NULL;
        const cJSON *ranges, *first;
        char *end;
        unsigned long long v;

        if (json_parse(buf_data(c->response), buf_len(c->response), &json) < 0)
                return false;
        ranges = cJSON_GetObjectItemCaseSensitive(json, "nextExpectedRanges");
        first = cJSON_IsArray(ranges) ? cJSON_GetArrayItem(ranges, 0) : NULL;
        if (!cJSON_IsString(first) || first->valuestring[0] < '0' || first->valuestring[0] > '9')
                return false;
        errno = 0;
        v = strtoull(first->valuestring, &end, 10);
        if (errno || (*end && *end != '-') || v > len)
                return false;
        *ret = (size_t)v;
        return true;
}

static bool retriable(const struct graph_reply *r)
{
        return r->curl != CURLE_OK || r->status == 408 || r->status == 416 ||
               (r->status == 429 && r->retry_after <= RETRY_SLEEP_MAX) || r->status >= 500;
}

static void pause_seconds(unsigned s)
{
        struct timespec ts = {.tv_sec = s > RETRY_SLEEP_MAX ? RETRY_SLEEP_MAX : s};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* PUTs one chunk from *offset; on success moves *offset on. 1 done (201), 0 go on, < 0 errno;
 * a failure that is not retried leaves its answer in *failed. */
static int put_chunk(struct graph_conn *c, const char *upload_url, const struct mail_part *p,
                     size_t *offset, struct graph_reply *failed)
{
        size_t n = p->len - *offset < GRAPH_UPLOAD_CHUNK ? p->len - *offset : GRAPH_UPLOAD_CHUNK;
        char range[96];
        size_t next;
        int r;

        snprintf(range, sizeof(range), "Content-Range: bytes %zu-%zu/%zu", *offset, *offset + n - 1,
                 p->len);
        /* The upload URL is pre-authenticated: no Authorization header with it. */
        r = graph_request(c, "PUT", upload_url, false, "application/octet-stream", range,
                          p->data + *offset, n, failed);
        if (r < 0)
                return r;
        if (failed->curl == CURLE_OK && failed->status == 201) {
                progress_add(c, p->len - *offset);
                *offset = p->len;
                return 1;
        }
        if (failed->curl == CURLE_OK && failed->status == 200 && next_expected(c, p->len, &next) &&
            next > *offset) {
                progress_add(c, next - *offset);
                *offset = next;
                return 0;
        }
        if (failed->curl == CURLE_OK && failed->status == 200)
                failed->status = 502; /* a 200 that does not move on: retried as broken */
        return 2;
}

/* Asks the upload session where to go on after a failed chunk (a chunk whose answer was lost may
 * have arrived). */
static void resume_offset(struct graph_conn *c, const char *upload_url, const struct mail_part *p,
                          size_t *offset)
{
        struct graph_reply reply;
        size_t next;

        if (graph_request(c, "GET", upload_url, false, NULL, NULL, NULL, 0, &reply) < 0)
                return;
        if (reply.curl == CURLE_OK && reply.status == 200 && next_expected(c, p->len, &next) &&
            next >= *offset) {
                progress_add(c, next - *offset);
                *offset = next;
        }
}

/* The upload URL carries its own token: wiped before it is freed, whatever path leaves. */
static void erase_freep(char **p)
{
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

/* Uploads one part in chunks, resuming from nextExpectedRanges after a failed chunk. 1 done, 0
 * with *ret filled, < 0 errno. */
static int upload_part(struct graph_conn *c, const char *draft_url, const struct mail_part *p,
                       struct graph_mail_outcome *ret)
{
        _cleanup_(erase_freep) char *upload_url = NULL;
        struct graph_reply reply;
        unsigned failures = 0;
        size_t offset = 0;
        int r;

        r = create_session(c, draft_url, p, &upload_url, ret);
        if (r <= 0)
                return r;
        while (offset < p->len) {
                r = put_chunk(c, upload_url, p, &offset, &reply);
                if (r < 0)
                        return r;
                if (r == 1)
                        break;
                if (r == 0) {
                        failures = 0;
                        continue;
                }
                if (!retriable(&reply) || ++failures > UPLOAD_RETRIES) {
                        classify(c, STAGE_UPLOAD, &reply, ret);
                        return 0;
                }
                pause_seconds(reply.retry_after ? reply.retry_after : failures);
                resume_offset(c, upload_url, p, &offset);
        }
        return 1;
}

/* After a send whose answer did not arrive (or a 404: libcurl resends a request once when a reused
 * connection dies before any answer, and the first one may have gone through): Exchange removes a
 * draft it has taken for sending, so a draft that is gone (404) was sent; one still there was
 * not, and may be sent again later. */
static bool draft_was_sent(struct graph_conn *c, const char *draft_url)
{
        struct graph_reply reply;

        if (graph_request(c, "GET", draft_url, true, NULL, NULL, NULL, 0, &reply) < 0)
                return false;
        return reply.curl == CURLE_OK && reply.status == 404;
}

static void delete_draft(struct graph_conn *c, const char *draft_url)
{
        struct graph_reply reply;

        (void)graph_request(c, "DELETE", draft_url, true, NULL, NULL, NULL, 0, &reply);
}

static int split_message(const uint8_t *message, size_t len, struct mail_split *split,
                         struct graph_mail_outcome *ret)
{
        static const size_t thresholds[] = {SPLIT_THRESHOLD, SPLIT_THRESHOLD_LAST};
        int r;

        for (size_t i = 0; i < ELEMENTSOF(thresholds); i++) {
                r = mail_split(message, len, thresholds[i], split);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_PERMANENT};
                        set_reason(ret, "the message cannot be split into its MIME parts (%s)",
                                   strerror(-r));
                        return 0;
                }
                if (split->rest_len <= GRAPH_MIME_DIRECT_MAX)
                        return 1;
                mail_split_free(split);
        }
        *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_PERMANENT};
        set_reason(ret,
                   "the message without its attachments is over %u bytes, more than one "
                   "Graph request can carry",
                   GRAPH_MIME_DIRECT_MAX);
        return 0;
}

/* PidTagDeleteAfterSubmit on the draft: Exchange removes the message from Sent Items once it
 * is submitted. MIME sendMail has no saveToSentItems, so --save-to-sent-items no takes the
 * draft path. 1 when set, 0 with *ret filled when Graph refused. */
static int keep_out_of_sent_items(struct graph_conn *c, const char *draft_url,
                                  struct graph_mail_outcome *ret)
{
        static const char patch[] =
            "{\"singleValueExtendedProperties\":[{\"id\":\"Boolean 0x0E01\",\"value\":\"true\"}]}";
        struct graph_reply reply;
        int r = graph_request(c, "PATCH", draft_url, true, "application/json", NULL, patch,
                              sizeof(patch) - 1, &reply);

        if (r < 0)
                return r;
        if (reply.curl == CURLE_OK && reply.status == 200)
                return 1;
        classify(c, STAGE_DRAFT, &reply, ret);
        return 0;
}

/* Draft + upload sessions + send. */
static int send_large(struct graph_conn *c, const uint8_t *message, size_t len,
                      struct graph_mail_outcome *ret)
{
        _cleanup_free_ char *draft_url = NULL, *send_url = NULL;
        struct mail_split split = {0};
        struct graph_reply reply;
        int r;

        r = split_message(message, len, &split, ret);
        if (r <= 0)
                return r;
        c->total = split.rest_len;
        for (size_t i = 0; i < split.n_parts; i++)
                c->total += split.parts[i].len;
        r = create_draft(c, &split, &draft_url, ret);
        if (r <= 0)
                goto out;
        if (!c->t->save_to_sent_items) {
                r = keep_out_of_sent_items(c, draft_url, ret);
                if (r <= 0)
                        goto fail;
        }
        progress_add(c, split.rest_len);
        for (size_t i = 0; i < split.n_parts; i++) {
                r = upload_part(c, draft_url, &split.parts[i], ret);
                if (r <= 0)
                        goto fail;
        }
        if (asprintf(&send_url, "%s/send", draft_url) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        r = graph_request(c, "POST", send_url, true, "application/json", NULL, NULL, 0, &reply);
        if (r < 0)
                goto fail;
        if ((reply.curl == CURLE_OK && reply.status == 202) ||
            ((reply.curl != CURLE_OK || reply.status >= 500 || reply.status == 404) &&
             draft_was_sent(c, draft_url))) {
                *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_SENT,
                                                   .http_status = reply.status};
                r = 0;
                goto out;
        }
        classify(c, STAGE_SEND, &reply, ret);
        r = 0;
fail:
        /* Leave no half-built draft in the mailbox; best effort. */
        delete_draft(c, draft_url);
        r = r < 0 ? r : 0;
out:
        mail_split_free(&split);
        return r;
}

static int conn_open(struct graph_conn *c, const char *access_token)
{
        static const char prefix[] = "Authorization: Bearer ";
        size_t n = strlen(access_token);
        int r;

        r = secret_new(sizeof(prefix) + n, &c->auth);
        if (r < 0)
                return r;
        if (secret_append(c->auth, prefix, sizeof(prefix) - 1) < 0 ||
            secret_append(c->auth, access_token, n) < 0)
                return -ENOBUFS;
        r = buf_new(GRAPH_RESPONSE_MAX, &c->response);
        if (r < 0)
                return r;
        r = base_url(c->t, c->t->graph_url, &c->base);
        if (r < 0)
                return r;
        c->acting_as = path_mailbox(c->t);
        c->shared = c->t->delegated && c->acting_as;
        c->curl = curl_easy_init();
        return c->curl ? 0 : -ENOMEM;
}

static void conn_close(struct graph_conn *c)
{
        if (c->curl)
                curl_easy_cleanup(c->curl);
        secret_free(c->auth);
        buf_free(c->response);
        free(c->base);
}

static bool target_is_valid(const struct graph_mail_target *t, const char *access_token)
{
        return t && t->graph_url && strncmp(t->graph_url, "https://", 8) == 0 &&
               strlen(t->graph_url) < 512 && !strpbrk(t->graph_url, " \t\r\n") && access_token &&
               *access_token && strlen(access_token) <= 16384 &&
               !strpbrk(access_token, " \t\r\n") && (t->delegated || t->mailbox);
}

int graph_mail_send(const struct graph_mail_target *t, const char *access_token,
                    const uint8_t *message, size_t len, graph_mail_progress_fn *progress,
                    void *userdata, struct graph_mail_outcome *ret)
{
        struct graph_conn c = {.t = t, .progress = progress, .userdata = userdata, .total = len};
        int r;

        if (!target_is_valid(t, access_token) || !message || !ret)
                return -EINVAL;
        if (len == 0 || len > GRAPH_MESSAGE_MAX) {
                *ret = (struct graph_mail_outcome){.result = GRAPH_MAIL_PERMANENT};
                set_reason(ret, "the message is %s (at most %u bytes go through Graph)",
                           len ? "too large" : "empty", GRAPH_MESSAGE_MAX);
                return 0;
        }
        r = conn_open(&c, access_token);
        if (r >= 0)
                r = len <= GRAPH_MIME_DIRECT_MAX && t->save_to_sent_items
                        ? send_direct(&c, message, len, ret)
                        : send_large(&c, message, len, ret);
        conn_close(&c);
        return r;
}
