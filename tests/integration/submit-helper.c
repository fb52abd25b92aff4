/* Drives libcredbroker's mail calls for spool.test.js:
 *   submit-helper submit SOCKET PROFILE FILE MESSAGE-ID N   -> prints the queue id
 *   submit-helper drop SOCKET PROFILE TOKEN                 -> prints "ok"
 *   submit-helper maildrop DIR PROFILE FILE                 -> prints "ok" (cli/maildrop.c)
 * On failure prints "error <errno name> <code>: <message>" and exits 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credbroker.h"
#include "maildrop.h"

static int read_file(const char *path, uint8_t **ret, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        long n;

        if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
                return -errno;
        *ret = malloc((size_t)n + 1);
        if (!*ret || fread(*ret, 1, (size_t)n, f) != (size_t)n) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        *ret_len = (size_t)n;
        return 0;
}

static int fail(int r, const struct credbroker_error *err)
{
        printf("error %d %s: %s\n", -r, err ? err->code : "", err ? err->message : strerror(-r));
        return 1;
}

int main(int argc, char **argv)
{
        struct credbroker_error err = {0};
        uint8_t *msg = NULL;
        size_t len = 0;
        char *id = NULL;
        int r;

        if (argc == 7 && strcmp(argv[1], "submit") == 0) {
                if ((r = read_file(argv[4], &msg, &len)) < 0)
                        return fail(r, NULL);
                r = credbroker_mail_submit(argv[2], argv[3], msg, len, argv[5],
                                           (size_t)strtoul(argv[6], NULL, 10), &id, &err);
                free(msg);
                if (r < 0)
                        return fail(r, &err);
                printf("%s\n", id);
                free(id);
                return 0;
        }
        if (argc == 5 && strcmp(argv[1], "drop") == 0) {
                r = credbroker_token_drop(argv[2], argv[3], argv[4], &err);
                if (r < 0)
                        return fail(r, &err);
                printf("ok\n");
                return 0;
        }
        if (argc == 5 && strcmp(argv[1], "maildrop") == 0) {
                if ((r = read_file(argv[4], &msg, &len)) < 0)
                        return fail(r, NULL);
                r = maildrop_write(argv[2], argv[3], msg, len);
                free(msg);
                if (r < 0)
                        return fail(r, NULL);
                printf("ok\n");
                return 0;
        }
        fprintf(stderr, "usage: see the comment at the top\n");
        return 2;
}
