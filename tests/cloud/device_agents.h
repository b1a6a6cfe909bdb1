// Device agents for cloud process tests: real nova-agent processes (tier 5) at the
// shared device site (two_devices.h), on one test broker, each with its own directory,
// config and log, and the wait until nova-cloud sees them alive.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cloud_process.h"
#include "two_devices.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/poll.h"
#include "nova/testing/test_broker.h"

namespace nova::test {

class DeviceAgents {
 public:
  // Starts one agent per node id; `extra` as testing::write_agent_config's.
  DeviceAgents(const testing::TestBroker& broker, const std::vector<std::string>& nodes, const std::string& extra = "")
      : root_(broker.data_dir()) {
    for (const std::string& node : nodes) {
      const std::filesystem::path dir = root_ / node;
      std::filesystem::create_directories(dir);
      testing::write_agent_config(dir / "agent.yaml", node, kDeviceSite, 5, broker.uri(), dir, extra);
      restart(node);
    }
  }

  testing::AgentProcess& operator[](const std::string& node) { return *agents_.at(node); }

  // Starts the node's agent (again) on its config and state; a running one is SIGKILLed
  // first. Its log file starts over.
  void restart(const std::string& node) {
    const std::filesystem::path dir = root_ / node;
    agents_[node].reset();
    agents_[node] = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  }

  // The node's liveness at nova-cloud ("" when it does not know the node).
  static std::string liveness(const CloudProcess& cloud, const std::string& node) {
    const nlohmann::json n = cloud.get_json("/api/v1/nodes/" + node);
    return n.is_object() && n.contains("liveness") ? n["liveness"].get<std::string>() : "";
  }

  // Waits until nova-cloud sees every agent alive.
  bool all_alive(const CloudProcess& cloud, std::chrono::milliseconds timeout) const {
    return testing::poll_until(
        [&] {
          for (const auto& [node, agent] : agents_) {
            if (liveness(cloud, node) != "alive") return false;
          }
          return true;
        },
        timeout);
  }

 private:
  std::filesystem::path root_;
  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents_;
};

}  // namespace nova::test
