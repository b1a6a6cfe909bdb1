#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs packages, then builds
# and runs these configurations:
#   build/firmware/  nova-agent cross-built for aarch64, armhf and riscv64 (firmware/build.sh);
#                the aarch64 build's unit tests run under qemu-user
#   build/       RelWithDebInfo, -Werror: unit + integration tests (and benchmarks built),
#                with the cross-built agents end to end under qemu-user (tests/firmware)
#   build-asan/  AddressSanitizer + UBSan: unit tests
#   build-fuzz/  clang + libFuzzer: regression inputs, then each fuzzer for a bounded time
# Prints one closing line "N passed, M failed" over all three. Exit 0 only if all passed.
#
# Environment: NOVA_TEST_JOBS (parallel ctest jobs, default: nproc),
#              NOVA_FUZZ_SECONDS (per fuzz target, default 60).
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || exit 1

jobs=${NOVA_TEST_JOBS:-$(nproc)}
fuzz_seconds=${NOVA_FUZZ_SECONDS:-60}
total_passed=0
total_failed=0
status=0

# run_ctest <build dir> [ctest args...]: runs ctest and adds its counts to the totals.
run_ctest() {
  local dir=$1
  shift
  local log
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line total failed
  line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$log" | tail -n 1)
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  failed=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  rm -f "$log"
  if [[ -z $line ]]; then
    echo "test.sh: ctest in $dir reported no results"
    status=1
    return
  fi
  total_passed=$((total_passed + total - failed))
  total_failed=$((total_failed + failed))
  ((rc == 0)) || status=1
}

# configure_and_build <build dir> [cmake args...]
configure_and_build() {
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DNOVA_WERROR=ON "$@" >/dev/null &&
    cmake --build "$dir" -j "$(nproc)"
}

echo "== firmware: nova-agent for aarch64, armhf and riscv64"
firmware_start=$SECONDS
if firmware/build.sh; then
  # The agent's unit tests on a non-x86 architecture, under qemu-user. Not the memory
  # limit's: qemu-user accepts setrlimit(RLIMIT_AS) and does not apply it (firmware/README.md).
  if cmake --build build/firmware/build-aarch64 --target agent_outbox_test agent_tasks_test agent_pipelines_test; then
    run_ctest build/firmware/build-aarch64 -L unit -E "memory hog over memory_mb"
  else
    echo "test.sh: aarch64 unit tests failed to build"; status=1; total_failed=$((total_failed + 1))
  fi
else
  echo "test.sh: firmware build failed"; status=1; total_failed=$((total_failed + 1))
fi
echo "test.sh: firmware builds and their unit tests took $((SECONDS - firmware_start)) s"

echo "== build: RelWithDebInfo, -Werror"
if configure_and_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNOVA_FIRMWARE_TESTS=ON; then
  run_ctest build
else
  echo "test.sh: build failed"; status=1; total_failed=$((total_failed + 1))
fi

echo "== build-asan: AddressSanitizer + UBSan, unit tests"
if configure_and_build build-asan -DCMAKE_BUILD_TYPE=Debug -DNOVA_SANITIZE=ON -DNOVA_BENCH=OFF; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan -L unit
else
  echo "test.sh: sanitizer build failed"; status=1; total_failed=$((total_failed + 1))
fi

echo "== build-fuzz: libFuzzer, ${fuzz_seconds}s per target"
if CC=clang CXX=clang++ configure_and_build build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DNOVA_FUZZ=ON -DNOVA_FUZZ_SECONDS="$fuzz_seconds"; then
  run_ctest build-fuzz -L fuzz
else
  echo "test.sh: fuzz build failed"; status=1; total_failed=$((total_failed + 1))
fi

echo
echo "${total_passed} passed, ${total_failed} failed"
exit $status
