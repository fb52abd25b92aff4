/* credbroker account keygen: makes the account's assertion key inside the PKCS#11 token, a
 * self-signed certificate for it (and on request a PKCS#10 request), and prints what to upload
 * to the Entra app registration; account cert stores a CA-issued certificate for that key. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "account-via-broker.h"
#include "admin-client.h"
#include "client.h"
#include "cmd-account.h"
#include "display.h"
#include "store.h"
#include "util.h"

static void keygen_usage(FILE *f)
{
        fputs("Usage: credbroker account keygen NAME [--bits 2048|3072|4096] [--days N]\n"
              "                                 [--subject DN] [--csr] [--replace]\n"
              "                                 [-v] [--admin-socket PATH] [--config PATH]\n"
              "\n"
              "Generates an RSA key pair inside the PKCS#11 token (the private key is never\n"
              "extractable), stores a self-signed certificate for it (default subject\n"
              "\"CN=credbroker NAME\", valid 730 days, at most 3650) and prints the certificate\n"
              "to upload to the app registration with its SHA-1 and SHA-256 thumbprints.\n"
              "--csr also prints a PKCS#10 request for the same key, for a CA.\n"
              "An existing key is replaced only with --replace, and only after the new key\n"
              "and certificate are stored. NAME need not have been imported: app-only\n"
              "(client certificate) accounts start here. While the broker runs, it makes\n"
              "the key and certificate.\n",
              f);
}

static int parse_bounded(const char *text, uint32_t min, uint32_t max, uint32_t *ret)
{
        uint32_t value;

        if (parse_u32(text, &value) < 0 || value < min || value > max)
                return -EINVAL;
        *ret = value;
        return 0;
}

static int keygen_option(int c, const char *arg, void *state)
{
        struct store_keygen_options *o = state;
        uint32_t value;

        switch (c) {
        case 'b':
                if (parse_bounded(arg, 2048, 4096, &value) < 0 ||
                    (value != 2048 && value != 3072 && value != 4096)) {
                        fprintf(stderr, "credbroker: --bits must be 2048, 3072 or 4096\n");
                        return EXIT_USAGE;
                }
                o->bits = value;
                break;
        case 'd':
                if (parse_bounded(arg, 1, STORE_CERT_DAYS_MAX, &value) < 0) {
                        fprintf(stderr, "credbroker: --days must be 1 to %d\n",
                                STORE_CERT_DAYS_MAX);
                        return EXIT_USAGE;
                }
                o->days = value;
                break;
        case 's':
                if (strlen(arg) == 0 || strlen(arg) > STORE_SUBJECT_MAX) {
                        fprintf(stderr, "credbroker: --subject must be 1 to %d characters\n",
                                STORE_SUBJECT_MAX);
                        return EXIT_USAGE;
                }
                o->subject = arg;
                break;
        }
        return 0;
}

/* What making the key returned, in the words of either path: 0 when made, else an exit code. */
static int keygen_report(const char *name, int r)
{
        if (r == -EEXIST) {
                fprintf(stderr,
                        "credbroker: account %s already has an assertion key; add --replace to "
                        "make a new one (the old one stays until the new one is stored; upload "
                        "the new certificate before the old one is removed from Entra)\n",
                        name);
                return EXIT_DATAERR;
        }
        if (r == -EINVAL) {
                fprintf(stderr, "credbroker: the subject is not a distinguished name such as "
                                "\"CN=alerts,O=Contoso\"\n");
                return EXIT_USAGE;
        }
        return account_result(r, "making the key for account", name);
}

/* The certificate's subject, issuer (with_issuer), validity and thumbprints, a line each. */
static void print_certificate_facts(const struct store_certificate_info *info, bool with_issuer)
{
        char from[32], until[32];

        display_time(info->not_before, from);
        display_time(info->not_after, until);
        printf("  Subject:            %s\n", info->subject);
        if (with_issuer)
                printf("  Issuer:             %s\n", info->issuer);
        printf("  Valid:              %s to %s\n"
               "  Thumbprint (SHA-1, as the Entra portal shows it): %s\n"
               "  SHA-256 thumbprint: %s\n",
               from, until, info->sha1_hex, info->sha256_hex);
}

static void keygen_print(const char *name, const struct store_certificate_info *info,
                         const char *csr)
{
        printf("Generated a %u-bit RSA key inside the token for account %s (not extractable).\n"
               "Self-signed certificate:\n",
               info->bits, name);
        print_certificate_facts(info, false);
        printf("\n"
               "Upload this certificate to the app registration (Certificates & secrets >\n"
               "Certificates > Upload certificate), saved as a .pem, .cer or .crt file:\n"
               "\n%s",
               info->pem);
        if (csr)
                printf("\nCertificate request (PKCS#10) for the same key, for a CA:\n\n%s", csr);
}

static int keygen_run(const struct account_args *a, struct account_target *t, void *state)
{
        struct store_keygen_options *o = state;
        struct store_certificate_info info = {0};
        _cleanup_free_ char *csr = NULL;
        int r;

        o->now = (uint64_t)time(NULL);
        r = t->admin ? broker_account_keygen(t->admin, a->name, o, &info, &csr)
                     : store_keygen(t->store, a->name, o, &info, o->csr ? &csr : NULL);
        r = keygen_report(a->name, r);
        if (r == 0)
                keygen_print(a->name, &info, csr);
        store_certificate_info_clear(&info);
        return r;
}

const struct account_command account_keygen_command = {
    .name = "keygen",
    .usage = keygen_usage,
    .options =
        (const struct cli_option[]){
            CLI_OWN("bits", required_argument, 'b'),
            CLI_OWN("days", required_argument, 'd'),
            CLI_OWN("subject", required_argument, 's'),
            CLI_FLAG("csr", 'r', struct store_keygen_options, csr),
            CLI_FLAG("replace", 'R', struct store_keygen_options, replace),
            {0},
        },
    .option = keygen_option,
    .takes_name = true,
    .state_size = sizeof(struct store_keygen_options),
    .defaults =
        &(const struct store_keygen_options){
            .bits = STORE_KEY_BITS_DEFAULT,
            .days = STORE_CERT_DAYS_DEFAULT,
        },
    .run = keygen_run,
};

/* A certificate is public, so a plain bounded read of a regular file will do. */
static int read_certificate_file(const char *path, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if (st.st_size > STORE_CERTIFICATE_FILE_MAX)
                return -EFBIG;
        data = malloc(STORE_CERTIFICATE_FILE_MAX + 1);
        if (!data)
                return -ENOMEM;
        r = read_bounded(fd, data, STORE_CERTIFICATE_FILE_MAX, &len);
        if (r < 0)
                return r;
        if (len == 0)
                return -ENODATA;
        *ret = TAKE_PTR(data);
        *ret_len = len;
        return 0;
}

static void cert_usage(FILE *f)
{
        fputs("Usage: credbroker account cert NAME --file CERTIFICATE [-v] [--admin-socket PATH]\n"
              "                               [--config PATH]\n"
              "\n"
              "Stores a certificate (PEM or DER), e.g. the one a CA issued for the request\n"
              "printed by keygen --csr, for the account's key in the token. It must be for that\n"
              "key; it replaces the key's previous (self-signed) certificate. While the\n"
              "broker runs, it stores the certificate.\n",
              f);
}

struct cert_options {
        const char *file;
        char *data;
        size_t len;
};

static int cert_prepare(struct account_args *a, void *state)
{
        struct cert_options *o = state;
        int r;

        r = read_certificate_file(o->file, &o->data, &o->len);
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot read the certificate from %s: %s\n", o->file,
                        r == -EFBIG     ? "larger than 32 KiB"
                        : r == -ENODATA ? "the file is empty"
                        : r == -EBADF   ? "not a regular file"
                                        : strerror(-r));
                return EXIT_NOINPUT;
        }
        return 0;
}

/* What storing the certificate returned, in the words of either path: 0 or an exit code. */
static int cert_report(const char *name, const char *file, int r)
{
        if (r == -EBADMSG) {
                fprintf(stderr, "credbroker: %s is not a PEM or DER X.509 certificate\n", file);
                return EXIT_DATAERR;
        }
        if (r == -ENOKEY) {
                fprintf(stderr,
                        "credbroker: the certificate in %s is not for a key of account %s; "
                        "make the key with credbroker account keygen %s --csr and have the "
                        "CA sign that request\n",
                        file, name, name);
                return EXIT_DATAERR;
        }
        return account_result(r, "storing the certificate of", name);
}

static void cert_print(const char *name, const struct store_certificate_info *info)
{
        printf("Stored the certificate for the key of account %s:\n", name);
        print_certificate_facts(info, true);
        printf("Upload this certificate to the app registration if it is not there yet.\n");
}

static int cert_run(const struct account_args *a, struct account_target *t, void *state)
{
        struct cert_options *o = state;
        struct store_certificate_info info = {0};
        int r;

        r = t->admin ? broker_account_cert(t->admin, a->name, o->data, o->len, &info)
                     : store_import_certificate(t->store, a->name, o->data, o->len, &info);
        r = cert_report(a->name, o->file, r);
        if (r == 0)
                cert_print(a->name, &info);
        store_certificate_info_clear(&info);
        return r;
}

static void cert_done(void *state)
{
        struct cert_options *o = state;

        free(o->data);
}

const struct account_command account_cert_command = {
    .name = "cert",
    .usage = cert_usage,
    .options =
        (const struct cli_option[]){
            CLI_REQUIRED_ARG("file", 'f', struct cert_options, file),
            {0},
        },
    .takes_name = true,
    .state_size = sizeof(struct cert_options),
    .prepare = cert_prepare,
    .run = cert_run,
    .done = cert_done,
};
