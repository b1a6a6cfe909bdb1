#!/usr/bin/env bash
# nova-agent against collectd, in one run, on one broker (issue 4, "Benchmark against a
# peer in the same run"; docs/benchmarks.md, section "Agent", has the method and results).
#
# Starts one Mosquitto on a free loopback port, then nova-agent and collectd side by side
# for --seconds (default 300), both publishing host metrics every second to that broker,
# and prints for each: RSS at the end, CPU use over the run, time from exec to the first
# record at the broker, and uplink bytes and messages per hour, with the ratio
# nova-agent/collectd and the issue's targets (met/MISSED). Two more nova-agents run in
# the same window over TLS (mqtts:// with a client certificate, EC P-256 made here with
# the openssl command, on a second listener of the same broker that requires one), one
# of them also checking control messages with an Ed25519 signing key (trust.signing_keys,
# made here with openssl), and their RSS and CPU are printed beside the plain agent's
# (issue 10, item 4). The plain and the first TLS agent run with
# trust.insecure_unsigned: true, as nova-agent needs a key or that switch to start.
#
#   cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-bench --target nova-agent
#   bench/agent_vs_collectd.sh [--seconds N] [--agent PATH] [--agent-extra FILE]
#
# The report counts the plain agent's alerts and decision records per hour (local
# decisions, docs/agent.md) and includes their bytes in its uplink; --agent-extra appends
# a file of YAML sections to the plain agent's config (e.g. `anomaly: {streams: []}`, the
# z-score on every gauge that was the default before anomaly.streams).
#
# Needs mosquitto, mosquitto-clients, collectd-core, openssl and python3 (scripts/setup.sh); with
# the zstd command the report also decodes a batch to show what a sample holds. No
# network: everything is on 127.0.0.1. Everything the run writes (broker, agent outbox,
# collectd, captures) is in one temp dir, removed on exit, also on Ctrl-C.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

seconds=300
agent_bin="$root/build-bench/agent/nova-agent"
collectd_bin=$(command -v collectd || echo /usr/sbin/collectd)
sample_every=10
first_timeout=20
startups=5
keep_temp=0
agent_extra=""

usage() {
  cat <<EOF
usage: $0 [--seconds N] [--startups N] [--agent PATH] [--agent-extra FILE] [--collectd PATH] [--sample-every S] [--keep-temp]

  --seconds N       how long both run side by side, from the later start (default 300;
                    nova-agent publishes one batch a minute, so use >= 120 for its uplink)
  --startups N      extra starts of each peer before the run, each stopped after its
                    first record, for the startup median (default 5; 0: only the run's)
  --agent PATH      the nova-agent binary (default build-bench/agent/nova-agent)
  --agent-extra FILE  YAML sections appended to the plain nova-agent's config (default: none,
                    every key but the benchmark's own at its default)
  --collectd PATH   the collectd binary (default: collectd on PATH, or /usr/sbin/collectd)
  --sample-every S  seconds between RSS/CPU samples of the timeline (default 10)
  --keep-temp       keep the temp dir (broker, outbox, captures) and print its path
EOF
}

while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --startups) startups=$2; shift 2 ;;
    --agent) agent_bin=$2; shift 2 ;;
    --agent-extra) agent_extra=$2; shift 2 ;;
    --collectd) collectd_bin=$2; shift 2 ;;
    --sample-every) sample_every=$2; shift 2 ;;
    --keep-temp) keep_temp=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $seconds =~ ^[0-9]+$ && $seconds -ge 5 ]] || { echo "--seconds must be an integer >= 5" >&2; exit 2; }
[[ $sample_every =~ ^[0-9]+$ && $sample_every -ge 1 ]] || { echo "--sample-every must be an integer >= 1" >&2; exit 2; }
[[ $startups =~ ^[0-9]+$ ]] || { echo "--startups must be an integer >= 0" >&2; exit 2; }

need() { command -v "$1" >/dev/null 2>&1 || [[ -x "$1" ]] || { echo "missing: $1 ($2)" >&2; exit 2; }; }
need mosquitto "apt-get install mosquitto, or scripts/setup.sh"
need mosquitto_sub "apt-get install mosquitto-clients"
need mosquitto_pub "apt-get install mosquitto-clients"
need python3 "apt-get install python3"
need openssl "apt-get install openssl"
need "$collectd_bin" "apt-get install collectd-core"
[[ -x $agent_bin ]] || {
  echo "nova-agent not found at $agent_bin; build it first:" >&2
  echo "  cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build-bench --target nova-agent" >&2
  exit 2
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nova-agent-bench.XXXXXX")
declare -A pids=()   # name -> pid of every process this script started
sleep_pid=""

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# Stops the given processes: SIGTERM, then SIGKILL after 10 s.
stop() {
  local name pid deadline=$((SECONDS + 10))
  for name in "$@"; do
    pid=${pids[$name]:-}
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for name in "$@"; do
    pid=${pids[$name]:-}
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    [[ -n $pid ]] && wait "$pid" 2>/dev/null || true
    unset "pids[$name]"
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  if alive "$sleep_pid"; then kill -TERM "$sleep_pid" 2>/dev/null; fi
  # Publishers first (the broker must outlive them for their clean disconnect), then
  # the sampler and subscribers, then the broker.
  stop agent agent_tls agent_tls_key collectd
  stop sampler sub_agent sub_agent_tls sub_agent_tls_key sub_collectd
  stop mosquitto
  if ((keep_temp)); then
    echo "temp dir kept: $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Sleeps in the background so that a signal ends the wait at once.
nap() {
  sleep "$1" &
  sleep_pid=$!
  wait "$sleep_pid" || true
  sleep_pid=""
}

now() { printf '%s\n' "$EPOCHREALTIME"; }

# Microseconds since the epoch, without a fork.
now_us() {
  local t=$EPOCHREALTIME
  echo $((${t%.*} * 1000000 + 10#${t#*.}))
}

meta() { printf '%s=%s\n' "$1" "$2" >>"$tmp/meta.env"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- TLS
# A CA, the broker's certificate (SAN 127.0.0.1) and the TLS agent's (CN = its node id).
issue_cert() {  # name cn extension
  local d=$tmp/tls
  printf '%s\n' "$3" >"$d/$1.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$1.key" -out "$d/$1.csr" \
    -subj "/CN=$2" >>"$d/openssl.log" 2>&1
  openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/$1.ext" -out "$d/$1.crt" >>"$d/openssl.log" 2>&1
}
make_tls() {
  mkdir -p "$tmp/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/tls/ca.key" \
    -out "$tmp/tls/ca.crt" -days 2 -subj /CN=bench-ca -addext basicConstraints=critical,CA:true \
    >"$tmp/tls/openssl.log" 2>&1
  issue_cert server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost"
  issue_cert agent bench-agent-tls "basicConstraints=CA:false"
  # nova-cloud's signing key, as `nova-pki signing-key` makes it: Ed25519, public half PEM.
  openssl genpkey -algorithm ED25519 -out "$tmp/tls/signing.key" >>"$tmp/tls/openssl.log" 2>&1
  openssl pkey -in "$tmp/tls/signing.key" -pubout -out "$tmp/tls/signing.pub" >>"$tmp/tls/openssl.log" 2>&1
}

# ---------------------------------------------------------------- broker
start_broker() {
  local attempt
  mkdir -p "$tmp/mosquitto"
  for attempt in 1 2 3; do
    port=$(free_port)
    tls_port=$(free_port)
    {
      echo "listener $tls_port 127.0.0.1"
      echo "cafile $tmp/tls/ca.crt"
      echo "certfile $tmp/tls/server.crt"
      echo "keyfile $tmp/tls/server.key"
      echo "require_certificate true"
      echo "use_identity_as_username true"
      echo "tls_version tlsv1.2"
      echo "listener $port 127.0.0.1"
      echo "allow_anonymous true"
      echo "persistence false"
      echo "log_dest file $tmp/mosquitto/mosquitto.log"
      echo "log_type error"
      echo "log_type warning"
      echo "log_type notice"
      echo "log_type information"
      echo "connection_messages true"
      # As root, Mosquitto would otherwise switch to user "mosquitto" and could not
      # write its log in our temp dir.
      if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
    } >"$tmp/mosquitto/mosquitto.conf"
    mosquitto -c "$tmp/mosquitto/mosquitto.conf" >>"$tmp/mosquitto/stderr" 2>&1 &
    pids[mosquitto]=$!
    local deadline=$((SECONDS + 5))
    while alive "${pids[mosquitto]}" && ((SECONDS < deadline)); do
      if mosquitto_pub -h 127.0.0.1 -p "$port" -t bench/ready -n -q 1 >/dev/null 2>&1; then return 0; fi
      nap 0.05
    done
    stop mosquitto
    echo "broker did not start on port $port (attempt $attempt)" >&2
  done
  cat "$tmp/mosquitto/stderr" "$tmp/mosquitto/mosquitto.log" >&2 2>/dev/null || true
  exit 1
}

# ---------------------------------------------------------------- subscribers
# One subscriber per peer, QoS 1, started before the peer: each line is
# "<receipt unix time> <retained> <payload bytes> <topic> <payload hex>". A probe topic
# in the same subscription shows when it is live.
start_subscriber() {
  local name=$1 filter=$2 deadline
  mosquitto_sub -h 127.0.0.1 -p "$port" -q 1 -i "bench-sub-$name" -t "$filter" -t "bench/probe/$name" \
    -F '%U %r %l %t %x' >"$tmp/$name.msgs" 2>"$tmp/$name.sub.err" &
  pids[sub_$name]=$!
  deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do
    mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t "bench/probe/$name" -m probe >/dev/null 2>&1 || true
    if grep -q " bench/probe/$name " "$tmp/$name.msgs" 2>/dev/null; then return 0; fi
    nap 0.1
  done
  echo "subscriber for $name did not come up" >&2
  exit 1
}

# Waits for the first record of a peer at the broker: a non-probe line after the first
# `skip` lines of its capture.
wait_first_record() {
  local name=$1 skip=$2 log=$3 deadline=$((SECONDS + first_timeout))
  while ((SECONDS < deadline)); do
    if tail -n +"$((skip + 1))" "$tmp/$name.msgs" 2>/dev/null | grep -qv " bench/probe/"; then return 0; fi
    alive "${pids[$name]}" || { echo "$name exited during startup; its log:" >&2; cat "$log" >&2; exit 1; }
    nap 0.02
  done
  echo "warning: no record from $name within ${first_timeout}s" >&2
}

# Starts a peer and waits for its first record: the exec time is written to `t0file` by
# the shell that then execs the peer (no fork between).
launch() {
  local name=$1 t0file=$2 log=$3 skip
  shift 3
  skip=$(wc -l <"$tmp/$name.msgs")
  bash -c 'printf "%s\n" "$EPOCHREALTIME" >"$0"; exec "$@"' "$t0file" "$@" >"$log" 2>&1 &
  pids[$name]=$!
  wait_first_record "$name" "$skip" "$log"
}

# ---------------------------------------------------------------- /proc snapshots
# Timeline line: <unix time> <name> <VmRSS kB> <VmHWM kB> <utime+stime ticks>
# <context switches, all threads> <threads>
sample_proc() {
  local name=$1 pid=$2 t line rest k v _ rss=0 hwm=0 thr=0 ctx=0 f
  t=$(now)
  read -r line <"/proc/$pid/stat" || return 0
  rest=${line##*) }
  read -ra f <<<"$rest"
  while read -r k v _; do
    case "$k" in
      VmRSS:) rss=$v ;;
      VmHWM:) hwm=$v ;;
      Threads:) thr=$v ;;
    esac
  done <"/proc/$pid/status"
  for f2 in /proc/"$pid"/task/*/status; do
    while read -r k v _; do
      case "$k" in
        voluntary_ctxt_switches: | nonvoluntary_ctxt_switches:) ctx=$((ctx + v)) ;;
      esac
    done <"$f2" 2>/dev/null || true
  done
  echo "$t $name $rss $hwm $((f[11] + f[12])) $ctx $thr"
}

sampler() {
  local sp=""
  trap 'if [[ -n $sp ]]; then kill -TERM "$sp" 2>/dev/null; fi; exit 0' TERM
  while :; do
    if alive "${pids[agent]}"; then sample_proc agent "${pids[agent]}"; fi
    if alive "${pids[agent_tls]:-}"; then sample_proc agent_tls "${pids[agent_tls]}"; fi
    if alive "${pids[agent_tls_key]:-}"; then sample_proc agent_tls_key "${pids[agent_tls_key]}"; fi
    if alive "${pids[collectd]}"; then sample_proc collectd "${pids[collectd]}"; fi
    sleep "$sample_every" &
    sp=$!
    wait "$sp" || true
    sp=""
  done
}

snapshot() {
  local name=$1 pid=$2 tag=$3
  cp "/proc/$pid/stat" "$tmp/$name.stat.$tag"
  cp "/proc/$pid/status" "$tmp/$name.status.$tag"
  if [[ $tag == end ]]; then
    cp "/proc/$pid/smaps_rollup" "$tmp/$name.smaps_rollup.end" 2>/dev/null || true
    cp "/proc/$pid/smaps" "$tmp/$name.smaps.end" 2>/dev/null || true
    cp "/proc/$pid/io" "$tmp/$name.io.end" 2>/dev/null || true
  fi
}

# ---------------------------------------------------------------- run
: >"$tmp/meta.env"
meta seconds "$seconds"
meta clk_tck "$(getconf CLK_TCK)"
meta nproc "$(nproc)"
meta kernel "$(uname -sr)"
meta cpu_model "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
meta mem_total_kb "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
meta agent_version "$("$agent_bin" --version 2>&1 | head -1)"
meta collectd_version "collectd $(dpkg-query -W -f='${Version}' collectd-core 2>/dev/null ||
  "$collectd_bin" -h 2>&1 | awk '/^collectd [0-9]/ {sub(",", "", $2); print $2; exit}')"
meta mosquitto_version "$(mosquitto -h 2>&1 | awk '/^mosquitto version/ {print $3; exit}')"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta agent_bin "$agent_bin"

make_tls
start_broker
meta port "$port"
meta tls_port "$tls_port"

# nova-agent: the issue's benchmark settings; every other key keeps its default.
mkdir -p "$tmp/agent-conf" "$tmp/agent"
cat >"$tmp/agent-conf/agent.yaml" <<EOF
node:
  id: bench-agent
  site: cloud/eu/par/par-a1
  level: 4
mqtt:
  uri: tcp://127.0.0.1:$port
metrics:
  interval_ms: 1000
  batch_interval_s: 60
outbox:
  dir: $tmp/agent/outbox
tasks:
  dir: $tmp/agent/tasks
trust:
  insecure_unsigned: true
EOF
if [[ -n $agent_extra ]]; then
  cat "$agent_extra" >>"$tmp/agent-conf/agent.yaml"
  meta agent_extra "$(tr '\n' ' ' <"$agent_extra")"
fi
"$agent_bin" --check-config --config "$tmp/agent-conf/agent.yaml" >/dev/null
# The same agent over TLS: only its id, uri, TLS files and state dir differ.
mkdir -p "$tmp/agent_tls"
cat >"$tmp/agent-conf/agent_tls.yaml" <<EOF
node:
  id: bench-agent-tls
  site: cloud/eu/par/par-a1
  level: 4
mqtt:
  uri: mqtts://127.0.0.1:$tls_port
  tls_ca_file: $tmp/tls/ca.crt
  tls_cert_file: $tmp/tls/agent.crt
  tls_key_file: $tmp/tls/agent.key
metrics:
  interval_ms: 1000
  batch_interval_s: 60
outbox:
  dir: $tmp/agent_tls/outbox
tasks:
  dir: $tmp/agent_tls/tasks
trust:
  insecure_unsigned: true
EOF
"$agent_bin" --check-config --config "$tmp/agent-conf/agent_tls.yaml" >/dev/null
# The TLS agent as deployed: it checks control messages with a trusted signing key.
mkdir -p "$tmp/agent_tls_key"
sed -e "s|bench-agent-tls|bench-agent-tls-key|" -e "s|$tmp/agent_tls/|$tmp/agent_tls_key/|" \
  -e "s|insecure_unsigned: true|signing_keys: [$tmp/tls/signing.pub]|" \
  "$tmp/agent-conf/agent_tls.yaml" >"$tmp/agent-conf/agent_tls_key.yaml"
"$agent_bin" --check-config --config "$tmp/agent-conf/agent_tls_key.yaml" >/dev/null
meta agent_batch_interval_s 60

# collectd: bench/collectd/collectd.conf.in with this run's dir, port and names.
mkdir -p "$tmp/collectd"
collectd_prefix=collectd
sed -e "s|@DIR@|$tmp/collectd|g" -e "s|@PORT@|$port|g" -e "s|@HOSTNAME@|bench-collectd|g" \
  -e "s|@PREFIX@|$collectd_prefix|g" "$here/collectd/collectd.conf.in" >"$tmp/collectd/collectd.conf"
"$collectd_bin" -t -C "$tmp/collectd/collectd.conf" >"$tmp/collectd/config-test.log" 2>&1 || {
  echo "collectd rejects its configuration:" >&2
  cat "$tmp/collectd/config-test.log" >&2
  exit 1
}

start_subscriber agent "nova/v1/up/bench-agent/#"
start_subscriber collectd "$collectd_prefix/#"
start_subscriber agent_tls "nova/v1/up/bench-agent-tls/#"
start_subscriber agent_tls_key "nova/v1/up/bench-agent-tls-key/#"

# Startup: besides the run's own start, `startups` starts of each peer, each stopped once
# its first record has arrived (nova-agent with a fresh state dir each time). What they
# publish is before the run's window.
meta startups "$startups"
if ((startups > 0)); then echo "measuring ${startups} extra starts of each peer" >&2; fi
for ((i = 1; i <= startups; i++)); do
  mkdir -p "$tmp/trial$i"
  sed -e "s|$tmp/agent/|$tmp/trial$i/|" "$tmp/agent-conf/agent.yaml" >"$tmp/trial$i/agent.yaml"
  launch agent "$tmp/agent.start$i.t0" "$tmp/trial$i/agent.log" "$agent_bin" --config "$tmp/trial$i/agent.yaml"
  stop agent
  launch collectd "$tmp/collectd.start$i.t0" "$tmp/trial$i/collectd.log" "$collectd_bin" -f -C "$tmp/collectd/collectd.conf"
  stop collectd
  nap 0.5
done

echo "broker 127.0.0.1:$port; starting nova-agent, then collectd; running ${seconds}s side by side" >&2
launch agent "$tmp/agent.t0" "$tmp/agent.log" "$agent_bin" --config "$tmp/agent-conf/agent.yaml"
launch collectd "$tmp/collectd.t0" "$tmp/collectd.log" "$collectd_bin" -f -C "$tmp/collectd/collectd.conf"
launch agent_tls "$tmp/agent_tls.t0" "$tmp/agent_tls.log" "$agent_bin" --config "$tmp/agent-conf/agent_tls.yaml"
launch agent_tls_key "$tmp/agent_tls_key.t0" "$tmp/agent_tls_key.log" "$agent_bin" --config "$tmp/agent-conf/agent_tls_key.yaml"
meta agent_pid "${pids[agent]}"
meta collectd_pid "${pids[collectd]}"

sampler >"$tmp/timeline.txt" &
pids[sampler]=$!

# Both run for `seconds` from the later start.
t_collectd0=$(<"$tmp/collectd.t0")
end_us=$((${t_collectd0%.*} * 1000000 + 10#${t_collectd0#*.} + seconds * 1000000))
while :; do
  left_us=$((end_us - $(now_us)))
  ((left_us > 0)) || break
  if ! alive "${pids[agent]}" || ! alive "${pids[collectd]}" || ! alive "${pids[agent_tls]}" ||
    ! alive "${pids[agent_tls_key]}"; then
    echo "a peer exited during the run:" >&2
    tail -20 "$tmp/agent.log" "$tmp/agent_tls.log" "$tmp/agent_tls_key.log" "$tmp/collectd.log" \
      "$tmp/collectd/collectd.log" >&2
    exit 1
  fi
  ((left_us > 10000000)) && left_us=10000000
  nap "$((left_us / 1000000)).$(printf '%06d' $((left_us % 1000000)))"
done

# End of the measurement window: snapshot, then stop. What the peers publish while
# stopping (nova-agent's "offline" state and last partial batch) is after the window.
meta t_end "$(now)"
stop sampler
snapshot agent "${pids[agent]}" end
snapshot collectd "${pids[collectd]}" end
snapshot agent_tls "${pids[agent_tls]}" end
snapshot agent_tls_key "${pids[agent_tls_key]}" end
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta agent_outbox_bytes "$(du -sb "$tmp/agent/outbox" | cut -f1)"
meta agent_state_bytes "$(du -sb "$tmp/agent" | cut -f1)"
stop agent agent_tls agent_tls_key collectd
nap 0.5
stop sub_agent sub_agent_tls sub_agent_tls_key sub_collectd

python3 "$here/agent_vs_collectd_report.py" "$tmp"
