/* The plain driver every fuzz target links when it is not built for libFuzzer: replays the
 * files and directories named on the command line (or one input on stdin) through the
 * target's LLVMFuzzerTestOneInput(), so corpora run in `meson test --suite fuzz`. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, int dirfd)
{
        int fd = dirfd >= 0 ? openat(dirfd, path, O_RDONLY | O_CLOEXEC)
                            : open(path, O_RDONLY | O_CLOEXEC);
        uint8_t *data = NULL;
        size_t size = 0, cap = 0;
        ssize_t n;

        if (fd < 0) {
                fprintf(stderr, "%s: cannot open %s: %s\n", program_invocation_short_name, path,
                        strerror(errno));
                return -1;
        }
        for (;;) {
                if (size == cap) {
                        uint8_t *bigger;
                        cap = cap ? cap * 2 : 4096;
                        bigger = realloc(data, cap);
                        if (!bigger)
                                abort();
                        data = bigger;
                }
                n = read(fd, data + size, cap - size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                size += (size_t)n;
        }
        close(fd);
        if (n < 0) {
                fprintf(stderr, "%s: cannot read %s: %s\n", program_invocation_short_name, path,
                        strerror(errno));
                free(data);
                return -1;
        }
        /* An exact-size copy, so a sanitizer sees any read past the end. */
        uint8_t *exact = malloc(size ? size : 1);
        if (!exact)
                abort();
        memcpy(exact, data, size);
        free(data);
        LLVMFuzzerTestOneInput(exact, size);
        free(exact);
        return 0;
}

static int run_path(const char *path, unsigned *ran)
{
        struct stat st;
        int failed = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path,
                        strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
                if (run_file(path, -1) < 0)
                        return -1;
                (*ran)++;
                return 0;
        }

        DIR *dir = opendir(path);
        struct dirent *de;
        if (!dir) {
                fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path,
                        strerror(errno));
                return -1;
        }
        while ((de = readdir(dir))) {
                struct stat fst;
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd(dir), de->d_name, &fst, 0) < 0 || !S_ISREG(fst.st_mode))
                        continue;
                if (run_file(de->d_name, dirfd(dir)) < 0)
                        failed = 1;
                else
                        (*ran)++;
        }
        closedir(dir);
        return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
        unsigned ran = 0;
        int failed = 0;

        if (argc < 2) {
                /* No arguments: one input on stdin. */
                if (run_file("/dev/stdin", -1) < 0)
                        return EXIT_FAILURE;
                return EXIT_SUCCESS;
        }
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &ran) < 0)
                        failed = 1;
        printf("%s: replayed %u input(s)\n", program_invocation_short_name, ran);
        /* An empty corpus replays nothing and proves nothing. */
        return failed || ran == 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
