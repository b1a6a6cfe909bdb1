#!/usr/bin/env bash
# firmware/build.sh [aarch64] [armhf] [riscv64]: builds nova-agent for each architecture
# named (all three by default) and packs a self-contained bundle of it:
#
#   <out>/nova-agent-<arch>/nova-agent        launcher (POSIX sh, nova-agent-portable.in): run this
#   <out>/nova-agent-<arch>/lib/nova-agent    the agent, stripped; its dependencies linked in
#   <out>/nova-agent-<arch>/lib/...           the loader, glibc and libcbor it runs with
#
# <out> is NOVA_FIRMWARE_OUT (default: build/firmware). Under it, sysroot-<arch>/ holds
# the Debian libraries (firmware/sysroot.sh, made once and kept) and build-<arch>/ the
# CMake build (NOVA_FIRMWARE=ON, firmware/cmake/<arch>.cmake). Prints one line per
# architecture: the bundle's size in bytes and where it is.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(realpath -m "${NOVA_FIRMWARE_OUT:-build/firmware}")
archs=("$@")
((${#archs[@]})) || archs=(aarch64 armhf riscv64)

# triple <arch>: the Debian cross compiler's prefix.
triple() {
  case $1 in
    aarch64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    riscv64) echo riscv64-linux-gnu ;;
    *) echo "build.sh: unknown arch '$1' (aarch64, armhf or riscv64)" >&2; return 2 ;;
  esac
}

# needed <elf>: the shared libraries it names (DT_NEEDED).
needed() { readelf -d "$1" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p'; }

# bundle <arch> <binary> <sysroot> <dir>
bundle() {
  local arch=$1 binary=$2 sysroot=$3 dir=$4 t
  t=$(triple "$arch")
  rm -rf "$dir"
  mkdir -p "$dir/lib"
  "$t-strip" -o "$dir/lib/nova-agent" "$binary"
  # Every library the agent needs, and theirs, from the sysroot it was linked against.
  local queue=("$dir/lib/nova-agent") elf lib found loader=""
  while ((${#queue[@]})); do
    elf=${queue[0]}
    queue=("${queue[@]:1}")
    for lib in $(needed "$elf"); do
      [[ -e $dir/lib/$lib ]] && continue
      found=""
      for d in "$sysroot/usr/lib/$t" "$sysroot/usr/lib" "$sysroot/lib/$t" "$sysroot/lib"; do
        if [[ -e $d/$lib ]]; then found=$d/$lib; break; fi
      done
      if [[ -z $found ]]; then
        echo "build.sh: $lib (needed by $elf) is not in $sysroot" >&2
        return 1
      fi
      cp -L "$found" "$dir/lib/$lib"
      queue+=("$dir/lib/$lib")
      [[ $lib == ld-linux* ]] && loader=$lib
    done
  done
  if [[ -z $loader ]]; then
    echo "build.sh: $binary names no ld-linux loader" >&2
    return 1
  fi
  sed "s|@LOADER@|$loader|" firmware/nova-agent-portable.in >"$dir/nova-agent"
  chmod +x "$dir/nova-agent"
}

for arch in "${archs[@]}"; do
  triple "$arch" >/dev/null
  sysroot=$out/sysroot-$arch
  build=$out/build-$arch
  firmware/sysroot.sh "$arch" "$sysroot"
  tests=ON  # the agent's unit tests, built on demand (ninja -C <build> agent_outbox_test)
  [[ $arch == riscv64 ]] && tests=OFF  # Debian 13's Catch2 is v3; the tests are written for v2
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=MinSizeRel -DNOVA_WERROR=ON -DNOVA_FIRMWARE=ON -DNOVA_TESTS=$tests \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/firmware/cmake/$arch.cmake" -DNOVA_SYSROOT="$sysroot" >/dev/null
  ninja -C "$build" nova-agent
  bundle "$arch" "$build/agent/nova-agent" "$sysroot" "$out/nova-agent-$arch"
  echo "firmware: $arch $(du -sb "$out/nova-agent-$arch" | cut -f1) bytes in $out/nova-agent-$arch"
done
