#!/bin/sh
# nova-agent-launch (firmware/device) with stand-in agents: a version that exits at once
# during its trial is rolled back at once, with the reason "exited with status 1 during
# its trial", every time. Version a (healthy) stages b and exits, as an agent does for an
# update; b exits 1 at once; the launcher rolls back to a, which stages b again, for
# $cycles cycles, then stops the launcher.
#
# The launcher starts a trial watchdog (a subshell) beside b and kills it when b exits.
# A SIGTERM that reaches the subshell before it has dropped the launcher's own TERM trap
# was lost, so the watchdog lived on, the rollback waited for the whole trial and gave
# the reason "no acknowledged birth within Ns" (the demo in scripts/run.sh hit it).
# Usage: launcher_rollback_test.sh LAUNCHER
set -eu
launcher=$1
cycles=40
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

dir=$tmp/opt
mkdir -p "$dir/versions/a" "$dir/versions/b"
cat > "$dir/versions/a/nova-agent" <<SH
#!/bin/sh
n=\$(cat "$dir/cycles" 2>/dev/null || echo 0)
if [ "\$n" -ge $cycles ]; then kill -TERM \$PPID; exit 0; fi
echo \$((n + 1)) > "$dir/cycles"
echo a > "$dir/healthy"
echo b > "$dir/pending"
exit 0
SH
printf '#!/bin/sh\nexit 1\n' > "$dir/versions/b/nova-agent"
chmod +x "$dir/versions/a/nova-agent" "$dir/versions/b/nova-agent"
echo a > "$dir/current"

# A trial of 3 s: a lost kill costs 3 s a cycle and names the deadline as the reason.
timeout 300 "$launcher" "$dir" "$tmp/unused.yaml" 3 2> "$tmp/launch.log" || fail "the launcher did not stop (status $?)"
rollbacks=$(grep -c "rolling back from b to a" "$tmp/launch.log" || true)
right=$(grep -c "rolling back from b to a: exited with status 1 during its trial" "$tmp/launch.log" || true)
[ "$rollbacks" -eq "$cycles" ] || fail "$rollbacks rollbacks in $cycles cycles"
[ "$right" -eq "$cycles" ] || fail "$((cycles - right)) of $cycles rollbacks gave another reason: $(grep "rolling back" "$tmp/launch.log" | grep -v "during its trial" | head -n 1)"
echo "launcher_rollback_test: ok ($cycles rollbacks, each at once for exiting during its trial)"
