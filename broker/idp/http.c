/* HTTPS POSTs over libcurl multi, driven by the broker's epoll loop; see http.h. Transfers
 * follow libcurl-security.md for a privileged program: HTTPS only, no redirects, verified TLS
 * against the configured CA, capped bodies, timeouts, no signals, no verbose output. */
#include "build-config.h"

#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "config.h"
#include "event.h"
#include "log.h"
#include "util.h"

#define IDP_BODY_MAX      (64 * 1024)
#define IDP_MAX_TRANSFERS 64

struct idp {
        int epfd;
        CURLM *multi;
        struct watch timer; /* timerfd that fires curl's timeouts */
        struct idp_options options;
        char *ca_bundle;
        char *proxy, *no_proxy;
        char *proxy_shown;          /* the proxy without user name and password, for messages */
        struct transfer *transfers; /* in flight, for cleanup */
        unsigned n_transfers;
};

struct transfer {
        struct idp *idp;
        CURL *easy;
        struct curl_slist *headers;
        struct secret *form;
        size_t form_sent;             /* how much of form curl has read */
        struct secret *authorization; /* an extra header line, or NULL */
        struct secret *body;
        bool body_overflow;
        uint32_t retry_after;
        uint64_t sent_at_usec;
        idp_done_fn done;
        idp_raw_done_fn raw_done; /* instead of done: the answer unparsed (device endpoint) */
        void *userdata;
        char *url; /* for messages */
        struct transfer *prev, *next;
};

/* One per socket curl asks us to watch. */
struct curl_socket_watch {
        struct watch watch;
        struct idp *idp;
};

/* --- one transfer: curl reads the form and writes the answer ---------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *userdata)
{
        struct transfer *t = userdata;
        size_t len = size * n;

        if (secret_append(t->body, data, len) < 0) {
                t->body_overflow = true;
                return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
        }
        return len;
}

/* curl reads the form straight from secret memory: with CURLOPT_POSTFIELDS it would copy a
 * small body into its request buffer, a copy we could not wipe. */
static size_t on_form_read(char *buffer, size_t size, size_t n, void *userdata)
{
        struct transfer *t = userdata;
        size_t left = secret_len(t->form) - t->form_sent;
        size_t len = size * n < left ? size * n : left;

        memcpy(buffer, secret_data(t->form) + t->form_sent, len);
        t->form_sent += len;
        return len;
}

/* Lets curl send the form again, e.g. on a fresh connection when a reused one had died. */
static int on_form_seek(void *userdata, curl_off_t offset, int origin)
{
        struct transfer *t = userdata;

        if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > secret_len(t->form))
                return CURL_SEEKFUNC_CANTSEEK;
        t->form_sent = (size_t)offset;
        return CURL_SEEKFUNC_OK;
}

static size_t on_header(char *data, size_t size, size_t n, void *userdata)
{
        struct transfer *t = userdata;
        size_t len = size * n;
        static const char name[] = "retry-after:";
        char value[64];

        if (len > sizeof(name) - 1 && len - (sizeof(name) - 1) < sizeof(value) &&
            strncasecmp(data, name, sizeof(name) - 1) == 0) {
                size_t vlen = len - (sizeof(name) - 1);

                memcpy(value, data + sizeof(name) - 1, vlen);
                value[vlen] = 0;
                char *v = value;
                while (*v == ' ' || *v == '\t')
                        v++;
                v[strcspn(v, "\r\n")] = 0;
                for (size_t end = strlen(v); end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t');)
                        v[--end] = 0;
                t->retry_after = idp_parse_retry_after(v, time(NULL));
        }
        return len;
}

static curl_socket_t open_cloexec_socket(void *userdata, curlsocktype purpose,
                                         struct curl_sockaddr *address)
{
        return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

static void transfer_free(struct transfer *t)
{
        if (!t)
                return;
        if (t->easy) {
                curl_multi_remove_handle(t->idp->multi, t->easy);
                curl_easy_cleanup(t->easy);
        }
        curl_slist_free_all(t->headers);
        secret_free(t->form);
        secret_free(t->authorization);
        secret_free(t->body);
        free(t->url);
        if (t->prev)
                t->prev->next = t->next;
        else if (t->idp->transfers == t)
                t->idp->transfers = t->next;
        if (t->next)
                t->next->prev = t->prev;
        t->idp->n_transfers--;
        free(t);
}

/* Whether no_proxy sends url's host around the proxy: "*", the host itself, or a domain it is
 * in (".example.com" or "example.com"), as libcurl reads the list. Names only: an address range
 * is not matched, which costs at most a less precise message. */
static bool proxy_bypassed(const char *no_proxy, const char *url)
{
        const char *host = strstr(url, "://");
        size_t host_len;

        if (!no_proxy || !host)
                return false;
        host += 3;
        host_len = strcspn(host, ":/?#");
        for (const char *e = no_proxy; *e;) {
                size_t len;
                e += strspn(e, ", ");
                len = strcspn(e, ", ");
                if (len == 1 && *e == '*')
                        return true;
                if (len > 0 && *e == '.') {
                        e++;
                        len--;
                }
                if (len > 0 && len <= host_len && strncasecmp(host + host_len - len, e, len) == 0 &&
                    (len == host_len || host[host_len - len - 1] == '.'))
                        return true;
                e += len;
        }
        return false;
}

/* One sentence for a transfer that got no answer; through the configured proxy, it names the
 * proxy (without its credentials) and says whether it refused the tunnel or was not reached. */
static void describe_failure(const struct transfer *t, CURLcode code, char *buf, size_t size)
{
        const struct idp *idp = t->idp;
        long connect_code = 0;

        if (t->body_overflow) {
                snprintf(buf, size, "response body larger than %d bytes", IDP_BODY_MAX);
                return;
        }
        if (!idp->proxy || proxy_bypassed(idp->no_proxy, t->url)) {
                snprintf(buf, size, "%s", curl_easy_strerror(code));
                return;
        }
        curl_easy_getinfo(t->easy, CURLINFO_HTTP_CONNECTCODE, &connect_code);
        if (connect_code >= 300)
                snprintf(buf, size,
                         "the proxy %s refused the connection to the identity provider (HTTP %ld "
                         "to CONNECT): check the proxy's rules for this host",
                         idp->proxy_shown, connect_code);
        else if (code == CURLE_COULDNT_RESOLVE_PROXY || code == CURLE_COULDNT_CONNECT)
                snprintf(buf, size, "cannot reach the proxy %s: %s", idp->proxy_shown,
                         curl_easy_strerror(code));
        else
                snprintf(buf, size, "%s (through the proxy %s)", curl_easy_strerror(code),
                         idp->proxy_shown);
}

static void transfer_finish(struct transfer *t, CURLcode code)
{
        char failure[512];

        struct idp_result result = {.sent_at_usec = t->sent_at_usec};
        long status = 0;

        if (t->raw_done) {
                struct idp_raw_response raw = {.retry_after = t->retry_after};
                if (code == CURLE_OK) {
                        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
                        raw.http_status = status;
                        raw.body = secret_data(t->body);
                        raw.len = secret_len(t->body);
                } else {
                        describe_failure(t, code, failure, sizeof(failure));
                        raw.failure = failure;
                }
                t->raw_done(&raw, t->userdata);
                transfer_free(t);
                return;
        }
        if (code == CURLE_OK) {
                curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
                idp_parse_token_response(status, secret_data(t->body), secret_len(t->body),
                                         t->retry_after, &result);
        } else {
                describe_failure(t, code, failure, sizeof(failure));
                idp_result_fail(&result, IDP_TRANSIENT, "%s", failure);
        }
        t->done(&result, t->userdata);
        idp_result_clear(&result);
        transfer_free(t);
}

/* --- curl multi <-> epoll: sockets and the timer ---------------------------------------- */

static void check_finished(struct idp *idp)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(idp->multi, &left))) {
                struct transfer *t = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
                transfer_finish(t, msg->data.result);
        }
}

static void on_socket_ready(struct watch *w, uint32_t events)
{
        struct curl_socket_watch *sw = container_of(w, struct curl_socket_watch, watch);
        struct idp *idp = sw->idp;
        int flags = 0, running;

        if (events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(idp->multi, w->fd, flags, &running);
        check_finished(idp);
}

static void on_timer(struct watch *w, uint32_t events)
{
        struct idp *idp = container_of(w, struct idp, timer);
        uint64_t expirations;
        int running;

        (void)!read(w->fd, &expirations, sizeof(expirations));
        curl_multi_socket_action(idp->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_finished(idp);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        struct idp *idp = userp;
        struct curl_socket_watch *sw = socketp;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                if (sw) {
                        curl_multi_assign(idp->multi, fd, NULL);
                        event_release(idp->epfd, &sw->watch, sw, free);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;
        if (!sw) {
                sw = calloc(1, sizeof(*sw));
                if (!sw)
                        return -1;
                sw->watch = (struct watch){.fd = fd, .fn = on_socket_ready};
                sw->idp = idp;
                if (event_add(idp->epfd, &sw->watch, events) < 0) {
                        free(sw);
                        return -1;
                }
                curl_multi_assign(idp->multi, fd, sw);
        } else if (event_modify(idp->epfd, &sw->watch, events) < 0) {
                return -1;
        }
        return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
        struct idp *idp = userp;
        struct itimerspec its = {0};

        if (timeout_ms == 0)
                its.it_value.tv_nsec = 1; /* as soon as possible, but from the loop */
        else if (timeout_ms > 0) {
                its.it_value.tv_sec = timeout_ms / 1000;
                its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000;
        }
        return timerfd_settime(idp->timer.fd, 0, &its, NULL) < 0 ? -1 : 0;
}

int idp_new(int epfd, const struct idp_options *options, struct idp **ret)
{
        struct idp *idp;
        int r;

        idp = calloc(1, sizeof(*idp));
        if (!idp)
                return -ENOMEM;
        idp->epfd = epfd;
        idp->options = *options;
        idp->ca_bundle = strdup(options->ca_bundle);
        idp->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        idp->timer.fn = on_timer;
        idp->multi = curl_multi_init();
        if (!idp->ca_bundle || idp->timer.fd < 0 || !idp->multi) {
                r = idp->timer.fd < 0 ? -errno : -ENOMEM;
                idp_free(idp);
                return r;
        }
        if ((options->proxy && (!(idp->proxy = strdup(options->proxy)) ||
                                config_proxy_redacted(options->proxy, &idp->proxy_shown) < 0)) ||
            (options->no_proxy && !(idp->no_proxy = strdup(options->no_proxy)))) {
                idp_free(idp);
                return -ENOMEM;
        }
        idp->options.ca_bundle = idp->ca_bundle;
        idp->options.proxy = idp->proxy;
        idp->options.no_proxy = idp->no_proxy;
        if (idp->proxy)
                log_info("Requests to the identity provider go through the proxy %s%s%s.",
                         idp->proxy_shown, idp->no_proxy ? ", except to " : "",
                         idp->no_proxy ? idp->no_proxy : "");
        curl_multi_setopt(idp->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        curl_multi_setopt(idp->multi, CURLMOPT_SOCKETDATA, idp);
        curl_multi_setopt(idp->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(idp->multi, CURLMOPT_TIMERDATA, idp);
        r = event_add(epfd, &idp->timer, EPOLLIN);
        if (r < 0) {
                idp_free(idp);
                return r;
        }
        *ret = idp;
        return 0;
}

void idp_free(struct idp *idp)
{
        if (!idp)
                return;
        /* Each caller hears about its transfer once, so it can release what it attached. */
        while (idp->transfers) {
                struct transfer *t = idp->transfers;
                struct idp_result result = {.sent_at_usec = t->sent_at_usec};

                if (t->raw_done) {
                        struct idp_raw_response raw = {.failure = "cancelled: the broker is "
                                                                  "stopping"};
                        t->raw_done(&raw, t->userdata);
                        transfer_free(t);
                        continue;
                }
                idp_result_fail(&result, IDP_TRANSIENT, "cancelled: the broker is stopping");
                t->done(&result, t->userdata);
                idp_result_clear(&result);
                transfer_free(t);
        }
        if (idp->multi)
                curl_multi_cleanup(idp->multi);
        if (idp->timer.fd >= 0) {
                event_remove(idp->epfd, &idp->timer);
                close(idp->timer.fd);
        }
        free(idp->ca_bundle);
        if (idp->proxy)
                explicit_bzero(idp->proxy, strlen(idp->proxy));
        free(idp->proxy);
        free(idp->proxy_shown);
        free(idp->no_proxy);
        free(idp);
}

/* --- starting a transfer ---------------------------------------------------------------- */

static int transfer_setup(struct idp *idp, struct transfer *t, const char *url)
{
        CURL *e = t->easy;
        CURLcode c = CURLE_OK;

        t->headers = curl_slist_append(NULL, "Accept: application/json");
        if (t->headers && t->authorization &&
            !curl_slist_append(t->headers, secret_str(t->authorization)))
                return -ENOMEM;
        if (!t->headers ||
            !curl_slist_append(t->headers, "Content-Type: application/x-www-form-urlencoded"))
                return -ENOMEM;
#define SET(opt, value)                                                                            \
        if (c == CURLE_OK)                                                                         \
        c = curl_easy_setopt(e, opt, value)
        SET(CURLOPT_URL, url);
        SET(CURLOPT_PROTOCOLS_STR, "https");
        SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_CAINFO, idp->options.ca_bundle);
        /* ca_bundle alone: libcurl's default CA directory (/etc/ssl/certs) would be read on
         * each new connection besides it, every certificate again, 3.5 MB of heap kept. */
        SET(CURLOPT_CAPATH, NULL);
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
        SET(CURLOPT_CONNECTTIMEOUT, (long)idp->options.connect_timeout_sec);
        SET(CURLOPT_TIMEOUT, (long)idp->options.timeout_sec);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_USERAGENT, "credbroker/" PACKAGE_VERSION);
        SET(CURLOPT_HTTPHEADER, t->headers);
        /* HTTP/1.1: over HTTP/2 the form would also pass through nghttp2's frame buffers, which
         * are freed without a wipe (curl's memory functions do not reach them). One small POST
         * gains nothing from HTTP/2. */
        SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)secret_len(t->form));
        SET(CURLOPT_READFUNCTION, on_form_read);
        SET(CURLOPT_READDATA, t);
        SET(CURLOPT_SEEKFUNCTION, on_form_seek);
        SET(CURLOPT_SEEKDATA, t);
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)IDP_BODY_MAX);
        SET(CURLOPT_WRITEFUNCTION, on_body);
        SET(CURLOPT_WRITEDATA, t);
        SET(CURLOPT_HEADERFUNCTION, on_header);
        SET(CURLOPT_HEADERDATA, t);
        SET(CURLOPT_OPENSOCKETFUNCTION, open_cloexec_socket);
        /* Without a configured proxy libcurl reads https_proxy and no_proxy from the
         * environment (a systemd Environment= line), which is left as it is. */
        if (idp->proxy)
                SET(CURLOPT_PROXY, idp->proxy);
        if (idp->no_proxy)
                SET(CURLOPT_NOPROXY, idp->no_proxy);
        SET(CURLOPT_PRIVATE, t);
#undef SET
        return c == CURLE_OK ? 0 : -EINVAL;
}

/* Starts a POST of form (taken, even on failure) to url; exactly one of done and raw_done.
 * Each transfer has its own easy handle, but the connections belong to the one multi handle's
 * cache: the next request to the same host reuses the kept TLS connection (no handshake), and
 * one the server closed meanwhile is dropped and replaced (on_form_seek lets curl resend the
 * form). Never CURLOPT_FORBID_REUSE or CURLOPT_FRESH_CONNECT here: tests/integration/
 * connection-reuse.test.js counts the handshakes. */
static int post_form(struct idp *idp, const char *url, struct secret **form,
                     struct secret **authorization, idp_done_fn done, idp_raw_done_fn raw_done,
                     void *userdata)
{
        struct transfer *t;
        int r;

        if (idp->n_transfers >= IDP_MAX_TRANSFERS) {
                r = -EBUSY;
                goto fail;
        }
        if (strncmp(url, "https://", 8) != 0) {
                r = -EPROTONOSUPPORT;
                goto fail;
        }
        t = calloc(1, sizeof(*t));
        if (!t) {
                r = -ENOMEM;
                goto fail;
        }
        t->idp = idp;
        t->done = done;
        t->raw_done = raw_done;
        t->userdata = userdata;
        t->form = TAKE_PTR(*form);
        t->authorization = authorization ? TAKE_PTR(*authorization) : NULL;
        t->url = strdup(url);
        t->next = idp->transfers;
        if (t->next)
                t->next->prev = t;
        idp->transfers = t;
        idp->n_transfers++;

        r = t->url ? secret_new(IDP_BODY_MAX, &t->body) : -ENOMEM;
        if (r == 0) {
                t->easy = curl_easy_init();
                r = t->easy ? transfer_setup(idp, t, url) : -ENOMEM;
        }
        if (r == 0 && curl_multi_add_handle(idp->multi, t->easy) != CURLM_OK) {
                curl_easy_cleanup(t->easy);
                t->easy = NULL;
                r = -EIO;
        }
        if (r < 0) {
                transfer_free(t);
                return r;
        }
        /* Expiry counts from the moment the request leaves, never from the answer. */
        t->sent_at_usec = now_boottime_usec();
        return 0;
fail:
        secret_free(*form);
        *form = NULL;
        if (authorization) {
                secret_free(*authorization);
                *authorization = NULL;
        }
        return r;
}

int idp_post_token_request(struct idp *idp, const char *token_endpoint, struct secret **form,
                           idp_done_fn done, void *userdata)
{
        return post_form(idp, token_endpoint, form, NULL, done, NULL, userdata);
}

int idp_post_token_request_auth(struct idp *idp, const char *token_endpoint, struct secret **form,
                                struct secret **authorization, idp_done_fn done, void *userdata)
{
        return post_form(idp, token_endpoint, form, authorization, done, NULL, userdata);
}

int idp_post_form_raw(struct idp *idp, const char *url, struct secret **form, idp_raw_done_fn done,
                      void *userdata)
{
        return post_form(idp, url, form, NULL, NULL, done, userdata);
}
