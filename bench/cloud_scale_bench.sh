#!/usr/bin/env bash
# nova-cloud at scale (issue 5, "Scale benchmark"): a mass birth of simulated nodes
# through the real five-tier broker hierarchy, measured at nova-cloud and at a peer
# consumer in the same run. docs/benchmarks.md has the method and results.
#
# Starts the five-tier example (nova-bridge up --insecure-plaintext: nova-sim's nodes share
# one certificate, for which nova-bridge renders no grant, docs/benchmarks.md; free ports:
# 1 cloud, 2 regional, 4 metro, 8 access brokers), nova-cloud on the cloud broker (fresh store, free HTTP port), then
# bench/cloud_scale_bench.py runs nova-sim against the 8 access brokers:
#   1. a small mass birth (--small, default 1,000 nodes), stopped with SIGTERM (goodbyes);
#   2. the large one (--nodes, default 10,000): after the births, every node sends a
#      metrics batch every --metrics-interval-s for --metrics-s; then SIGKILL (wills).
# For each it prints the time until nova-cloud reports every node alive (polling
# /metrics nova_cloud_nodes{liveness="alive"} every 50 ms), counted from the sim's first
# connect, first birth and last birth, next to mosquitto_sub counting the same births at
# the cloud broker (the peer consumer) and the small/large ratio; nova-cloud's RSS
# (VmRSS, VmHWM) and CPU seconds (utime+stime) per phase, and the brokers' CPU; records
# stored/s and acks sent during the metrics window; the time until every node is
# offline/dead after the sim stops.
#
#   cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-bench --target nova-sim nova-cloud nova-bridge nova-pki
#   bench/cloud_scale_bench.sh [--nodes N] [--small N] [--metrics-s S] [--bin-dir DIR]
#
# Raises the open-files limit (ulimit -n) to the hard limit before starting nova-bridge:
# the brokers are its children and inherit it, and each access broker holds N/8 node
# connections. Needs mosquitto, mosquitto-clients and python3 (scripts/setup.sh). Every
# file (configs, logs, broker databases, the cloud store) is in one temp dir, removed on
# exit, also on Ctrl-C, unless --keep-temp.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

nodes=10000
small=1000
metrics_s=60
metrics_interval_s=10
connect_rate=2000
bin_dir="$root/build-bench"
keep_temp=0

usage() {
  cat <<EOF
usage: $0 [--nodes N] [--small N] [--metrics-s S] [--metrics-interval-s S] [--connect-rate R]
          [--bin-dir DIR] [--keep-temp]

  --nodes N               nodes of the large mass birth (default 10000)
  --small N               nodes of the small one before it, the ratio's peer (default 1000; 0: skip)
  --metrics-s S           metrics window after the large birth (default 60; 0: skip)
  --metrics-interval-s S  one batch per node this often in that window (default 10)
  --connect-rate R        nova-sim's connects per second (default 2000)
  --bin-dir DIR           build dir holding sim/nova-sim, cloud/nova-cloud,
                          broker-bridge/nova-bridge and security/nova-pki (default build-bench)
  --keep-temp             keep the temp dir (logs, configs, store) and print its path
EOF
}

while (($#)); do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --metrics-s) metrics_s=$2; shift 2 ;;
    --metrics-interval-s) metrics_interval_s=$2; shift 2 ;;
    --connect-rate) connect_rate=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --keep-temp) keep_temp=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in nodes small metrics_s metrics_interval_s connect_rate; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "--${v//_/-} must be a non-negative integer" >&2; exit 2; }
done
((nodes >= 1 && connect_rate >= 1)) || { echo "--nodes and --connect-rate must be >= 1" >&2; exit 2; }

sim_bin="$bin_dir/sim/nova-sim"
cloud_bin="$bin_dir/cloud/nova-cloud"
bridge_bin="$bin_dir/broker-bridge/nova-bridge"
pki_bin="$bin_dir/security/nova-pki"
for b in "$sim_bin" "$cloud_bin" "$bridge_bin" "$pki_bin"; do
  [[ -x $b ]] || { echo "missing $b (build nova-sim nova-cloud nova-bridge nova-pki in $bin_dir, or pass --bin-dir)" >&2; exit 1; }
done
for tool in mosquitto mosquitto_sub python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (run scripts/setup.sh)" >&2; exit 1; }
done

# The brokers inherit this (nova-bridge runs them as children), and so does nova-sim.
ulimit -n "$(ulimit -Hn)"
need=$((nodes / 8 + 256))
(($(ulimit -n) >= need)) || echo "warning: open-files limit $(ulimit -n) < $need an access broker needs" >&2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nova-scale-XXXXXX")
run_dir="$tmp/run"
up_pid=""
cloud_pid=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $cloud_pid ]] && { kill -TERM "$cloud_pid" 2>/dev/null || true; wait "$cloud_pid" 2>/dev/null || true; }
  if [[ -n $up_pid ]]; then
    "$bridge_bin" down --run-dir "$run_dir" >/dev/null 2>&1 || kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  if ((keep_temp)); then echo "kept $tmp" >&2; else rm -rf -- "$tmp"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "cloud_scale_bench: FAILED: $*" >&2
  exit 1
}

# --- the hierarchy -----------------------------------------------------------------------
"$bridge_bin" up "$root/broker-bridge/examples/five-tier.yaml" --free-ports --insecure-plaintext --run-dir "$run_dir" \
  >"$tmp/up.out" 2>"$tmp/up.err" &
up_pid=$!
# tail -f wakes on writes (inotify) and ends with the supervisor (--pid).
if ! timeout 120 grep -q -m 1 '^ready: ' < <(tail --pid="$up_pid" -n +1 -f "$tmp/up.out") ||
  ! kill -0 "$up_pid" 2>/dev/null; then
  tail -n 20 "$tmp/up.err" >&2
  up_pid=""
  die "nova-bridge up did not get ready"
fi
echo "hierarchy up: $(grep -c '"id"' "$run_dir/hierarchy.json") brokers (run dir $run_dir)" >&2

cloud_port=$(python3 -c 'import json,sys; print(next(s["port"] for s in json.load(open(sys.argv[1]))["sites"] if s["level"] == 1))' \
  "$run_dir/hierarchy.json")
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# --- nova-cloud ----------------------------------------------------------------------------
# As in production: acks signed (nova-sim unwraps them without checking), an API token
# file (the bench reads only the open /metrics and /api/v1/health), an audit log.
"$pki_bin" --dir "$tmp/pki" signing-key --name bench >/dev/null
"$cloud_bin" token create --name bench --role viewer --tokens-file "$tmp/tokens" >/dev/null
cat >"$tmp/cloud.yaml" <<EOF
mqtt:
  uri: "tcp://127.0.0.1:$cloud_port"
  client_id: nova-cloud-bench
store:
  dir: $tmp/store
http:
  port: $http_port
auth:
  tokens_file: $tmp/tokens
signing:
  key_file: $tmp/pki/signing/bench.key
audit:
  file: $tmp/audit.log
EOF
"$cloud_bin" --config "$tmp/cloud.yaml" 2>"$tmp/cloud.log" &
cloud_pid=$!
for _ in $(seq 1 200); do
  python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "http://127.0.0.1:$http_port/api/v1/health" 2>/dev/null && break
  kill -0 "$cloud_pid" 2>/dev/null || { tail -n 20 "$tmp/cloud.log" >&2; cloud_pid=""; die "nova-cloud exited"; }
  sleep 0.05  # nothing to wait on but the port
done
echo "nova-cloud up (pid $cloud_pid, http $http_port)" >&2

# --- the phases ------------------------------------------------------------------------------
python3 "$here/cloud_scale_bench.py" --run-dir "$run_dir" --sim "$sim_bin" --cloud-pid "$cloud_pid" \
  --http-port "$http_port" --work-dir "$tmp" --nodes "$nodes" --small "$small" --metrics-s "$metrics_s" \
  --metrics-interval-s "$metrics_interval_s" --connect-rate "$connect_rate"
