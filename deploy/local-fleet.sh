#!/usr/bin/env bash
# A local zonefleet on this machine (as root, Debian, Rust installed):
#   deploy/local-fleet.sh up      build, make the fleet PKI, start 3 controllers on
#                                 loopback, import the busybox image on this host and
#                                 place two zones on it (one with a NIC on a local bridge)
#   deploy/local-fleet.sh status  show the controllers and the zones
#   deploy/local-fleet.sh down    delete the zones, stop the controllers, remove it all
#
# Everything lives under $ZONEFLEET_LOCAL (default ./local-fleet): certificates,
# controller data and logs, the host's data dir. Only loopback addresses and a
# bridge (zflocal0, 10.231.0.1/24) that this script makes are used.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${ZONEFLEET_LOCAL:-$PWD/local-fleet}"
bin="$PWD/target/debug"
bridge=zflocal0
ports=(7101 7102 7103)

agent() { "$bin/zonefleet-agent" --data-dir "$root/host" --bridge "$bridge" "$@"; }
zfadm() {
    ZONEFLEET_CONTROLLERS="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}" \
    ZONEFLEET_CA="$root/pki/ca.crt" ZONEFLEET_CERT="$root/pki/operator-admin.crt" \
    ZONEFLEET_KEY="$root/pki/operator-admin.key" "$bin/zfadm" "$@"
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "local-fleet: run as root (zones need namespaces, cgroups and loop devices)" >&2
        exit 1
    fi
}

install_packages() {
    local missing=()
    for pkg in busybox-static e2fsprogs nftables iproute2; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

start_controllers() {
    mkdir -p "$root"
    if [ ! -f "$root/pki/ca.crt" ]; then
        "$bin/zfadm" pki init --cluster local --out "$root/pki" \
            --controller "1=127.0.0.1:${ports[0]}" --controller "2=127.0.0.1:${ports[1]}" \
            --controller "3=127.0.0.1:${ports[2]}" >/dev/null
    fi
    for i in 1 2 3; do
        local pidfile="$root/controller-$i.pid"
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then continue; fi
        cat >"$root/controller-$i.toml" <<TOML
id = $i
cluster = "local"
listen = "127.0.0.1:${ports[$((i - 1))]}"
data_dir = "controller-$i"
[tls]
ca = "pki/ca.crt"
cert = "pki/controller-$i.crt"
key = "pki/controller-$i.key"
[signing_ca]
cert = "pki/signing-ca.crt"
key = "pki/signing-ca.key"
[initial_members]
1 = "127.0.0.1:${ports[0]}"
2 = "127.0.0.1:${ports[1]}"
3 = "127.0.0.1:${ports[2]}"
TOML
        setsid "$bin/zonefleet-controller" --config "$root/controller-$i.toml" \
            >"$root/controller-$i.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    done
    for _ in $(seq 100); do
        if zfadm cluster status >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "local-fleet: the controllers did not elect a leader; see $root/controller-*.log" >&2
    exit 1
}

place_zones() {
    if [ ! -f "$root/busybox.tar.gz" ]; then
        bash deploy/images/build-busybox.sh "$root/busybox.tar.gz" >/dev/null
    fi
    agent image import "$root/busybox.tar.gz" --name busybox --version 1 >/dev/null
    # The global zone's address on the zones' bridge (the bridge is made at the first boot).
    for spec in deploy/examples/hello.json deploy/examples/web.json; do
        local alias
        alias="$(sed -n 's/.*"alias": "\([^"]*\)".*/\1/p' "$spec")"
        agent zone get "$alias" >/dev/null 2>&1 || agent zone create -f "$spec" >/dev/null
    done
    ip addr replace 10.231.0.1/24 dev "$bridge"
    ip link set "$bridge" up
}

status() {
    echo "== controllers (zfadm cluster status)"
    zfadm cluster status || true
    echo
    echo "== zones on this host (zonefleet-agent zone list / ps)"
    agent zone list
    agent zone ps
}

down() {
    if [ -d "$root/host" ]; then
        for uuid in $(agent zone list -o json 2>/dev/null | sed -n 's/^    "uuid": "\(.*\)",$/\1/p'); do
            agent zone delete "$uuid" >/dev/null || true
        done
    fi
    for i in 1 2 3; do
        local pidfile="$root/controller-$i.pid"
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    [ -x "$bin/zonefleet-agent" ] && agent bridge delete >/dev/null 2>&1 || true
    for c in /sys/fs/cgroup/*/zonefleet-local; do rmdir "$c" 2>/dev/null || true; done
    rm -rf "$root"
    echo "local fleet removed"
}

case "${1:-up}" in
up)
    need_root
    install_packages
    cargo build --workspace --bins
    start_controllers
    mkdir -p "$root/host"
    # Fix this host's cgroup parent (kept in the data dir) before any zone exists.
    agent --cgroup-parent zonefleet-local zone list >/dev/null
    place_zones
    status
    echo
    echo "try: $bin/zonefleet-agent --data-dir $root/host zone exec hello -- ps"
    echo "     wget -qO- http://10.231.0.10/      (the web zone, through the bridge)"
    echo "     deploy/local-fleet.sh down"
    ;;
status) status ;;
down) need_root; down ;;
*)
    echo "usage: $0 up|status|down" >&2
    exit 2
    ;;
esac
