/* Test helper, not a test: prints one JWT client assertion made by store_sign_assertion(), so the
 * integration tests can check it with independent verifiers (Node's crypto) without a hidden
 * command in the production CLI.
 *
 *   sign-assertion CONFIG ACCOUNT AUDIENCE CLIENT_ID PS256|RS256 [UNIX_TIME] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "json.h"
#include "store.h"
#include "util.h"

int main(int argc, char **argv)
{
        _cleanup_(config_freep) struct config *config = NULL;
        _cleanup_(store_closep) struct store *store = NULL;
        enum store_assertion_alg alg;
        uint64_t now = (uint64_t)time(NULL);
        struct secret *jwt = NULL;
        int r;

        if (argc != 6 && argc != 7) {
                fprintf(stderr, "usage: sign-assertion CONFIG ACCOUNT AUDIENCE CLIENT_ID "
                                "PS256|RS256 [UNIX_TIME]\n");
                return 64;
        }
        if (strcmp(argv[5], "PS256") == 0)
                alg = STORE_ASSERTION_PS256;
        else if (strcmp(argv[5], "RS256") == 0)
                alg = STORE_ASSERTION_RS256;
        else
                return 64;
        if (argc == 7 && parse_u64(argv[6], &now) < 0)
                return 64;
        json_init();
        if (config_load(argv[1], false, &config) < 0)
                return 78;
        if (store_open(
                &(struct store_options){
                    .module_path = config->module_path,
                    .token_uri = config->token_uri,
                    .pin_source = config->pin_source,
                    .module_dirs = config->module_dirs,
                    .n_module_dirs = config->n_module_dirs,
                },
                &store) < 0)
                return 78;
        r = store_sign_assertion(store, argv[2], argv[3], argv[4], alg, now, &jwt);
        if (r < 0) {
                fprintf(stderr, "sign-assertion: %s\n", strerror(-r));
                return 70;
        }
        puts(secret_str(jwt));
        secret_free(jwt);
        return 0;
}
