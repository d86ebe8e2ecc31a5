#!/bin/sh
# Install etcd (server and etcdctl) for the etcd store tests and benches (idempotent, quiet).
# Does nothing when etcd is already on PATH or when not root (the etcd tests then skip).
set -eu

if command -v etcd >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "etcd-deps: not root and etcd is missing (the etcd tests will be skipped)" >&2
    exit 0
fi

echo "etcd-deps: installing etcd-server etcd-client" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null
fi
# The package enables a system etcd on 2379; the tests start their own members on free ports.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi
