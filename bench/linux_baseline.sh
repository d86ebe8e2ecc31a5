#!/bin/bash
# Baseline for bench/linux_stitch.py: the encrypted direct stitch blue-1 (n1) -> red-1 (n3) over
# n1 -> n2 -> n3 built by hand with ip, wg, wireguard-go and nft in an existing lab, the same
# kernel state the linux driver makes (see docs/DATAPLANE.md): a key pair, two wireguard-go
# tunnels, attachment veths, a routing table with `iif` rules on each end, UDP pinned to the
# path on every node, VM routes, and nftables allow rules in the lab's default-deny table.
# No tc: the benchmarked stitch reserves no bandwidth, so the driver makes no HTB class either.
# The driver runs each wireguard-go in a namespace of its own (drivers/linux/uplink.py, issue 17);
# this script keeps the plain layout (wireguard-go in the node's namespace), what one writes by hand.
#
# usage: linux_baseline.sh LAB one ROUNDS   one stitch per round, timed to the first ping reply;
#                                           prints one duration in microseconds per round
#        linux_baseline.sh LAB many N       N stitches, then the first ping reply; prints, in
#                                           microseconds since the start, when each stitch was
#                                           built (N lines), then the first reply (one line);
#                                           removes them afterwards
# Needs the lab's nftables base table (`vnstitch lab up` makes it).
set -eu
umask 077
LAB=$1; MODE=${2:-one}; COUNT=${3:-20}
N1=vns-$LAB-n1; N2=vns-$LAB-n2; N3=vns-$LAB-n3; VA=vns-$LAB-vm-blue-1; VB=vns-$LAB-vm-red-1
A_NODE=10.255.0.1; B_NODE=10.255.0.3; A_VM=10.1.0.11; B_VM=10.2.0.21
KEYS=$(mktemp -d); chmod 700 "$KEYS"
trap 'rm -rf "$KEYS"' EXIT
for ns in $N1 $N3; do
  ip netns exec "$ns" nft list chain inet vnstitch forward >/dev/null
done

build() {  # build I: stitch number I (names, ports, table and gateway addresses derive from it)
  local i=$1 t=$((2000 + $1)) pa=$((30000 + 2 * $1)) pb=$((30001 + 2 * $1))
  local ga=169.254.$((200 + $1 / 100)).$((2 * ($1 % 100) + 2)) gb=169.254.$((200 + $1 / 100)).$((2 * ($1 % 100) + 3))
  wg genkey > "$KEYS/a$i"; wg genkey > "$KEYS/b$i"
  ip netns exec $N1 wireguard-go wgb${i}a >/dev/null 2>&1
  ip netns exec $N3 wireguard-go wgb${i}b >/dev/null 2>&1
  ip netns exec $N1 wg set wgb${i}a private-key "$KEYS/a$i" listen-port $pa peer "$(wg pubkey < "$KEYS/b$i")" \
     endpoint $B_NODE:$pb allowed-ips $B_VM/32 persistent-keepalive 25
  ip netns exec $N3 wg set wgb${i}b private-key "$KEYS/b$i" listen-port $pb peer "$(wg pubkey < "$KEYS/a$i")" \
     endpoint $A_NODE:$pa allowed-ips $A_VM/32 persistent-keepalive 25
  ip -n $N1 link add gb${i}a mtu 1420 type veth peer name pb${i}a mtu 1420 netns $VA
  ip -n $N3 link add gb${i}b mtu 1420 type veth peer name pb${i}b mtu 1420 netns $VB
  ip -n $N1 addr add $ga/32 dev gb${i}a; ip -n $N1 link set gb${i}a up; ip -n $VA link set pb${i}a up
  ip -n $N3 addr add $gb/32 dev gb${i}b; ip -n $N3 link set gb${i}b up; ip -n $VB link set pb${i}b up
  ip -n $VA route replace $B_VM/32 via $ga dev pb${i}a onlink src $A_VM mtu 1420
  ip -n $VB route replace $A_VM/32 via $gb dev pb${i}b onlink src $B_VM mtu 1420
  # UDP of the tunnel pinned to n1 -> n2 -> n3 (and back)
  ip -n $N1 route add $B_NODE/32 via 10.255.0.2 dev sub1 onlink table $t
  ip -n $N2 route add $B_NODE/32 via $B_NODE dev sub2 onlink table $t
  ip -n $N2 route add $A_NODE/32 via $A_NODE dev sub0 onlink table $t
  ip -n $N3 route add $A_NODE/32 via 10.255.0.2 dev sub1 onlink table $t
  for ns in $N1 $N2 $N3; do
    ip -n $ns route add unreachable default table $t
    ip -n $ns rule add pref $t ipproto udp dport $pa-$pb lookup $t
  done
  ip netns exec $N1 nft -f - <<EOF
add chain inet vnstitch sb${i}a
add rule inet vnstitch sb${i}a iifname "gb${i}a" oifname "wgb${i}a" ip saddr $A_VM ip daddr $B_VM counter accept
add rule inet vnstitch sb${i}a iifname "wgb${i}a" oifname "gb${i}a" ip saddr $B_VM ip daddr $A_VM counter accept
add element inet vnstitch stitch_in { "gb${i}a" : jump sb${i}a, "wgb${i}a" : jump sb${i}a }
EOF
  ip netns exec $N3 nft -f - <<EOF
add chain inet vnstitch sb${i}b
add rule inet vnstitch sb${i}b iifname "gb${i}b" oifname "wgb${i}b" ip saddr $B_VM ip daddr $A_VM counter accept
add rule inet vnstitch sb${i}b iifname "wgb${i}b" oifname "gb${i}b" ip saddr $A_VM ip daddr $B_VM counter accept
add element inet vnstitch stitch_in { "gb${i}b" : jump sb${i}b, "wgb${i}b" : jump sb${i}b }
EOF
  # far end first, so the first handshake finds its peer listening (as the driver does)
  ip -n $N3 link set wgb${i}b mtu 1420 up; ip -n $N1 link set wgb${i}a mtu 1420 up
  ip -n $N1 route add $A_VM/32 dev gb${i}a table $t; ip -n $N1 route add $B_VM/32 dev wgb${i}a table $t
  ip -n $N3 route add $B_VM/32 dev gb${i}b table $t; ip -n $N3 route add $A_VM/32 dev wgb${i}b table $t
  ip -n $N1 rule add pref $t iif gb${i}a lookup $t; ip -n $N1 rule add pref $t iif wgb${i}a lookup $t
  ip -n $N3 rule add pref $t iif gb${i}b lookup $t; ip -n $N3 rule add pref $t iif wgb${i}b lookup $t
}

remove() {  # remove I
  local i=$1 t=$((2000 + $1))
  ip -n $N1 link del gb${i}a 2>/dev/null || true; ip -n $N3 link del gb${i}b 2>/dev/null || true
  ip -n $N1 link del wgb${i}a 2>/dev/null || true; ip -n $N3 link del wgb${i}b 2>/dev/null || true
  ip netns exec $N1 nft -f - <<EOF || true
delete element inet vnstitch stitch_in { "gb${i}a", "wgb${i}a" }
delete chain inet vnstitch sb${i}a
EOF
  ip netns exec $N3 nft -f - <<EOF || true
delete element inet vnstitch stitch_in { "gb${i}b", "wgb${i}b" }
delete chain inet vnstitch sb${i}b
EOF
  for ns in $N1 $N2 $N3; do
    while ip -n $ns rule del pref $t 2>/dev/null; do :; done
    ip -n $ns route flush table $t 2>/dev/null || true
  done
  rm -f "$KEYS/a$i" "$KEYS/b$i"
}

first_reply() {
  until ip netns exec $VA ping -c1 -W1 -n -q $B_VM >/dev/null 2>&1; do :; done
}

case $MODE in
  one)
    for round in $(seq "$COUNT"); do
      start=$(date +%s%N)
      build 0
      first_reply
      end=$(date +%s%N)
      echo $(( (end - start) / 1000 ))
      remove 0
    done
    ;;
  many)
    start=$(date +%s%N)
    for i in $(seq 0 $((COUNT - 1))); do
      build "$i"
      now=$(date +%s%N); echo $(( (now - start) / 1000 ))
    done
    first_reply
    end=$(date +%s%N)
    echo $(( (end - start) / 1000 ))
    for i in $(seq 0 $((COUNT - 1))); do remove "$i"; done
    ;;
  *) echo "usage: $0 LAB one|many N" >&2; exit 2 ;;
esac
