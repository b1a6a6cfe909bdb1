// Utilisation migration with hysteresis, a dwell time and a per-node cap, end to end: a
// real nova-cloud on a real Mosquitto, two real nova-agent processes (births, tasks).
//
// The CPU the cloud judges comes from a test publisher: the agents' own batches are
// kept out of the way (batch_interval_s 3600), and the publisher sends each node's
// metrics, one sample every 250 ms stamped with the wall clock, on the node's metrics
// topic under a stream of its own. On this shared machine a real agent's CPU is whatever
// the other tests make it; here the test decides it.
//
// Also shown: a node's own rule asking for a migration (request_migration) moves the
// workload off that node, and the same request from a node the workload does not run on
// is refused.
//
// Shown: a node at 100 % from its workload's placement on keeps it for the dwell time,
// then loses it (and not before the sustained window); a node hovering around 90 %
// (85 and 95 in turn) keeps its workload past the dwell time and the sustained window;
// once at 100 %, it loses it only after the sustained window. Times compared are
// nova-cloud's own records (the history's ts) against the samples' stamps, not how
// long the test took.
#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <mqtt/client.h>

#include "cloud_process.h"
#include "device_agents.h"
#include "guard_rule.h"
#include "workload_spec.h"
#include "two_devices.h"
#include "nova/testing/broker.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/paho_tls.h"
#include "nova/testing/poll.h"
#include "nova/testing/test_broker.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr schemas::Timestamp kDwellMs = 10'000;
constexpr schemas::Timestamp kSustainMs = 3'000;
// The re-optimiser is off: it too may move a workload off a loaded node once its dwell
// is over, and these tests are about the overload trigger's hysteresis.
constexpr const char* kMigrationYaml =
    "migration:\n  overload_high_pct: 90\n  overload_low_pct: 75\n  overload_sustain_s: 3\n  min_dwell_s: 10\n"
    "  max_per_node: 2\n  per_node_window_s: 600\n"
    "reoptimiser:\n  interval_s: 0\n";

schemas::Timestamp wall_ms() {
  return static_cast<schemas::Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

enum class Load { calm, around_90, full };

// Publishes each node's CPU every 250 ms until destroyed; remembers when each node's
// first sample at 100 % was stamped.
class CpuFeed {
 public:
  explicit CpuFeed(const std::string& uri) : client_(uri, "test-cpu-feed") {
    client_.connect(testing::connect_options(uri, "test-cpu-feed"));  // the test PKI's certificate for mqtts://
    for (const auto& n : test::kTwoDevices) load_[n] = Load::calm;
    thread_ = std::thread([this] { run(); });
  }
  ~CpuFeed() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    client_.disconnect();
  }
  void set(const std::string& node, Load load) {
    std::lock_guard lock(mutex_);
    load_[node] = load;
    if (load != Load::full) first_full_.erase(node);
  }
  // The stamp of the first sample at 100 % since set(node, full); 0 before it is sent.
  schemas::Timestamp first_full(const std::string& node) {
    std::lock_guard lock(mutex_);
    auto it = first_full_.find(node);
    return it == first_full_.end() ? 0 : it->second;
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    std::uint64_t seq = 0;
    while (!stop_) {
      ++seq;
      for (const auto& node : test::kTwoDevices) {
        schemas::MetricsBatch batch;
        batch.position = {node, "cpu-feed", seq};
        schemas::MetricSample s;
        s.ts = wall_ms();
        switch (load_[node]) {
          case Load::calm: s.cpu_pct = 10; break;
          case Load::around_90: s.cpu_pct = seq % 2 == 0 ? 95 : 85; break;
          case Load::full:
            s.cpu_pct = 100;
            first_full_.try_emplace(node, s.ts);
            break;
        }
        s.mem_pct = 40;
        batch.samples = {s};
        const schemas::Bytes payload = schemas::encode_cbor(batch);
        client_.publish(mqtt::make_message("nova/v1/up/" + node + "/metrics", payload.data(), payload.size(), 1, false));
      }
      // The feed's rate, not a wait for a condition: stop_ ends it at once.
      wake_.wait_for(lock, 250ms, [this] { return stop_; });
    }
  }

  mqtt::client client_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::map<std::string, Load> load_;
  std::map<std::string, schemas::Timestamp> first_full_;
  std::thread thread_;
};

struct Placed {
  std::string node;
  schemas::Timestamp ts = 0;
};

// The workload's current node and when it was placed there (its last history entry).
Placed placed(const test::CloudProcess& cloud, const std::string& id) {
  const json w = cloud.get_json("/api/v1/workloads/" + id);
  if (!w.is_object() || w["phase"] != "running" || !w["history"].is_array() || w["history"].empty()) return {};
  const json& last = w["history"].back();
  return {last["node"].get<std::string>(), last["ts"].get<schemas::Timestamp>()};
}

// The workload's migration history entry, if it has one.
std::optional<json> migration_of(const test::CloudProcess& cloud, const std::string& id) {
  const json w = cloud.get_json("/api/v1/workloads/" + id);
  if (!w.is_object() || !w["history"].is_array()) return std::nullopt;
  for (const json& h : w["history"]) {
    if (h["reason"].get<std::string>().starts_with("migration from ")) return h;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("a node at 100 % keeps its workload for the dwell time and a node around 90 % keeps it",
          "[cloud][migration][integration]") {
  auto broker = testing::start_broker(testing::BrokerKind::mosquitto, testing::Transport::mutual_tls);
  test::CloudProcess cloud(broker->uri(), broker->data_dir() / "cloud", "nova-cloud", "", 180, std::nullopt,
                           kMigrationYaml);
  std::map<std::string, std::unique_ptr<testing::AgentProcess>> agents;
  for (const auto& node : test::kTwoDevices) {
    const fs::path dir = broker->data_dir() / node;
    fs::create_directories(dir);
    // No batches of their own during the test: the feed is the only CPU the cloud sees.
    testing::write_agent_config(dir / "agent.yaml", node, test::kDeviceSite, 5, broker->uri(), dir,
                                "metrics: {interval_ms: 1000, batch_interval_s: 3600}\n");
    agents[node] = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  }
  auto alive = [&](const std::string& node) {
    const json n = cloud.get_json("/api/v1/nodes/" + node);
    return n.is_object() && n["liveness"] == "alive";
  };
  REQUIRE(testing::poll_until([&] { return alive(test::kTwoDevices[0]) && alive(test::kTwoDevices[1]); }, 30s));
  CpuFeed feed(broker->uri());

  // 1. At 100 % from the placement on: overloaded after 3 s, but the workload dwells 10 s.
  auto submitted = cloud.post("/api/v1/workloads", test::workload_spec("first", "/bin/sleep 90"));
  REQUIRE(submitted);
  REQUIRE(submitted->status == 201);
  Placed first;
  REQUIRE(testing::poll_until([&] { return !(first = placed(cloud, "first")).node.empty(); }, 10s));
  feed.set(first.node, Load::full);
  std::optional<json> moved;
  REQUIRE(testing::poll_until([&] { return (moved = migration_of(cloud, "first")).has_value(); }, 30s));
  INFO("migration: " << moved->dump());
  const auto moved_ts = (*moved)["ts"].get<schemas::Timestamp>();
  CHECK(moved_ts >= first.ts + kDwellMs);
  CHECK(moved_ts >= feed.first_full(first.node) + kSustainMs);
  CHECK((*moved)["node"] == test::other_device(first.node));
  CHECK((*moved)["reason"].get<std::string>().find("cpu above 90 % for ") != std::string::npos);
  feed.set(first.node, Load::calm);
  // The overload clears only at 75 % or below: wait until nova-cloud has a calm sample of
  // that node, or "second", placed there next, would inherit the overload of step 1.
  REQUIRE(testing::poll_until([&] {
    const json samples = cloud.get_json("/api/v1/nodes/" + first.node + "/metrics");
    return samples.is_array() && !samples.empty() && samples.back()["cpu"] == 10;
  }, 10s));

  // 2. Around 90 % (85 and 95 in turn) past the dwell time and the sustained window: stays.
  submitted = cloud.post("/api/v1/workloads", test::workload_spec("second", "/bin/sleep 90"));
  REQUIRE(submitted);
  REQUIRE(submitted->status == 201);
  Placed second;
  REQUIRE(testing::poll_until([&] { return !(second = placed(cloud, "second")).node.empty(); }, 10s));
  feed.set(second.node, Load::around_90);
  // Waiting out a span in which nothing may happen: polled, so a move fails at once.
  CHECK_FALSE(testing::poll_until([&] { return migration_of(cloud, "second").has_value(); },
                                  std::chrono::milliseconds(kDwellMs + kSustainMs + 3000)));
  CHECK(placed(cloud, "second").node == second.node);

  // 3. Then at 100 %: it moves, once the sustained window has passed.
  feed.set(second.node, Load::full);
  REQUIRE(testing::poll_until([&] { return (moved = migration_of(cloud, "second")).has_value(); }, 20s));
  INFO("migration: " << moved->dump());
  CHECK((*moved)["ts"].get<schemas::Timestamp>() >= feed.first_full(second.node) + kSustainMs);
  CHECK((*moved)["node"] == test::other_device(second.node));
}

TEST_CASE("a node's rule asks nova-cloud to move its workload and only the node it runs on may",
          "[cloud][migration][pipelines][integration]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud", "nova-cloud", "", 180, std::nullopt,
                           test::kRequestedMigrationCloudYaml);
  // Each device runs the rule: a probe reading above 80 asks the cloud to move "hot".
  test::DeviceAgents agents(broker, {test::kTwoDevices[0], test::kTwoDevices[1]},
                            test::guard_pipeline("hot"));
  REQUIRE(agents.all_alive(cloud, 30s));
  auto submitted = cloud.post("/api/v1/workloads", test::workload_spec("hot", "/bin/sleep 90"));
  REQUIRE(submitted);
  REQUIRE(submitted->status == 201);
  Placed first;
  REQUIRE(testing::poll_until([&] { return !(first = placed(cloud, "hot")).node.empty(); }, 10s));
  const std::string& other = test::other_device(first.node);
  const std::string first_task = cloud.get_json("/api/v1/workloads/hot")["task_id"];

  // A reading from mosquitto_pub, as a third-party sensor sends it.
  auto too_hot = [&](const std::string& node) {
    const std::string cmd = "mosquitto_pub " + broker.mosquitto_client_args("probe-" + node) + " -q 1 -i probe-" + node +
                            " -t nova/v1/sensor/" + node + "/probe -m '{\"v\":1,\"ts\":" + std::to_string(wall_ms()) +
                            ",\"values\":{\"temp\":95}}'";
    REQUIRE(std::system(cmd.c_str()) == 0);
  };
  // The request_migration decisions of `node` nova-cloud lists, with their targets.
  auto requests_of = [&](const std::string& node) {
    std::vector<json> out;
    const json list = cloud.get_json("/api/v1/decisions?node=" + node + "&limit=100");
    if (!list.is_array()) return out;
    for (const json& d : list) {
      if (d["action"] == "request_migration") out.push_back(d);
    }
    return out;
  };
  auto metric = [&](const std::string& name) {
    const auto r = cloud.get("/metrics");
    if (!r) return std::string();
    const auto at = r->body.find("\n" + name + " ");
    return at == std::string::npos ? std::string() : r->body.substr(at + name.size() + 2, r->body.find('\n', at + 1) - at - name.size() - 2);
  };

  // The other device asks: the record arrives and is accepted, the request is refused.
  too_hot(other);
  REQUIRE(testing::poll_until([&] { return requests_of(other).size() == 1; }, 20s));
  CHECK(requests_of(other)[0]["target"] == "hot");
  REQUIRE(testing::poll_until([&] { return metric("nova_cloud_migration_requests_refused_total") == "1"; }, 10s));
  CHECK(metric("nova_cloud_migration_requests_total") == "0");
  CHECK(placed(cloud, "hot").node == first.node);
  CHECK_FALSE(migration_of(cloud, "hot").has_value());

  // The node it runs on asks: it moves to the other device.
  too_hot(first.node);
  std::optional<json> moved;
  REQUIRE(testing::poll_until([&] { return (moved = migration_of(cloud, "hot")).has_value(); }, 20s));
  INFO("migration: " << moved->dump());
  CHECK((*moved)["node"] == other);
  const auto request = requests_of(first.node);
  REQUIRE(request.size() == 1);
  CHECK(request[0]["target"] == "hot");
  CHECK(request[0]["verdict"]["verdict"] == "accepted");
  CHECK((*moved)["reason"] == "migration from " + first.node + ": requested by " + first.node + ": rule.too_hot " +
                                 request[0]["decision_id"].get<std::string>());
  CHECK(metric("nova_cloud_migration_requests_total") == "1");
  // The retained placement others read (mosquitto_sub) names the new node, and it runs there.
  const fs::path hex = broker.data_dir() / "placement.hex";
  REQUIRE(std::system(("mosquitto_sub " + broker.mosquitto_client_args("watcher") +
                       " -i watcher -t nova/v1/cloud/placement/hot -C 1 -W 10 -F %x > " + hex.string())
                          .c_str()) == 0);
  std::ifstream in(hex);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  while (!text.empty() && text.back() == '\n') text.pop_back();
  std::string bytes;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) bytes += static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16));
  const auto placement = schemas::decode_cbor<schemas::Placement>(bytes);
  REQUIRE(placement);
  CHECK(placement->node == other);
  // The source's run is fenced: stopped on its node (the history says so), and the
  // workload's run is a new task.
  json w;
  const bool fenced = testing::poll_until([&] {
    w = cloud.get_json("/api/v1/workloads/hot");
    if (!w.is_object() || w["phase"] != "running" || w["task_id"] == first_task) return false;
    for (const json& h : w["history"]) {
      if (h["reason"].get<std::string>().starts_with("stopped " + first_task + ": cancelled on " + first.node)) return true;
    }
    return false;
  }, 20s);
  INFO(w.dump());
  CHECK(fenced);
}
