#!/bin/sh
# The device bundle end to end without a broker: a bundle of the real nova-agent, one
# device provisioned from a PKI made with nova-pki, and what the device would run checked:
# the stamped config by nova-agent --check-config, the systemd unit by systemd-analyze
# verify, the scripts by sh -n; refusals name the option. An update by hand: the chunks
# cut by `chunks` put back together are the binary, and an offer for them, encoded by
# nova-codec, is signed by `nova-pki sign`.
# Usage: bundle_test.sh NOVA_AGENT NOVA_PKI NOVA_CODEC
set -eu
agent=$1
pki_bin=$2
codec=$3
tool=$(cd "$(dirname "$0")/../../firmware" && pwd)/nova-device-bundle
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$pki_bin" --dir "$tmp/pki" init-root >/dev/null
"$pki_bin" --dir "$tmp/pki" init-intermediate --region eu >/dev/null
"$pki_bin" --dir "$tmp/pki" issue --role node --name dev-7 --region eu >/dev/null
"$pki_bin" --dir "$tmp/pki" signing-key --name nova-cloud >/dev/null

"$tool" make --binary "$agent" --out "$tmp/bundle" >/dev/null
sha=$(sha256sum "$agent" | cut -d' ' -f1)
[ "$(cat "$tmp/bundle/opt/nova-agent/current")" = "$sha" ] || fail "current does not name the binary's sha256"
cmp -s "$agent" "$tmp/bundle/opt/nova-agent/versions/$sha/nova-agent" || fail "the binary is not in versions/<sha256>"

"$tool" provision --bundle "$tmp/bundle" --out "$tmp/dev-7" --prefix "$tmp/dev-7" --node dev-7 \
  --site cloud/eu/par --level 5 --broker mqtts://par.example:8883 --pki "$tmp/pki" --nova-pki "$pki_bin" \
  --signing-key "$tmp/pki/signing/nova-cloud.pub" --capabilities arm64,gpu --tasks-allow /bin/sh,/usr/bin/env >/dev/null
dev=$tmp/dev-7
for f in key.pem cert.pem ca.pem crl.pem; do [ -s "$dev/etc/nova-agent/tls/$f" ] || fail "tls/$f missing"; done
[ "$(stat -c %a "$dev/etc/nova-agent/tls/key.pem")" = 600 ] || fail "the key is not 0600"
[ "$(stat -c %a "$dev/etc/nova-agent/storage.key")" = 600 ] || fail "the storage key is not 0600"
grep -Eqx '[0-9a-f]{64}' "$dev/etc/nova-agent/storage.key" || fail "the storage key is not 64 hex digits"
grep -q "storage: {key_file: $dev/etc/nova-agent/storage.key}" "$dev/etc/nova-agent/agent.yaml" || fail "storage.key_file not stamped"
# Like ssh with a private key, the agent refuses a storage key that others may read.
chmod 0644 "$dev/etc/nova-agent/storage.key"
out=$(timeout 30 "$agent" --config "$dev/etc/nova-agent/agent.yaml" 2>&1) && fail "a world-readable storage key was accepted"
echo "$out" | grep -qF "event=storage_key_unavailable key=storage.key_file error=\"$dev/etc/nova-agent/storage.key: mode 0644 lets group or others read the storage key: chmod 600 it\"" \
  || fail "unexpected: $out"
chmod 0600 "$dev/etc/nova-agent/storage.key"
"$agent" --config "$dev/etc/nova-agent/agent.yaml" --check-config >/dev/null || fail "the stamped config is refused"
grep -q "id: dev-7, site: cloud/eu/par, level: 5" "$dev/etc/nova-agent/agent.yaml" || fail "identity not stamped"
grep -q "update: {dir: $dev/opt/nova-agent}" "$dev/etc/nova-agent/agent.yaml" || fail "update.dir not stamped"
grep -qF "level: 5, capabilities: [arm64,gpu]}" "$dev/etc/nova-agent/agent.yaml" || fail "capabilities not stamped"
grep -qF "allow: [/bin/sh,/usr/bin/env]}" "$dev/etc/nova-agent/agent.yaml" || fail "tasks.allow not stamped"
if grep -rq "@[A-Z]*@" "$dev/etc" "$dev/lib"; then fail "a placeholder is left"; fi
sh -n "$dev/etc/init.d/nova-agent" && sh -n "$dev/opt/nova-agent/bin/nova-agent-launch"
systemd-analyze verify "$dev/lib/systemd/system/nova-agent.service" || fail "systemd-analyze verify refuses the unit"
"$dev/etc/init.d/nova-agent" status >/dev/null && fail "status says running before start"

# Refusals name the option and leave nothing behind.
out=$("$tool" provision --bundle "$tmp/bundle" --out "$tmp/x" --node dev-7 --site cloud/eu/par --level 5 \
  --broker tcp://par.example:1883 --pki "$tmp/pki" --signing-key "$tmp/pki/signing/nova-cloud.pub" 2>&1) && fail "plaintext broker accepted"
echo "$out" | grep -q -- "--broker: 'tcp://par.example:1883' is not mqtts://" || fail "unexpected: $out"
out=$("$tool" provision --bundle "$tmp/bundle" --out "$tmp/y" --node dev-8 --site cloud/eu/par --level 5 \
  --broker mqtts://par.example:8883 --pki "$tmp/pki" --nova-pki "$pki_bin" \
  --signing-key "$tmp/pki/signing/nova-cloud.pub" 2>&1) && fail "unknown identity accepted"
echo "$out" | grep -q -- "--pki: cannot export the identity 'dev-8'" || fail "unexpected: $out"
out=$("$tool" provision --bundle "$tmp/bundle" --out "$tmp/z" --node dev-7 --site cloud/eu/par --level 5 \
  --broker mqtts://par.example:8883 --pki "$tmp/pki" --nova-pki "$pki_bin" --capabilities 'gpu], evil: [x' \
  --signing-key "$tmp/pki/signing/nova-cloud.pub" 2>&1) && fail "a capability that ends the list accepted"
echo "$out" | grep -q -- "--capabilities: 'gpu\], evil: \[x' has one of" || fail "unexpected: $out"
if [ -e "$tmp/x" ] || [ -e "$tmp/y" ] || [ -e "$tmp/z" ]; then fail "a refused provision left its output"; fi
# A cross-built directory as firmware/build.sh makes it (a launcher, lib/ with the agent):
# here the host's agent behind a two-line launcher, so it runs natively.
portable=$tmp/nova-agent-host
mkdir -p "$portable/lib"
cp "$agent" "$portable/lib/nova-agent"
# shellcheck disable=SC2016 # expanded by the launcher, not here
printf '#!/bin/sh\nexec "$(dirname "$(readlink -f "$0")")/lib/nova-agent" "$@"\n' > "$portable/nova-agent"
chmod +x "$portable/nova-agent"
"$tool" make --agent-dir "$portable" --out "$tmp/portable-bundle" >/dev/null
manifest=$(cd "$portable" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
[ "$(cat "$tmp/portable-bundle/opt/nova-agent/current")" = "$manifest" ] || fail "current does not name the directory's manifest sha256"
cmp -s "$agent" "$tmp/portable-bundle/opt/nova-agent/versions/$manifest/lib/nova-agent" || fail "lib/nova-agent not in versions/<sha256>/lib"
"$tmp/portable-bundle/opt/nova-agent/versions/$manifest/nova-agent" --version | grep -q '^nova-agent ' || fail "the bundled launcher does not run the agent"
mkdir "$tmp/not-built"
out=$("$tool" make --agent-dir "$tmp/not-built" --out "$tmp/w" 2>&1) && fail "a directory without an agent accepted"
echo "$out" | grep -qF -- "--agent-dir: '$tmp/not-built' has no executable nova-agent and lib/nova-agent" || fail "unexpected: $out"
out=$("$tool" make --binary "$agent" --agent-dir "$portable" --out "$tmp/w" 2>&1) && fail "--binary and --agent-dir accepted together"
echo "$out" | grep -qF -- "--binary, --agent-dir: give one of them, not both" || fail "unexpected: $out"
[ ! -e "$tmp/w" ] || fail "a refused make left its output"

# An update by hand, as docs/agent.md (Updates) describes it.
# shellcheck disable=SC2046 # split on purpose: sha256, size, count
set -- $("$tool" chunks --binary "$agent" --out "$tmp/chunks")
[ "$1" = "$sha" ] || fail "chunks prints sha256 $1, not $sha"
[ "$2" = "$(wc -c < "$agent" | tr -d ' ')" ] || fail "chunks prints size $2"
i=0; : > "$tmp/joined"
while [ $i -lt "$3" ]; do cat "$tmp/chunks/$i" >> "$tmp/joined"; i=$((i + 1)); done
cmp -s "$agent" "$tmp/joined" || fail "the chunks put together are not the binary"
[ ! -e "$tmp/chunks/$3" ] || fail "more chunks than printed"
printf '{"v":1,"version":"2.0.0","sha256":"%s","size":%s,"ts":%s000}' "$1" "$2" "$(date +%s)" |
  "$codec" encode update_offer > "$tmp/offer.cbor"
"$pki_bin" --dir "$tmp/pki" sign --name nova-cloud --topic nova/v1/down/cloud/eu/par/dev-7/update \
  < "$tmp/offer.cbor" > "$tmp/offer.signed"
[ "$(wc -c < "$tmp/offer.signed")" -gt "$(wc -c < "$tmp/offer.cbor")" ] || fail "nova-pki sign wrote no envelope"
echo "bundle_test: ok"
