// Issue 13 item 4's acceptance: placement follows measured signals. A real nova-cloud and
// two real nova-agent processes on a real Mosquitto (mutual TLS, signed control
// messages, API tokens); one agent reaches the broker through a delaying TCP proxy
// (nova/testing/delay_proxy.h), the slow link of its site. Before the delay both devices
// are feasible for a workload bound to 40 ms from their access site; after it the slowed
// one's measured round trip (agent.rtt_ms) makes its latency exceed the bound, the REST
// API (curl) shows the measured values, and latency-bound workloads go to the other one.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cloud_process.h"
#include "curl.h"
#include "two_devices.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/delay_proxy.h"
#include "nova/testing/poll.h"
#include "nova/testing/retained.h"
#include "nova/testing/test_broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr auto kOneWay = 100ms;   // each way: a 200 ms round trip on top of the path's
constexpr double kBoundMs = 40;   // the workloads' bound to their access site

// A device workload bound to kBoundMs from the devices' access site (par-a1).
json near_site(const std::string& id) {
  return {{"v", 1},
          {"workload_id", id},
          {"name", id},
          {"argv", {"/bin/sleep", "60"}},
          {"res", {{"cpu_millis", 0}, {"memory_mb", 16}, {"storage_mb", 0}}},
          {"latency", {{"max_ms", static_cast<int>(kBoundMs)}, {"to", "par-a1"}}},
          {"caps", json::array()},
          {"tiers", {5}},
          {"availability", 0.9},
          {"clusters_in", json::array()},
          {"clusters_out", json::array()},
          {"timeout_ms", 120000}};
}

const json* find_node(const json& list, const std::string& node) {
  for (const json& r : list) {
    if (r["node"] == node) return &r;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a node behind a slow link stops taking latency-bound work and optimize shows its measured latency",
          "[cloud][signals][integration]") {
  auto broker = testing::start_broker(testing::BrokerKind::mosquitto, testing::Transport::mutual_tls);
  test::CloudProcess cloud(broker->uri(), broker->data_dir() / "cloud");
  testing::DelayProxy slow_link(broker->port());
  const std::string& fast = test::kTwoDevices[0];
  const std::string& slow = test::kTwoDevices[1];
  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents;
  for (const auto& node : test::kTwoDevices) {
    const fs::path dir = broker->data_dir() / node;
    fs::create_directories(dir);
    const std::string uri = node == slow ? "mqtts://127.0.0.1:" + std::to_string(slow_link.port()) : broker->uri();
    // A batch (so an ack, so a round-trip sample) every second.
    testing::write_agent_config(dir / "agent.yaml", node, test::kDeviceSite, 5, uri, dir,
                                "metrics: {interval_ms: 250, batch_interval_s: 1}\n");
    agents[node] = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  }
  const std::string api = "http://127.0.0.1:" + std::to_string(cloud.port());
  const std::string bearer = "Authorization: Bearer " + cloud.admin_token();
  auto optimize = [&] {
    const auto r = test::curl({"-X", "POST", "-H", bearer, "-H", "Content-Type: application/json", "--data",
                               near_site("probe").dump(), api + "/api/v1/edge/optimize?k=5"});
    return r.status == 200 ? json::parse(r.body) : json{{"status", r.status}, {"body", r.body}};
  };

  // Before: both feasible, both measured.
  json before;
  const bool measured = testing::poll_until([&] {
    before = optimize();
    if (!before.contains("recommendations")) return false;
    for (const auto& node : test::kTwoDevices) {
      const json* r = find_node(before["recommendations"], node);
      if (r == nullptr || (*r)["signals"]["rtt_ms"].is_null()) return false;
    }
    return true;
  }, 25s);
  INFO(before.dump());
  REQUIRE(measured);
  CHECK(slow_link.accepted() >= 1);
  const json& slow_before = *find_node(before["recommendations"], slow);
  WARN("round trip before the delay: " << slow << " " << slow_before["signals"]["rtt_ms"] << " ms, " << fast << " "
                                        << (*find_node(before["recommendations"], fast))["signals"]["rtt_ms"] << " ms");
  CHECK(slow_before["signals"]["latency_ms"].get<double>() <= kBoundMs);
  CHECK(before["rejected"].empty());
  // The other signals are measured too: alive since its birth, and its outbox's headroom
  // at its upward byte rate (64 MiB at about a batch a second: hours, not the cap).
  for (const auto& node : test::kTwoDevices) {
    const json& sig = (*find_node(before["recommendations"], node))["signals"];
    INFO(node << " " << sig.dump());
    CHECK(sig["stability"] == 1.0);
    CHECK(sig["offline_hours"].get<double>() > 0);
    CHECK(sig["offline_hours"].get<double>() < 168);
    CHECK(sig["power"] == "mains");
  }

  // The slow link: every byte between the slow agent and its broker waits 100 ms each way.
  slow_link.set_delay(kOneWay);
  json after;
  const bool rejected = testing::poll_until([&] {
    after = optimize();
    if (!after.contains("rejected")) return false;
    const json* r = find_node(after["rejected"], slow);
    return r != nullptr && !(*r)["signals"]["rtt_ms"].is_null() &&
           (*r)["signals"]["rtt_ms"].get<double>() >= 2.0 * static_cast<double>(kOneWay.count());
  }, 25s);
  INFO(after.dump());
  REQUIRE(rejected);
  const json& slow_after = *find_node(after["rejected"], slow);
  const double rtt = slow_after["signals"]["rtt_ms"];
  const double latency = slow_after["signals"]["latency_ms"];
  WARN("round trip after the delay: " << rtt << " ms; latency to par-a1 " << latency << " ms; offline hours "
                                      << slow_after["signals"]["offline_hours"]);
  // latency = tree (1.5 ms device -> access) + (rtt / 2 - tree to the root, 36.5 ms).
  CHECK(latency == Approx(1.5 + rtt / 2 - 36.5).margin(0.01));
  CHECK(latency > kBoundMs);
  CHECK(slow_after["reason"].get<std::string>().starts_with("latency: "));
  CHECK(slow_after["reason"].get<std::string>().ends_with("to 'par-a1' exceeds the bound of 40 ms"));
  REQUIRE(after["recommendations"].size() == 1);
  CHECK(after["recommendations"][0]["node"] == fast);
  CHECK(after["recommendations"][0]["signals"]["latency_ms"].get<double>() <= kBoundMs);

  // Latency-bound workloads submitted now go to the fast node, with the signals shown.
  for (const std::string id : {"near-1", "near-2"}) {
    const auto r = test::curl({"-X", "POST", "-H", bearer, "-H", "Content-Type: application/json", "--data",
                               near_site(id).dump(), api + "/api/v1/workloads"});
    INFO(r.body);
    REQUIRE(r.status == 201);
    const json w = json::parse(r.body);
    CHECK(w["placement"]["node"] == fast);
    CHECK(w["placement"]["signals"]["latency_ms"].get<double>() <= kBoundMs);
    CHECK_FALSE(w["placement"]["signals"]["rtt_ms"].is_null());
    // What every other consumer reads: the retained placement.
    const auto retained = testing::read_retained(broker->uri(), "nova/v1/cloud/placement/" + id, 1);
    REQUIRE(retained.size() == 1);
    const auto p = schemas::decode_cbor<schemas::Placement>(retained.begin()->second);
    REQUIRE(p.ok());
    CHECK(p->node == fast);
  }
}
