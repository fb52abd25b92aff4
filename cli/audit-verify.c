/* credbroker audit verify: checks the audit log's hash chain and signed checkpoints across the
 * configured log and its rotated (possibly gzip'd) predecessors, streaming, in bounded memory.
 * Exit 0 intact and sealed, 1 broken, 2 intact but unsealed or truncated (docs/audit.md). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "audit-chain.h"
#include "audit.h"
#include "cleanup.h"
#include "client.h"
#include "commands.h"
#include "config.h"
#include "util.h"

#define READ_SIZE (256 * 1024)
#define MAX_FILES 4096

struct rotated {
        unsigned long n;
        char *path;
};

static void usage(FILE *f)
{
        fputs("Usage: credbroker audit verify [--key KEY] [--expect-head SEQ:HASH] "
              "[--config PATH]\n"
              "                               [--checkpoint-records N] [FILE...]\n"
              "Checks the audit log's hash chain and signed checkpoints; FILEs oldest first\n"
              "(default: the configured audit_log and its rotated predecessors).\n"
              "  --key KEY               the verifier key (credbroker audit key); without it the\n"
              "                          genesis record's key is trusted on first use\n"
              "  --expect-head SEQ:HASH  the record SEQ must be present with this SHA-256 (hex\n"
              "                          or base64): a checkpoint shipped off the host\n"
              "  --config PATH           the broker's configuration: its audit_log and\n"
              "                          audit_checkpoint_records\n"
              "  --checkpoint-records N  instead of the configuration's audit_checkpoint_records\n"
              "                          (1000 when no configuration applies)\n"
              "Exit status: 0 intact and sealed, 1 broken, 2 intact but unsealed or truncated.\n",
              f);
}

static int parse_expect_head(const char *text, struct chain_options *o)
{
        const char *colon = strchr(text, ':');
        _cleanup_free_ char *seq = NULL;
        size_t len;

        if (!colon)
                return -EINVAL;
        seq = strndup(text, (size_t)(colon - text));
        if (!seq || parse_u64(seq, &o->expect_seq) < 0)
                return -EINVAL;
        len = strlen(colon + 1);
        if (hex_decode(colon + 1, len, o->expect_hash, 32) < 0 &&
            note_unbase64(colon + 1, len, o->expect_hash, 32) < 0)
                return -EINVAL;
        o->expect_head = true;
        return 0;
}

/* Feeds one file's lines to the chain: 0 go on, 1 stop (chain_end() says why), -EIO. */
static int verify_stream(struct chain *c, gzFile gz, const char *path, char *buf)
{
        size_t have = 0;

        for (;;) {
                int n = gzread(gz, buf + have, (unsigned)(READ_SIZE - have)), e;
                size_t start = 0;
                char *nl;

                if (n < 0) {
                        fprintf(stderr, "credbroker: cannot read %s: %s\n", path, gzerror(gz, &e));
                        return -EIO;
                }
                have += (size_t)n;
                while ((nl = memchr(buf + start, '\n', have - start))) {
                        if (chain_line(c, buf + start, (size_t)(nl - buf) - start, true) != 0)
                                return 1;
                        start = (size_t)(nl - buf) + 1;
                }
                if (have - start >= CHAIN_MAX_LINE) {
                        /* No record is this long: the chain reports it at the end. */
                        chain_line(c, buf + start, have - start, true);
                        return 1;
                }
                if (n == 0) {
                        if (have > start && chain_line(c, buf + start, have - start, false))
                                return 1;
                        return 0;
                }
                memmove(buf, buf + start, have - start);
                have -= start;
        }
}

static int verify_file(struct chain *c, const char *path, char *buf)
{
        gzFile gz;
        int r;

        /* zlib reads a file that is not gzip'd as it is. */
        gz = gzopen(path, "rbe");
        if (!gz) {
                fprintf(stderr, "credbroker: cannot open %s: %s\n", path,
                        errno ? strerror(errno) : "out of memory");
                return -EIO;
        }
        gzbuffer(gz, READ_SIZE);
        chain_begin_file(c, path);
        r = verify_stream(c, gz, path, buf);
        gzclose(gz);
        return r;
}

static int compare_rotated(const void *a, const void *b)
{
        const struct rotated *x = a, *y = b;

        return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

/* "NAME.N" or "NAME.N.gz" in dir: N, else 0. */
static unsigned long rotation_number(const char *entry, const char *base)
{
        size_t len = strlen(base);
        const char *p;
        char *end;
        unsigned long n;

        if (strncmp(entry, base, len) != 0 || entry[len] != '.')
                return 0;
        p = entry + len + 1;
        if (*p < '1' || *p > '9')
                return 0;
        errno = 0;
        n = strtoul(p, &end, 10);
        if (errno || (*end && strcmp(end, ".gz") != 0))
                return 0;
        return n;
}

/* The configured log's rotated predecessors, oldest (highest N) first, then the log. */
static int default_files(const char *log, struct rotated *files, size_t *ret_n)
{
        _cleanup_free_ char *dir_copy = strdup(log), *base_copy = strdup(log);
        const char *dir, *base;
        struct dirent *e;
        size_t n = 0;
        DIR *d;

        if (!dir_copy || !base_copy)
                return -ENOMEM;
        dir = dirname(dir_copy);
        base = basename(base_copy);
        d = opendir(dir);
        if (!d)
                return -errno;
        while ((e = readdir(d)) && n < MAX_FILES - 1) {
                unsigned long k = rotation_number(e->d_name, base);
                if (k && asprintf(&files[n].path, "%s/%s", dir, e->d_name) >= 0)
                        files[n++].n = k;
        }
        closedir(d);
        qsort(files, n, sizeof(*files), compare_rotated);
        files[n].n = 0;
        files[n].path = strdup(log);
        *ret_n = files[n].path ? n + 1 : n;
        return 0;
}

static int parse_options(int argc, char **argv, struct chain_options *o, struct note_key *key,
                         const char **config)
{
        static const struct option options[] = {
            {"key", required_argument, NULL, 'k'},
            {"expect-head", required_argument, NULL, 'e'},
            {"config", required_argument, NULL, 'c'},
            {"checkpoint-records", required_argument, NULL, 'r'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        int opt;

        optind = 0; /* a fresh scan: the dispatcher's argv is not ours */
        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'k':
                        if (note_key_parse(optarg, key) < 0)
                                return fprintf(stderr, "credbroker: --key: not a verifier key "
                                                       "(credbroker audit key prints it)\n"),
                                       -EINVAL;
                        o->key = key;
                        break;
                case 'e':
                        if (parse_expect_head(optarg, o) < 0)
                                return fprintf(stderr, "credbroker: --expect-head: want "
                                                       "SEQ:HASH (SHA-256, hex or base64)\n"),
                                       -EINVAL;
                        break;
                case 'c':
                        *config = optarg;
                        break;
                case 'r':
                        if (parse_u64(optarg, &o->checkpoint_records) < 0 ||
                            o->checkpoint_records < 1 || o->checkpoint_records > 100000)
                                return fprintf(stderr, "credbroker: --checkpoint-records: "
                                                       "want 1-100000\n"),
                                       -EINVAL;
                        break;
                case 'h':
                        usage(stdout);
                        return 1;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        return 0;
}

/* The configuration --config (or $CREDBROKER_CONFIG, or the default path) names; NULL with 0
 * when none applies: no --config and nothing at the default path. */
static int load_config(const char *config_option, struct config **ret)
{
        const char *path = cli_config_path(config_option);

        *ret = NULL;
        if (!config_option && access(path, F_OK) < 0 && errno == ENOENT)
                return 0;
        return config_load(path, true, ret) < 0 ? -EINVAL : 0;
}

static int configured_files(const struct config *config, struct rotated *files, size_t *ret_n)
{
        const char *path = cli_config_path(NULL);
        int r;

        if (!config) {
                fprintf(stderr,
                        "credbroker: no configuration at %s names the audit log: give "
                        "FILEs or --config\n",
                        path);
                return -EINVAL;
        }
        if (!config->audit_log || !*config->audit_log) {
                fprintf(stderr, "credbroker: the configuration names no audit_log\n");
                return -EINVAL;
        }
        r = default_files(config->audit_log, files, ret_n);
        if (r < 0)
                fprintf(stderr, "credbroker: cannot list the directory of %s: %s\n",
                        config->audit_log, strerror(-r));
        return r;
}

static int verify_files(struct chain *c, char **paths, size_t n)
{
        _cleanup_free_ char *buf = malloc(READ_SIZE);
        int r = 0, status;

        if (!buf)
                return CHAIN_BROKEN;
        for (size_t i = 0; i < n && r == 0; i++)
                r = verify_file(c, paths[i], buf);
        if (r < 0)
                return CHAIN_BROKEN;
        status = chain_end(c);
        printf("%s\n", chain_message(c));
        return status;
}

int audit_verify_main(int argc, char **argv)
{
        struct chain_options o = {.warnings = stderr};
        _cleanup_(config_freep) struct config *cfg = NULL;
        struct rotated *files = NULL;
        struct note_key key;
        const char *config = NULL;
        struct chain *c = NULL;
        char **paths;
        size_t n = 0;
        int r;

        r = parse_options(argc, argv, &o, &key, &config);
        if (r != 0)
                return r > 0 ? 0 : EXIT_USAGE;
        if (load_config(config, &cfg) < 0)
                return CHAIN_BROKEN;
        /* The gap rule is the broker's: --checkpoint-records, else its configuration's. */
        if (!o.checkpoint_records)
                o.checkpoint_records =
                    cfg ? cfg->audit_checkpoint_records : CHAIN_CHECKPOINT_RECORDS_DEFAULT;
        paths = argv + optind;
        n = (size_t)(argc - optind);
        if (n == 0) {
                files = calloc(MAX_FILES, sizeof(*files));
                if (!files || configured_files(cfg, files, &n) < 0)
                        return free(files), CHAIN_BROKEN;
                paths = calloc(n + 1, sizeof(*paths));
                for (size_t i = 0; paths && i < n; i++)
                        paths[i] = files[i].path;
        }
        if (paths && chain_new(&o, &c) == 0)
                r = verify_files(c, paths, n);
        else
                r = CHAIN_BROKEN;
        chain_free(c);
        if (files) {
                for (size_t i = 0; i < n; i++)
                        free(files[i].path);
                free(files);
                free(paths);
        }
        return r;
}
