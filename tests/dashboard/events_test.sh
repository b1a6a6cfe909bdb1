#!/usr/bin/env bash
# GET /api/v1/events (server-sent events) read by curl -N, a client we did not write,
# against the small real stack of stack.sh (mutual TLS, signed control messages, an API
# token):
#   - no token: 401; the token as ?token= or the nova_token cookie opens the stream
#     (text/event-stream, a retry: line), and no other route takes either;
#   - an agent SIGKILLed: an "event: node" saying it is dead arrives within 5 s, and the
#     retained state others read at the cloud broker (mosquitto_sub as an operator,
#     decoded by nova-codec) is its will, "dead";
#   - GET /api/v1/sites and /api/v1/offline (curl) count the killed agent dead and away;
#   - a reader reconnecting with Last-Event-ID gets the events after that id again.
#
#   events_test.sh BUILD_DIR WORK_DIR
set -euo pipefail

build=$1
work=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
rm -rf "$work"
mkdir -p "$work"
stack_pid=""
curl_pids=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local status=$?
  ((${#curl_pids[@]} == 0)) || kill "${curl_pids[@]}" 2>/dev/null || true
  if [[ -n "$stack_pid" ]]; then
    kill -TERM "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
fail() { echo "events_test: FAILED: $*" >&2; exit 1; }
ok() { echo "events_test: ok: $*"; }

: >"$work/stack.out"  # before tail looks for it
"$here/stack.sh" "$build" "$work/stack" small >"$work/stack.out" &
stack_pid=$!
timeout 90 grep -q -m 1 '^ready$' < <(tail --pid="$stack_pid" -n +1 -f "$work/stack.out") || fail "the stack did not start"
value() { sed -n "s/^$1=//p" "$work/stack.out" | head -n 1; }
api=$(value api)
token=$(value token)
pki=$(value pki)
cloud_port=$(value cloud_port)

# Waits up to $2 s for the regex $3 in file $1.
wait_for() {
  local deadline=$((SECONDS + $2))
  until grep -qE "$3" "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

code=$(curl -s -o "$work/no-token.json" -w '%{http_code}' -m 5 "$api/api/v1/events")
[[ "$code" == 401 ]] || fail "without a token: HTTP $code"
grep -q 'Authorization: expected' "$work/no-token.json" || fail "the 401 does not name the header: $(cat "$work/no-token.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$api/api/v1/nodes?token=$token")
[[ "$code" == 401 ]] || fail "GET /api/v1/nodes took ?token= (HTTP $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H 'Content-Type: application/json' -H "Cookie: nova_token=$token" \
  --data '{}' "$api/api/v1/workloads")
[[ "$code" == 401 ]] || fail "POST /api/v1/workloads took the cookie (HTTP $code)"
ok "no token: 401; ?token= and the cookie are refused on every other route"

curl -sN -D "$work/headers" -H "Cookie: nova_token=$token" "$api/api/v1/events" >"$work/cookie.sse" &
curl_pids+=($!)
curl -sN "$api/api/v1/events?token=$token" >"$work/events.sse" &
curl_pids+=($!)
wait_for "$work/events.sse" 5 '^retry: ' || fail "no stream opened with ?token="
wait_for "$work/cookie.sse" 5 '^retry: ' || fail "no stream opened with the cookie"
grep -qi '^content-type: text/event-stream' "$work/headers" || fail "not text/event-stream: $(cat "$work/headers")"
ok "the token as ?token= or as the nova_token cookie opens a text/event-stream"

killed=$(date +%s%N)
kill -KILL "$(value pid_dev-1)"
wait_for "$work/events.sse" 5 '"id":"dev-1".*"liveness":"dead"|"liveness":"dead".*"id":"dev-1"' ||
  fail "no dead event for dev-1 within 5 s: $(cat "$work/events.sse")"
echo "events_test: figure: SIGKILL of dev-1 -> its dead event read by curl after $((($(date +%s%N) - killed) / 1000000)) ms"
grep -B2 '"id":"dev-1"' "$work/events.sse" | grep -q '^event: node' || fail "the dead event is not of type node"
ok "an agent SIGKILLed: event node, dev-1 dead, within 5 s"

# What every other consumer reads: the retained state at the cloud broker is the will.
mosquitto_sub -h 127.0.0.1 -p "$cloud_port" -V mqttv311 --cafile "$pki/trust/ca.pem" \
  --cert "$pki/identities/operator.dashboard-test/cert.pem" --key "$pki/identities/operator.dashboard-test/key.pem" \
  -t nova/v1/up/dev-1/state -C 1 -W 5 --retained-only -N >"$work/state.cbor" || fail "no retained state for dev-1 at the cloud broker"
"$build/schemas/nova-codec" decode node_state <"$work/state.cbor" >"$work/state.json"
grep -q '"status":"dead"' "$work/state.json" || fail "the retained state is not the will: $(cat "$work/state.json")"
ok "the retained state at the cloud broker is dev-1's will: $(cat "$work/state.json")"

# The same change through the REST routes the dashboard reads, with curl.
get_json() { curl -fsS -H "Authorization: Bearer $token" "$api$1"; }
get_json /api/v1/sites | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
site = next(s for s in j["sites"] if s["path"] == "cloud/eu/par/par-a1")
assert site["liveness"]["dead"] == 1 and site["liveness"]["alive"] == 1 and site["tier"] == 4, site
assert j["links_down"] == [], j["links_down"]' || fail "GET /api/v1/sites does not count dev-1 dead at par-a1"
get_json "/api/v1/offline?site=cloud/eu/par" | /usr/bin/python3 -c '
import json, sys
rows = json.load(sys.stdin)["nodes"]
assert rows[0]["node"] == "dev-1" and rows[0]["liveness"] == "dead" and rows[0]["offline_ms"] > 0, rows
assert {r["node"] for r in rows} == {"dev-1", "gw-par-a1"}, rows' || fail "GET /api/v1/offline does not rank dev-1 first"
ok "GET /api/v1/sites counts dev-1 dead at par-a1; GET /api/v1/offline ranks it first, away since its kill"

# Replay: a second agent killed; a reader that last saw dev-1's event reconnects with its
# id and gets gw-par-a1's, and not dev-1's again.
kill -KILL "$(value pid_gw-par-a1)"
wait_for "$work/events.sse" 5 '"id":"gw-par-a1".*"liveness":"dead"|"liveness":"dead".*"id":"gw-par-a1"' ||
  fail "no dead event for gw-par-a1 within 5 s"
id_of() { grep -B2 "\"id\":\"$1\".*\"liveness\":\"dead\"" "$work/events.sse" | sed -n 's/^id: //p' | head -n 1; }
seen=$(id_of dev-1)
next=$(id_of gw-par-a1)
[[ -n "$seen" && -n "$next" ]] || fail "no ids on the dead events: $(cat "$work/events.sse")"
curl -sN -H "Authorization: Bearer $token" -H "Last-Event-ID: $seen" "$api/api/v1/events" >"$work/replay.sse" &
curl_pids+=($!)
wait_for "$work/replay.sse" 5 "^id: $next\$" || fail "the replay after $seen did not give $next: $(cat "$work/replay.sse")"
grep -q "^id: $seen\$" "$work/replay.sse" && fail "the replay repeated event $seen itself"
ok "Last-Event-ID $seen (dev-1 dead): event $next (gw-par-a1 dead) again, not $seen"
echo "events_test: passed"
