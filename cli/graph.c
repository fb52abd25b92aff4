/* Graph sendMail; see graph.h. Same libcurl discipline as the broker: HTTPS only, verified
 * TLS, no redirects, timeouts, a capped response. A proxy comes from the environment as for any
 * libcurl program (https_proxy, all_proxy, no_proxy and their upper-case forms): nothing here
 * sets CURLOPT_PROXY, so libcurl's reading of them stays on (docs/operations.md). */
#include "build-config.h"

#include "graph.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "client.h"
#include "config.h"
#include "display.h"
#include "graph-send.h"
#include "json.h"

#define GRAPH_RESPONSE_MAX (64 * 1024)

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        return buf_put(userdata, data, size * n) < 0 ? 0 : size * n;
}

static int report_graph_error(long status, const struct buf *body)
{
        _cleanup_json_ cJSON *json = NULL;
        const char *code = NULL, *message = NULL;

        if (json_parse(buf_data(body), buf_len(body), &json) == 0) {
                const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
                code = json_get_string(error, "code");
                message = json_get_string(error, "message");
        }
        /* Graph's code and message are upstream text: filtered like every untrusted string. */
        fprintf(stderr, "credbroker: Graph refused the message (HTTP %ld", status);
        if (code) {
                fputc(' ', stderr);
                display_text_max(stderr, code, 80);
        }
        fputs("): ", stderr);
        display_text_max(stderr, message ? message : "no error details", 300);
        fputc('\n', stderr);
        if (status == 429 || status >= 500)
                return EXIT_TEMPFAIL;
        if (status == 401 || status == 403)
                return EXIT_NOPERM;
        if (status == 400 || status == 413)
                return EXIT_DATAERR;
        return EXIT_UNAVAILABLE;
}

/* Says why Graph was not reached; a proxy from the environment is named, without its user name
 * and password. */
static void report_unreachable(CURL *e, CURLcode c, const char *graph_base)
{
        _cleanup_free_ char *shown = NULL;
        const char *variable = NULL, *proxy = graph_environment_proxy(&variable);
        long connect_code = 0;

        curl_easy_getinfo(e, CURLINFO_HTTP_CONNECTCODE, &connect_code);
        if (proxy && config_proxy_redacted(proxy, &shown) == 0 && shown) {
                if (connect_code >= 300) {
                        fprintf(stderr,
                                "credbroker: the proxy %s (from %s) refused the connection to "
                                "Microsoft Graph at %s (HTTP %ld to CONNECT)\n",
                                shown, variable, graph_base, connect_code);
                        return;
                }
                if (c == CURLE_COULDNT_RESOLVE_PROXY || c == CURLE_COULDNT_CONNECT) {
                        fprintf(stderr,
                                "credbroker: cannot reach Microsoft Graph at %s through the proxy "
                                "%s (from %s; no_proxy lists the hosts reached directly): %s\n",
                                graph_base, shown, variable, curl_easy_strerror(c));
                        return;
                }
        }
        fprintf(stderr, "credbroker: cannot reach Microsoft Graph at %s: %s\n", graph_base,
                curl_easy_strerror(c));
}

const char *graph_base_of(const cJSON *token_reply, const char *configured)
{
        const char *graph = json_get_string(token_reply, "graph");

        /* The same check as the broker's for an account's graph: https:// and bounded. */
        if (graph && strncmp(graph, "https://", 8) == 0 && strlen(graph) < 512 &&
            !strpbrk(graph, " \t\r\n"))
                return graph;
        return configured;
}

int graph_send_mail(const struct graph_request *r)
{
        _cleanup_buf_ struct buf *response = NULL;
        struct curl_slist *headers = NULL;
        char *url = NULL, *mailbox = NULL;
        CURLcode c = CURLE_OK;
        long status = 0;
        CURL *e;
        int ret;

        if (buf_new(GRAPH_RESPONSE_MAX, &response) < 0)
                return EXIT_SOFTWARE;
        e = curl_easy_init();
        if (!e)
                return EXIT_SOFTWARE;
        if (r->mailbox) {
                mailbox = curl_easy_escape(e, r->mailbox, 0);
                if (!mailbox ||
                    asprintf(&url, "%s/v1.0/users/%s/sendMail", r->graph_base, mailbox) < 0)
                        url = NULL;
        } else if (asprintf(&url, "%s/v1.0/me/sendMail", r->graph_base) < 0) {
                url = NULL;
        }
        headers = curl_slist_append(NULL, r->mime ? "Content-Type: text/plain"
                                                  : "Content-Type: application/json");
        if (!url || !headers) {
                ret = EXIT_SOFTWARE;
                goto out;
        }

#define SET(opt, value)                                                                            \
        if (c == CURLE_OK)                                                                         \
        c = curl_easy_setopt(e, opt, value)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_CAINFO, r->ca_bundle);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        SET(CURLOPT_CONNECTTIMEOUT, 10L);
        SET(CURLOPT_TIMEOUT, 60L);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, "credbroker/" PACKAGE_VERSION);
        SET(CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
        SET(CURLOPT_XOAUTH2_BEARER, r->access_token);
        SET(CURLOPT_HTTPHEADER, headers);
        SET(CURLOPT_POSTFIELDS, r->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->body));
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, response);
#undef SET
        if (c == CURLE_OK)
                c = curl_easy_perform(e);
        if (c != CURLE_OK) {
                report_unreachable(e, c, r->graph_base);
                ret = EXIT_TEMPFAIL;
                goto out;
        }
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        ret = status == 202 ? 0 : report_graph_error(status, response);
out:
        curl_slist_free_all(headers);
        curl_free(mailbox);
        free(url);
        curl_easy_cleanup(e);
        return ret;
}
