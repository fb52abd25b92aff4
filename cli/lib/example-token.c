/* A complete libcredbroker program: prints an access token for a profile. Build it against the
 * installed library with
 *     cc example-token.c $(pkg-config --cflags --libs libcredbroker) -o example-token
 * tests/unit/libcredbroker-pkgconfig.sh builds it that way against the build tree. */
#include <credbroker.h>
#include <stdio.h>

int main(int argc, char **argv)
{
        struct credbroker_token *token = NULL;
        struct credbroker_error err;
        const char *socket_path;
        int r;

        if (argc != 2) {
                fprintf(stderr, "Usage: %s PROFILE\n", argv[0]);
                return 2;
        }
        /* No configuration lookup: --socket would come first, then $CREDBROKER_SOCKET. */
        socket_path = credbroker_socket_path(CREDBROKER_SOCKET_CLIENT, NULL, NULL, NULL);
        r = credbroker_get_token(socket_path, argv[1], NULL, 0, -1, 30000, &token, &err);
        if (r < 0) {
                /* err.message may quote an upstream server: a real program filters control
                 * characters before printing it to a terminal. */
                fprintf(stderr, "example-token: %s%s%s%s\n", err.message, err.code[0] ? " (" : "",
                        err.code, err.code[0] ? ")" : "");
                return 1;
        }
        printf("%s\n", credbroker_token_access_token(token));
        credbroker_token_free(token);
        return 0;
}
