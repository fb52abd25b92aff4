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

int account_keygen(int argc, char **argv)
{
        static const struct option options[] = {
            {"bits", required_argument, NULL, 'b'},
            {"days", required_argument, NULL, 'd'},
            {"subject", required_argument, NULL, 's'},
            {"csr", no_argument, NULL, 'r'},
            {"replace", no_argument, NULL, 'R'},
            {"config", required_argument, NULL, 'c'},
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        struct store_keygen_options o = {
            .bits = STORE_KEY_BITS_DEFAULT,
            .days = STORE_CERT_DAYS_DEFAULT,
        };
        _cleanup_(store_closep) struct store *store = NULL;
        struct store_certificate_info info = {0};
        _cleanup_free_ char *csr = NULL;
        _cleanup_admin_ struct admin_conn *admin = NULL;
        const char *config_option = NULL, *admin_socket = NULL, *name;
        char from[32], until[32];
        bool verbose = false;
        uint32_t value;
        int c, r;

        while ((c = getopt_long(argc, argv, "b:d:s:rRvc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'v':
                        verbose = true;
                        break;
                case 'A':
                        admin_socket = optarg;
                        break;
                case 'b':
                        if (parse_bounded(optarg, 2048, 4096, &value) < 0 ||
                            (value != 2048 && value != 3072 && value != 4096)) {
                                fprintf(stderr, "credbroker: --bits must be 2048, 3072 or 4096\n");
                                return EXIT_USAGE;
                        }
                        o.bits = value;
                        break;
                case 'd':
                        if (parse_bounded(optarg, 1, STORE_CERT_DAYS_MAX, &value) < 0) {
                                fprintf(stderr, "credbroker: --days must be 1 to %d\n",
                                        STORE_CERT_DAYS_MAX);
                                return EXIT_USAGE;
                        }
                        o.days = value;
                        break;
                case 's':
                        if (strlen(optarg) == 0 || strlen(optarg) > STORE_SUBJECT_MAX) {
                                fprintf(stderr,
                                        "credbroker: --subject must be 1 to %d characters\n",
                                        STORE_SUBJECT_MAX);
                                return EXIT_USAGE;
                        }
                        o.subject = optarg;
                        break;
                case 'r':
                        o.csr = true;
                        break;
                case 'R':
                        o.replace = true;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        keygen_usage(stdout);
                        return 0;
                default:
                        keygen_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc) {
                keygen_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        o.now = (uint64_t)time(NULL);

        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0) {
                r = broker_account_keygen(admin, name, &o, &info, &csr);
                if (r > 0)
                        return r;
        } else if (r != 1) {
                return r;
        } else {
                r = account_open_store(config_option, &store);
                if (r != 0)
                        return r;
                r = store_keygen(store, name, &o, &info, o.csr ? &csr : NULL);
        }
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
        if (r < 0) {
                fprintf(stderr, "credbroker: making the key for account %s failed: %s\n", name,
                        strerror(-r));
                return EXIT_SOFTWARE;
        }

        account_format_time(info.not_before, from);
        account_format_time(info.not_after, until);
        printf("Generated a %u-bit RSA key inside the token for account %s (not extractable).\n"
               "Self-signed certificate:\n"
               "  Subject:            %s\n"
               "  Valid:              %s to %s\n"
               "  Thumbprint (SHA-1, as the Entra portal shows it): %s\n"
               "  SHA-256 thumbprint: %s\n"
               "\n"
               "Upload this certificate to the app registration (Certificates & secrets >\n"
               "Certificates > Upload certificate), saved as a .pem, .cer or .crt file:\n"
               "\n%s",
               info.bits, name, info.subject, from, until, info.sha1_hex, info.sha256_hex,
               info.pem);
        if (csr)
                printf("\nCertificate request (PKCS#10) for the same key, for a CA:\n\n%s", csr);
        store_certificate_info_clear(&info);
        return 0;
}

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

int account_cert(int argc, char **argv)
{
        static const struct option options[] = {
            {"file", required_argument, NULL, 'f'},
            {"verbose", no_argument, NULL, 'v'},
            {"admin-socket", required_argument, NULL, 'A'},
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {0},
        };
        _cleanup_(store_closep) struct store *store = NULL;
        _cleanup_free_ char *data = NULL;
        struct store_certificate_info info = {0};
        _cleanup_admin_ struct admin_conn *admin = NULL;
        const char *config_option = NULL, *admin_socket = NULL, *file = NULL, *name;
        char from[32], until[32];
        bool verbose = false;
        size_t len = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "f:vc:h", options, NULL)) >= 0) {
                switch (c) {
                case 'v':
                        verbose = true;
                        break;
                case 'A':
                        admin_socket = optarg;
                        break;
                case 'f':
                        file = optarg;
                        break;
                case 'c':
                        config_option = optarg;
                        break;
                case 'h':
                        cert_usage(stdout);
                        return 0;
                default:
                        cert_usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc || !file) {
                cert_usage(stderr);
                return EXIT_USAGE;
        }
        name = argv[optind];
        if (!account_name_check(name))
                return EXIT_USAGE;
        r = read_certificate_file(file, &data, &len);
        if (r < 0) {
                fprintf(stderr, "credbroker: cannot read the certificate from %s: %s\n", file,
                        r == -EFBIG     ? "larger than 32 KiB"
                        : r == -ENODATA ? "the file is empty"
                        : r == -EBADF   ? "not a regular file"
                                        : strerror(-r));
                return EXIT_NOINPUT;
        }
        r = admin_connect_or_fallback(admin_socket_path(admin_socket, config_option), verbose,
                                      &admin);
        if (r == 0) {
                r = broker_account_cert(admin, name, data, len, &info);
                if (r > 0)
                        return r;
        } else if (r != 1) {
                return r;
        } else {
                r = account_open_store(config_option, &store);
                if (r != 0)
                        return r;
                r = store_import_certificate(store, name, data, len, &info);
        }
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
        if (r < 0) {
                fprintf(stderr, "credbroker: storing the certificate of %s failed: %s\n", name,
                        strerror(-r));
                return EXIT_SOFTWARE;
        }
        account_format_time(info.not_before, from);
        account_format_time(info.not_after, until);
        printf("Stored the certificate for the key of account %s:\n"
               "  Subject:            %s\n"
               "  Issuer:             %s\n"
               "  Valid:              %s to %s\n"
               "  Thumbprint (SHA-1, as the Entra portal shows it): %s\n"
               "  SHA-256 thumbprint: %s\n"
               "Upload this certificate to the app registration if it is not there yet.\n",
               name, info.subject, info.issuer, from, until, info.sha1_hex, info.sha256_hex);
        store_certificate_info_clear(&info);
        return 0;
}
