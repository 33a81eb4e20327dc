#!/bin/sh
# Builds a small busybox root filesystem image for zonefleet zones.
#
#   deploy/images/build-busybox.sh OUT.tar.gz
#
# Uses Debian's busybox-static (/bin/busybox; installed with apt-get when missing
# and running as root). The archive is reproducible: the same busybox gives the
# same bytes (sorted names, mtime 0, owner 0:0, gzip without name or time).
set -eu

out=${1:?usage: $0 OUT.tar.gz}
busybox=${BUSYBOX:-/bin/busybox}

if [ ! -x "$busybox" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build-busybox: installing busybox-static" >&2
        apt-get install -y busybox-static >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y busybox-static >/dev/null; }
    else
        echo "build-busybox: $busybox missing; install busybox-static" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
umask 022
mkdir -p "$root"
for d in bin sbin etc dev proc sys tmp root var var/log run usr usr/bin usr/sbin; do
    mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# One /bin symlink per applet; the zone resolves the absolute target in its own root.
for applet in $("$busybox" --list); do
    case $applet in busybox | init | linuxrc) continue ;; esac
    ln -s /bin/busybox "$root/bin/$applet"
done
ln -s /bin/busybox "$root/usr/bin/env"

# PID 1 of the zone. busybox init wants an inittab and respawns consoles; a zone
# needs only: run /etc/rc, reap orphans, and stop cleanly on SIGTERM.
cat >"$root/sbin/init" <<'INIT'
#!/bin/sh
# zonefleet busybox image init: runs /etc/rc if present, reaps orphans, exits 0 on TERM/INT.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
stop() {
    # As the zone's PID 1, tell every other process of the zone to stop too.
    # Never outside a PID namespace: there `kill -1` would reach the host.
    if [ "$$" = 1 ]; then kill -TERM -1 2>/dev/null; fi
    [ -n "${sleeper:-}" ] && kill "$sleeper" 2>/dev/null
    exit 0
}
trap stop TERM INT
[ -f /etc/rc ] && sh /etc/rc
while :; do
    if [ -c /dev/null ]; then
        sleep 3600 &
        sleeper=$!
        # `wait` reaps every child that exits (orphans included) and returns at
        # once when a trapped signal arrives.
        wait "$sleeper"
    else
        # ash points a background job's stdin at /dev/null: without one (a bare
        # chroot) sleep in the foreground, which still reaps, TERM within a second.
        sleep 1
    fi
done
INIT
chmod 0755 "$root/sbin/init"

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "busybox" >"$root/etc/hostname"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/hostname"

mkdir -p "$(dirname "$out")"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$root" -cf - . | gzip -n -9 >"$out.partial"
mv "$out.partial" "$out"
echo "build-busybox: wrote $out" >&2
