#!/bin/sh
# Builds cli/lib/example-token.c the way another program would, through pkg-config (the build
# tree's libcredbroker-uninstalled.pc), runs it against a socket that does not exist and checks
# it reports the library's error. TAP output.
set -u
build=${CREDBROKER_BUILD_ROOT:?}
src=${CREDBROKER_SOURCE_ROOT:?}
cc=${CC:-cc}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
echo "1..3"
if flags=$(PKG_CONFIG_PATH="$build/meson-uninstalled" pkg-config --cflags --libs libcredbroker) &&
   $cc ${SANITIZE_CFLAGS:-} "$src/cli/lib/example-token.c" $flags -o "$tmp/example-token" 2>"$tmp/cc.err"; then
        echo "ok 1 - the example builds with pkg-config --cflags --libs libcredbroker"
else
        cat "$tmp/cc.err" | sed 's/^/# /'
        echo "not ok 1 - the example builds with pkg-config --cflags --libs libcredbroker"
        exit 0
fi
LD_LIBRARY_PATH="$build/cli/lib" CREDBROKER_SOCKET="$tmp/missing/socket" \
        "$tmp/example-token" alerts >"$tmp/out" 2>"$tmp/err"
code=$?
[ "$code" = 1 ] && echo "ok 2 - it fails without a broker" || echo "not ok 2 - exit $code"
if grep -q "cannot reach the broker: No such file or directory" "$tmp/err"; then
        echo "ok 3 - with the library's message"
else
        sed 's/^/# /' "$tmp/err"
        echo "not ok 3 - with the library's message"
fi
