#!/bin/sh
# A throwaway systemd for unit-live.test.js: systemd 252 as PID 1 of new PID, mount, cgroup, UTS
# and IPC namespaces, over the host's own tree, without an OS image (what systemd-nspawn does,
# cut down). Nothing it does reaches the host:
#   /etc /var /usr   overlays whose upper layers are DIR/ov/* (the host's stay untouched)
#   /run /tmp        fresh tmpfs; DIR itself stays reachable as /run/unit-live
#   /dev             a tmpfs with the host's null, zero, full, random, urandom and tty bound in,
#                    a private devpts; /dev/console is the file DIR/console
#   /sys /proc/sys   read-only: no udev, sysctl or binfmt of the host's kernel is changed
#   cgroups          cgroup2 at /sys/fs/cgroup, rooted at CGROUP (a directory the caller made in
#                    the host's cgroup2 hierarchy and removes afterwards)
#   capabilities     no CAP_SYS_MODULE, CAP_SYS_TIME, CAP_SYS_BOOT, CAP_SYS_RAWIO, CAP_WAKE_ALARM
# The units that would touch the kernel's global state anyway are masked.
#
#   unit-live-ns.sh boot DIR CGROUP    as root: becomes the namespaces' parent (unshare), systemd
#                                      runs as its child; kill that child to end everything
set -eu

case "$1" in
boot)
        dir=$2
        cgroup=$3
        echo $$ >"$cgroup/cgroup.procs"
        exec unshare --pid --fork --kill-child --mount --cgroup --uts --ipc --mount-proc \
                "$0" init "$dir"
        ;;
init) dir=$2 ;;
*)
        echo "usage: $0 boot DIR CGROUP" >&2
        exit 64
        ;;
esac

# PID 1 of the new namespaces from here on.
mount --make-rprivate /
for d in etc var usr; do
        mkdir -p "$dir/ov/$d/upper" "$dir/ov/$d/work"
        mount -t overlay overlay -o "lowerdir=/$d,upperdir=$dir/ov/$d/upper,workdir=$dir/ov/$d/work" "/$d"
done
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/unit-live
mount --bind "$dir" /run/unit-live
dir=/run/unit-live
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp

mkdir -p "$dir/dev"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$dir/dev"
for n in null zero full random urandom tty; do
        touch "$dir/dev/$n"
        mount --bind "/dev/$n" "$dir/dev/$n"
done
: >"$dir/console"
touch "$dir/dev/console"
mount --bind "$dir/console" "$dir/dev/console"
mkdir -p "$dir/dev/pts" "$dir/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$dir/dev/pts"
ln -s pts/ptmx "$dir/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$dir/dev/shm"
ln -s /proc/self/fd "$dir/dev/fd"
mount --move "$dir/dev" /dev

mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
hostname credbroker-unit-live
# systemd in a container leaves propagation to its manager (nspawn makes / shared): without it
# the mounts it makes for a unit in a helper's namespace (LoadCredential='s ramfs) never reach
# the unit. The peer groups are new and local to this namespace: nothing propagates to the host.
mount --make-rshared /

rm -f /etc/machine-id
systemd-machine-id-setup >/dev/null 2>&1
mkdir -p /etc/systemd/system
cat >/etc/systemd/system/credbroker-unit-live.target <<'EOF'
[Unit]
Description=credbroker unit-live test
Wants=systemd-journald.service
AllowIsolate=yes
EOF
for u in systemd-timesyncd.service systemd-pstore.service systemd-binfmt.service \
        systemd-modules-load.service systemd-sysctl.service systemd-random-seed.service \
        systemd-firstboot.service systemd-repart.service kmod-static-nodes.service \
        systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
        systemd-tmpfiles-setup-dev.service systemd-remount-fs.service systemd-hwdb-update.service \
        systemd-pcrphase.service systemd-pcrphase-sysinit.service \
        proc-sys-fs-binfmt_misc.automount sys-kernel-config.mount sys-kernel-debug.mount \
        sys-kernel-tracing.mount sys-fs-fuse-connections.mount dev-hugepages.mount \
        dev-mqueue.mount swap.target cryptsetup.target integritysetup.target veritysetup.target \
        systemd-networkd-wait-online.service systemd-networkd.service NetworkManager.service \
        ifupdown-wait-online.service networking.service; do
        ln -sf /dev/null "/etc/systemd/system/$u"
done

exec setpriv --bounding-set=-sys_module,-sys_time,-sys_boot,-sys_rawio,-wake_alarm \
        env -i container=credbroker-unit-live PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        /lib/systemd/systemd --system --unit=credbroker-unit-live.target \
        </dev/console >/dev/console 2>&1
