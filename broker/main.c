/* credbrokerd: the privileged token broker. Sets the process up, opens the credential store,
 * the policy and the audit log, then runs the event loop until SIGTERM. */
#include "build-config.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "accounts.h"
#include "admin.h"
#include "audit-aggregate.h"
#include "audit-checkpoint.h"
#include "audit.h"
#include "broker.h"
#include "client.h"
#include "config.h"
#include "event.h"
#include "hardening.h"
#include "idp.h"
#include "json.h"
#include "keepalive.h"
#include "log.h"
#include "policy-reload.h"
#include "policy.h"
#include "refresh.h"
#include "spool.h"
#include "store-worker.h"
#include "store.h"
#include "stream.h"
#include "util.h"
#include "wiping-alloc.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: credbrokerd [--config PATH]\n"
                "\n"
                "Hands short-lived OAuth access tokens to local programs that the policy\n"
                "allows, keeping every credential inside a PKCS#11 token.\n"
                "\n"
                "  -c, --config PATH   configuration file (default %s)\n"
                "  -h, --help          show this help\n"
                "  -V, --version       show the version\n",
                CONFIG_DEFAULT_PATH);
}

static void reload_policy(struct broker *b)
{
        char error[256];
        size_t profiles;

#if HAVE_SYSTEMD
        (void)sd_notify(0, "RELOADING=1\nSTATUS=Reloading the policy");
#endif
        int r = broker_reload(b, error, sizeof(error), &profiles);
#if HAVE_SYSTEMD
        (void)sd_notifyf(0, "READY=1\nSTATUS=%s",
                         r < 0 ? "Reload failed; serving the previous policy" : "Serving");
#else
        (void)r;
#endif
}

static void on_signal(struct watch *w, uint32_t events)
{
        struct broker *b = container_of(w, struct broker, signals);
        struct signalfd_siginfo si;

        while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGHUP) {
                        reload_policy(b);
                        /* Rotation (dist/credbroker.logrotate): a checkpoint, then a new file
                         * if the old one was renamed. */
                        audit_checkpoint_sighup(b->checkpoints);
                } else
                        b->stopping = true;
        }
}

/* Each client is a descriptor: take the hard limit systemd grants (the soft default of 1024
 * exists only for select() users). */
static void raise_fd_limit(void)
{
        struct rlimit nofile;

        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
                nofile.rlim_cur = nofile.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &nofile);
        }
}

static int setup_signals(struct broker *b)
{
        sigset_t mask;
        int fd;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        b->signals = (struct watch){.fd = fd, .fn = on_signal};
        return event_add(b->epfd, &b->signals, EPOLLIN);
}

static int broker_open(struct broker *b)
{
        _cleanup_secret_ struct secret *install_key = NULL;
        struct store_options store_options = {
            .module_path = b->config->module_path,
            .token_uri = b->config->token_uri,
            .pin_source = b->config->pin_source,
            .module_dirs = b->config->module_dirs,
            .n_module_dirs = b->config->n_module_dirs,
            .backend = b->config->store == CONFIG_STORE_WRAPPED ? STORE_BACKEND_WRAPPED
                                                                : STORE_BACKEND_OBJECTS,
            .wrapped_dir = b->config->wrapped_dir,
            .softhsm_reopen_after = b->config->softhsm_reopen_after,
        };
        struct idp_options idp_options = {
            .ca_bundle = b->config->ca_bundle,
            .connect_timeout_sec = b->config->connect_timeout_sec,
            .timeout_sec = b->config->timeout_sec,
            .proxy = b->config->proxy,
            .no_proxy = b->config->no_proxy,
        };
        int r;

        r = event_loop_new(&b->epfd);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop");
        r = setup_signals(b);
        if (r < 0)
                return log_error_errno(r, "Failed to set up signal handling");
        r = store_open(&store_options, &b->store);
        if (r < 0)
                return r;
        r = store_get_install_key(b->store, &install_key);
        if (r < 0)
                return log_error_errno(r, "Failed to get the audit fingerprint key");
        /* The log, its denial aggregator and its signed checkpoints (audit-checkpoint.h). */
        r = audit_start(b, install_key);
        if (r < 0)
                return r;
        if (!ENABLE_AUDIT_CHAIN)
                log_error("Built with -Daudit_chain=false, a benchmark baseline: the audit log "
                          "has no hash chain and no periodic checkpoints. Do not use it.");
        if (!secret_memory_locked())
                log_warning("Secret memory could not be locked (RLIMIT_MEMLOCK, systemd "
                            "LimitMEMLOCK=): secrets stay out of core dumps but may be swapped.");
        r = policy_set_load(b->config->policy_dir, &b->policy);
        if (r < 0)
                return log_error_errno(r, "Failed to load the policy from %s.",
                                       b->config->policy_dir);
        b->limiter = policy_limiter_new();
        if (!b->limiter)
                return log_error_errno(-ENOMEM, "Failed to set up rate limits");
        r = idp_new(b->epfd, &idp_options, &b->idp);
        if (r < 0)
                return log_error_errno(r, "Failed to set up HTTPS");
        /* Its first check runs from the loop, once the store worker below runs. */
        r = keepalive_start(b, &b->keepalive);
        if (r < 0)
                return log_error_errno(r, "Failed to start the refresh token keep-alive");
        /* From here on the store is the worker thread's alone. */
        r = store_worker_start(b->store, b->epfd, refresh_store_tick, b, &b->store_worker);
        if (r < 0)
                return log_error_errno(r, "Failed to start the credential store thread");
        r = stream_hub_new(b->epfd,
                           &(struct stream_limits){
                               .max_connections_per_uid = b->config->max_connections_per_uid,
                               .idle_timeout_sec = b->config->idle_timeout_sec,
                               .frame_timeout_sec = b->config->frame_timeout_sec,
                               .request_rate_per_uid = b->config->request_rate_per_uid,
                               .request_burst_per_uid = b->config->request_burst_per_uid,
                           },
                           &b->streams);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the sockets");
        /* Mail is an addition: without a usable spool the broker still serves tokens, and
         * mail.submit answers "unavailable" (the CLI then uses the maildrop or exits 75). */
        if (spool_open(b) < 0) {
                log_error("The mail spool is unusable; mail cannot be queued.");
                spool_close(b);
        }
        /* The admin socket first: if another broker answers on it, nothing of this one has
         * touched the client socket yet. */
        r = admin_listen(b);
        if (r < 0)
                return r;
        return server_listen(b);
}

/* How long shutdown waits for a store operation in progress (a rotated refresh token being
 * written) before it gives up on a token that does not answer. */
#define STORE_STOP_TIMEOUT_MS 5000

static void broker_close(struct broker *b)
{
        server_close_all(b);
        admin_close_all(b);
        stream_hub_free(b->streams);
        b->streams = NULL;
        b->stopping = true;
        spool_close(b);
        /* Before idp_free(): a refresh token read that completes now must find the HTTPS side
         * still there (it starts nothing while stopping, see refresh.c). */
        b->stopping = true;
        b->store_abandoned = !store_worker_stop(b->store_worker, STORE_STOP_TIMEOUT_MS);
        b->store_worker = NULL;
        keepalive_free(b->keepalive);
        b->keepalive = NULL;
        idp_free(b->idp);
        accounts_free(&b->accounts);
        token_cache_clear(&b->cache);
        metrics_clear(&b->metrics);
        policy_set_free(b->policy);
        policy_limiter_free(b->limiter);
        /* Repeated denials still counted are written before the log closes, and sealed by the
         * final checkpoint, signed on this thread now that the store worker has stopped. */
        audit_stop(b);
        if (!b->store_abandoned)
                store_close(b->store);
        if (b->signals.fd >= 0)
                close(b->signals.fd);
        if (b->epfd >= 0)
                close(b->epfd);
        event_run_deferred();
        config_free(b->config);
}

/* Parses the command line: 0 to go on with *config_path set, otherwise the exit status + 1. */
static int parse_argv(int argc, char **argv, const char **config_path)
{
        static const struct option options[] = {
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {0},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:hV", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        *config_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS + 1;
                case 'V':
                        printf("credbrokerd %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS + 1;
                default:
                        usage(stderr);
                        return 64 + 1;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return 64 + 1;
        }
        return 0;
}

/* Runs the event loop until a signal asks it to stop. */
static int run(struct broker *b)
{
        uint64_t last_tick = 0;
        int r;
#if HAVE_SYSTEMD
        /* WatchdogSec= in the unit: pet it at half the interval. */
        uint64_t watchdog_usec = 0, last_watchdog = 0;
        if (sd_watchdog_enabled(0, &watchdog_usec) <= 0)
                watchdog_usec = 0;
#endif

        while (!b->stopping) {
                /* Frames left over from the last turn (fairness, net/stream.c) go first; the
                 * loop then only polls. Otherwise it wakes at least once a second for the
                 * timeouts and the aggregated audit records. */
                bool more = stream_hub_turn(b->streams);
                r = event_dispatch(b->epfd, more ? 0 : 1000);
                if (r < 0)
                        return log_error_errno(r, "Event loop failed");
                uint64_t now = now_boottime_usec();
                if (now - last_tick >= USEC_PER_SEC) {
                        last_tick = now;
                        stream_hub_tick(b->streams);
                        audit_aggregator_tick(b->denials);
                        audit_checkpoint_tick(b->checkpoints);
                        spool_tick(b);
                        token_cache_sweep_replies(&b->cache, now);
                }
#if HAVE_SYSTEMD
                if (watchdog_usec && now - last_watchdog >= watchdog_usec / 2) {
                        last_watchdog = now;
                        (void)sd_notify(0, "WATCHDOG=1");
                }
#endif
        }
        return 0;
}

int main(int argc, char **argv)
{
        const char *config_path = CONFIG_DEFAULT_PATH;
        struct broker b = {.epfd = -1, .signals.fd = -1};
        enum log_level level;
        int r;

        log_set_ident("credbrokerd");
        r = parse_argv(argc, argv, &config_path);
        if (r > 0)
                return r - 1;
        if (harden_process() < 0)
                return EXIT_FAILURE;
        raise_fd_limit();
        json_init();
        wiping_hook_gnutls();
        /* Every buffer libcurl allocates (request, upload, download, TLS glue) is wiped when freed:
         * the form carries a refresh token, the answer new tokens (issue 9). */
        if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, wiping_malloc, wiping_free, wiping_realloc,
                                 wiping_strdup, wiping_calloc) != CURLE_OK) {
                log_error("Failed to initialise libcurl.");
                return EXIT_FAILURE;
        }
        r = config_load(config_path, true, &b.config);
        if (r < 0)
                goto out;
        if (log_parse_level(b.config->log_level, &level) == 0)
                log_set_level(level);
        b.cache.refresh_spread_pct = b.config->refresh_ahead_spread;
        /* Before the store thread and the PKCS#11 module: see docs/credbrokerd.8.md. */
        (void)harden_lock_memory(BROKER_MEMLOCK_MIN);

        r = broker_open(&b);
        if (r < 0)
                goto out;
        log_info("credbrokerd %s ready on %s (%zu profiles).", PACKAGE_VERSION,
                 b.config->socket_path, policy_set_count(b.policy));
#if HAVE_SYSTEMD
        (void)sd_notify(0, "READY=1\nSTATUS=Serving");
#endif
        r = run(&b);
#if HAVE_SYSTEMD
        (void)sd_notify(0, "STOPPING=1\nSTATUS=Shutting down");
#endif
        log_info("Shutting down.");
out:
        broker_close(&b);
        curl_global_cleanup();
        if (b.store_abandoned)
                /* The store thread is still inside the PKCS#11 module: exit() would run the
                 * module's destructors under it. */
                _exit(r < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
