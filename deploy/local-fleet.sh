#!/usr/bin/env bash
# A local zonefleet on this machine (as root, Debian, Rust installed):
#   deploy/local-fleet.sh up      build, make the fleet PKI, start 3 controllers on
#                                 loopback, enroll this host with a join token (the
#                                 agent daemon, `zonefleet-agent run`), import the busybox
#                                 image on it and create two zones with `zfadm zone
#                                 create`: the controllers place them, the agent runs them
#   deploy/local-fleet.sh status  show the controllers, the hosts and the zones
#   deploy/local-fleet.sh down    delete the zones, stop the agent and the controllers,
#                                 remove it all
#
# Everything lives under $ZONEFLEET_LOCAL (default ./local-fleet): certificates,
# controller data and logs, the agent's config, data dir and log. Only loopback
# addresses and a bridge (zflocal0, 10.231.0.1/24) that this script makes are used.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${ZONEFLEET_LOCAL:-$PWD/local-fleet}"
bin="$PWD/target/debug"
bridge=zflocal0
ports=(7101 7102 7103)

# The agent's standalone commands on the host's data dir (images, zone list/exec).
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

start_agent() {
    local pidfile="$root/agent.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return 0; fi
    mkdir -p "$root/host"
    if [ ! -f "$root/host/agent.crt" ]; then
        # A one-time join token: the host's rack comes from it, never from the host.
        local created token ca
        created="$(zfadm token create --ttl 10m --rack local -o json)"
        token="$(sed -n 's/.*"token": "\([^"]*\)".*/\1/p' <<<"$created")"
        ca="$(sed -n 's/.*"ca_fingerprint": "\([^"]*\)".*/\1/p' <<<"$created")"
        cat >"$root/agent.toml" <<TOML
controllers = ["127.0.0.1:${ports[0]}", "127.0.0.1:${ports[1]}", "127.0.0.1:${ports[2]}"]
token = "$token"
ca = "$ca"
cluster = "local"
data_dir = "$root/host"
cgroup_parent = "zonefleet-local"
bridge = "$bridge"
TOML
        chmod 600 "$root/agent.toml"
    fi
    ZONEFLEET_LOG=info setsid "$bin/zonefleet-agent" run --config "$root/agent.toml" \
        >>"$root/agent.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
        if zfadm host list 2>/dev/null | grep -q ready; then return 0; fi
        sleep 0.1
    done
    echo "local-fleet: the agent did not join; see $root/agent.log" >&2
    exit 1
}

place_zones() {
    if [ ! -f "$root/busybox.tar.gz" ]; then
        bash deploy/images/build-busybox.sh "$root/busybox.tar.gz" >/dev/null
    fi
    # Images are not yet distributed through the controllers: the host imports its own.
    agent image import "$root/busybox.tar.gz" --name busybox --version 1 >/dev/null
    for spec in deploy/examples/hello.json deploy/examples/web.json; do
        local alias
        alias="$(sed -n 's/.*"alias": "\([^"]*\)".*/\1/p' "$spec")"
        zfadm zone get "$alias" >/dev/null 2>&1 || zfadm zone create -f "$spec" >/dev/null
    done
    for _ in $(seq 300); do
        if [ "$(zfadm zone list -o json | grep -c '"observed_state": "running"')" -ge 2 ]; then
            break
        fi
        sleep 0.1
    done
    # The global zone's address on the zones' bridge (made at the first boot).
    ip addr replace 10.231.0.1/24 dev "$bridge"
    ip link set "$bridge" up
}

status() {
    echo "== controllers (zfadm cluster status)"
    zfadm cluster status || true
    echo
    echo "== hosts and zones as the controllers see them (zfadm host list / zone list)"
    zfadm host list || true
    zfadm zone list || true
    echo
    echo "== zones on this host (zonefleet-agent zone ps)"
    agent zone ps
}

down() {
    # The fleet's way first: delete through the controllers, the agent removes them.
    if [ -x "$bin/zfadm" ] && zfadm cluster status >/dev/null 2>&1; then
        for uuid in $(zfadm zone list -o json 2>/dev/null | sed -n 's/^    "uuid": "\(.*\)",$/\1/p'); do
            zfadm zone delete "$uuid" >/dev/null 2>&1 || true
        done
        for _ in $(seq 100); do
            [ -z "$(zfadm zone list -o json 2>/dev/null | grep '"uuid"')" ] && break
            sleep 0.1
        done
    fi
    [ -f "$root/agent.pid" ] && kill "$(cat "$root/agent.pid")" 2>/dev/null || true
    # Whatever is left on the host (an agent that was not running).
    if [ -d "$root/host" ]; then
        for uuid in $(agent zone list -o json 2>/dev/null | sed -n 's/^    "uuid": "\(.*\)",$/\1/p'); do
            agent zone halt --grace 0 "$uuid" >/dev/null 2>&1 || true
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
    start_agent
    place_zones
    status
    echo
    echo "try: $bin/zonefleet-agent --data-dir $root/host zone exec hello -- ps"
    echo "     ZONEFLEET_CONTROLLERS=127.0.0.1:${ports[0]} ZONEFLEET_CA=$root/pki/ca.crt \\"
    echo "       ZONEFLEET_CERT=$root/pki/operator-admin.crt ZONEFLEET_KEY=$root/pki/operator-admin.key $bin/zfadm zone list"
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
