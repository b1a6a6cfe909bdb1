#!/bin/sh
# The cross builds' launcher (firmware/nova-agent-portable.in) around the host's own
# nova-agent and loader: the agent, not the loader, must get the arguments, also after
# nova-agent's start-up (which runs /proc/self/exe again unless told its symbols are
# bound, and /proc/self/exe is the loader here). The cross builds run under qemu-user,
# where that exec of a foreign binary fails and hides the fault: hence this native test.
# Usage: portable_launcher_test.sh NOVA_AGENT LAUNCHER_IN
set -eu
agent=$1 launcher_in=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
loader=$(readelf -l "$agent" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
mkdir "$dir/lib"
cp "$loader" "$dir/lib/"
cp "$agent" "$dir/lib/nova-agent"
sed "s|@LOADER@|$(basename "$loader")|" "$launcher_in" >"$dir/nova-agent"
chmod +x "$dir/nova-agent"

out=$("$dir/nova-agent" --version 2>&1) || { echo "FAIL: exit $?: $out"; exit 1; }
case $out in
  "nova-agent "*) ;;
  *) echo "FAIL: --version printed '$out', not nova-agent's version"; exit 1 ;;
esac
# A usage error is the agent's (exit 2, naming the option), not the loader's.
set +e
out=$("$dir/nova-agent" --no-such-option 2>&1)
rc=$?
set -e
if [ $rc -ne 2 ] || ! printf '%s' "$out" | grep -q -- "--no-such-option"; then
  echo "FAIL: --no-such-option: exit $rc: $out"; exit 1
fi
echo "PASS: $out" | head -n 1
