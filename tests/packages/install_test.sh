#!/usr/bin/env bash
# ctest packages:install: the Debian packages installed, run and purged in a fresh
# Debian 12 root. Needs root (chroot, namespaces, systemd-nspawn).
#   install_test.sh DEBS_DIR CACHE_DIR
#
#  1. The root: mmdebstrap from this machine's own Debian 12 apt sources (read from
#     /etc/apt/ now) with every dependency and recommendation of the .debs and systemd, kept as a tarball in
#     CACHE_DIR under a key of those sources and dependencies (debian_root.sh). All that
#     follows runs in private mount, network and PID namespaces: the example topology's
#     fixed broker ports are the namespace's own.
#  2. The root is booted once (systemd-nspawn), its file list taken, the .debs installed
#     with apt, every unit checked by the root's systemd-analyze verify.
#  3. Without systemd (chroot): each daemon started as its unit's User= with its unit's
#     ExecStart= line, configured as an operator would (packaging/README.md): nova-bridge
#     brings up the 15 brokers of the example topology with their PKI; nova-cloud answers
#     /readyz on the cloud broker; nova-agent's birth travels three bridge hops and
#     nova-cloud lists the node alive. SIGHUP (the units' ExecReload=): the bridge and
#     the cloud log their reload and all keep running; SIGTERM: each exits 0.
#  4. Under the root's own systemd (booted by systemd-nspawn): systemctl start of the
#     three units, the same checks (the node offline, then alive again), the sandbox in
#     force in each service (no new privileges, seccomp, no capabilities, read-only /etc),
#     systemctl reload and stop (result success).
#  5. apt purge in the booted root: every file the install made is gone (the file list is
#     the one before the install) and so are the users and groups.
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

# systemd-nspawn makes its "payload" and "supervisor" cgroups beside its own (here in
# the systemd and unified hierarchies): a cgroup of this run's own keeps them apart from
# any other run, and is removed at the end.
own_cgroups=()
enter_own_cgroup() {
  local key path dir line lines
  # Read before moving: /proc/self/cgroup changes with each move.
  mapfile -t lines </proc/self/cgroup
  for line in "${lines[@]}"; do
    IFS=: read -r _ key path <<<"$line"
    case $key in
      name=systemd) dir=/sys/fs/cgroup/systemd$path ;;
      "") dir=/sys/fs/cgroup/unified$path
          [[ $(stat -fc %T /sys/fs/cgroup) != cgroup2fs ]] || dir=/sys/fs/cgroup$path ;;
      *) continue ;;
    esac
    [[ -d $dir ]] && own_cgroups+=("${dir%/}")
  done
  for dir in "${own_cgroups[@]}"; do
    mkdir "$dir/nova-install-test.$$"
    echo $$ >"$dir/nova-install-test.$$/cgroup.procs"
  done
}
leave_own_cgroup() {
  local dir
  for dir in "${own_cgroups[@]}"; do
    echo $$ >"$dir/cgroup.procs"
    find "$dir/nova-install-test.$$" -depth -type d -exec rmdir {} +
  done
}

# --- outside the namespaces: the root, then this script again inside them -------------
if [[ ${NOVA_INSTALL_TEST_INSIDE:-} != 1 ]]; then
  (($# == 2)) || { echo "usage: $0 DEBS_DIR CACHE_DIR" >&2; exit 2; }
  [[ $(id -u) == 0 ]] || die "needs root (chroot, namespaces, systemd-nspawn)"
  debs_dir=$(realpath "$1")
  cache_dir=$(realpath -m "$2")
  compgen -G "$debs_dir/*.deb" >/dev/null || die "no .deb in $debs_dir (ctest packages:debs makes them)"
  tarball=$("$here/debian_root.sh" "$cache_dir" "$debs_dir"/*.deb)
  work=$(mktemp -d "$cache_dir/run.XXXXXX")
  # Mounts live in the inner mount namespace only, so they are gone when it exits; the
  # removal stays on this file system all the same.
  trap 'leave_own_cgroup || true; rm -rf --one-file-system "$work"' EXIT
  enter_own_cgroup
  mkdir "$work/root"
  tar -C "$work/root" -xf "$tarball"
  mkdir "$work/root/tmp/debs"
  cp "$debs_dir"/*.deb "$work/root/tmp/debs/"
  # A PID namespace too: whatever way the inner script ends, the daemons end with it.
  NOVA_INSTALL_TEST_INSIDE=1 unshare --mount --net --pid --fork --mount-proc --kill-child -- "$0" "$work"
  exit $?
fi

# --- inside: private mount, network and PID namespaces ------------------------------------
work=$1
root=$work/root
ip link set lo up
path=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# run: how a command runs in the root, with systemd's PATH and nothing else from this
# environment. First by chroot; while the root is booted, in its systemd's namespaces.
in_chroot=(chroot "$root" /usr/bin/env -i "$path")
run=("${in_chroot[@]}")
in_root() { "${run[@]}" "$@"; }
as_user() { local u=$1; shift; in_root setpriv --reuid="$u" --regid="$u" --init-groups -- "$@"; }

mount_api() { mount -t proc proc "$root/proc"; for fs in sys dev; do mount --rbind "/$fs" "$root/$fs"; done; }
umount_api() { for fs in proc sys dev; do umount -R "$root/$fs"; done; }

# boot: systemd-nspawn boots the root's systemd (in this network namespace) and waits
# until it is running; commands then run in it. poweroff: stops it and waits.
boot() {
  systemd-nspawn --quiet --directory="$root" --register=no --keep-unit --boot >"$work/boot.log" 2>&1 &
  nspawn=$!
  container_pid() { pgrep -P "$nspawn" -x systemd; }
  wait_for 60 container_pid || { cat "$work/boot.log" >&2; die "systemd-nspawn did not start systemd"; }
  run=(nsenter --target "$(container_pid)" --all /usr/bin/env -i "$path")
  wait_for 90 in_root systemctl is-system-running || {
    in_root systemctl --no-pager --failed >&2 || true
    in_root systemctl is-system-running >&2 || true
    die "the booted root's systemd is not running"
  }
}
poweroff() {
  kill -RTMIN+4 "$(container_pid)"  # systemd's poweroff request
  wait "$nspawn" || die "systemd-nspawn exited $?"
  run=("${in_chroot[@]}")
}

# The file list the purge must restore. Left out: what apt, dpkg and adduser keep about
# themselves (logs, caches, status and its backups, /etc/passwd- and friends) and the
# mount points' contents.
file_list() {
  (cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp -o -path ./run \
    -o -path ./var/log -o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg \) -prune -o -print |
    grep -v -E '^\./etc/(passwd|group|shadow|gshadow)-$' | sort)
}
# A first boot, so that what systemd makes at any boot (its timer stamps, /etc/localtime,
# the mosquitto package's own broker's database) is there before the list is taken.
boot
poweroff
file_list >"$work/files.before"

mount_api
say "installing $(cd "$root/tmp/debs" && echo *.deb)"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Use-Pty=0 /tmp/debs/*.deb' \
  >"$work/apt-install.log" 2>&1 || { cat "$work/apt-install.log" >&2; die "apt-get install"; }

units=()
for d in "${daemons[@]}"; do units+=("/lib/systemd/system/$d.service"); done
in_root systemd-analyze verify "${units[@]}" >"$work/verify.log" 2>&1 ||
  { cat "$work/verify.log" >&2; die "systemd-analyze verify"; }
[[ ! -s $work/verify.log ]] || { cat "$work/verify.log" >&2; die "systemd-analyze verify printed warnings"; }
say "systemd-analyze verify: ${#units[@]} units clean"

# --- what both stages check -------------------------------------------------------------
bridge_green() { in_root nova-bridge status --run-dir /var/lib/nova-bridge >"$work/status.log" 2>&1; }
# A site's port, from the state nova-bridge wrote.
port_of() {
  python3 -c 'import json, sys; print(next(s["port"] for s in json.load(open(sys.argv[1]))["sites"] if s["id"] == sys.argv[2]))' \
    "$root/var/lib/nova-bridge/hierarchy.json" "$1"
}
yaml_key() {
  python3 -c 'import sys, yaml; v = yaml.safe_load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[k]
print(v)' "$root$1" "$2"
}
api=http://127.0.0.1:$(yaml_key /etc/nova/cloud.yaml http.port)
node=$(yaml_key /etc/nova/agent.yaml node.id)
site=$(yaml_key /etc/nova/agent.yaml node.site)
site=${site##*/}
cloud_ready() { curl -fsS "$api/readyz"; }
# node_is alive|not-alive: nova-cloud's GET /api/v1/nodes lists the agent's node, and
# alive or not.
node_is() {
  curl -fsS -H "Authorization: Bearer $token" "$api/api/v1/nodes" |
    python3 -c 'import json, sys
want_alive = sys.argv[2] == "alive"
sys.exit(0 if any(n["id"] == sys.argv[1] and (n["liveness"] == "alive") == want_alive for n in json.load(sys.stdin)) else 1)' "$node" "$1"
}

# === stage 1: each daemon by its unit's ExecStart= and User=, without systemd ================
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
  "${run[@]}" setpriv --reuid="$user" --regid="$user" --init-groups -- "${exec_start[@]}" >"$work/$d.log" 2>&1 &
  pid[$d]=$!
}
running() { kill -0 "${pid[$1]}"; }
logged() { grep -q -- "$2" "$work/$1.log"; }
fail_with_log() { tail -n 30 "$work/$1.log" >&2; die "$2"; }

# --- nova-bridge: the example topology's brokers, bridges and PKI ------------------------
start nova-bridge
wait_for 120 bridge_green || { cat "$work/status.log" >&2; fail_with_log nova-bridge "nova-bridge did not bring the hierarchy up"; }
say "nova-bridge: $(grep '^ready: ' "$work/nova-bridge.log"); status: $(tail -n 1 "$work/status.log")"

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

# --- nova-cloud: signing key, API token, TLS identity, then /readyz -----------------------
as_user nova-cloud nova-pki --dir /etc/nova-cloud signing-key --name nova-cloud >/dev/null
token=$(as_user nova-cloud nova-cloud token create --name install-test --role viewer --tokens-file /etc/nova-cloud/tokens)
provide nova-cloud nova-cloud /etc/nova-cloud/tls
configure /etc/nova/cloud.yaml "mqtt.uri=mqtts://127.0.0.1:$(port_of cloud)" \
  mqtt.tls_ca_file=/etc/nova-cloud/tls/ca.pem mqtt.tls_cert_file=/etc/nova-cloud/tls/cert.pem \
  mqtt.tls_key_file=/etc/nova-cloud/tls/key.pem
start nova-cloud
wait_for 60 cloud_ready || fail_with_log nova-cloud "nova-cloud is not ready"
say "nova-cloud: GET /readyz: $(cloud_ready)"

# --- nova-agent: its node's identity and nova-cloud's public key, then its birth ---------
provide nova-agent "$node" /etc/nova-agent/tls
in_root install -o nova-agent -g nova-agent -m 0640 /etc/nova-cloud/signing/nova-cloud.pub /etc/nova-agent/nova-cloud-signing.pub
configure /etc/nova/agent.yaml "mqtt.uri=mqtts://127.0.0.1:$(port_of "$site")" \
  mqtt.tls_ca_file=/etc/nova-agent/tls/ca.pem mqtt.tls_cert_file=/etc/nova-agent/tls/cert.pem \
  mqtt.tls_key_file=/etc/nova-agent/tls/key.pem limits.min_free_memory_mb=0
# With no --config both daemons read their package's conffile in /etc/nova.
for d in nova-cloud nova-agent; do
  as_user "$d" "$d" --check-config >"$work/$d.check" 2>&1 || { cat "$work/$d.check" >&2; die "$d --check-config (no --config) refuses its default file"; }
done
say "nova-cloud and nova-agent without --config: /etc/nova/cloud.yaml and /etc/nova/agent.yaml are valid"
start nova-agent
wait_for 60 node_is alive || { tail -n 20 "$work/nova-agent.log" >&2; fail_with_log nova-cloud "nova-cloud does not list $node alive"; }
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
umount_api

# === stage 2: the units under the root's own systemd, sandbox and all ========================
boot
trap 'kill -RTMIN+4 "$(container_pid)" 2>/dev/null; wait' EXIT
# Installed neither enabled nor started (each needs its site's settings first).
for d in "${daemons[@]}"; do
  state="$(in_root systemctl is-enabled "$d.service" || true) $(in_root systemctl is-active "$d.service" || true)"
  [[ $state == "disabled inactive" ]] || die "$d.service is '$state' after install and boot, not 'disabled inactive'"
done
say "booted the root's systemd (systemd-nspawn): the three units disabled and inactive"
journal_has() { in_root journalctl --no-pager -o cat -u "$1.service" | grep -q -- "$2"; }
fail_with_journal() { in_root journalctl --no-pager -o cat -u "$1.service" | tail -n 30 >&2; die "$2"; }
main_pid() { in_root systemctl show --property=MainPID --value "$1.service"; }

in_root systemctl start nova-bridge.service
wait_for 120 bridge_green || { cat "$work/status.log" >&2; fail_with_journal nova-bridge "nova-bridge.service did not bring the hierarchy up"; }
in_root systemctl start nova-cloud.service
wait_for 60 cloud_ready || fail_with_journal nova-cloud "nova-cloud.service is not ready"
# The agent's retained state says it went offline at the end of stage 1.
wait_for 60 node_is not-alive || fail_with_journal nova-cloud "nova-cloud lists $node alive before its agent runs"
in_root systemctl start nova-agent.service
wait_for 60 node_is alive || fail_with_journal nova-agent "nova-cloud does not list $node alive under systemd"
say "systemctl start: hierarchy up, nova-cloud ready, $node offline then alive again"

# The sandbox is in force in each service: no new privileges, a seccomp filter, no
# capabilities, and a read-only /etc even for root in its mount namespace.
for d in "${daemons[@]}"; do
  p=$(main_pid "$d")
  status=$(in_root cat "/proc/$p/status")
  grep -q -P '^NoNewPrivs:\t1$' <<<"$status" || die "$d.service: NoNewPrivs is not set"
  grep -q -P '^Seccomp:\t2$' <<<"$status" || die "$d.service: no seccomp filter"
  grep -q -P '^CapBnd:\t0+$' <<<"$status" || die "$d.service: has capabilities"
  probe=$(in_root nsenter --target "$p" --mount touch /etc/nova/.sandbox-probe 2>&1) || true
  [[ $probe == *"Read-only file system"* ]] || die "$d.service: /etc is not read-only: touch said '$probe'"
done
say "sandbox: NoNewPrivs, seccomp, no capabilities and a read-only /etc in all three"

for d in "${daemons[@]}"; do in_root systemctl reload "$d.service"; done
wait_for 60 journal_has nova-bridge 'event=reloaded' || fail_with_journal nova-bridge "nova-bridge.service did not reload"
wait_for 30 journal_has nova-cloud 'event=reload ' || fail_with_journal nova-cloud "nova-cloud.service did not reload"
for d in "${daemons[@]}"; do in_root systemctl is-active --quiet "$d.service" || fail_with_journal "$d" "$d.service is not active after reload"; done
say "systemctl reload: nova-bridge and nova-cloud reloaded, all three active"
for d in nova-agent nova-cloud nova-bridge; do
  in_root systemctl stop "$d.service"
  result=$(in_root systemctl show --property=Result --value "$d.service")
  [[ $result == success ]] || fail_with_journal "$d" "$d.service stopped with result $result"
done
say "systemctl stop: all three stopped with result success"

# --- purge, by apt in the booted system --------------------------------------------------
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -o Dpkg::Use-Pty=0 nova-agent nova-bridge nova-cloud nova-pki' \
  >"$work/apt-purge.log" 2>&1 || { cat "$work/apt-purge.log" >&2; die "apt-get purge"; }
trap - EXIT
poweroff
file_list >"$work/files.after"
diff -u "$work/files.before" "$work/files.after" >&2 || die "the purge left the files above behind (+) or removed others (-)"
for d in "${daemons[@]}"; do
  ! in_root getent passwd "$d" >/dev/null || die "user $d is left after purge"
  ! in_root getent group "$d" >/dev/null || die "group $d is left after purge"
done
say "purge: the root's $(wc -l <"$work/files.before") files and directories are as before the install; no nova user or group"
say "ok"
