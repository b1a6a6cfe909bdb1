#!/usr/bin/env bash
# NovaCron Edge main job: build the tree, start the five-tier example hierarchy of
# bridged Mosquitto brokers with `nova-bridge up` (1 cloud, 2 regional, 4 metro, 8
# access sites), wait until every broker is up and every bridge connected, publish a
# device's retained birth record (encoded by nova-codec) at its access broker, and show
# it arriving at the cloud broker four hops up, retained and byte for byte. Every hop is
# mutual TLS: a PKI made for the run by `nova-pki topology` (build/security/nova-pki, or
# $NOVA_PKI) gives every broker, bridge, agent and nova-cloud its certificate, whose CN
# the brokers' ACLs name; this script reads as the operator `demo` it enrols. Then start a
# nova-cloud at the cloud broker (REST API, /metrics and dashboard on port 8080, or a
# free port), then a nova-agent for every node of the topology (30: one per site, two
# devices per access site). nova-cloud sees every agent alive and acknowledges their
# metrics end to end; a workload submitted through its REST API is placed on a device,
# goes down as a task three bridge hops, and its result comes back up. Everything nova-cloud
# sends down (tasks, acks) is signed with an Ed25519 key made for the demo by
# `nova-pki signing-key`; every agent trusts it. The REST API takes a bearer token.
#
#   scripts/run.sh              set up, build, run the demo, keep the hierarchy up until ^C
#   scripts/run.sh --once       ... then stop the hierarchy and exit (0 ok, 1 failure)
#   scripts/run.sh --no-build   skip scripts/setup.sh and the CMake build
#   scripts/run.sh --codec P    use the nova-codec at P (default: build/schemas/nova-codec,
#                               or $NOVA_CODEC)
#   scripts/run.sh --bridge P   use the nova-bridge at P (default:
#                               build/broker-bridge/nova-bridge, or $NOVA_BRIDGE)
#   scripts/run.sh --agent P    use the nova-agent at P (default: build/agent/nova-agent,
#                               or $NOVA_AGENT)
#   scripts/run.sh --cloud P    use the nova-cloud at P (default: build/cloud/nova-cloud,
#                               or $NOVA_CLOUD)
#
# The example's fixed ports 18830-18844 are used when all are free, else free ports.
# Configs, logs, databases and the PKI (keys included) live in one fresh temporary
# directory, removed on exit unless NOVA_KEEP_TEST_DIRS is set.
set -euo pipefail

usage() { sed -n '2,30s/^# \{0,1\}//p' "$0"; }

once=false
build=true
codec="${NOVA_CODEC:-}"
bridge="${NOVA_BRIDGE:-}"
agent="${NOVA_AGENT:-}"
cloud="${NOVA_CLOUD:-}"
pki="${NOVA_PKI:-}"
while (($# > 0)); do
  case "$1" in
    --once) once=true ;;
    --no-build) build=false ;;
    --codec | --bridge | --agent | --cloud)
      (($# >= 2)) || { echo "run.sh: $1 needs a path" >&2; exit 2; }
      case "$1" in
        --codec) codec="$2" ;;
        --bridge) bridge="$2" ;;
        --agent) agent="$2" ;;
        --cloud) cloud="$2" ;;
      esac
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# Paths given on the command line are relative to where we were started.
[[ -z "$codec" || "$codec" == /* ]] || codec="$PWD/$codec"
[[ -z "$bridge" || "$bridge" == /* ]] || bridge="$PWD/$bridge"
[[ -z "$agent" || "$agent" == /* ]] || agent="$PWD/$agent"
[[ -z "$cloud" || "$cloud" == /* ]] || cloud="$PWD/$cloud"
[[ -z "$pki" || "$pki" == /* ]] || pki="$PWD/$pki"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
topology="$repo/broker-bridge/examples/five-tier.yaml"

say() { printf 'run.sh: %s\n' "$*"; }

work_dir=""
run_dir=""
up_pid=""
cloud_pid=""
agent_pids=()

# Prints the reason and the tail of the supervisor's log, then exits 1 (cleanup on EXIT).
die() {
  printf 'run.sh: FAILED: %s\n' "$*" >&2
  if [[ -n "$work_dir" && -s "$work_dir/up.err" ]]; then
    printf -- '--- tail of nova-bridge up log ---\n' >&2
    tail -n 20 "$work_dir/up.err" >&2
  fi
  exit 1
}

stop_hierarchy() {
  [[ -n "$up_pid" ]] || return 0
  # `down` SIGTERMs the supervisor, which stops every broker (children first) and exits.
  "$bridge" down --run-dir "$run_dir" >/dev/null 2>&1 || kill -TERM "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
  up_pid=""
}

# SIGTERM makes each agent store its open batch, publish "offline" and exit.
stop_agents() {
  ((${#agent_pids[@]} > 0)) || return 0
  kill -TERM "${agent_pids[@]}" 2>/dev/null || true
  wait "${agent_pids[@]}" 2>/dev/null || true
  agent_pids=()
}

# SIGTERM makes nova-cloud store what it has queued, acknowledge it and exit.
stop_cloud() {
  [[ -n "$cloud_pid" ]] || return 0
  kill -TERM "$cloud_pid" 2>/dev/null || true
  wait "$cloud_pid" 2>/dev/null || true
  cloud_pid=""
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_agents
  stop_cloud
  stop_hierarchy
  if [[ -n "$work_dir" && -d "$work_dir" ]]; then
    if [[ -n "${NOVA_KEEP_TEST_DIRS:-}" ]]; then
      say "kept $work_dir"
    else
      rm -rf -- "$work_dir"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo; say "stopping"; exit 0' INT TERM

# --- 1. set up and build -------------------------------------------------------------

if $build; then
  say "installing packages (scripts/setup.sh)"
  scripts/setup.sh || die "scripts/setup.sh failed"
  say "configuring and building (build/, RelWithDebInfo)"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo || die "cmake configure failed"
  cmake --build build || die "cmake build failed"
fi

codec="${codec:-$repo/build/schemas/nova-codec}"
bridge="${bridge:-$repo/build/broker-bridge/nova-bridge}"
agent="${agent:-$repo/build/agent/nova-agent}"
cloud="${cloud:-$repo/build/cloud/nova-cloud}"
pki="${pki:-$repo/build/security/nova-pki}"
[[ -x "$codec" ]] || die "no nova-codec at $codec (build first, or pass --codec PATH)"
[[ -x "$bridge" ]] || die "no nova-bridge at $bridge (build first, or pass --bridge PATH)"
[[ -x "$agent" ]] || die "no nova-agent at $agent (build first, or pass --agent PATH)"
[[ -x "$cloud" ]] || die "no nova-cloud at $cloud (build first, or pass --cloud PATH)"
[[ -x "$pki" ]] || die "no nova-pki at $pki (build first, or set NOVA_PKI)"
/usr/bin/python3 -c 'import yaml' 2>/dev/null || die "Debian's python3-yaml is missing (run scripts/setup.sh)"
for tool in mosquitto_pub mosquitto_sub python3 cmp tail grep timeout curl; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/setup.sh)"
done

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/nova-run-XXXXXX")"
run_dir="$work_dir/run"
pki_dir="$work_dir/pki"

# --- 2. the PKI: every identity of the topology, and an operator for this script ------

# `nova-bridge up` would make the topology's identities itself; making them first lets
# the operator be enrolled before the brokers' ACLs are rendered (an operator certificate
# found in the PKI folder may read nova/v1/up/# at every broker: docs/broker-hierarchy.md).
"$pki" --dir "$pki_dir" topology "$topology" >"$work_dir/pki.out" 2>&1 ||
  { cat "$work_dir/pki.out" >&2; die "nova-pki topology failed"; }
"$pki" --dir "$pki_dir" issue --role operator --name demo --region cloud >>"$work_dir/pki.out" 2>&1 ||
  { cat "$work_dir/pki.out" >&2; die "nova-pki issue --role operator failed"; }
say "PKI for mutual TLS on every hop: $pki_dir (nova-pki topology, plus operator.demo)"

# mosquitto_pub/sub options to connect as certificate identity $1 (one connection per
# identity at a time: the broker makes the CN the client id).
tls_as() {
  printf '%s\n' --cafile "$pki_dir/trust/ca.pem" --cert "$pki_dir/identities/$1/cert.pem" --key "$pki_dir/identities/$1/key.pem"
}
mapfile -t operator_tls < <(tls_as operator.demo)

# --- 3. start the hierarchy ----------------------------------------------------------

# Succeeds when every port of the example (18830-18844) can be bound right now.
example_ports_free() {
  python3 - <<'EOF'
import socket, sys
for port in range(18830, 18845):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

# Starts `nova-bridge up` in the background and waits for its "ready:" line (printed
# once every link is connected) or its exit. Returns 0 when ready.
start_hierarchy() {
  : >"$work_dir/up.out"
  "$bridge" up "$topology" --run-dir "$run_dir" --pki "$pki_dir" "$@" >"$work_dir/up.out" 2>>"$work_dir/up.err" &
  up_pid=$!
  # tail -f wakes on writes (inotify) and ends with the supervisor (--pid).
  if timeout 120 grep -q -m 1 '^ready: ' < <(tail --pid="$up_pid" -n +1 -f "$work_dir/up.out"); then
    kill -0 "$up_pid" 2>/dev/null && return 0
  fi
  wait "$up_pid" 2>/dev/null || true
  up_pid=""
  return 1
}

if example_ports_free; then
  say "starting the five-tier example on its own ports 18830-18844"
  if ! start_hierarchy; then
    # Someone took one of the ports between our check and the brokers' bind.
    say "the example's ports were not usable; retrying on free ports"
    start_hierarchy --free-ports || die "nova-bridge up failed"
  fi
else
  say "some of the example's ports 18830-18844 are taken; using free ports"
  start_hierarchy --free-ports || die "nova-bridge up failed"
fi

"$bridge" status --run-dir "$run_dir" >"$work_dir/status.out" 2>&1 ||
  { cat "$work_dir/status.out" >&2; die "nova-bridge status reports a broker down or a link not connected"; }
say "nova-bridge up (supervisor pid $up_pid) started every broker; nova-bridge status:"
sed 's/^/  /' "$work_dir/status.out"

# Ports from the state file that `up` wrote.
port_of() {
  python3 - "$run_dir/hierarchy.json" "$1" <<'EOF'
import json, sys
state = json.load(open(sys.argv[1]))
print(next(s["port"] for s in state["sites"] if s["id"] == sys.argv[2]))
EOF
}
access_port="$(port_of par-a1)" || die "no port for par-a1 in $run_dir/hierarchy.json"
cloud_port="$(port_of cloud)" || die "no port for cloud in $run_dir/hierarchy.json"

# --- 4. a device's birth, from its access broker to the cloud ------------------------

node="dev-par-a1-1"
# The topic API's upward state topic (schemas/topics.md): nova/v1/up/<node>/state.
topic="nova/v1/up/$node/state"

ts_ms=$(($(date +%s%N) / 1000000))
cat >"$work_dir/birth.json" <<EOF
{"v":1,"node":"$node","status":"online","bdseq":1,"ts":$ts_ms,"level":5,"site":"cloud/eu/par/par-a1","arch":"armv7l","version":"0.1.0","res":{"cpu_millis":1000,"memory_mb":512,"storage_mb":4000}}
EOF
"$codec" encode node_state <"$work_dir/birth.json" >"$work_dir/birth.cbor" ||
  die "nova-codec could not encode $work_dir/birth.json"
say "encoded $node's birth record: $(stat -c %s "$work_dir/birth.cbor") bytes of CBOR"

# The operator listens at the cloud broker (the ACL lets operators read up).
mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv311 "${operator_tls[@]}" \
  -t "$topic" -q 1 -C 1 -N -W 30 >"$work_dir/arrived.cbor" &
sub_pid=$!

# The device publishes at its access broker with its own certificate (the ACL lets a
# node write only under nova/v1/up/<its CN>/), before its agent takes that identity over.
mapfile -t node_tls < <(tls_as "$node")
mosquitto_pub -h 127.0.0.1 -p "$access_port" -V mqttv311 "${node_tls[@]}" \
  -t "$topic" -q 1 -r -f "$work_dir/birth.cbor" ||
  die "mosquitto_pub at par-a1 failed"
say "published retained at QoS 1 at access broker par-a1 (port $access_port)"

wait "$sub_pid" || die "nothing arrived on $topic at the cloud broker within 30 s"
say "arrived at the cloud broker (port $cloud_port) via par -> eu -> cloud: $(stat -c %s "$work_dir/arrived.cbor") bytes"
cmp -s "$work_dir/birth.cbor" "$work_dir/arrived.cbor" || die "the payload at the cloud differs from the one published"

# A late subscriber at the cloud gets it as a retained record.
mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv311 "${operator_tls[@]}" \
  -t "$topic" -q 1 -C 1 -N -W 10 --retained-only >"$work_dir/retained.cbor" ||
  die "no retained record on $topic at the cloud broker"
cmp -s "$work_dir/birth.cbor" "$work_dir/retained.cbor" || die "the retained record at the cloud differs"

"$codec" decode node_state <"$work_dir/retained.cbor" >"$work_dir/received.json" ||
  die "nova-codec could not decode the record from the cloud"
python3 - "$work_dir/birth.json" "$work_dir/received.json" <<'EOF' || die "decoded record differs from the original JSON"
import json, sys
sent, got = (json.load(open(path)) for path in sys.argv[1:3])
if sent != got:
    for key in sorted(set(sent) | set(got)):
        if sent.get(key) != got.get(key):
            print(f"  {key}: sent {sent.get(key)!r}, got {got.get(key)!r}", file=sys.stderr)
    sys.exit(1)
EOF
say "decoded at the cloud: $(cat "$work_dir/received.json")"
say "OK: birth record par-a1 -> par -> eu -> cloud, retained, byte-identical"

# --- 5. nova-cloud at the cloud broker ----------------------------------------------

# Port 8080 for the REST API and dashboard when it is free, else any free port.
http_port=8080
python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 8080))' 2>/dev/null || http_port=0
# Authentication on: one admin token, shown once, for these curl calls and the dashboard.
api_token=$("$cloud" token create --name demo-admin --role admin --tokens-file "$work_dir/cloud-tokens") ||
  die "nova-cloud token create failed"
# The key nova-cloud signs control messages with; the agents trust its public half.
"$pki" --dir "$pki_dir" signing-key --name nova-cloud >/dev/null || die "nova-pki signing-key failed"
signing_key="$pki_dir/signing/nova-cloud.key"
signing_pub="$pki_dir/signing/nova-cloud.pub"
say "control messages are signed with $signing_key (nova-pki signing-key)"
cat >"$work_dir/cloud.yaml" <<EOF
# The client id is the certificate's CN: the ACL lets nova-cloud's subscription probes
# write only under nova/v1/up/nova-cloud/.
mqtt:
  uri: "mqtts://127.0.0.1:$cloud_port"
  client_id: nova-cloud
  tls_ca_file: $pki_dir/trust/ca.pem
  tls_cert_file: $pki_dir/identities/nova-cloud/cert.pem
  tls_key_file: $pki_dir/identities/nova-cloud/key.pem
store: {dir: $work_dir/cloud-store}
liveness: {heartbeat_timeout_s: 60}
http: {port: $http_port}
auth: {tokens_file: $work_dir/cloud-tokens}
audit: {file: $work_dir/cloud-audit.log}
signing: {key_file: $signing_key}
EOF
"$cloud" --config "$work_dir/cloud.yaml" 2>"$work_dir/cloud.log" &
cloud_pid=$!
if ! timeout 30 grep -q -m 1 'event=started' < <(tail --pid="$cloud_pid" -n +1 -f "$work_dir/cloud.log"); then
  tail -n 20 "$work_dir/cloud.log" >&2
  die "nova-cloud did not start"
fi
api_port=$(sed -n 's/.*event=started.* http=[0-9.]*:\([0-9]*\).*/\1/p' "$work_dir/cloud.log" | head -n 1)
api="http://127.0.0.1:$api_port"
say "nova-cloud (pid $cloud_pid) consumes the cloud broker; REST API and dashboard at $api/"

# GET $1 from the API and print the Python expression $2 over its JSON, named j.
api_get() {
  curl -fsS -H "Authorization: Bearer $api_token" "$api$1" | python3 -c "import json, sys; j = json.load(sys.stdin); print($2)"
}
# Polls GET $1 until the Python condition $2 over its JSON (j) holds, for at most $3 s.
api_wait() {
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    [[ "$(api_get "$1" "bool($2)" 2>/dev/null)" == "True" ]] && return 0
    sleep 0.2
  done
  return 1
}

# --- 6. an agent on every node -------------------------------------------------------

# One config per node of the topology: its site path and its site broker's port come
# from the topology and the state file, its certificate from the PKI; everything else keeps nova-agent's defaults,
# except a 10 s batch so the demo shows metrics soon, and no CPU admission limit: 30
# agents and 15 brokers share this one machine, so its load says nothing about a node.
agents_dir="$work_dir/agents"
mkdir -p "$agents_dir"
/usr/bin/python3 - "$topology" "$run_dir/hierarchy.json" "$agents_dir" "$signing_pub" "$pki_dir" >"$work_dir/nodes.txt" <<'PY' ||
import json, os, sys, yaml
topology = yaml.safe_load(open(sys.argv[1]))
sites = {s["id"]: s for s in json.load(open(sys.argv[2]))["sites"]}
for node in topology.get("nodes", []):
    site = sites[node["site"]]
    d = os.path.join(sys.argv[3], node["id"])
    pki, ident = sys.argv[5], os.path.join(sys.argv[5], "identities", node["id"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "agent.yaml"), "w") as f:
        f.write(f"""node:
  id: {node["id"]}
  site: {site["path"]}
  level: {node.get("level", site["level"])}
  capabilities: [{", ".join(node.get("capabilities", []))}]
mqtt:
  uri: "mqtts://127.0.0.1:{site["port"]}"
  tls_ca_file: {pki}/trust/ca.pem
  tls_cert_file: {ident}/cert.pem
  tls_key_file: {ident}/key.pem
  reconnect_min_ms: 200
  reconnect_max_ms: 5000
metrics: {{batch_interval_s: 10}}
drain: {{jitter_ms: 200}}
limits: {{max_cpu_pct: 100}}
outbox: {{dir: {d}/outbox}}
tasks: {{dir: {d}/tasks, allow: [/bin/sh]}}
trust: {{signing_keys: [{sys.argv[4]}]}}
""")
    print(node["id"], site["path"])
PY
  die "could not write the agents' configurations"
while read -r node _; do
  "$agent" --config "$agents_dir/$node/agent.yaml" 2>"$agents_dir/$node/agent.log" &
  agent_pids+=($!)
done <"$work_dir/nodes.txt"
node_count=${#agent_pids[@]}
say "started $node_count nova-agent processes (logs in $agents_dir/<node>/agent.log)"

# Their births reach nova-cloud through the bridges; it rebuilds the live topology.
api_wait /api/v1/nodes "sum(n['liveness'] == 'alive' for n in j) >= $node_count" 60 ||
  die "nova-cloud does not see all $node_count agents alive: $(api_get /api/v1/nodes "sorted(n['id'] for n in j if n['liveness'] != 'alive')")"
say "OK: nova-cloud sees all $node_count agents alive (GET /api/v1/nodes)"

# A workload through the REST API: placed on a device (tier 5) by the seed's weighted
# score, sent down as a task, run by the agent, its result back up through the outbox.
printf '%s\n' '{"v":1,"workload_id":"demo-hello","name":"hello from the edge",' \
  '"argv":["/bin/sh","-c","echo hello from the edge"],"res":{"cpu_millis":100,"memory_mb":16,"storage_mb":0},' \
  '"caps":[],"tiers":[5],"availability":0.9,"clusters_in":[],"clusters_out":[],"timeout_ms":10000}' \
  >"$work_dir/workload.json"
curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/json' --data @"$work_dir/workload.json" \
  "$api/api/v1/workloads" >"$work_dir/placed.json" || die "POST /api/v1/workloads failed"
say "placed: $(python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["placement"]; print(p["node"], "at", p["site"], "score %.1f" % p["score"], "breakdown", {k: round(v, 1) for k, v in p["breakdown"].items()}, "failover", p["failover"])' "$work_dir/placed.json")"
api_wait /api/v1/workloads/demo-hello "j['phase'] in ('succeeded', 'failed')" 60 ||
  die "the workload did not finish: $(api_get /api/v1/workloads/demo-hello j)"
[[ "$(api_get /api/v1/workloads/demo-hello "j['phase']")" == "succeeded" ]] ||
  die "the workload failed: $(api_get /api/v1/workloads/demo-hello "j.get('result')")"
say "OK: workload result from $(api_get /api/v1/workloads/demo-hello "j['result']['node'] + ': ' + j['result']['output'].strip()")"

# Metrics batches go up every 10 s; nova-cloud stores each once and acks it downward.
api_wait /api/v1/nodes/dev-par-a1-1 "j['watermarks'].get('metrics', 0) >= 1" 60 ||
  die "no metrics batch of dev-par-a1-1 was acknowledged"
say "OK: metrics stored and acknowledged end to end ($(curl -fsS "$api/metrics" | grep -E '^nova_cloud_(records_stored|acks_sent)_total' | tr '\n' ' '))"

# --- 7. keep running or stop ---------------------------------------------------------

if $once; then
  stop_agents
  stop_cloud
  stop_hierarchy
  say "hierarchy stopped"
  exit 0
fi

say "the hierarchy, nova-cloud and $node_count agents keep running (run dir $run_dir); try:"
say "  dashboard:   $api/  (paste the API token when it asks)"
say "  API token:   $api_token  (admin; shown once, its hash is in $work_dir/cloud-tokens)"
say "  REST API:    curl -H 'Authorization: Bearer $api_token' $api/api/v1/topology"
say "  mosquitto_sub -h 127.0.0.1 -p $cloud_port ${operator_tls[*]} -t 'nova/v1/up/#' -v   # births, metrics batches (as operator.demo)"
say "  $bridge status --run-dir $run_dir"
say "press Ctrl-C to stop"
# `wait` returns early when INT/TERM arrives; the trap then stops the hierarchy.
wait "$up_pid" && rc=0 || rc=$?
up_pid=""
die "nova-bridge up exited unexpectedly (status $rc)"
