#!/bin/bash
# Baseline for bench/linux_stitch.py: one encrypted direct stitch built by hand with ip, wg,
# wireguard-go and tc in an existing lab, then time until the first ping reply; N rounds.
# usage: linux_baseline.sh LAB_NAME ROUNDS   (prints one duration in ms per round)
set -eu
LAB=$1; ROUNDS=${2:-20}
N1=vns-$LAB-n1; N3=vns-$LAB-n3; VA=vns-$LAB-vm-blue-1; VB=vns-$LAB-vm-red-1
KEYS=$(mktemp -d); chmod 700 "$KEYS"
trap 'rm -rf "$KEYS"' EXIT
for round in $(seq "$ROUNDS"); do
  wg genkey > "$KEYS/a"; wg genkey > "$KEYS/b"
  start=$(date +%s%N)
  ip netns exec $N1 wireguard-go wgbasea >/dev/null 2>&1
  ip netns exec $N3 wireguard-go wgbaseb >/dev/null 2>&1
  ip netns exec $N1 wg set wgbasea private-key "$KEYS/a" listen-port 29000 \
     peer "$(wg pubkey < "$KEYS/b")" endpoint 10.255.0.3:29001 allowed-ips 10.2.0.21/32
  ip netns exec $N3 wg set wgbaseb private-key "$KEYS/b" listen-port 29001 \
     peer "$(wg pubkey < "$KEYS/a")" endpoint 10.255.0.1:29000 allowed-ips 10.1.0.11/32
  ip -n $N1 link set wgbasea up; ip -n $N3 link set wgbaseb up
  ip -n $N1 link add gbasea type veth peer name pbasea netns $VA
  ip -n $N3 link add gbaseb type veth peer name pbaseb netns $VB
  ip -n $N1 addr add 169.254.250.1/32 dev gbasea; ip -n $N1 link set gbasea up; ip -n $VA link set pbasea up
  ip -n $N3 addr add 169.254.250.2/32 dev gbaseb; ip -n $N3 link set gbaseb up; ip -n $VB link set pbaseb up
  ip -n $N1 route add 10.2.0.21/32 dev wgbasea table 900; ip -n $N1 route add 10.1.0.11/32 dev gbasea table 900
  ip -n $N3 route add 10.1.0.11/32 dev wgbaseb table 900; ip -n $N3 route add 10.2.0.21/32 dev gbaseb table 900
  ip -n $N1 rule add iif gbasea lookup 900; ip -n $N1 rule add iif wgbasea lookup 900
  ip -n $N3 rule add iif gbaseb lookup 900; ip -n $N3 rule add iif wgbaseb lookup 900
  ip -n $VA route add 10.2.0.21/32 via 169.254.250.1 dev pbasea onlink src 10.1.0.11 mtu 1420
  ip -n $VB route add 10.1.0.11/32 via 169.254.250.2 dev pbaseb onlink src 10.2.0.21 mtu 1420
  tc -n $N1 class add dev sub1 parent 1:1 classid 1:f00 htb rate 10mbit ceil 10mbit
  tc -n $N1 filter add dev sub1 parent 1: protocol ip prio 900 u32 match ip protocol 17 0xff match ip dport 29001 0xffff flowid 1:f00
  until ip netns exec $VA ping -c1 -W1 -n -q 10.2.0.21 >/dev/null 2>&1; do :; done
  end=$(date +%s%N)
  echo $(( (end - start) / 1000 ))
  # undo
  tc -n $N1 filter del dev sub1 parent 1: prio 900; tc -n $N1 class del dev sub1 classid 1:f00
  for ns in $N1 $N3; do while ip -n $ns rule del pref 0 lookup 900 2>/dev/null || ip -n $ns rule del lookup 900 2>/dev/null; do :; done; ip -n $ns route flush table 900; done
  ip -n $N1 link del gbasea; ip -n $N3 link del gbaseb
  ip -n $N1 link del wgbasea; ip -n $N3 link del wgbaseb
  sleep 0.05
done
