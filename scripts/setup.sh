#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and benchmarking
# NovaCron Edge needs. Idempotent: packages already present are skipped, and
# `apt-get update` runs at most once per invocation, only when something is missing.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # firmware/build.sh: cross compilers and qemu-user to run what they build (its sysroots
  # are made with mmdebstrap, below)
  crossbuild-essential-arm64 crossbuild-essential-armhf gcc-riscv64-linux-gnu g++-riscv64-linux-gnu
  qemu-user
  # libraries
  libcbor-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libpaho-mqttpp-dev libpaho-mqtt-dev
  libleveldb-dev libsnappy-dev libzstd-dev libssl-dev libcpp-httplib-dev
  # tiers' batch placement solves small batches exactly (tiers/src/placement_exact.h)
  libglpk-dev
  # mosquitto-dev: the broker's plugin API (broker-bridge/acl-plugin); libmosquitto-dev:
  # the topic matcher its unit tests link
  mosquitto-dev libmosquitto-dev
  # tests and benchmarks
  catch2 libbenchmark-dev mosquitto mosquitto-clients python3 python3-cbor2 python3-cryptography
  # tests/hostile: an MQTT client independent of the project's own code
  python3-paho-mqtt
  # tests/agent/cache_process_test: a shell task on the agent's cache socket (docs/agent.md, Cache)
  socat
  openssl procps
  # the second broker implementation the integration tests run against (docs/brokers.md)
  nats-server
  # bench/agent_vs_collectd.sh: the peer nova-agent is measured against (its mqtt plugin
  # needs libmosquitto1, which collectd-core only suggests); zstd decodes a batch
  collectd-core libmosquitto1 zstd
  # bench/placement_optimality_bench: the exact MILP solver placement is measured against
  coinor-cbc
  # scripts/run.sh reads the example topology's nodes and talks to nova-cloud's REST API
  python3-yaml curl
  # tests/dashboard: the dashboard driven in a headless browser by playwright-core (npm ci
  # of its package-lock.json in the build tree, the dashboard_setup test); Node.js and npm
  # are added below only when the machine has no npm of its own
  chromium
  # tests/cloud/openapi_check.py validates the workload spec vectors against openapi.yaml
  python3-jsonschema
  # deploy/containers: images built without a container engine (mmdebstrap extracts the
  # runtime libraries, umoci makes the OCI image, skopeo reads its config back), and the
  # Kubernetes API's models that deploy/kubernetes/validate.py checks manifests against
  mmdebstrap umoci skopeo python3-kubernetes
  # tests/firmware: systemd-analyze verify checks the device bundle's unit
  systemd
  # packaging/: the Debian packages (debhelper, man pages from --help), their checks
  # (lintian) and the install test's fresh Debian 12 root (mmdebstrap), booted with its
  # own systemd (systemd-nspawn)
  debhelper help2man lintian systemd-container
  # WireGuard links (docs/broker-hierarchy.md): wg-quick and wg, the userspace tunnel
  # (no kernel module on these machines), ip netns for tests/broker-bridge/wireguard_test
  wireguard-tools wireguard-go iproute2
)

# A machine that already has Node.js with npm (for example from a vendor repository)
# keeps it: Debian's npm package conflicts with a nodejs built elsewhere.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The Debian mosquitto package enables and starts a system broker on port 1883.
# Our tests and demo start their own brokers on free ports; the system one is
# left as the package configured it. collectd-core ships no collectd.conf, so its system
# service does not run; the benchmark starts its own collectd with bench/collectd/.
echo "setup: done"
