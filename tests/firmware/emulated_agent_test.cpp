// The cross-built agents (firmware/build.sh) on their own architecture, emulated by
// qemu-user, against a real Mosquitto with mutual TLS: each bundle publishes its birth
// and a metrics batch and runs a signed task, and this (x86-64) process decodes what it
// sent. The birth's `arch` is the machine the agent saw, so it proves where it ran.
// Last, the aarch64 directory made into a device bundle by nova-device-bundle
// (`make --agent-dir`), provisioned and run by the device launcher, as on a device.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "nova/schemas/codec.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/ota_devices.h"
#include "nova/testing/publish.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSite = "cloud/eu/par/par-a1";

// Runs the bundle for `arch` under `qemu`; `machine` is what uname reports there.
void check_emulated_agent(const std::string& arch, const std::string& qemu, const std::string& machine) {
  const fs::path launcher = fs::path(NOVA_FIRMWARE_OUT) / ("nova-agent-" + arch) / "nova-agent";
  INFO("bundle launcher " << launcher << " (made by firmware/build.sh)");
  REQUIRE(fs::exists(launcher));

  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const std::string node = "dev-" + arch;
  const fs::path dir = broker.data_dir() / node;
  fs::create_directories(dir);
  testing::write_agent_config(dir / "agent.yaml", node, kSite, 5, broker.uri(), dir,
                              "metrics: {interval_ms: 500, batch_interval_s: 10}\n");
  // The launcher runs the bundle's loader under this emulator (firmware/README.md).
  ::setenv("NOVA_AGENT_EMULATOR", qemu.c_str(), 1);
  testing::AgentProcess agent(launcher.string(), dir / "agent.yaml", dir / "agent.log");
  if (!agent.wait_log("event=connected", 60s)) FAIL("no event=connected; the agent's log:\n" << agent.text());

  // Birth: decoded on the host, naming the emulated machine.
  const std::optional<schemas::NodeState> birth = consumer.wait_state(node, 30s);
  INFO("the agent's log when its state arrived:\n" << agent.text());
  REQUIRE(birth);
  CHECK(birth->status == schemas::NodeStatus::online);
  REQUIRE(birth->description);
  CHECK(birth->description->arch == machine);
  CHECK(birth->description->site == kSite);

  // A signed task runs, and its result comes back up through the agent's outbox.
  const schemas::Task task{"t-" + arch, std::nullopt, {"/bin/sh", "-c", "echo task on " + arch}, {}, 30000, 0, 0, 1, 1, std::nullopt};
  const schemas::Bytes payload = schemas::encode_cbor(task);
  testing::publish_as_cloud(broker.uri(), "nova/v1/down/" + std::string(kSite) + "/" + node + "/task",
                            std::string(payload.begin(), payload.end()));
  REQUIRE(consumer.wait_for(node, "results", 1, 60s));
  const auto results = consumer.results(node);
  REQUIRE_FALSE(results.empty());
  CHECK(results.front().task_id == task.task_id);
  CHECK(results.front().status == schemas::TaskStatus::ok);
  CHECK(results.front().exit_code == 0);
  CHECK_THAT(results.front().output, Catch::Contains("task on " + arch));

  // A metrics batch (every 10 s), decoded and acknowledged end to end.
  REQUIRE(consumer.wait_for(node, "metrics", 1, 60s));
  CHECK(consumer.count(node, "metrics").samples > 0);
  CHECK(consumer.undecodable() == 0);

  const int status = agent.signal(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_THAT(agent.text(), Catch::Contains("event=stopped"));
}

}  // namespace

TEST_CASE("nova-agent for aarch64 under qemu: birth, metrics, a signed task", "[firmware][aarch64]") {
  check_emulated_agent("aarch64", "qemu-aarch64", "aarch64");
}

TEST_CASE("nova-agent for armhf under qemu: birth, metrics, a signed task", "[firmware][armhf]") {
  check_emulated_agent("armhf", "qemu-arm", "armv7l");
}

TEST_CASE("nova-agent for riscv64 under qemu: birth, metrics, a signed task", "[firmware][riscv64]") {
  check_emulated_agent("riscv64", "qemu-riscv64", "riscv64");
}

TEST_CASE("an aarch64 device bundle of the cross-built directory: provisioned, run by its launcher under qemu",
          "[firmware][aarch64][bundle]") {
  const fs::path cross_dir = fs::path(NOVA_FIRMWARE_OUT) / "nova-agent-aarch64";
  INFO("cross-built directory " << cross_dir << " (made by firmware/build.sh)");
  REQUIRE(fs::exists(cross_dir / "nova-agent"));

  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const fs::path root = broker.data_dir() / "devices";
  fs::create_directories(root);
  testing::ota::run(std::string(NOVA_DEVICE_BUNDLE) + " make --agent-dir " + testing::ota::quoted(cross_dir) +
                    " --out " + testing::ota::quoted(root / "bundle") + " >/dev/null");
  // The launcher runs versions/<sha256>/nova-agent, the directory's own launcher, which
  // puts this emulator in front of its loader.
  ::setenv("NOVA_AGENT_EMULATOR", "qemu-aarch64", 1);
  const std::string node = "dev-bundle-aarch64";
  testing::ota::Device device(node, root, root / "bundle", broker, false);

  const std::optional<schemas::NodeState> birth = consumer.wait_state(node, 60s);
  INFO("the launcher's and agent's log:\n" << device.log());
  REQUIRE(birth);
  CHECK(birth->status == schemas::NodeStatus::online);
  REQUIRE(birth->description);
  CHECK(birth->description->arch == "aarch64");
  CHECK(birth->description->version == NOVA_V1_VERSION);
  // A metrics batch (every 10 s) through the outbox, acknowledged end to end; the agent
  // ran once, never restarted by its launcher.
  REQUIRE(consumer.wait_for(node, "metrics", 1, 60s));
  CHECK(device.count("starting it again") == 0);
}
