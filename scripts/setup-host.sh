#!/usr/bin/env bash
# Prepare this host for podlab: Docker engine running, static busybox, iptables, BIRD and
# the CNI reference plugins present, containerlab where Go can build it, then .venv with podlab installed editable
# (scripts/setup-venv.sh). Idempotent and fast when already done (a few docker/stat
# calls); run via `make setup`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
DOCKERD_LOG=/var/log/podlab-dockerd.log
DOCKER_WAIT_S=${DOCKER_WAIT_S:-30}

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=
apt_install() {
    # Only when something is missing: apt-get update is the slow part.
    command -v apt-get >/dev/null || die "missing $*; this script installs packages with apt-get (Debian/Ubuntu) only"
    [ "$(id -u)" = 0 ] || die "missing $*; run as root (podlab needs root anyway)"
    if [ -z "$APT_UPDATED" ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- host packages --------------------------------------------------------------------
need=()
# The images are FROM scratch + the host's static busybox (nothing is pulled).
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need+=(busybox-static)
# dockerd needs iptables to start (even though lab containers use network_mode=none).
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
# `routing: bgp`: podlab/bird carries the host's bird and birdcl (and their libraries).
[ -x /usr/sbin/bird ] && [ -x /usr/sbin/birdcl ] || need+=(bird2)
# podlab/node and podlab/bird carry iproute2's `bridge` (hairpin mode in the export).
[ -x /usr/sbin/bridge ] || [ -x /sbin/bridge ] || need+=(iproute2)
# podlab/frr (routers of the user's, e.g. containerlab's frr01): FRR's daemons and vtysh.
[ -x /usr/lib/frr/zebra ] && [ -x /usr/bin/vtysh ] || need+=(frr)
# `podlab capture --filter`: scapy compiles BPF with libpcap (tcpdump pulls it in).
command -v tcpdump >/dev/null || [ -x /usr/bin/tcpdump ] || need+=(tcpdump)
# The HTML report's test opens it in a headless browser: Debian's chromium, unless a
# Chromium or Chrome is there already (GitHub's Ubuntu runners ship google-chrome).
have_browser() {
    for b in chromium chromium-browser google-chrome google-chrome-stable; do
        command -v "$b" >/dev/null && return 0
    done
    return 1
}
have_browser || need+=(chromium)
# `cluster.cni: bridge|ptp`: the reference plugins (bridge, ptp, host-local, loopback,
# portmap, bandwidth, ...) in /usr/lib/cni, from the distribution like everything else.
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# `podlab graph -o dot`: its test renders every example's DOT with Graphviz's dot.
command -v dot >/dev/null || need+=(graphviz)
# The proof's integration tests inject stateless rewrites with nft payload statements.
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)
# verify's intra-pod check runs each container's own nc through nsenter (no docker exec).
command -v nsenter >/dev/null || [ -x /usr/bin/nsenter ] || need+=(util-linux)
# containerlab's build (below) patches it on a kernel without /proc/modules
if command -v go >/dev/null && ! command -v containerlab >/dev/null && [ ! -e /proc/modules ]; then
    command -v patch >/dev/null || need+=(patch)
fi
docker_ok() { docker info >/dev/null 2>&1; }
if ! docker_ok && ! command -v dockerd >/dev/null; then
    need+=(docker.io)
fi
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
    apt_install "${need[@]}"
fi

# bird2 is installed for its binaries only. Its package starts a daemon on the host where
# a service manager allows it: stop that one (through the host's own control socket and
# service manager, never by process name: lab containers run bird processes too) and keep
# it from starting at boot. Only right after installing it here: a bird the host's admin
# runs on purpose is left alone.
if [[ " ${need[*]} " == *" bird2 "* ]]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now bird.service >/dev/null 2>&1 || true
    else
        update-rc.d bird disable >/dev/null 2>&1 || true
        if [ -S /run/bird/bird.ctl ]; then
            /usr/sbin/birdcl -s /run/bird/bird.ctl down >/dev/null 2>&1 || true
        fi
    fi
    say "host bird service disabled (podlab only copies bird into podlab/bird)"
fi

# frr, like bird2, is installed for its binaries only: its package starts FRR on the host
# where a service manager allows it; stop that one through FRR's own init script (pid
# files, never process names: lab containers run zebra too) and keep it from booting.
if [[ " ${need[*]} " == *" frr "* ]]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable --now frr.service >/dev/null 2>&1 || true
    else
        update-rc.d frr disable >/dev/null 2>&1 || true
        /usr/lib/frr/frrinit.sh stop >/dev/null 2>&1 || true
    fi
    say "host frr service disabled (podlab only copies FRR into podlab/frr)"
fi

# --- docker daemon --------------------------------------------------------------------
if ! docker_ok; then
    if pgrep -x dockerd >/dev/null; then
        say "dockerd is running but not answering yet; waiting"
    else
        # no dockerd runs, so a pid file is a killed daemon's leftover; if its pid was
        # reused by another process, dockerd would refuse to start
        rm -f /var/run/docker.pid
        say "starting dockerd (log: $DOCKERD_LOG)"
        # No systemd in CI containers/VMs: run it detached ourselves.
        nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
        disown || true
    fi
    for _ in $(seq 1 "$DOCKER_WAIT_S"); do
        docker_ok && break
        sleep 1
    done
    docker_ok || die "dockerd did not answer within ${DOCKER_WAIT_S}s; see $DOCKERD_LOG"
    say "docker is up"
fi

# --- containerlab (optional: --runtime containerlab, make bench) -----------------------
scripts/install-containerlab.sh

# --- python venv ----------------------------------------------------------------------
VENV="$VENV" PYTHON="$PYTHON" scripts/setup-venv.sh
say "ok"
