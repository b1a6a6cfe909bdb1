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
#   - the dashboard at the address run.sh prints, in Debian's chromium
#     (tests/dashboard/dashboard_test.mjs attach; playwright-core from the dashboard_setup
#     test): every site and link drawn, the node counts of the REST API.
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

# 4. The demo's dashboard in a browser (the build tree is the one of nova-codec).
dashboard_url=$(sed -n 's/.*dashboard: *\(http[^ ]*\) .*/\1/p' "$out" | head -n 1)
[[ "$dashboard_url" == "$api/#token=$token" ]] || fail "run.sh printed the dashboard as '$dashboard_url'"
build_dir=$(cd "$(dirname "$codec")/.." && pwd)
node "$repo/tests/dashboard/dashboard_test.mjs" "$build_dir" "$build_dir/tests/dashboard/artifacts/demo" attach "$api" "$token" ||
  fail "the dashboard"

kill -TERM "$run_pid"
status=0
wait "$run_pid" || status=$?
run_pid=""
((status == 0)) || fail "run.sh exited with status $status on SIGTERM"
echo "run_script_test: ok"
