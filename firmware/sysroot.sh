#!/usr/bin/env bash
# firmware/sysroot.sh <arch> <dir>: extracts the Debian libraries nova-agent links into
# <dir>, a sysroot for the cross compiler (nothing is installed or run in it).
#   arch: aarch64 | armhf  (Debian 12, bookworm, like the host)
#         riscv64          (Debian 13, trixie: Debian 12 has no riscv64)
# The packages come from the Debian mirror the machine's own apt sources name (read
# here, never written in the repo). A finished sysroot is kept (marker file <dir>/.done
# holds the package list): a second run with the same list returns at once.
set -euo pipefail

arch=${1:?usage: sysroot.sh aarch64|armhf|riscv64 DIR}
dir=${2:?usage: sysroot.sh aarch64|armhf|riscv64 DIR}

case $arch in
  aarch64) debian_arch=arm64 suite=bookworm extra=(libstdc++-12-dev catch2) ;;
  armhf) debian_arch=armhf suite=bookworm extra=(libstdc++-12-dev catch2) ;;
  # trixie's C++ libraries (leveldb, yaml-cpp) are built with gcc 14: link its libstdc++.
  # Debian 12's binutils cannot read trixie's riscv64 objects (newer relocation types;
  # its ld crashes), so the link runs trixie's own riscv64 ld under qemu (firmware/cmake).
  # Its Catch2 is v3, which the tests are not written for: no unit tests for riscv64.
  # Its libcrypto.a is built with zlib (Debian 12's is not).
  riscv64) debian_arch=riscv64 suite=trixie extra=(libstdc++-14-dev binutils-riscv64-linux-gnu zlib1g-dev) ;;
  *) echo "sysroot.sh: unknown arch '$arch' (aarch64, armhf or riscv64)" >&2; exit 2 ;;
esac

# Static libraries and headers of every dependency (agent/CMakeLists.txt) and the
# header-only ones the build finds by CMake config; Catch2 (v2) for the agent's unit tests.
packages=(libc6-dev "${extra[@]}" libssl-dev libleveldb-dev libsnappy-dev libyaml-cpp-dev libcbor-dev
  libzstd-dev libpaho-mqtt-dev nlohmann-json3-dev libcli11-dev)
want="$suite ${packages[*]}"
if [[ -f $dir/.done && $(cat "$dir/.done") == "$want" ]]; then
  echo "sysroot.sh: $dir is ready ($suite $debian_arch)"
  exit 0
fi

# mirror_url: the machine's Debian mirror, the first deb URI of its apt sources (deb822
# or one-line format) that serves the main archive (not the security one).
mirror_url() {
  local f url
  url=$(
    for f in /etc/apt/sources.list.d/*.sources; do
      if [[ -f $f ]]; then awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f"; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      if [[ -f $f ]]; then awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; break}}' "$f"; fi
    done
  )
  url=$(grep -v -- '-security' <<<"$url" | head -n 1)
  if [[ -z $url ]]; then
    echo "firmware: no Debian mirror found in the machine's apt sources" >&2
    return 1
  fi
  echo "$url"
}
url=$(mirror_url)

rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
echo "sysroot.sh: extracting ${packages[*]} ($suite $debian_arch) into $dir"
mmdebstrap --quiet --variant=extract --arch="$debian_arch" --include="$(IFS=,; echo "${packages[*]}")" \
  "$suite" "$dir" "deb $url $suite main"
# The extract variant leaves out the merged-/usr links that running the tree's own
# programs under qemu -L needs (/lib/ld-linux-*.so.1).
for d in bin lib sbin; do
  [[ -e $dir/$d || ! -d $dir/usr/$d ]] || ln -s "usr/$d" "$dir/$d"
done
echo "$want" >"$dir/.done"
