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
# devices per access site), each installed the way a device is: provisioned from one
# bundle by firmware/nova-device-bundle and run by its launcher nova-agent-launch.
# nova-cloud sees every agent alive and acknowledges their metrics end to end; a workload
# submitted through its REST API is placed on a device, goes down as a task three bridge
# hops, and its result comes back up; a service of two replicas runs on two devices and
# is cancelled; a pipeline on dev-par-a1-1 turns a fan on and off from a boiler's
# readings (mosquitto_pub and mosquitto_sub with sensor certificates the script enrols),
# and its decision records reach nova-cloud; a workload kept at site par-a1 moves to the
# other device there when the rule of the device it runs on asks nova-cloud to move it
# (a probe reading above 90). Then two over-the-air updates through nova-cloud's
# REST API: the next version of the agent to every node in waves (each node's retained
# birth reports it), and a deliberately broken bundle that the first wave's launchers
# roll back by themselves, halting the rollout; every metrics batch each node made
# across both is stored at nova-cloud. Everything nova-cloud sends down (tasks, acks,
# update offers) is signed with an Ed25519 key made for the demo by `nova-pki
# signing-key`; every agent trusts it. The REST API takes a bearer token.
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
#   scripts/run.sh --agent-next P  the nova-agent rolled out as the good update: another
#                               version of the same agent (default:
#                               build/tests/agent/nova-agent-v2-test, 2.0.0-test, or
#                               $NOVA_AGENT_NEXT)
#
# The example's fixed ports 18830-18844 are used when all are free, else free ports.
# Configs, logs, databases and the PKI (keys included) live in one fresh temporary
# directory, removed on exit unless NOVA_KEEP_TEST_DIRS is set.
set -euo pipefail

usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }

once=false
build=true
codec="${NOVA_CODEC:-}"
bridge="${NOVA_BRIDGE:-}"
agent="${NOVA_AGENT:-}"
cloud="${NOVA_CLOUD:-}"
agent_next="${NOVA_AGENT_NEXT:-}"
pki="${NOVA_PKI:-}"
while (($# > 0)); do
  case "$1" in
    --once) once=true ;;
    --no-build) build=false ;;
    --codec | --bridge | --agent | --cloud | --agent-next)
      (($# >= 2)) || { echo "run.sh: $1 needs a path" >&2; exit 2; }
      case "$1" in
        --codec) codec="$2" ;;
        --bridge) bridge="$2" ;;
        --agent) agent="$2" ;;
        --cloud) cloud="$2" ;;
        --agent-next) agent_next="$2" ;;
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
[[ -z "$agent_next" || "$agent_next" == /* ]] || agent_next="$PWD/$agent_next"
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
agent_next="${agent_next:-$repo/build/tests/agent/nova-agent-v2-test}"
pki="${pki:-$repo/build/security/nova-pki}"
[[ -x "$codec" ]] || die "no nova-codec at $codec (build first, or pass --codec PATH)"
[[ -x "$bridge" ]] || die "no nova-bridge at $bridge (build first, or pass --bridge PATH)"
[[ -x "$agent" ]] || die "no nova-agent at $agent (build first, or pass --agent PATH)"
[[ -x "$cloud" ]] || die "no nova-cloud at $cloud (build first, or pass --cloud PATH)"
[[ -x "$agent_next" ]] || die "no nova-agent to roll out at $agent_next (build first, or pass --agent-next PATH)"
# What each reports in its birth: `nova-agent --version` prints "nova-agent <version>".
agent_version=$("$agent" --version | awk '{ print $2 }')
next_version=$("$agent_next" --version | awk '{ print $2 }')
[[ -n "$agent_version" && -n "$next_version" && "$agent_version" != "$next_version" ]] ||
  die "--agent-next must report another version than --agent ('$next_version', '$agent_version')"
[[ -x "$pki" ]] || die "no nova-pki at $pki (build first, or set NOVA_PKI)"
/usr/bin/python3 -c 'import yaml' 2>/dev/null || die "Debian's python3-yaml is missing (run scripts/setup.sh)"
for tool in mosquitto_pub mosquitto_sub python3 cmp tail grep timeout curl strip awk stdbuf; do
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
# A boiler's thermometer and the fan it drives, both at node $pipeline_node (docs/agent.md,
# "Pipelines"): the ACL lets sensor.N.S write nova/v1/sensor/N/S and read nova/v1/local/N/#.
# And a probe at each of the two devices of site par-a1, whose readings their rule watches.
pipeline_node="dev-par-a1-1"
guard_nodes=(dev-par-a1-1 dev-par-a1-2)
for identity in "$pipeline_node.boiler" "$pipeline_node.fan" "${guard_nodes[@]/%/.probe}"; do
  "$pki" --dir "$pki_dir" issue --role sensor --name "$identity" --region cloud >>"$work_dir/pki.out" 2>&1 ||
    { cat "$work_dir/pki.out" >&2; die "nova-pki issue --role sensor failed"; }
done
say "PKI for mutual TLS on every hop: $pki_dir (nova-pki topology, plus operator.demo, sensor.$pipeline_node.boiler and .fan, sensor.<node>.probe at ${guard_nodes[*]})"

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
# A node's data-residency region comes from its site in this topology, never its birth.
residency: {topology_file: $topology}
# A workload may move 3 s after its placement (default 300 s), so the demo's requested
# migration (section 6) need not wait.
migration: {min_dwell_s: 3}
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

# --- 6. an agent on every node, run the way a device runs it -------------------------

# Every node's agent is installed as on a device: one bundle of this build's nova-agent
# (`nova-device-bundle make`), provisioned per node (`provision`: identity, site broker,
# certificate from the PKI, the signing key it trusts, a storage key) and run by the
# bundle's launcher `nova-agent-launch`, which starts an update and rolls it back when it
# does not come up healthy within its trial (docs/agent.md, "Updates"). The trial is
# $trial_s s here (120 s by default) so the demo's rollback comes soon. Everything else
# keeps nova-agent's defaults, except a 10 s batch (the shortest it takes) so the demo shows metrics soon,
# and no CPU admission limit: 30 agents and 15 brokers share this one machine, so its
# load says nothing about a node.
trial_s=10
bundle_tool="$repo/firmware/nova-device-bundle"
agents_dir="$work_dir/agents"
mkdir -p "$agents_dir" "$work_dir/bundles"
# A bundle carries the stripped binary: its debug information is not for devices.
strip -o "$work_dir/bundles/nova-agent-$agent_version" "$agent" || die "strip $agent failed"
"$bundle_tool" make --binary "$work_dir/bundles/nova-agent-$agent_version" --out "$work_dir/bundle" >/dev/null ||
  die "nova-device-bundle make failed"
/usr/bin/python3 - "$topology" "$run_dir/hierarchy.json" >"$work_dir/nodes.txt" <<'PY' ||
import json, sys, yaml
topology = yaml.safe_load(open(sys.argv[1]))
sites = {s["id"]: s for s in json.load(open(sys.argv[2]))["sites"]}
for node in topology.get("nodes", []):
    site = sites[node["site"]]
    # id, site path, level, site broker's port, capabilities ("-" for none)
    print(node["id"], site["path"], node.get("level", site["level"]), site["port"],
          ",".join(node.get("capabilities", [])) or "-")
PY
  die "could not read the nodes of the topology"
# Node $pipeline_node also runs a pipeline: every boiler temperature is an event, and a rule
# turns the fan on when one is above 80 and off when one is not (docs/agent.md, "Pipelines").
# The devices of site par-a1 also run a guard: a probe reading above 90 asks nova-cloud to
# move the workload demo-guarded off the device (request_migration).
boiler_pipeline='  - name: boiler
    input: {sensor: boiler, value: temp}
    rules:
      - name: overheat
        when: ["value > 80"]
        action: {do: publish, target: fan, payload: "on"}
        on_clear: {do: publish, target: fan, payload: "off"}'
guard_pipeline='  - name: guard
    input: {sensor: probe, value: temp}
    rules:
      - {name: too_hot, when: ["value > 90"], action: {do: request_migration, target: demo-guarded}}'
while read -r node site level port caps; do
  [[ "$caps" == "-" ]] && caps=""
  extra=$(printf '%s\n' 'metrics: {batch_interval_s: 10}' 'drain: {jitter_ms: 200}' 'limits: {max_cpu_pct: 100}')
  pipelines=""
  [[ "$node" == "$pipeline_node" ]] && pipelines+=$'\n'"$boiler_pipeline"
  [[ " ${guard_nodes[*]} " == *" $node "* ]] && pipelines+=$'\n'"$guard_pipeline"
  [[ -n "$pipelines" ]] && extra+=$'\n'"pipelines:$pipelines"
  "$bundle_tool" provision --bundle "$work_dir/bundle" --out "$agents_dir/$node" --prefix "$agents_dir/$node" \
    --node "$node" --site "$site" --level "$level" --broker "mqtts://127.0.0.1:$port" \
    --pki "$pki_dir" --nova-pki "$pki" --signing-key "$signing_pub" --trial-s "$trial_s" \
    --capabilities "$caps" --tasks-allow /bin/sh \
    --config-extra "$extra" \
    >/dev/null || die "nova-device-bundle provision $node failed"
done <"$work_dir/nodes.txt"

# Starts node $1's launcher, as its systemd unit's ExecStart does; its log and its
# agent's go to <node>/launch.log.
start_device() {
  local d="$agents_dir/$1"
  "$d/opt/nova-agent/bin/nova-agent-launch" "$d/opt/nova-agent" "$d/etc/nova-agent/agent.yaml" "$trial_s" \
    2>>"$d/launch.log" &
  agent_pids+=($!)
}
while read -r node _; do start_device "$node"; done <"$work_dir/nodes.txt"
node_count=${#agent_pids[@]}
say "started $node_count nodes, each provisioned from one bundle of nova-agent $agent_version (nova-device-bundle) and run by nova-agent-launch (logs in $agents_dir/<node>/launch.log)"

# Their births reach nova-cloud through the bridges; it rebuilds the live topology.
api_wait /api/v1/nodes "sum(n['liveness'] == 'alive' for n in j) >= $node_count" 60 ||
  die "nova-cloud does not see all $node_count agents alive: $(api_get /api/v1/nodes "sorted(n['id'] for n in j if n['liveness'] != 'alive')")"
say "OK: nova-cloud sees all $node_count agents alive (GET /api/v1/nodes)"

# A workload through the REST API: placed on a device (tier 5) by the seed's weighted
# score, sent down as a task, run by the agent, its result back up through the outbox.
# It asks for no CPU (cpu_millis 0): an agent defers a task whose CPU would take the host
# above limits.max_cpu_pct, and a busy shared machine is at 100 % (asking for 100 millis,
# the workload stayed deferred in 3 of 5 runs here); a task asking for none runs anyway.
printf '%s\n' '{"v":1,"workload_id":"demo-hello","name":"hello from the edge",' \
  '"argv":["/bin/sh","-c","echo hello from the edge"],"res":{"cpu_millis":0,"memory_mb":16,"storage_mb":0},' \
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

# A service (docs/cloud.md, "Services"): two replicas of a long-running command, each on
# its own device, kept running by their agents and health-checked every second; then
# cancelled, so the updates below find no replica to stop.
printf '%s\n' '{"v":1,"workload_id":"demo-service","name":"a service of two replicas","kind":"service","replicas":2,' \
  '"argv":["/bin/sh","-c","exec sleep 600"],"res":{"cpu_millis":0,"memory_mb":16,"storage_mb":0},' \
  '"health_check":{"command":["/bin/sh","-c","true"],"interval_s":1},' \
  '"caps":[],"tiers":[5],"availability":0.9,"clusters_in":[],"clusters_out":[],"timeout_ms":10000}' \
  >"$work_dir/service.json"
curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/json' --data @"$work_dir/service.json" \
  "$api/api/v1/workloads" >/dev/null || die "POST /api/v1/workloads (the service) failed"
api_wait /api/v1/workloads/demo-service \
  "len(j['replicas']) == 2 and all(r['state'] == 'running' for r in j['replicas']) and j['replicas'][0]['node'] != j['replicas'][1]['node']" 30 ||
  die "the service's two replicas are not running on two nodes: $(api_get /api/v1/workloads/demo-service j)"
say "OK: service demo-service runs $(api_get /api/v1/workloads/demo-service "', '.join('replica %d on %s (%s, health %s)' % (i, r['node'], r['state'], r['health']) for i, r in enumerate(j['replicas']))")"
curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/json' --data '{"reason":"demo over"}' \
  "$api/api/v1/workloads/demo-service/cancel" >/dev/null || die "POST /api/v1/workloads/demo-service/cancel failed"
api_wait /api/v1/workloads/demo-service "j['phase'] == 'cancelled'" 30 ||
  die "the service did not end cancelled: $(api_get /api/v1/workloads/demo-service j)"
say "OK: service demo-service cancelled: $(api_get /api/v1/workloads/demo-service "', '.join(r['node'] + ' ' + r['state'] for r in j['replicas'])")"

# The pipeline of $pipeline_node: the fan listens on its actuator topic at the node's
# access broker, the boiler sends four readings, and the rule turns the fan on at 95 and
# off at 30. Each decision is a record nova-cloud lists (GET /api/v1/decisions).
mapfile -t boiler_tls < <(tls_as "sensor.$pipeline_node.boiler")
mapfile -t fan_tls < <(tls_as "sensor.$pipeline_node.fan")
actuator="nova/v1/local/$pipeline_node/actuator/fan"
# Line-buffered (stdbuf), so its SUBACK line is in the file before the readings go out.
stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$access_port" -V mqttv311 "${fan_tls[@]}" -t "$actuator" -q 1 -C 2 -W 20 \
  >"$work_dir/fan.out" 2>&1 &
fan_pid=$!
timeout 10 grep -q -m 1 'received SUBACK' < <(tail --pid="$fan_pid" -n +1 -f "$work_dir/fan.out") ||
  { cat "$work_dir/fan.out" >&2; die "the fan could not subscribe to $actuator"; }
ts_ms=$(($(date +%s%N) / 1000000))
temps=(20 21 95 30)
for i in "${!temps[@]}"; do
  printf '{"v":1,"ts":%d,"values":{"temp":%s}}\n' $((ts_ms + i)) "${temps[$i]}"
done >"$work_dir/readings.txt"
mosquitto_pub -h 127.0.0.1 -p "$access_port" -V mqttv311 "${boiler_tls[@]}" -t "nova/v1/sensor/$pipeline_node/boiler" -q 1 \
  -l <"$work_dir/readings.txt" || die "mosquitto_pub of the boiler's readings failed"
say "the boiler published temperatures ${temps[*]} on nova/v1/sensor/$pipeline_node/boiler (mosquitto_pub as sensor.$pipeline_node.boiler)"
wait "$fan_pid" || { cat "$work_dir/fan.out" >&2; die "the fan did not get two messages on $actuator within 20 s"; }
grep '^{' "$work_dir/fan.out" >"$work_dir/fan.json" || true
python3 - "$work_dir/fan.json" <<'EOF' || die "the fan's messages are not on then off: $(cat "$work_dir/fan.json")"
import json, sys
got = [json.loads(line) for line in open(sys.argv[1])]
assert [(m["rule"], m["payload"]) for m in got] == [("overheat", "on"), ("overheat", "off")], got
EOF
say "the fan read on $actuator (mosquitto_sub as sensor.$pipeline_node.fan):"
sed 's/^/  /' "$work_dir/fan.json"
api_wait "/api/v1/decisions?node=$pipeline_node" "sum(d['kind'] == 'rule.overheat' for d in j) >= 2" 30 ||
  die "nova-cloud does not list the rule's two decisions: $(api_get "/api/v1/decisions?node=$pipeline_node" j)"
say "OK: the rule's decisions at nova-cloud (GET /api/v1/decisions?node=$pipeline_node):"
api_get "/api/v1/decisions?node=$pipeline_node" \
  "'\n'.join('  ' + json.dumps({k: d.get(k) for k in ('kind', 'action', 'inputs', 'offline')}) for d in j if d['kind'] == 'rule.overheat')"

# A node's rule asks nova-cloud to move a workload off it (docs/cloud.md, "Migration",
# trigger "requested"). Site par-a1 becomes a cluster (POST /api/v1/clusters), and
# demo-guarded may run only in it: on one of its two devices. The probe of the device it
# runs on reads 95; that device's guard rule sends a request_migration decision naming
# demo-guarded, nova-cloud accepts it and moves the workload, fenced, to the other device.
curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/json' \
  --data '{"v":1,"cluster_id":"site-par-a1","name":"access site par-a1","role":"secondary","root_site":"cloud/eu/par/par-a1"}' \
  "$api/api/v1/clusters" >/dev/null || die "POST /api/v1/clusters failed"
printf '%s\n' '{"v":1,"workload_id":"demo-guarded","name":"kept at site par-a1","argv":["/bin/sh","-c","exec sleep 600"],' \
  '"res":{"cpu_millis":0,"memory_mb":16,"storage_mb":0},"caps":[],"tiers":[5],"availability":0.9,' \
  '"clusters_in":["site-par-a1"],"clusters_out":[],"timeout_ms":600000}' >"$work_dir/guarded.json"
curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/json' --data @"$work_dir/guarded.json" \
  "$api/api/v1/workloads" >/dev/null || die "POST /api/v1/workloads (demo-guarded) failed"
api_wait /api/v1/workloads/demo-guarded "j['phase'] == 'running' and j['placement']['node'] in ('${guard_nodes[0]}', '${guard_nodes[1]}')" 30 ||
  die "demo-guarded is not running at site par-a1: $(api_get /api/v1/workloads/demo-guarded j)"
guarded_node=$(api_get /api/v1/workloads/demo-guarded "j['placement']['node']")
say "demo-guarded runs on $guarded_node (clusters_in: site-par-a1)"
mapfile -t probe_tls < <(tls_as "sensor.$guarded_node.probe")
printf '{"v":1,"ts":%d,"values":{"temp":95}}' $(($(date +%s%N) / 1000000)) |
  mosquitto_pub -h 127.0.0.1 -p "$access_port" -V mqttv311 "${probe_tls[@]}" -t "nova/v1/sensor/$guarded_node/probe" -q 1 -s ||
  die "mosquitto_pub of the probe's reading failed"
say "the probe of $guarded_node published 95 on nova/v1/sensor/$guarded_node/probe (mosquitto_pub as sensor.$guarded_node.probe)"
api_wait /api/v1/workloads/demo-guarded \
  "j['placement']['node'] != '$guarded_node' and any(h['reason'].startswith('migration from $guarded_node: requested by $guarded_node') for h in j['history'])" 60 ||
  die "demo-guarded did not move off $guarded_node: $(api_get /api/v1/workloads/demo-guarded j)"
say "OK: demo-guarded moved at its node's request: $(api_get /api/v1/workloads/demo-guarded "[h['reason'] for h in j['history'] if h['reason'].startswith('migration from')][0] + ' -> ' + j['placement']['node']")"
curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/json' --data '{"reason":"demo done"}' \
  "$api/api/v1/workloads/demo-guarded/cancel" >/dev/null || die "POST /api/v1/workloads/demo-guarded/cancel failed"
api_wait /api/v1/workloads/demo-guarded "j['phase'] == 'cancelled'" 60 ||
  die "demo-guarded did not end cancelled: $(api_get /api/v1/workloads/demo-guarded j)"

# Metrics batches go up every 10 s; nova-cloud stores each once and acks it downward.
api_wait /api/v1/nodes/dev-par-a1-1 "j['watermarks'].get('metrics', 0) >= 1" 60 ||
  die "no metrics batch of dev-par-a1-1 was acknowledged"
say "OK: metrics stored and acknowledged end to end ($(curl -fsS "$api/metrics" | grep -E '^nova_cloud_(records_stored|acks_sent)_total' | tr '\n' ' '))"

# --- 7. over-the-air updates through nova-cloud's REST API ---------------------------

# Prints "<node> <version>" for every node's retained birth at the cloud broker (online
# ones: a node's state topic holds its birth or its death), as any consumer of
# nova/v1/up/+/state sees it; decoded by nova-codec. Read as operator.demo.
birth_versions() {
  # Retained messages arrive at once on subscribe; -W ends the read (exit 27) after them.
  { mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv311 "${operator_tls[@]}" -t 'nova/v1/up/+/state' \
      -q 1 --retained-only -W 2 -F '%x' 2>/dev/null || true; } |
    python3 -c '
import json, subprocess, sys
for line in sys.stdin:
    state = json.loads(subprocess.run([sys.argv[1], "decode", "node_state"], input=bytes.fromhex(line.strip()),
                                      capture_output=True, check=True).stdout)
    if state["status"] == "online":
        print(state["node"], state["version"])' "$codec"
}
# Succeeds when the births of all $node_count nodes report version $1.
all_births_report() {
  local counts
  counts=$(birth_versions | awk -v v="$1" '$2 == v' | wc -l)
  say "  births at the cloud broker reporting $1: $counts of $node_count"
  ((counts == node_count))
}
# POSTs the update bundle $1 as a rollout with query $2; prints the rollout's id.
start_rollout() {
  curl -fsS -X POST -H "Authorization: Bearer $api_token" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$1" "$api/api/v1/rollouts?$2" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
# Prints rollout $1's waves (GET /api/v1/rollouts/{id}): each wave's nodes and phases,
# the waves never offered as one line.
show_waves() {
  curl -fsS -H "Authorization: Bearer $api_token" "$api/api/v1/rollouts/$1" | python3 -c '
import json, sys
nodes = json.load(sys.stdin)["nodes"]
waves = sorted({n["wave"] for n in nodes})
unoffered = [w for w in waves if all(n["phase"] == "waiting" for n in nodes if n["wave"] == w)]
for w in waves:
    if w not in unoffered:
        print("  wave %d: %s" % (w, ", ".join(n["node"] + " " + n["phase"] + (" (%s)" % n["reason"] if n.get("reason") else "")
                                              for n in nodes if n["wave"] == w)))
if unoffered:
    print("  waves %d-%d: %d nodes waiting, never offered" % (unoffered[0], unoffered[-1],
                                                              sum(n["wave"] in unoffered for n in nodes)))'
}

# (a) The good update: the same agent built as the next version, stripped as a bundle is;
# every node of the tree, ten a wave, each wave offered once the one before reported it.
strip -o "$work_dir/bundles/nova-agent-$next_version" "$agent_next" || die "strip $agent_next failed"
good=$(start_rollout "$work_dir/bundles/nova-agent-$next_version" \
  "version=$next_version&subtree=cloud&wave_size=10&deadline_s=90") || die "POST /api/v1/rollouts (version $next_version) failed"
say "rollout $good: nova-agent $agent_version -> $next_version to every node of subtree cloud, 10 a wave (POST /api/v1/rollouts)"
api_wait "/api/v1/rollouts/$good" "j['state'] != 'running'" 240 || die "rollout $good still running after 240 s"
show_waves "$good"
[[ "$(api_get "/api/v1/rollouts/$good" "j['state']")" == "succeeded" ]] ||
  die "rollout $good: $(api_get "/api/v1/rollouts/$good" "j['state'], j.get('halt_reason')")"
all_births_report "$next_version" || die "not every node's retained birth reports $next_version"
say "OK: rollout $good succeeded; every node runs $next_version (its retained birth says so)"

# (b) A deliberately broken update: a bundle that exits at once. The first wave (two
# nodes) takes it; each launcher sees it exit during its trial and goes back to
# $next_version by itself; the agent reports the rollback, and nova-cloud halts the rollout
# before any other wave is offered.
printf '%s\n' '#!/bin/sh' 'echo "a deliberately broken nova-agent" >&2' 'exit 1' >"$work_dir/bundles/nova-agent-broken"
chmod +x "$work_dir/bundles/nova-agent-broken"
broken=$(start_rollout "$work_dir/bundles/nova-agent-broken" "version=9.9.9-broken&subtree=cloud&wave_size=2&deadline_s=90") ||
  die "POST /api/v1/rollouts (the broken bundle) failed"
say "rollout $broken: a broken bundle that exits at once, 2 a wave"
api_wait "/api/v1/rollouts/$broken" "j['state'] != 'running' and all(n['phase'] in ('rolled_back', 'waiting') for n in j['nodes'])" 120 ||
  die "rollout $broken did not halt with its first wave rolled back: $(api_get "/api/v1/rollouts/$broken" j)"
show_waves "$broken"
[[ "$(api_get "/api/v1/rollouts/$broken" "sum(n['phase'] == 'rolled_back' for n in j['nodes']) == 2 and j['state'] == 'halted'")" == True ]] ||
  die "rollout $broken: $(api_get "/api/v1/rollouts/$broken" j)"
say "OK: rollout $broken halted: $(api_get "/api/v1/rollouts/$broken" "j['halt_reason']")"
for node in $(api_get "/api/v1/rollouts/$broken" "' '.join(n['node'] for n in j['nodes'] if n['phase'] == 'rolled_back')"); do
  say "  $node's launcher: $(grep -m 1 'rolling back from' "$agents_dir/$node/launch.log" | sed 's/^nova-agent-launch: //')"
done
all_births_report "$next_version" || die "a node does not report $next_version after the rollback"

# (c) No metrics batch lost across either update. Each agent run logs the batches it
# made when it ends (`event=stopped ... batches=N`; the broken bundle made none). Stop
# every node, add those up per node, start them again so the last stored batches drain,
# and wait until nova-cloud's watermark of each node's metrics stream (every seq at or
# below it stored: docs/cloud.md) reaches what the node made.
batches_made() {
  grep -o 'event=stopped samples=[0-9]* batches=[0-9]*' "$agents_dir/$1/launch.log" |
    awk -F'batches=' '{ n += $2 } END { print n + 0 }'
}
stop_agents
while read -r node _; do start_device "$node"; done <"$work_dir/nodes.txt"
: >"$work_dir/batches.txt"
while read -r node _; do
  made=$(batches_made "$node")
  api_wait "/api/v1/nodes/$node" "j['watermarks'].get('metrics', 0) >= $made" 60 ||
    die "$node made $made metrics batches; nova-cloud's watermark is $(api_get "/api/v1/nodes/$node" "j['watermarks']")"
  printf '%s %s/%s\n' "$node" "$made" "$(api_get "/api/v1/nodes/$node" "j['watermarks'].get('metrics', 0)")" >>"$work_dir/batches.txt"
done <"$work_dir/nodes.txt"
say "metrics batches per node across both updates, made/stored (made: its agents' stopped lines; stored: nova-cloud's watermark):"
awk '{ printf "%s%-22s", (NR % 5 == 1 ? "  " : ""), $0; if (NR % 5 == 0) print "" } END { if (NR % 5) print "" }' "$work_dir/batches.txt"
skipped=$(curl -fsS "$api/metrics" | awk '$1 == "nova_cloud_seqs_skipped_total" { print $2 }')
[[ "$skipped" == 0 ]] || die "nova_cloud_seqs_skipped_total is '$skipped': batches were given up"
say "OK: every metrics batch each node made is stored at nova-cloud, none skipped (nova_cloud_seqs_skipped_total 0)"

# --- 7. keep running or stop ---------------------------------------------------------

if $once; then
  stop_agents
  stop_cloud
  stop_hierarchy
  say "hierarchy stopped"
  exit 0
fi

say "the hierarchy, nova-cloud and $node_count agents keep running (run dir $run_dir); try:"
say "  dashboard:   $api/#token=$api_token  (the part after # stays in the browser, never sent; or open $api/ and paste the token)"
say "  API token:   $api_token  (admin; shown once, its hash is in $work_dir/cloud-tokens)"
say "  REST API:    curl -H 'Authorization: Bearer $api_token' $api/api/v1/topology"
say "  mosquitto_sub -h 127.0.0.1 -p $cloud_port ${operator_tls[*]} -t 'nova/v1/up/#' -v   # births, metrics batches (as operator.demo)"
say "  $bridge status --run-dir $run_dir"
say "press Ctrl-C to stop"
# `wait` returns early when INT/TERM arrives; the trap then stops the hierarchy.
wait "$up_pid" && rc=0 || rc=$?
up_pid=""
die "nova-bridge up exited unexpectedly (status $rc)"
