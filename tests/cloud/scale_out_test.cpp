// Two nova-cloud instances sharing one broker through a shared subscription group:
//   - ingest: an agent streams 20,000 samples; one instance is SIGKILLed mid-stream.
//     Nothing is lost (every sample is in one of the two stores), nothing is counted
//     twice after dedup on (node, stream, seq), and the agent's outbox empties: the
//     survivor acknowledged everything, including what the dead instance held unacked.
//   - workloads: submissions to either instance are placed exactly once (one task per
//     workload), and after one instance dies the survivor adopts its workloads and fails
//     them over once when their node dies.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <mqtt/async_client.h>
#include <mutex>
#include <set>
#include <thread>

#include "cloud_process.h"
#include "streaming_agent.h"
#include "nova/agent/agent.h"
#include "nova/cloud/ingest_store.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/signed.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr schemas::Timestamp kStart = test::kGeneratorStart;

bool poll(const std::function<bool()>& done, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(50ms);  // another process's REST API
  }
  return false;
}

bool both_see_two(const test::CloudProcess& a, const test::CloudProcess& b) {
  return poll([&] {
    const json ha = a.get_json("/api/v1/health");
    const json hb = b.get_json("/api/v1/health");
    return !ha.is_null() && !hb.is_null() && ha["instances"].size() == 2 && hb["instances"].size() == 2;
  }, 30s);
}

std::uint64_t watermark(const test::CloudProcess& c, const std::string& node) {
  const json j = c.get_json("/api/v1/nodes/" + node);
  if (j.is_null() || !j["watermarks"].contains("metrics")) return 0;
  return j["watermarks"]["metrics"].get<std::uint64_t>();
}

// Counts the task messages sent downward, per task id.
class TaskCounter final : public virtual mqtt::callback {
 public:
  explicit TaskCounter(const testing::Broker& broker)
      : client_(broker.uri(), "test-task-counter", mqtt::create_options(MQTTVERSION_3_1_1)) {
    client_.set_callback(*this);
    client_.connect(testing::connect_options(broker, "test-task-counter"))->wait();
    client_.subscribe("nova/v1/down/#", 1)->wait();
  }
  ~TaskCounter() override {
    try {
      client_.disconnect()->wait();
    } catch (const mqtt::exception&) {
    }
  }
  void message_arrived(mqtt::const_message_ptr msg) override {
    if (msg->get_topic().size() < 5 || msg->get_topic().substr(msg->get_topic().size() - 5) != "/task") return;
    // nova-cloud signs its tasks (signer.h's key): the task is the envelope's message.
    const auto& payload = msg->get_payload();
    auto envelope = schemas::decode_cose_sign1(
        std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
    if (!envelope) return;
    auto task = schemas::decode_cbor<schemas::Task>(envelope->message);
    if (!task) return;
    std::lock_guard lock(mutex_);
    ++sent_[task->task_id];
  }
  std::map<std::string, int> sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
  }
  void publish(const std::string& topic, const schemas::Bytes& payload, bool retained) {
    client_.publish(topic, payload.data(), payload.size(), 1, retained)->wait();
  }

 private:
  mqtt::async_client client_;
  mutable std::mutex mutex_;
  std::map<std::string, int> sent_;
};

schemas::NodeState node_state(const std::string& node, schemas::NodeStatus status) {
  schemas::NodeState s;
  s.node = node;
  s.status = status;
  s.bdseq = 1;
  if (status == schemas::NodeStatus::online) {
    s.description = schemas::NodeDescription{5, "cloud/eu/par/par-a1", "aarch64", "sim", {}, {4000, 4096, 10000}, std::nullopt};
  }
  return s;
}

}  // namespace

TEST_CASE("two instances share ingest and one is SIGKILLed mid-stream: nothing lost and nothing twice",
          "[cloud][scale-out]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  test::CloudProcess a(broker.uri(), dir / "cloud-a", "cloud-a", "ingest");
  test::CloudProcess b(broker.uri(), dir / "cloud-b", "cloud-b", "ingest");
  REQUIRE(both_see_two(a, b));

  constexpr std::uint64_t kSamples = 20'000;
  test::Generator generator(kSamples);
  auto created = agent::Agent::create(test::streaming_agent("gw-shared", broker.uri(), dir / "agent"), &generator);
  REQUIRE(created.ok());
  std::thread loop([&] { created.value()->run(); });
  REQUIRE(poll([&] { return watermark(b, "gw-shared") >= 100; }, 120s));
  a.kill(SIGKILL);
  REQUIRE(created.value()->wait_for([](const agent::AgentCounters& c) { return c.samples == kSamples; }, 120s));
  created.value()->stop();
  loop.join();
  const std::uint64_t batches = created.value()->counters().batches;
  created.value().reset();

  test::Generator none(0);
  auto again = agent::Agent::create(test::streaming_agent("gw-shared", broker.uri(), dir / "agent"), &none);
  REQUIRE(again.ok());
  std::thread loop2([&] { again.value()->run(); });
  // The survivor acknowledges every batch, including those the dead instance held.
  const bool acked = poll([&] { return watermark(b, "gw-shared") == batches; }, 120s);
  again.value()->stop();
  loop2.join();
  REQUIRE(acked);
  b.kill(SIGTERM);

  std::map<schemas::Timestamp, int> copies;
  std::uint64_t stored[2] = {0, 0};
  int i = 0;
  for (const fs::path& store_dir : {a.store_dir(), b.store_dir()}) {
    auto store = cloud::IngestStore::open({store_dir});
    REQUIRE(store.ok());
    for (const auto& s : store.value()->samples("gw-shared", 0, kStart + kSamples * 1000 + 1, kSamples * 2)) {
      ++copies[s.ts];
      ++stored[i];
    }
    ++i;
  }
  CHECK(copies.size() == kSamples);  // every sample is in one of the stores
  std::size_t in_both = 0;
  for (const auto& [ts, n] : copies) in_both += n > 1 ? 1 : 0;
  WARN("samples stored by the killed instance: " << stored[0] << ", by the survivor: " << stored[1]
                                                 << ", in both (removed by dedup on seq): " << in_both);
}

TEST_CASE("two instances place each workload once and the survivor adopts and fails over", "[cloud][scale-out]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  test::CloudProcess a(broker.uri(), dir / "cloud-a", "cloud-a", "ingest");
  test::CloudProcess b(broker.uri(), dir / "cloud-b", "cloud-b", "ingest");
  REQUIRE(both_see_two(a, b));
  TaskCounter tasks(broker);
  for (const char* node : {"sim-1", "sim-2"}) {
    tasks.publish(std::string("nova/v1/up/") + node + "/state", schemas::encode_cbor(node_state(node, schemas::NodeStatus::online)), true);
  }
  REQUIRE(poll([&] { return a.get_json("/api/v1/nodes").size() == 2 && b.get_json("/api/v1/nodes").size() == 2; }, 30s));

  constexpr int kWorkloads = 12;
  for (int n = 0; n < kWorkloads; ++n) {
    const json spec = {{"v", 1}, {"workload_id", "w" + std::to_string(n)}, {"name", "w"}, {"argv", {"/bin/true"}},
                       {"res", {{"cpu_millis", 100}, {"memory_mb", 16}, {"storage_mb", 0}}}, {"caps", json::array()},
                       {"tiers", json::array()}, {"availability", 0.9}, {"clusters_in", json::array()},
                       {"clusters_out", json::array()}, {"timeout_ms", 60000}};
    auto r = (n % 2 == 0 ? a : b).post("/api/v1/workloads", spec.dump());
    REQUIRE(r);
    REQUIRE(r->status == 201);
  }
  auto all_sent = [&](const std::string& suffix) {
    const auto sent = tasks.sent();
    for (int n = 0; n < kWorkloads; ++n) {
      if (sent.count("w" + std::to_string(n) + suffix) == 0) return false;
    }
    return true;
  };
  REQUIRE(poll([&] { return all_sent(".r1"); }, 30s));
  // Both instances agree on every placement.
  REQUIRE(poll([&] {
    const json pa = a.get_json("/api/v1/placements");
    const json pb = b.get_json("/api/v1/placements");
    return pa.size() == kWorkloads && pb.size() == kWorkloads;
  }, 30s));

  // One instance dies; then the node holding sim-1's workloads dies.
  a.kill(SIGKILL);
  REQUIRE(poll([&] { return b.get_json("/api/v1/health")["instances"].size() == 1; }, 30s));
  std::set<std::string> on_sim1;
  for (const auto& p : b.get_json("/api/v1/placements")) {
    if (p["node"] == "sim-1") on_sim1.insert(p["workload_id"].get<std::string>());
  }
  REQUIRE_FALSE(on_sim1.empty());
  tasks.publish("nova/v1/up/sim-1/state", schemas::encode_cbor(node_state("sim-1", schemas::NodeStatus::dead)), true);
  REQUIRE(poll([&] {
    const auto sent = tasks.sent();
    for (const auto& w : on_sim1) {
      if (sent.count(w + ".r2") == 0) return false;
    }
    return true;
  }, 30s));
  // Settle: the last failover's task has arrived; nothing else may follow.
  std::this_thread::sleep_for(500ms);
  for (const auto& [task, count] : tasks.sent()) {
    INFO(task);
    CHECK(count == 1);  // no workload placed twice, no failover sent twice
    const std::string workload = task.substr(0, task.find('.'));
    if (on_sim1.count(workload) == 0) CHECK(task.substr(task.find('.')) == ".r1");
  }
  WARN(on_sim1.size() << " workloads failed over by the surviving instance, each once");
}
