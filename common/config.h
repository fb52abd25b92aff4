/* The broker configuration file (INI, see docs/credbroker.conf.md), shared by the daemon and the
 * CLI (which opens the PKCS#11 store directly for provisioning). */
#pragma once

#include "build-config.h" /* SYSCONFDIR, DEFAULT_SOCKET, DEFAULT_ADMIN_SOCKET */
#include <stdbool.h>
#include <stdint.h>

#include "cleanup.h"
#include "cloud.h"

#define CONFIG_DEFAULT_PATH      SYSCONFDIR "/credbroker.conf"
#define CONFIG_MAX_MODULE_DIRS   8
#define CONFIG_WARN_DAYS_DEFAULT 30
#define CONFIG_WARN_DAYS_MAX     3650

#define CONFIG_KEEPALIVE_DAYS_DEFAULT       14
#define CONFIG_REFRESH_CONCURRENCY_DEFAULT  8
#define CONFIG_REFRESH_AHEAD_SPREAD_DEFAULT 15

/* [identity] min_refresh_interval (refresh.c, request.c) */
#define CONFIG_MIN_REFRESH_INTERVAL_DEFAULT 60
#define CONFIG_MIN_REFRESH_INTERVAL_MAX     3600

/* [mail]: the broker's spool (docs/mail-spool.md) */
#define CONFIG_MAIL_SPOOL_DIR_DEFAULT "/var/spool/credbroker"
#define CONFIG_MAIL_LIFETIME_DEFAULT  (5u * 86400u)
#define CONFIG_MAIL_RETRY_MIN_DEFAULT 60u
#define CONFIG_MAIL_RETRY_MAX_DEFAULT 3600u

/* [pkcs11] softhsm_reopen_after: SoftHSM2 keeps about 870 bytes for each object destroyed
 * until it is finalized; 4,096 is about 3.5 MB (store.h, store_reopen_if_due()). */
#define CONFIG_SOFTHSM_REOPEN_AFTER_DEFAULT 4096u

/* [pkcs11] store: where account metadata, refresh tokens and client secrets live (store.h's
 * enum store_backend; pkcs11/README.md). */
enum config_store {
        CONFIG_STORE_OBJECTS, /* objects in the token (the default) */
        CONFIG_STORE_WRAPPED, /* files in wrapped_dir, sealed by a key in the token */
};
#define CONFIG_WRAPPED_DIR_DEFAULT LOCALSTATEDIR "/lib/credbroker/store"

struct config_mail {
        char *spool_dir;              /* queue/, inflight/, failed/, tmp/ (0700, the broker's) */
        char *maildrop_dir;           /* the CLI's fallback when the broker is down */
        char *deliver_helper;         /* credbroker-deliver, run once per delivery attempt */
        uint32_t lifetime_sec;        /* a message not delivered by then goes to failed/ */
        uint32_t retry_min_sec;       /* first backoff, doubled per attempt ... */
        uint32_t retry_max_sec;       /* ... up to this */
        uint32_t deliver_timeout_sec; /* one attempt's child is killed after this */
        uint32_t concurrency;         /* deliveries at once per mailbox (Graph: 4) */
        uint32_t rate_per_minute;     /* deliveries started per mailbox and minute (Exchange: 30) */
        uint32_t max_message_mb;      /* one message */
        uint32_t max_spool_mb;        /* the whole queue: beyond it submissions are refused */
        uint32_t max_uid_mb;          /* what one uid may have queued */
        uint32_t max_messages; /* files in the spool (queue and failed/): bounds its memory */
        uint32_t max_submits_per_uid; /* submissions being received at once per uid */
        uint32_t scan_interval_sec;   /* the maildrop is scanned this often */
};

struct config {
        /* [broker] */
        char *socket_path;
        char *admin_socket_path; /* provisioning and status (docs/admin-protocol.md) */
        char *policy_dir;
        char *audit_log;
        char *log_level;
        /* [pkcs11] */
        char *module_path;
        char *token_uri;
        char *pin_source;
        char *module_dirs[CONFIG_MAX_MODULE_DIRS]; /* glob patterns of allowed directories */
        unsigned n_module_dirs;
        enum config_store store;
        char *wrapped_dir; /* absolute; created 0700 by whoever opens the store first */
        /* SoftHSM2 tokens: objects destroyed before the broker opens the token again, which
         * gives back the memory SoftHSM2 keeps for each (store.h); 0: never. */
        uint32_t softhsm_reopen_after;
        /* [identity] */
        enum cloud cloud; /* sets authority and graph unless they are given */
        char *authority;
        char *graph_url;
        bool authority_set, graph_set; /* given in the file, not taken from the cloud */
        char *ca_bundle;
        /* An HTTP(S) proxy for the broker's requests to the identity provider (CURLOPT_PROXY;
         * may hold user:password@, see config_proxy_redacted()); NULL: libcurl's environment
         * variables. no_proxy: hosts reached directly (CURLOPT_NOPROXY); NULL: none given. */
        char *proxy;
        char *no_proxy;
        /* A delegated account's refresh token unused this long is refreshed, so Microsoft's
         * 90-day inactivity limit never applies (design.md §5). 0: at every check. */
        uint32_t keepalive_days;
        uint32_t connect_timeout_sec;
        uint32_t timeout_sec;
        /* [broker] warn_days: how far ahead credbroker status warns of an expiry. */
        uint32_t warn_days;

        /* [broker] what one local uid may make the broker spend (docs/security.md). */
        uint32_t max_connections_per_uid;
        uint32_t idle_timeout_sec;
        uint32_t frame_timeout_sec;
        uint32_t request_rate_per_uid; /* requests a second; 0: no budget */
        uint32_t request_burst_per_uid;
        uint32_t audit_aggregate_sec; /* repeated denials: one record per interval */
        /* [broker] refreshes at scale (issue 14): token requests in flight at once per
         * authority (scheme://host:port of the token endpoint), the rest queued earliest
         * deadline first; and the share of a token's lifetime, in percent, over which its
         * refresh-ahead point is spread before the 75% mark (0: exactly at 75%). */
        uint32_t refresh_concurrency_per_authority;
        uint32_t refresh_ahead_spread;
        /* [identity] min_refresh_interval: a request's min_ttl starts an upstream refresh of an
         * account at most once per this many seconds (0: whenever min_ttl is not met). */
        uint32_t min_refresh_interval_sec;

        /* [broker] the audit log's checkpoints and readers (issue 12, docs/audit.md) */
        uint32_t audit_checkpoint_sec;     /* audit_checkpoint_interval: seconds, with activity */
        uint32_t audit_checkpoint_records; /* a checkpoint after this many records */
        char *audit_group;                 /* the log file's group; NULL: the broker's */
        bool audit_journal;                /* mirror each record to journald (libsystemd) */
        struct config_mail mail;
};

/* Loads path over the built-in defaults. Unknown sections or keys, bad values and (when
 * check_owner is set) a file not owned by root or the caller, or writable by group or others,
 * are errors: the first one is logged with file:line. */
int config_load(const char *path, bool check_owner, struct config **ret);
/* Defaults only, for tools that run without a config file. */
int config_new_default(struct config **ret);
void config_free(struct config *c);
/* The prefix of the default Graph scopes ("https://graph.microsoft.us" for ".../Mail.Send"):
 * the graph URL's host when it is a Microsoft Graph host, else the cloud's (cloud.h). */
const char *config_graph_resource(const struct config *c);
/* The proxy URL without its user name and password (user and password become ***), for logs and
 * messages: a malloc()ed copy; NULL with *ret when there is no proxy. */
int config_proxy_redacted(const char *proxy, char **ret);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct config *, config_free)
