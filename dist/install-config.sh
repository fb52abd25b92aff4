#!/bin/sh
# meson install script: SYSCONFDIR/credbroker/credbroker.conf and policy.d/default, each only
# when it does not exist yet. An administrator's files are never replaced by `meson install`;
# the example stays under DATADIR/doc/credbroker/examples to compare with.
#
#   install-config.sh CONFDIR CREDBROKER_CONF_EXAMPLE POLICY_DEFAULT
set -eu
destdir=${DESTDIR:-}
# meson install --destdir passes the destination through these.
if [ -n "${MESON_INSTALL_DESTDIR_PREFIX:-}" ] && [ -n "${MESON_INSTALL_PREFIX:-}" ]; then
        destdir=${MESON_INSTALL_DESTDIR_PREFIX%"$MESON_INSTALL_PREFIX"}
fi
confdir=$destdir$1
conf_example=$2
policy_default=$3

install_new() {
        if [ -e "$2" ] || [ -L "$2" ]; then
                echo "credbroker: keeping the existing $2 (the shipped version is in the examples)" >&2
        else
                install -D -m 0644 "$1" "$2"
                [ -n "${MESON_INSTALL_QUIET:-}" ] || echo "Installing $1 to $2"
        fi
}

install -d -m 0755 "$confdir" "$confdir/policy.d"
install_new "$conf_example" "$confdir/credbroker.conf"
# Only into an empty policy.d: a profile named "default" may mean something else there.
if [ -z "$(ls -A "$confdir/policy.d")" ]; then
        install_new "$policy_default" "$confdir/policy.d/default"
else
        echo "credbroker: $confdir/policy.d already has profiles; not adding policy.d/default" >&2
fi
