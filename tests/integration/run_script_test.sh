#!/usr/bin/env bash
# The project's main job, scripts/run.sh, checked from outside while it keeps running:
# its exit status is not enough. Starts run.sh (without --once, so the hierarchy stays
# up), waits for its "press Ctrl-C" line, then checks with its own clients what the demo
# claims about the two over-the-air updates:
#   - every node's retained birth at the cloud broker reports the next version
#     (mosquitto_sub as the operator run.sh enrols, decoded by nova-codec);
#   - GET /api/v1/rollouts (curl): the good rollout succeeded, every node updated; the
#     broken one halted with its first wave rolled_back by the launchers and every other
#     node never offered it;
#   - no metrics batch lost: for each node, the batches its agents made (their `stopped`
#     lines, every run that ended) are at or below nova-cloud's watermark of its metrics
#     stream, and nova_cloud_seqs_skipped_total is 0;
#   - the service run.sh submitted (GET /api/v1/workloads/demo-service): two replicas on
#     two nodes, both cancelled;
#   - the pipeline of the node run.sh gave one, after the updates restarted its agent: a
#     reading from the boiler's certificate (mosquitto_pub) turns the fan on, read with the
#     fan's certificate (mosquitto_sub), and GET /api/v1/decisions lists that decision and
#     the two run.sh made;
#   - the dashboard at the address run.sh prints, in Debian's chromium
#     (tests/dashboard/dashboard_test.mjs attach; playwright-core from the dashboard_setup
#     test): every site and link drawn, the node counts of the REST API; a device's
#     launcher and agent SIGKILLed by the test show on screen within 5 s (one fewer alive,
#     its site red); a workload submitted through the form shows its node and reason.
# Then SIGTERM (a background job of a script ignores SIGINT), and run.sh must exit 0.
# Usage: run_script_test.sh NOVA_CODEC [run.sh options...]
set -euo pipefail
codec=$1
shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out=$(mktemp)
run_pid=""
cleanup() {
  [[ -n "$run_pid" ]] && kill -TERM "$run_pid" 2>/dev/null && wait "$run_pid" 2>/dev/null
  rm -f "$out"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- run.sh output ---" >&2
  cat "$out" >&2
  exit 1
}

"$repo/scripts/run.sh" --no-build "$@" >"$out" 2>&1 &
run_pid=$!
# tail -f wakes on writes and ends with run.sh (--pid).
timeout 170 grep -q -m 1 'press Ctrl-C to stop' < <(tail --pid="$run_pid" -n +1 -f "$out") ||
  fail "run.sh did not reach its keep-running state"

# What run.sh printed for the operator: the API, its token, the cloud broker and the PKI.
api=$(sed -n 's/.*REST API and dashboard at \(http[^ ]*\)\/$/\1/p' "$out" | head -n 1)
token=$(sed -n 's/.*API token: *\([^ ]*\) .*/\1/p' "$out" | head -n 1)
sub_line=$(grep -m 1 '  mosquitto_sub -h 127.0.0.1' "$out" | sed 's/^run.sh: *//; s/ -t .*//')
agents_dir=$(sed -n 's/.*logs in \(.*\)\/<node>\/launch.log.*/\1/p' "$out" | head -n 1)
next_version=$(sed -n 's/.*nova-agent [^ ]* -> \([^ ]*\) to every node.*/\1/p' "$out" | head -n 1)
[[ -n "$api" && -n "$token" && -n "$sub_line" && -d "$agents_dir" && -n "$next_version" ]] ||
  fail "could not read the API ($api), token, mosquitto_sub line, agents' folder ($agents_dir) or version ($next_version)"
read -r -a sub <<<"$sub_line"
nodes=$(ls "$agents_dir")
node_count=$(wc -w <<<"$nodes")
((node_count == 30)) || fail "expected 30 nodes in $agents_dir, found $node_count"
get() { curl -fsS -H "Authorization: Bearer $token" "$api$1"; }

# 1. Retained births at the cloud broker.
{ "${sub[@]}" -t 'nova/v1/up/+/state' -q 1 --retained-only -W 3 -F '%x' 2>/dev/null || true; } |
  python3 -c '
import json, subprocess, sys
codec, version, nodes = sys.argv[1], sys.argv[2], set(sys.argv[3].split())
seen = {}
for line in sys.stdin:
    s = json.loads(subprocess.run([codec, "decode", "node_state"], input=bytes.fromhex(line.strip()),
                                  capture_output=True, check=True).stdout)
    seen[s["node"]] = (s["status"], s["version"])
wrong = {n: seen.get(n) for n in nodes if seen.get(n) != ("online", version)}
if wrong:
    sys.exit("births not online with %s: %s" % (version, wrong))
print("births: all %d nodes online with %s" % (len(nodes), version))' "$codec" "$next_version" "$nodes" ||
  fail "retained births"

# 2. The two rollouts.
get /api/v1/rollouts | python3 -c '
import json, sys
version, count = sys.argv[1], int(sys.argv[2])
rollouts = json.load(sys.stdin)
rollouts = rollouts.get("rollouts", rollouts) if isinstance(rollouts, dict) else rollouts
good = [r for r in rollouts if r["version"] == version]
broken = [r for r in rollouts if r["version"] != version]
assert len(good) == 1 and len(broken) == 1, "expected one rollout of %s and one other: %s" % (version, rollouts)
good, broken = good[0], broken[0]
assert good["state"] == "succeeded", good
assert len(good["nodes"]) == count and all(n["phase"] == "updated" for n in good["nodes"]), good
assert broken["state"] == "halted", broken
back = [n for n in broken["nodes"] if n["phase"] == "rolled_back"]
assert len(back) == 2 and all(n["wave"] == 0 and n["reason"] == "exited with status 1 during its trial" for n in back), broken
assert all(n["phase"] == "waiting" for n in broken["nodes"] if n not in back), broken
print("rollouts: %s succeeded on %d nodes; the broken one halted (%s)" % (version, count, broken["halt_reason"]))' \
  "$next_version" "$node_count" || fail "rollouts"

# 3. No metrics batch lost.
for node in $nodes; do
  made=$(grep -o 'event=stopped samples=[0-9]* batches=[0-9]*' "$agents_dir/$node/launch.log" |
    awk -F'batches=' '{ n += $2 } END { print n + 0 }')
  stored=$(get "/api/v1/nodes/$node" | python3 -c 'import json, sys; print(json.load(sys.stdin)["watermarks"].get("metrics", 0))')
  ((made > 0 && stored >= made)) || fail "$node: its agents made $made metrics batches, nova-cloud's watermark is $stored"
done
skipped=$(curl -fsS "$api/metrics" | awk '$1 == "nova_cloud_seqs_skipped_total" { print $2 }')
[[ "$skipped" == 0 ]] || fail "nova_cloud_seqs_skipped_total is '$skipped'"
echo "batches: every node's made batches are at or below nova-cloud's watermark; none skipped"

# 4. The service: two replicas on two nodes, both ended by the cancel.
get /api/v1/workloads/demo-service | python3 -c '
import json, sys
w = json.load(sys.stdin)
r = w["replicas"]
assert w["phase"] == "cancelled" and len(r) == 2 and r[0]["node"] != r[1]["node"], w
assert all(x["state"] == "cancelled" for x in r), w
print("service: cancelled, its replicas were on %s and %s" % (r[0]["node"], r[1]["node"]))' || fail "the service"

# 5. The pipeline, still configured after the updates restarted its agent: a reading of
# 96 from the boiler's certificate turns the fan on, read with the fan's; nova-cloud lists
# that decision and run.sh's two.
pki_dir=$(sed -n 's/.*PKI for mutual TLS on every hop: \([^ ]*\) .*/\1/p' "$out" | head -n 1)
access_port=$(sed -n 's/.*at access broker par-a1 (port \([0-9]*\)).*/\1/p' "$out" | head -n 1)
pnode=$(sed -n 's/.*published temperatures .* on nova\/v1\/sensor\/\([^/]*\)\/boiler .*/\1/p' "$out" | head -n 1)
[[ -d "$pki_dir" && -n "$access_port" && -n "$pnode" ]] ||
  fail "could not read the PKI ($pki_dir), par-a1's port ($access_port) or the pipeline's node ($pnode)"
# mosquitto_pub/sub options to reach par-a1's broker as sensor.<node>.$1.
tls_of() {
  local d="$pki_dir/identities/sensor.$pnode.$1"
  printf '%s\n' -h 127.0.0.1 -p "$access_port" -V mqttv311 --cafile "$pki_dir/trust/ca.pem" --cert "$d/cert.pem" --key "$d/key.pem"
}
mapfile -t fan_tls < <(tls_of fan)
mapfile -t boiler_tls < <(tls_of boiler)
fan_out=$(mktemp)
stdbuf -oL mosquitto_sub -d "${fan_tls[@]}" -t "nova/v1/local/$pnode/actuator/fan" -q 1 -C 1 -W 20 >"$fan_out" 2>&1 &
fan_pid=$!
timeout 10 grep -q -m 1 'received SUBACK' < <(tail --pid="$fan_pid" -n +1 -f "$fan_out") ||
  fail "the fan's mosquitto_sub did not subscribe: $(cat "$fan_out")"
mosquitto_pub "${boiler_tls[@]}" -t "nova/v1/sensor/$pnode/boiler" -q 1 \
  -m "{\"v\":1,\"ts\":$(($(date +%s%N) / 1000000)),\"values\":{\"temp\":96}}" || fail "mosquitto_pub as the boiler"
wait "$fan_pid" || fail "the fan got nothing: $(cat "$fan_out")"
fan_msg=$(grep -m 1 '^{' "$fan_out")
rm -f "$fan_out"
for _ in $(seq 1 100); do
  listed=$(get "/api/v1/decisions?node=$pnode&limit=1000")
  python3 -c '
import json, sys
fan, listed = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert fan["rule"] == "overheat" and fan["payload"] == "on" and fan["inputs"] == {"value": 96.0}, fan
rule = sorted(d["inputs"]["value"] for d in listed if d["kind"] == "rule.overheat" and d["action"] == "publish")
sys.exit(0 if rule == [30.0, 95.0, 96.0] else 1)' "$fan_msg" "$listed" && break
  sleep 0.2
done
python3 -c '
import json, sys
listed = json.loads(sys.argv[1])
rule = [d for d in listed if d["kind"] == "rule.overheat"]
assert sorted(d["inputs"]["value"] for d in rule) == [30.0, 95.0, 96.0], rule
print("pipeline: the fan read %s; nova-cloud lists the rule decisions on 95, 30 and 96" % sys.argv[2])' "$listed" "$fan_msg" ||
  fail "the pipeline's decisions at nova-cloud"

# 5b. The requested migration: demo-guarded left the device whose rule asked, for the
# other device of par-a1, and that request is a decision nova-cloud lists and accepted.
guard_node=$(sed -n 's/.*demo-guarded runs on \([^ ]*\) .*/\1/p' "$out" | head -n 1)
[[ -n "$guard_node" ]] || fail "run.sh did not say where demo-guarded ran"
python3 -c '
import json, sys
node, w, listed = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
moves = [h for h in w["history"] if h["reason"].startswith("migration from %s: requested by %s: rule.too_hot decision-" % (node, node))]
assert w["phase"] == "cancelled" and len(moves) == 1 and moves[0]["node"] not in ("", node), w
asked = [d for d in listed if d["action"] == "request_migration"]
assert len(asked) == 1 and asked[0].get("target") == "demo-guarded" and asked[0]["verdict"]["verdict"] == "accepted", asked
assert moves[0]["reason"].endswith(asked[0]["decision_id"]), (moves, asked)
print("requested migration: demo-guarded moved from %s to %s at %s" % (node, moves[0]["node"], asked[0]["decision_id"]))' \
  "$guard_node" "$(get /api/v1/workloads/demo-guarded)" "$(get "/api/v1/decisions?node=$guard_node&limit=1000")" ||
  fail "the requested migration"

# 6. The demo's dashboard in a browser (the build tree is the one of nova-codec).
dashboard_url=$(sed -n 's/.*dashboard: *\(http[^ ]*\) .*/\1/p' "$out" | head -n 1)
[[ "$dashboard_url" == "$api/#token=$token" ]] || fail "run.sh printed the dashboard as '$dashboard_url'"
build_dir=$(cd "$(dirname "$codec")/.." && pwd)
# The node the browser test kills: a device of the demo, its launcher first (else the
# launcher would start the agent again).
victim=$(grep '^dev-' <<<"$nodes" | tail -n 1)
victim_pids=$(pgrep -f "$agents_dir/$victim/opt/nova-agent/bin/nova-agent-launch" | head -n 1)
[[ -n "$victim_pids" ]] || fail "no launcher found for $victim"
for pid in $(pgrep -f "$agents_dir/$victim/"); do
  [[ $pid == "$victim_pids" ]] || victim_pids+=",$pid"
done
node "$repo/tests/dashboard/dashboard_test.mjs" "$build_dir" "$build_dir/tests/dashboard/artifacts/demo" attach "$api" "$token" \
  "$victim" "$victim_pids" || fail "the dashboard"

kill -TERM "$run_pid"
status=0
wait "$run_pid" || status=$?
run_pid=""
((status == 0)) || fail "run.sh exited with status $status on SIGTERM"
echo "run_script_test: ok"
