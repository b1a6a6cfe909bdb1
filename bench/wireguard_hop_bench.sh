#!/usr/bin/env bash
# What a WireGuard link costs: the latency of one bridge hop (child broker -> parent
# broker, QoS 1, mutual TLS) between two network namespaces joined by a veth pair, once
# with the bridge dialling the parent's veth address (links: direct) and once through a
# wireguard-go tunnel (links: wireguard), both rendered by nova-bridge.
#
#   bench/wireguard_hop_bench.sh [BUILD_DIR]      (as root; BUILD_DIR defaults to build)
#
# mosquitto_pub -l at the child sends one message per line; each line is the send time
# (ns) written by a pacer at NOVA_WG_BENCH_RATE messages/s (default 200). mosquitto_sub
# at the parent prints its receive time (%U); the difference is the hop latency (same
# clock). The first NOVA_WG_BENCH_WARMUP (default 100) are dropped, then
# NOVA_WG_BENCH_MESSAGES (default 2000) are measured. Prints p50, p90, p99, max per mode.
set -euo pipefail

build=$(realpath "${1:-build}")
messages=${NOVA_WG_BENCH_MESSAGES:-2000}
warmup=${NOVA_WG_BENCH_WARMUP:-100}
rate=${NOVA_WG_BENCH_RATE:-200}
bridge_exe=$build/broker-bridge/nova-bridge
pki_exe=$build/security/nova-pki
die() { echo "wireguard_hop_bench: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (ip netns, TUN devices)"
[[ -x $bridge_exe && -x $pki_exe ]] || die "build nova-bridge and nova-pki first (ninja -C $build nova-bridge nova-pki)"
for exe in ip wg-quick wireguard-go mosquitto mosquitto_pub mosquitto_sub python3; do
  command -v "$exe" >/dev/null || die "no $exe on PATH (scripts/setup.sh installs it)"
done

work=$(mktemp -d)
id=$$
hub_ns=nova-wgb-$id-hub edge_ns=nova-wgb-$id-edge
hub_veth=192.168.78.1 edge_veth=192.168.78.2
hub_if=nwb${id}h edge_if=nwb${id}e
broker_pids=()

stop_mode() {
  for pid in "${broker_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${broker_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  broker_pids=()
  # wireguard-go of this run only: matched by its exact command line, killed by pid.
  for iface in "$hub_if" "$edge_if"; do
    for pid in $(pgrep -x -f "wireguard-go $iface" || true); do kill -9 "$pid" 2>/dev/null || true; done
    rm -f "/var/run/wireguard/$iface.sock"
  done
}
cleanup() {
  stop_mode
  ip netns del "$hub_ns" 2>/dev/null || true
  ip netns del "$edge_ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$hub_ns"
ip netns add "$edge_ns"
ip link add "nwv${id}h" type veth peer name "nwv${id}e"
ip link set "nwv${id}h" netns "$hub_ns"
ip link set "nwv${id}e" netns "$edge_ns"
ip -n "$hub_ns" addr add "$hub_veth/24" dev "nwv${id}h"
ip -n "$edge_ns" addr add "$edge_veth/24" dev "nwv${id}e"
for ns in "$hub_ns" "$edge_ns"; do
  ip -n "$ns" link set lo up
done
ip -n "$hub_ns" link set "nwv${id}h" up
ip -n "$edge_ns" link set "nwv${id}e" up

# wait_for <seconds> <command...>: re-runs the command every 0.1 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# measure <mode>: prints "<mode> p50 p90 p99 max" in ms.
measure() {
  local mode=$1 dir=$work/$1 hub_host
  mkdir -p "$dir"
  if [[ $mode == wireguard ]]; then
    hub_host=127.0.0.1
    cat >"$dir/topology.yaml" <<EOF
name: wg-bench
links: wireguard
sites:
  - {id: hub, level: 1, port: 18883, wireguard: {endpoint: $hub_veth}}
  - {id: edge, level: 2, parent: hub, port: 18884}
nodes:
  - {id: gw-1, site: edge}
EOF
  else
    hub_host=$hub_veth
    cat >"$dir/topology.yaml" <<EOF
name: direct-bench
sites:
  - {id: hub, level: 1, port: 18883, address: $hub_veth}
  - {id: edge, level: 2, parent: hub, port: 18884}
nodes:
  - {id: gw-1, site: edge}
EOF
  fi
  "$pki_exe" --dir "$dir/pki" topology "$dir/topology.yaml" >/dev/null
  for site in hub edge; do
    "$bridge_exe" render "$dir/topology.yaml" --site "$site" --out "$dir/$site" --pki "$dir/pki" --user root >/dev/null
  done
  if [[ $mode == wireguard ]]; then
    install -m 0600 "$dir/hub/wg-nova.conf" "$dir/$hub_if.conf"
    install -m 0600 "$dir/edge/wg-nova.conf" "$dir/$edge_if.conf"
    ip netns exec "$hub_ns" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wg-quick up "$dir/$hub_if.conf" >/dev/null 2>&1
    ip netns exec "$edge_ns" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wg-quick up "$dir/$edge_if.conf" >/dev/null 2>&1
  fi
  for site in hub edge; do
    local ns=$hub_ns
    [[ $site == edge ]] && ns=$edge_ns
    ip netns exec "$ns" mosquitto -c "$dir/$site/mosquitto.conf" >"$dir/$site.stdio" 2>&1 &
    broker_pids+=($!)
    wait_for 10 grep -qs " running" "$dir/$site/mosquitto.log" || die "$mode: $site broker did not start"
  done
  local pki=$dir/pki
  local cloud_tls=(--cafile "$pki/trust/ca.pem" --cert "$pki/identities/nova-cloud/cert.pem" --key "$pki/identities/nova-cloud/key.pem")
  local node_tls=(--cafile "$pki/trust/ca.pem" --cert "$pki/identities/gw-1/cert.pem" --key "$pki/identities/gw-1/key.pem")
  link_up() {
    [[ $(ip netns exec "$hub_ns" mosquitto_sub -h "$hub_host" -p 18883 "${cloud_tls[@]}" -t nova/v1/up/edge/link \
      --retained-only -C 1 -W 2 2>/dev/null) == 1 ]]
  }
  wait_for 30 link_up || die "$mode: the bridge did not connect"

  ip netns exec "$hub_ns" mosquitto_sub -h "$hub_host" -p 18883 "${cloud_tls[@]}" -q 1 \
    -t nova/v1/up/gw-1/latency -F '%U %p' >"$dir/received.txt" 2>"$dir/sub.err" &
  local sub=$!
  broker_pids+=("$sub")
  # The subscription is in place once a probe message comes through.
  probe_through() {
    ip netns exec "$edge_ns" mosquitto_pub -h 127.0.0.1 -p 18884 "${node_tls[@]}" -q 1 -t nova/v1/up/gw-1/latency -m 0
    grep -q ' 0$' "$dir/received.txt"
  }
  wait_for 30 probe_through || die "$mode: nothing reaches the parent"
  local total=$((warmup + messages))
  python3 - "$total" "$rate" <<'EOF' | ip netns exec "$edge_ns" mosquitto_pub -h 127.0.0.1 -p 18884 "${node_tls[@]}" \
    -q 1 -t nova/v1/up/gw-1/latency -l
import sys, time
total, rate = int(sys.argv[1]), float(sys.argv[2])
start = time.monotonic()
for i in range(total):
    # Paced against the start, so a late wake-up does not slow the rate down.
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    print(time.time_ns(), flush=True)
EOF
  wait_for 60 bash -c "(( \$(grep -vc ' 0$' '$dir/received.txt') >= $total ))" || die "$mode: lost messages"
  python3 - "$mode" "$warmup" "$dir/received.txt" <<'EOF'
import sys
mode, warmup, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lat = []
for line in open(path):
    recv, sent = line.split()
    if sent == "0":
        continue
    s, ns = recv.split(".")
    lat.append((int(s) * 10**9 + int(ns.ljust(9, "0")[:9]) - int(sent)) / 1e6)
lat = sorted(lat[warmup:])
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"{mode:10s} n={len(lat)} p50={pick(0.50):.3f} ms p90={pick(0.90):.3f} ms p99={pick(0.99):.3f} ms max={lat[-1]:.3f} ms")
EOF
  stop_mode
}

echo "one bridge hop, child -> parent, QoS 1, mutual TLS, $messages messages at $rate/s (after $warmup warm-up)"
measure direct
measure wireguard
