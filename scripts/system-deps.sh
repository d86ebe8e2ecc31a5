#!/bin/sh
# Install the Debian packages the tests and benches need (idempotent, quiet): the Linux data
# plane (iproute2, nftables, WireGuard, iperf3…), etcd for the scale-out tests and Prometheus for
# the telemetry tests; gobgpd for the sites tests (issue 14).
# Skips everything when the packages are already installed. When not root it prints what to install
# and exits 0, except under CI=true, where it exits 1 with the reason (a tier must not skip there).
set -eu

PACKAGES="iproute2 nftables wireguard-tools wireguard-go iperf3 tcpdump iputils-ping procps etcd-server etcd-client prometheus chromium gobgpd"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

# gobgpd's gRPC API definitions (its .proto files, from Debian's golang-github-osrg-gobgp-dev of the same
# version as gobgpd), unpacked without that package's Go dependencies: the route manager compiles its
# client from them (src/vnstitch/sites/gobgp_api.py). Root only; quiet when they are already there.
GOBGP_API_DIR=/usr/local/share/vnstitch/gobgp-api
gobgp_api() {
    if [ "$(id -u)" != "0" ]; then
        echo "system-deps: not root: gobgpd's API definitions are not unpacked (the route manager then uses the gobgp CLI)" >&2
        return 0
    fi
    version=$(dpkg-query -W -f='${source:Version}' gobgpd 2>/dev/null) || return 0
    if [ -f "$GOBGP_API_DIR/gobgp.proto" ] && [ "$(cat "$GOBGP_API_DIR/VERSION" 2>/dev/null)" = "$version" ]; then
        return 0
    fi
    work=$(mktemp -d)
    if ! (cd "$work" && apt-get download -qq "golang-github-osrg-gobgp-dev=$version" >/dev/null 2>&1); then
        apt-get update -qq >/dev/null 2>&1 || true
        if ! (cd "$work" && apt-get download -qq "golang-github-osrg-gobgp-dev=$version" >/dev/null 2>&1); then
            echo "system-deps: cannot download golang-github-osrg-gobgp-dev=$version: the route manager will use the gobgp CLI (slower)" >&2
            rm -rf "$work"
            return 0
        fi
    fi
    if dpkg-deb -x "$work"/golang-github-osrg-gobgp-dev_*.deb "$work/x" && mkdir -p "$GOBGP_API_DIR" &&
        cp "$work"/x/usr/share/gocode/src/github.com/osrg/gobgp/api/*.proto "$GOBGP_API_DIR/"; then
        echo "$version" > "$GOBGP_API_DIR/VERSION"
        echo "system-deps: gobgpd $version's API definitions are in $GOBGP_API_DIR" >&2
    else
        echo "system-deps: could not unpack gobgpd's API definitions: the route manager will use the gobgp CLI" >&2
    fi
    rm -rf "$work"
}

if [ -z "$missing" ]; then
    gobgp_api
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    if [ "${CI:-}" = "true" ]; then
        # CI runs as root: a tier without its packages would fail anyway, so say why here, first.
        echo "system-deps: not root, cannot install:$missing; CI=true, so the tiers that need them must run" >&2
        exit 1
    fi
    echo "system-deps: not root; missing:$missing (the tests that need them will be skipped)" >&2
    echo "system-deps: to install them: sudo apt-get install$missing" >&2
    exit 0
fi

echo "system-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# iperf3 asks whether to start a daemon; answer no.
echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The etcd package enables a system etcd on 2379; the tests start their own members on free ports.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
    # Likewise a system Prometheus on 9090 (and its node exporter, when recommends came along): the
    # telemetry tests start their own on a free port.
    systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
    # and gobgpd's own service: the sites tests start one speaker per site in their namespaces.
    systemctl disable --now gobgpd >/dev/null 2>&1 || true
fi
gobgp_api
