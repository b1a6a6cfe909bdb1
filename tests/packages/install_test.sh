#!/usr/bin/env bash
# ctest packages:install: the Debian packages installed, run and purged in a fresh
# Debian 12 root. Needs root (chroot, mount and network namespaces).
#   install_test.sh DEBS_DIR CACHE_DIR
#
#  1. The root: mmdebstrap from this machine's own Debian 12 apt sources (read from
#     /etc/apt/sources.list.d/ now) with every dependency of the .debs, kept as a tarball
#     in CACHE_DIR under a key of those sources and dependencies (debian_root.sh).
#  2. In private mount, network and PID namespaces (the example topology's fixed broker
#     ports are the namespace's own): the .debs installed with apt in the root; every unit
#     checked by the root's systemd-analyze verify.
#  3. Each daemon started in the root as its unit's User= with its unit's ExecStart= line
#     (no systemd there), configured as an operator would (packaging/README.md):
#     nova-bridge brings up the 15 brokers of the example topology with their PKI;
#     nova-cloud answers /readyz on the cloud broker; nova-agent's birth travels three
#     bridge hops and nova-cloud lists the node alive. Then SIGHUP (the units'
#     ExecReload=) to each: the bridge and the cloud log their reload and all keep
#     running; SIGTERM: each exits 0.
#  4. apt purge: every file the install made is gone (the file list of the root is the
#     one before the install) and so are the users and groups.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
daemons=(nova-bridge nova-cloud nova-agent)
say() { echo "install_test: $*"; }
die() { echo "install_test: FAILED: $*" >&2; exit 1; }

# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds (0) or SECONDS pass (1).
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# --- outside the namespaces: the root, then this script again inside them -------------
if [[ ${NOVA_INSTALL_TEST_INSIDE:-} != 1 ]]; then
  (($# == 2)) || { echo "usage: $0 DEBS_DIR CACHE_DIR" >&2; exit 2; }
  [[ $(id -u) == 0 ]] || die "needs root (chroot, mount and network namespaces)"
  debs_dir=$(realpath "$1")
  cache_dir=$(realpath -m "$2")
  compgen -G "$debs_dir/*.deb" >/dev/null || die "no .deb in $debs_dir (ctest packages:debs makes them)"
  tarball=$("$here/debian_root.sh" "$cache_dir" "$debs_dir"/*.deb)
  work=$(mktemp -d "$cache_dir/run.XXXXXX")
  # Mounts live in the inner mount namespace only, so they are gone when it exits; the
  # removal stays on this file system all the same.
  trap 'rm -rf --one-file-system "$work"' EXIT
  mkdir "$work/root"
  tar -C "$work/root" -xf "$tarball"
  mkdir "$work/root/tmp/debs"
  cp "$debs_dir"/*.deb "$work/root/tmp/debs/"
  # A PID namespace too: whatever way the inner script ends, the daemons end with it.
  NOVA_INSTALL_TEST_INSIDE=1 unshare --mount --net --pid --fork --kill-child -- "$0" "$work"
  exit $?
fi

# --- inside: private mount, network and PID namespaces ------------------------------------
work=$1
root=$work/root
ip link set lo up
mount -t proc proc "$root/proc"
for fs in sys dev; do mount --rbind "/$fs" "$root/$fs"; done

# A command in the root, with systemd's PATH and nothing else from this environment.
in_root_cmd=(chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
in_root() { "${in_root_cmd[@]}" "$@"; }
# The file list the purge must restore. Left out: what apt, dpkg and adduser keep about
# themselves (logs, caches, status and its backups, /etc/passwd- and friends) and the
# mount points' contents.
file_list() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp -o -path ./run \
    -o -path ./var/log -o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg \) -prune -o -print |
    grep -v -E '^\./etc/(passwd|group|shadow|gshadow)-$' | sort)
}
file_list >"$work/files.before"

say "installing $(cd "$root/tmp/debs" && echo *.deb)"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Use-Pty=0 /tmp/debs/*.deb' \
  >"$work/apt-install.log" 2>&1 || { cat "$work/apt-install.log" >&2; die "apt-get install"; }

units=()
for d in "${daemons[@]}"; do units+=("/lib/systemd/system/$d.service"); done
in_root systemd-analyze verify "${units[@]}" >"$work/verify.log" 2>&1 ||
  { cat "$work/verify.log" >&2; die "systemd-analyze verify"; }
[[ ! -s $work/verify.log ]] || { cat "$work/verify.log" >&2; die "systemd-analyze verify printed warnings"; }
say "systemd-analyze verify: ${#units[@]} units clean"

# unit_key UNIT KEY: the value of KEY= in the installed unit.
unit_key() { sed -n "s/^$2=//p" "$root/lib/systemd/system/$1.service"; }

declare -A pid
stop_all() {
  for d in "${daemons[@]}"; do [[ -n ${pid[$d]:-} ]] && kill "${pid[$d]}" 2>/dev/null; done
  wait
}
trap stop_all EXIT

# start DAEMON: its unit's ExecStart= as its unit's User=, in the root, logging to
# $work/DAEMON.log.
start() {
  local d=$1 user
  user=$(unit_key "$d" User)
  read -r -a exec_start <<<"$(unit_key "$d" ExecStart)"
  say "starting $d as $user: ${exec_start[*]}"
  # Not through a function: $! must be the daemon itself (chroot, env and setpriv exec).
  "${in_root_cmd[@]}" setpriv --reuid="$user" --regid="$user" --init-groups -- "${exec_start[@]}" >"$work/$d.log" 2>&1 &
  pid[$d]=$!
}
running() { kill -0 "${pid[$1]}"; }
logged() { grep -q -- "$2" "$work/$1.log"; }
fail_with_log() { tail -n 30 "$work/$1.log" >&2; die "$2"; }

# --- nova-bridge: the example topology's brokers, bridges and PKI ------------------------
start nova-bridge
wait_for 120 logged nova-bridge '^ready: ' || fail_with_log nova-bridge "nova-bridge did not bring the hierarchy up"
in_root setpriv --reuid=nova-bridge --regid=nova-bridge --init-groups -- \
  nova-bridge status --run-dir /var/lib/nova-bridge >"$work/status.log" 2>&1 ||
  { cat "$work/status.log" >&2; die "nova-bridge status"; }
say "nova-bridge: $(grep '^ready: ' "$work/nova-bridge.log"); status: $(tail -n 1 "$work/status.log")"

# A site's port, from the state nova-bridge wrote.
port_of() {
  python3 -c 'import json, sys; print(next(s["port"] for s in json.load(open(sys.argv[1]))["sites"] if s["id"] == sys.argv[2]))' \
    "$root/var/lib/nova-bridge/hierarchy.json" "$1"
}
pki=/var/lib/nova-bridge/pki

# provide USER NAME DEST: the PKI identity NAME's certificate and key and the CA, as
# DEST/{ca.pem,cert.pem,key.pem} owned by USER (an operator copying them).
provide() {
  in_root install -d -o "$1" -g "$1" -m 0750 "$3"
  in_root install -o "$1" -g "$1" -m 0640 "$pki/trust/ca.pem" "$3/ca.pem"
  in_root install -o "$1" -g "$1" -m 0640 "$pki/identities/$2/cert.pem" "$3/cert.pem"
  in_root install -o "$1" -g "$1" -m 0600 "$pki/identities/$2/key.pem" "$3/key.pem"
}
# configure FILE KEY=VALUE...: sets dotted keys in a YAML conffile of the root (values
# are YAML), as an operator edits /etc/nova.
configure() {
  python3 - "$root$1" "${@:2}" <<'PY'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
for assignment in sys.argv[2:]:
    key, value = assignment.split("=", 1)
    *parents, last = key.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = yaml.safe_load(value)
yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
PY
}
as_user() { local u=$1; shift; in_root setpriv --reuid="$u" --regid="$u" --init-groups -- "$@"; }

# --- nova-cloud: signing key, API token, TLS identity, then /readyz -----------------------
as_user nova-cloud nova-pki --dir /etc/nova-cloud signing-key --name nova-cloud >/dev/null
token=$(as_user nova-cloud nova-cloud token create --name install-test --role viewer --tokens-file /etc/nova-cloud/tokens)
provide nova-cloud nova-cloud /etc/nova-cloud/tls
configure /etc/nova/cloud.yaml "mqtt.uri=mqtts://127.0.0.1:$(port_of cloud)" \
  mqtt.tls_ca_file=/etc/nova-cloud/tls/ca.pem mqtt.tls_cert_file=/etc/nova-cloud/tls/cert.pem \
  mqtt.tls_key_file=/etc/nova-cloud/tls/key.pem
api=http://127.0.0.1:$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["http"]["port"])' "$root/etc/nova/cloud.yaml")
start nova-cloud
wait_for 60 curl -fsS "$api/readyz" || fail_with_log nova-cloud "nova-cloud is not ready"
say "nova-cloud: GET /readyz: $(curl -fsS "$api/readyz")"

# --- nova-agent: its node's identity and nova-cloud's public key, then its birth ---------
node=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["node"]["id"])' "$root/etc/nova/agent.yaml")
site=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["node"]["site"].split("/")[-1])' "$root/etc/nova/agent.yaml")
provide nova-agent "$node" /etc/nova-agent/tls
in_root install -o nova-agent -g nova-agent -m 0640 /etc/nova-cloud/signing/nova-cloud.pub /etc/nova-agent/nova-cloud-signing.pub
configure /etc/nova/agent.yaml "mqtt.uri=mqtts://127.0.0.1:$(port_of "$site")" \
  mqtt.tls_ca_file=/etc/nova-agent/tls/ca.pem mqtt.tls_cert_file=/etc/nova-agent/tls/cert.pem \
  mqtt.tls_key_file=/etc/nova-agent/tls/key.pem limits.min_free_memory_mb=0
start nova-agent
node_alive() {
  curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/nodes" |
    python3 -c 'import json, sys; sys.exit(0 if any(n["id"] == sys.argv[1] and n["liveness"] == "alive" for n in json.load(sys.stdin)) else 1)' "$node"
}
wait_for 60 node_alive || { tail -n 20 "$work/nova-agent.log" >&2; fail_with_log nova-cloud "nova-cloud does not list $node alive"; }
say "nova-agent: $node (site $site) born, three bridge hops up; nova-cloud lists it alive"

# --- reload (ExecReload=: SIGHUP) and stop (SIGTERM) ---------------------------------------
for d in "${daemons[@]}"; do running "$d" || fail_with_log "$d" "$d exited"; kill -HUP "${pid[$d]}"; done
wait_for 60 logged nova-bridge 'event=reloaded' || fail_with_log nova-bridge "nova-bridge did not reload on SIGHUP"
wait_for 30 logged nova-cloud 'event=reload ' || fail_with_log nova-cloud "nova-cloud did not reload on SIGHUP"
for d in "${daemons[@]}"; do running "$d" || fail_with_log "$d" "$d did not survive SIGHUP"; done
say "SIGHUP: nova-bridge and nova-cloud reloaded, all three still running"
for d in nova-agent nova-cloud nova-bridge; do
  kill -TERM "${pid[$d]}"
  status=0
  wait "${pid[$d]}" || status=$?
  unset "pid[$d]"
  ((status == 0)) || fail_with_log "$d" "$d exited $status after SIGTERM"
done
say "SIGTERM: all three exited 0"
trap - EXIT

# --- purge ----------------------------------------------------------------------------------
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -o Dpkg::Use-Pty=0 nova-agent nova-bridge nova-cloud nova-pki' \
  >"$work/apt-purge.log" 2>&1 || { cat "$work/apt-purge.log" >&2; die "apt-get purge"; }
file_list >"$work/files.after"
diff -u "$work/files.before" "$work/files.after" >&2 || die "the purge left the files above behind (+) or removed others (-)"
for d in "${daemons[@]}"; do
  ! in_root getent passwd "$d" >/dev/null || die "user $d is left after purge"
  ! in_root getent group "$d" >/dev/null || die "group $d is left after purge"
done
say "purge: the root's $(wc -l <"$work/files.before") files and directories are as before the install; no nova user or group"
say "ok"
