#!/bin/sh
# Builds a stock Debian root filesystem image for zonefleet zones with
# debootstrap: what Debian installs, unchanged (systemd as /sbin/init, its own
# users, setuid programs and file capabilities kept in the archive).
#
#   deploy/images/build-debian.sh OUT.tar
#
# Environment: SUITE (default bookworm), MIRROR (default: the first Debian
# mirror apt uses here), INCLUDE (extra packages, comma-separated; default
# what the whole-system zone tests and benchmarks run: systemd, dbus, openssh,
# nginx, iproute2, ping, procps). Installs debootstrap with apt-get when missing
# and running as root. Needs root (debootstrap chroots).
set -eu

out=${1:?usage: $0 OUT.tar}
suite=${SUITE:-bookworm}
include=${INCLUDE:-systemd,systemd-sysv,dbus,openssh-server,nginx-light,iproute2,iputils-ping,procps}

apt_mirror() {
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
        [ -f "$f" ] || continue
        m=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/* *$/\1/p; s/^deb \(http[^ ]*debian\)\/* .*/\1/p' "$f" | head -n1)
        if [ -n "$m" ]; then
            echo "$m"
            return
        fi
    done
    echo http://deb.debian.org/debian
}
mirror=${MIRROR:-$(apt_mirror)}

if ! command -v debootstrap >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build-debian: installing debootstrap" >&2
        apt-get install -y debootstrap >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y debootstrap >/dev/null; }
    else
        echo "build-debian: debootstrap missing; install it" >&2
        exit 1
    fi
fi

work=$(mktemp -d /var/tmp/zonefleet-debian.XXXXXX)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 ||
    { tail -n 30 "$work/log" >&2; exit 1; }
# Written next to OUT and renamed, so a reader never sees half an archive.
tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/root" -cpf "$out.part" .
mv "$out.part" "$out"
