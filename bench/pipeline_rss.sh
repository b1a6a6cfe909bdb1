#!/usr/bin/env bash
# nova-agent's memory with ten pipelines (issue 14: RSS <= 8 MB), beside the same binary
# with none, in one run on one broker.
#
# Starts one Mosquitto on a free loopback port and two nova-agents side by side: one
# with a config of ten pipelines (each: a sensor input, a range filter, a window -- four
# tumbling, three hopping, three sliding -- a z-score stage, an outbox output and a rule
# that publishes to a local actuator topic), one with none. Ten sensors then publish
# --readings JSON readings each to both agents' sensor topics (mosquitto_pub -l), and
# once both agents have taken them all, each agent's VmRSS and VmHWM are printed, with
# the ratio and the target (met/MISSED).
#
#   cmake --build build --target nova-agent
#   bench/pipeline_rss.sh [--agent PATH] [--readings N]
#
# Needs mosquitto, mosquitto-clients and python3 (scripts/setup.sh). Everything is on
# 127.0.0.1, in one temp dir removed on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
agent_bin="$root/build/agent/nova-agent"
readings=2000

while (($#)); do
  case "$1" in
    --agent) agent_bin=$2; shift 2 ;;
    --readings) readings=$2; shift 2 ;;
    *) echo "usage: $0 [--agent PATH] [--readings N]" >&2; exit 2 ;;
  esac
done

tmp=$(mktemp -d)
declare -a pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
{
  echo "listener $port 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence false"
  echo "max_queued_messages 100000"
  if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
} >"$tmp/mosquitto.conf"
mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  mosquitto_pub -h 127.0.0.1 -p "$port" -t probe -m x 2>/dev/null && break
  sleep 0.1
done

pipelines() {
  local kinds=(tumbling tumbling tumbling tumbling hopping hopping hopping sliding sliding sliding)
  echo "pipelines:"
  for i in $(seq 0 9); do
    local kind=${kinds[$i]} hop=""
    [[ $kind == hopping ]] && hop=", hop_ms: 500"
    cat <<P
  - name: p$i
    input: {sensor: s$i, value: temp}
    filters:
      - range: {min: -40, max: 500}
    window: {kind: $kind, size_ms: 1000$hop, lateness_ms: 200}
    anomaly: {kind: zscore, threshold: 4, min_samples: 10, window: 600}
    outputs: [outbox]
    rules:
      - name: hot$i
        when: "mean > 100"
        hysteresis: 2
        quantum: 0.5
        action: {do: publish, target: fan$i, payload: "on"}
P
  done
}

write_config() {  # node with_pipelines
  mkdir -p "$tmp/$1"
  {
    echo "node: {id: $1, site: cloud/bench, level: 4}"
    echo "mqtt: {uri: \"tcp://127.0.0.1:$port\"}"
    echo "outbox: {dir: $tmp/$1/outbox}"
    echo "tasks: {dir: $tmp/$1/tasks}"
    echo "trust: {insecure_unsigned: true}"
    if [[ $2 == yes ]]; then pipelines; fi
  } >"$tmp/$1/agent.yaml"
}
write_config bench-pipelines yes
write_config bench-plain no
for node in bench-pipelines bench-plain; do
  "$agent_bin" --config "$tmp/$node/agent.yaml" 2>"$tmp/$node/log" &
  pids+=($!)
  declare "pid_${node//-/_}=$!"
done
sleep 2

# Readings 10 ms apart in event time, a sine between 40 and 120.
for i in $(seq 0 9); do
  python3 - "$readings" "$i" >"$tmp/readings$i.txt" <<'PY'
import math, sys
n, i = int(sys.argv[1]), int(sys.argv[2])
for k in range(n):
    print('{"v":1,"ts":%d,"values":{"temp":%.3f}}' % (1700000000000 + 10 * k, 80 + 40 * math.sin(k / 50 + i)))
PY
done
for node in bench-pipelines bench-plain; do
  for i in $(seq 0 9); do
    mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "nova/v1/sensor/$node/s$i" -l <"$tmp/readings$i.txt" &
  done
done
wait_pubs() { while pgrep -P $$ mosquitto_pub >/dev/null; do sleep 0.2; done; }
wait_pubs
sleep 3  # the agents take what the broker still holds for them

rss() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
a=$pid_bench_pipelines
b=$pid_bench_plain
ra=$(rss "$a" VmRSS); ha=$(rss "$a" VmHWM)
rb=$(rss "$b" VmRSS); hb=$(rss "$b" VmHWM)
echo "readings per agent: $((readings * 10)) (10 sensors x $readings)"
printf 'nova-agent, 10 pipelines: VmRSS %6d kB  VmHWM %6d kB\n' "$ra" "$ha"
printf 'nova-agent, no pipeline:  VmRSS %6d kB  VmHWM %6d kB\n' "$rb" "$hb"
awk -v ra="$ra" -v rb="$rb" -v ha="$ha" -v hb="$hb" 'BEGIN { printf "ratio (pipelines/none): RSS %.2f, HWM %.2f\n", ra / rb, ha / hb }'
if ((ra <= 8192)); then echo "target RSS <= 8 MB: met"; else echo "target RSS <= 8 MB: MISSED"; fi
grep -c "event=rule_action" "$tmp/bench-pipelines/log" | sed 's/^/rule actions logged: /'
grep -m1 -o "event=pipelines count=[0-9]*" "$tmp/bench-pipelines/log"
