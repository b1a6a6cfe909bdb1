#!/usr/bin/env bash
# A small real NovaCron stack for the dashboard's browser test (dashboard_test.mjs), as
# production runs it: mutual TLS on every hop (a PKI made by nova-pki), signed control
# messages, API tokens.
#
#   stack.sh BUILD_DIR WORK_DIR small    4 sites (cloud > eu > par > par-a1) bridged by
#                                        nova-bridge up, nova-cloud, 3 nova-agent processes,
#                                        an operator identity (operator.dashboard-test)
#   stack.sh BUILD_DIR WORK_DIR scale N  one cloud broker, nova-cloud, and N simulated
#                                        nodes: births published retained by one client
#                                        (inject_births.py) under the broker grant nova-sim
#                                        documents (sim/README.md)
#
# Prints key=value lines (api, token, and in small mode pki, cloud_port and pid_<node> for
# each agent) and then "ready", and keeps everything running until SIGTERM or SIGINT;
# then stops what it started (by pid) and exits. Logs stay in WORK_DIR.
set -euo pipefail

build=$1
work=$2
mode=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pki_tool="$build/security/nova-pki"
cloud_bin="$build/cloud/nova-cloud"
rm -rf "$work"  # a fresh PKI, store and logs each run
mkdir -p "$work"
pids=()
up_pid=""
sleep_pid=""

# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  ((${#pids[@]} == 0)) || kill -TERM "${pids[@]}" 2>/dev/null || true
  [[ -z "$sleep_pid" ]] || kill "$sleep_pid" 2>/dev/null || true
  if [[ -n "$up_pid" ]]; then
    "$build/broker-bridge/nova-bridge" down --run-dir "$work/run" >/dev/null 2>&1 || kill -TERM "$up_pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
fail() { echo "stack.sh: $*" >&2; exit 1; }

# Waits up to $2 s for the python condition $3 over `j`, the JSON of GET $1.
api_wait() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if curl -fsS -H "Authorization: Bearer $token" "$api$1" 2>/dev/null |
      /usr/bin/python3 -c "import json, sys; j = json.load(sys.stdin); sys.exit(0 if ($3) else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# nova-cloud on the broker at port $1, its REST API on a free port.
start_cloud() {
  "$pki_tool" --dir "$work/pki" signing-key --name nova-cloud >/dev/null
  token=$("$cloud_bin" token create --name dashboard-test --role operator --tokens-file "$work/tokens")
  (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$work/cloud-storage.key")
  cat >"$work/cloud.yaml" <<YAML
mqtt:
  uri: "mqtts://127.0.0.1:$1"
  client_id: nova-cloud
  tls_ca_file: $work/pki/trust/ca.pem
  tls_cert_file: $work/pki/identities/nova-cloud/cert.pem
  tls_key_file: $work/pki/identities/nova-cloud/key.pem
store: {dir: $work/cloud-store, key_file: $work/cloud-storage.key}
http: {port: 0}
audit: {file: $work/cloud-audit.log}
residency: {topology_file: $work/topology.yaml}
auth: {tokens_file: $work/tokens}
signing: {key_file: $work/pki/signing/nova-cloud.key}
YAML
  # Created first: tail must not look for it before the background job's redirect made it.
  : >"$work/cloud.log"
  "$cloud_bin" --config "$work/cloud.yaml" 2>"$work/cloud.log" &
  pids+=($!)
  local cloud_pid=$!
  timeout 30 grep -q -m 1 'event=started' < <(tail --pid="$cloud_pid" -n +1 -f "$work/cloud.log") ||
    fail "nova-cloud did not start (wait status $?, $(kill -0 "$cloud_pid" 2>/dev/null && echo running || echo gone)): $(tail -n 5 "$work/cloud.log")"
  api="http://127.0.0.1:$(sed -n 's/.*event=started.* http=[0-9.]*:\([0-9]*\).*/\1/p' "$work/cloud.log" | head -n 1)"
}

small() {
  cat >"$work/topology.yaml" <<'YAML'
name: dashboard-test
sites:
  - {id: cloud,  level: 1, port: 0}
  - {id: eu,     level: 2, parent: cloud, port: 0}
  - {id: par,    level: 3, parent: eu, port: 0}
  - {id: par-a1, level: 4, parent: par, port: 0}
nodes:
  - {id: agent-eu,  site: eu}
  - {id: gw-par-a1, site: par-a1}
  - {id: dev-1,     site: par-a1, level: 5}
YAML
  "$pki_tool" --dir "$work/pki" topology "$work/topology.yaml" >/dev/null
  # An operator, enrolled before the ACLs are rendered: reads nova/v1/up/# at every broker
  # (the retained state the tests check with mosquitto_sub).
  "$pki_tool" --dir "$work/pki" issue --role operator --name dashboard-test --region cloud >/dev/null
  : >"$work/up.out"
  "$build/broker-bridge/nova-bridge" up "$work/topology.yaml" --run-dir "$work/run" --pki "$work/pki" --free-ports \
    >"$work/up.out" 2>"$work/up.err" &
  up_pid=$!
  timeout 60 grep -q -m 1 '^ready: ' < <(tail --pid="$up_pid" -n +1 -f "$work/up.out") ||
    fail "nova-bridge up did not get ready (wait status $?, $(kill -0 "$up_pid" 2>/dev/null && echo running || echo gone)): $(tail -n 5 "$work/up.out" "$work/up.err")"
  port_of() {
    /usr/bin/python3 -c 'import json, sys; print(next(s["port"] for s in json.load(open(sys.argv[1]))["sites"] if s["id"] == sys.argv[2]))' \
      "$work/run/hierarchy.json" "$1"
  }
  start_cloud "$(port_of cloud)"
  echo "api=$api"
  echo "token=$token"
  echo "pki=$work/pki"
  echo "cloud_port=$(port_of cloud)"
  # Each agent as on a device: its own identity, its site's broker, the signing key it
  # trusts, its stores encrypted with a key of its own. A 1 s sample, a 10 s batch.
  local node site level port
  while read -r node site level port; do
    local d="$work/agents/$node"
    mkdir -p "$d"
    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$d/storage.key")
    cat >"$d/agent.yaml" <<YAML
node: {id: $node, site: $site, level: $level, capabilities: []}
mqtt: {uri: "mqtts://127.0.0.1:$port", tls_ca_file: $work/pki/trust/ca.pem, tls_cert_file: $work/pki/identities/$node/cert.pem, tls_key_file: $work/pki/identities/$node/key.pem}
metrics: {interval_ms: 1000, batch_interval_s: 10}
outbox: {dir: $d/outbox}
tasks: {dir: $d/tasks, allow: [/bin/sh]}
limits: {max_cpu_pct: 100}
trust: {signing_keys: [$work/pki/signing/nova-cloud.pub]}
storage: {key_file: $d/storage.key}
YAML
    "$build/agent/nova-agent" --config "$d/agent.yaml" 2>"$d/agent.log" &
    pids+=($!)
    echo "pid_$node=$!"
  done < <(printf '%s\n' "agent-eu cloud/eu 2 $(port_of eu)" "gw-par-a1 cloud/eu/par/par-a1 4 $(port_of par-a1)" \
                        "dev-1 cloud/eu/par/par-a1 5 $(port_of par-a1)")
  api_wait /api/v1/nodes 30 "sum(n['liveness'] == 'alive' for n in j) == 3" || fail "nova-cloud does not see the 3 agents alive"
}

scale() {
  local n=$1
  cat >"$work/topology.yaml" <<'YAML'
name: dashboard-scale
sites:
  - {id: cloud, level: 1, port: 0}
nodes: []
YAML
  "$pki_tool" --dir "$work/pki" topology "$work/topology.yaml" >/dev/null
  "$pki_tool" --dir "$work/pki" issue --role node --name nova-sim --region cloud >/dev/null
  local port
  port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # The simulator's grant (sim/README.md): one identity writes every simulated birth.
  cat >"$work/acl" <<'ACL'
user nova-sim
topic write nova/v1/up/+/state
user nova-cloud
topic readwrite nova/v1/#
topic read $SYS/#
ACL
  # user: started as root, Mosquitto would switch to "mosquitto", who cannot read the PKI.
  cat >"$work/mosquitto.conf" <<CONF
user $(id -un)
per_listener_settings false
allow_anonymous false
persistence false
max_queued_messages 100000
max_inflight_messages 0
acl_file $work/acl
listener $port 127.0.0.1
cafile $work/pki/trust/ca.pem
certfile $work/pki/identities/cloud/cert.pem
keyfile $work/pki/identities/cloud/key.pem
require_certificate true
use_identity_as_username true
CONF
  : >"$work/mosquitto.log"
  mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
  pids+=($!)
  local deadline=$((SECONDS + 10))
  until grep -q "Opening ipv4 listen socket on port $port" "$work/mosquitto.log" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "mosquitto did not listen: $(tail -n 3 "$work/mosquitto.log")"
    sleep 0.1
  done
  start_cloud "$port"
  /usr/bin/python3 "$here/inject_births.py" --port "$port" --pki "$work/pki" --nodes "$n" >"$work/inject.out" ||
    fail "inject_births.py failed: $(tail -n 5 "$work/inject.out")"
  api_wait /api/v1/sites 120 "sum(s['liveness']['alive'] for s in j['sites']) == $n" || fail "nova-cloud does not see $n nodes alive"
  echo "api=$api"
  echo "token=$token"
}

case "$mode" in
  small) small ;;
  scale) scale "${4:-10000}" ;;
  *) fail "mode: expected small or scale, got '$mode'" ;;
esac
echo ready
# Until the test ends us (sleep in the background, so the traps run at once).
while true; do
  sleep 3600 &
  sleep_pid=$!
  wait "$sleep_pid" || true
done
