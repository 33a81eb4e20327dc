#!/usr/bin/env bash
# A local zonefleet on this machine (as root, Debian, Rust installed):
#   deploy/local-fleet.sh up      install the Debian packages it needs, build, and run
#                                 `zfadm dev up`: hosts in network namespaces on a bridge
#                                 switch, 3 controllers, 3 agents in 2 racks (each enrolled
#                                 with its own join token), the busybox image and sample
#                                 zones spread over both racks
#   deploy/local-fleet.sh status  show the controllers, the hosts and the zones
#   deploy/local-fleet.sh down    `zfadm dev down`: remove all of it
#
# Everything lives under $ZONEFLEET_LOCAL (default ./local-fleet): certificates,
# controller and agent configs, data dirs and logs. Only addresses of 10.234.0.0/24 and
# 10.234.1.0/24, on links `zfadm dev up` makes (all named zfdev…), are used.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${ZONEFLEET_LOCAL:-$PWD/local-fleet}"
bin="$PWD/target/debug"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "local-fleet: run as root (hosts are network namespaces; zones need namespaces, cgroups and loop devices)" >&2
        exit 1
    fi
}

install_packages() {
    local missing=()
    for pkg in busybox-static e2fsprogs nftables iproute2 curl; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

case "${1:-up}" in
up)
    need_root
    install_packages
    cargo build --workspace --bins
    "$bin/zfadm" dev up --dir "$root"
    ;;
status)
    eval "$("$bin/zfadm" dev env --dir "$root")"
    "$bin/zfadm" cluster status
    echo
    "$bin/zfadm" host list
    echo
    "$bin/zfadm" zone list
    ;;
down)
    need_root
    "$bin/zfadm" dev down --dir "$root"
    ;;
*)
    echo "usage: $0 up|status|down" >&2
    exit 2
    ;;
esac
