// nova-cloud under broker faults, against real Mosquitto brokers and a real nova-cloud:
//   - a broker that loses its retained store (no persistence) and a restarted nova-cloud:
//     the workload, placement and cluster records come back on the broker from
//     nova-cloud's own store, and the REST API still lists the workload as placed; the
//     same when only the broker restarts and nova-cloud reconnects;
//   - a broker whose ACL does not let nova-cloud read one of its filters (Mosquitto
//     2.0.11 still grants it in the SUBACK and then delivers nothing): /readyz answers
//     503 naming the filter, the refusal is counted on /metrics, and once the ACL is
//     fixed (SIGHUP) the retried subscription delivers and /readyz answers 200.
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mqtt/async_client.h>
#include <set>
#include <thread>

#include "cloud_process.h"
#include "nova/schemas/codec.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool poll(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(50ms);  // another process's REST API: nothing to wait on
  }
  return false;
}

// What a fresh outside subscriber receives as retained under `filter`: topic -> payload.
// Retained messages follow the SUBACK at once; the collection ends once `expected` topics
// are in or after `wait`.
std::map<std::string, std::string> retained(const testing::Broker& broker, const std::string& filter, std::size_t expected,
                                            std::chrono::milliseconds wait = 500ms) {
  struct Collector final : public virtual mqtt::callback {
    std::mutex mutex;
    std::condition_variable cv;
    std::map<std::string, std::string> seen;
    void message_arrived(mqtt::const_message_ptr msg) override {
      if (!msg->is_retained()) return;
      std::lock_guard lock(mutex);
      seen[msg->get_topic()] = msg->get_payload_str();
      cv.notify_all();
    }
  } collector;
  mqtt::async_client client(broker.uri(), "test-retained-reader", mqtt::create_options(MQTTVERSION_3_1_1));
  client.set_callback(collector);
  client.connect(testing::connect_options(broker, "test-retained-reader"))->wait();
  client.subscribe(filter, 1)->wait();
  std::map<std::string, std::string> out;
  {
    std::unique_lock lock(collector.mutex);
    collector.cv.wait_for(lock, wait, [&] { return collector.seen.size() >= expected; });
    out = collector.seen;
  }
  client.disconnect()->wait();
  return out;
}

void publish(const testing::Broker& broker, const std::string& topic, const schemas::Bytes& payload, bool retain) {
  mqtt::async_client client(broker.uri(), "test-publisher", mqtt::create_options(MQTTVERSION_3_1_1));
  client.connect(testing::connect_options(broker, "test-publisher"))->wait();
  client.publish(topic, payload.data(), payload.size(), 1, retain)->wait();
  client.disconnect()->wait();
}

schemas::NodeState birth(const std::string& node) {
  schemas::NodeState s;
  s.node = node;
  s.status = schemas::NodeStatus::online;
  s.bdseq = 1;
  s.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {4000, 4096, 10000}, std::nullopt};
  return s;
}

json workload_spec(const std::string& id) {
  return {{"v", 1}, {"workload_id", id}, {"name", "w"}, {"argv", {"/bin/true"}},
          {"res", {{"cpu_millis", 100}, {"memory_mb", 16}, {"storage_mb", 0}}}, {"caps", json::array()},
          {"tiers", json::array()}, {"availability", 0.9}, {"clusters_in", json::array()},
          {"clusters_out", json::array()}, {"timeout_ms", 60000}};
}

std::uint64_t metric(const test::CloudProcess& cloud, const std::string& name) {
  auto r = cloud.get("/metrics");
  if (!r) return 0;
  const std::size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return 0;
  return std::stoull(r->body.substr(at + name.size() + 2));
}

}  // namespace

TEST_CASE("a broker that lost its retained store gets the cloud's records back from nova-cloud's store",
          "[cloud][faults]") {
  testing::BrokerOptions options;
  options.persistence = false;  // as a broker that keeps retained messages in memory only
  options.tls = true;
  testing::Broker broker(options);
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");

  publish(broker, "nova/v1/up/gw-1/state", schemas::encode_cbor(birth("gw-1")), true);
  REQUIRE(poll([&] { return cloud.get_json("/api/v1/nodes").size() == 1; }, 10s));
  for (const char* id : {"keep-me", "done-1"}) {
    auto submitted = cloud.post("/api/v1/workloads", workload_spec(id).dump());
    REQUIRE(submitted);
    REQUIRE(submitted->status == 201);
  }
  // done-1's run ends before the restarts: it must stay ended, not become running again.
  schemas::TaskResult result;
  result.position = {"gw-1", "results", 1, std::nullopt};
  result.task_id = "done-1.r1";
  result.status = schemas::TaskStatus::ok;
  result.exit_code = 0;
  result.finished_ts = 1;
  publish(broker, "nova/v1/up/gw-1/result", schemas::encode_cbor(result), false);
  REQUIRE(poll([&] { return cloud.get_json("/api/v1/workloads/done-1")["phase"] == "succeeded"; }, 10s));
  const json cluster = {{"v", 1}, {"cluster_id", "ops-eu"}, {"name", "operators' eu"}, {"role", "secondary"},
                        {"root_site", "cloud/eu"}, {"caps", json::array()}, {"policies", json::object()}};
  auto registered = cloud.post("/api/v1/clusters", cluster.dump());
  REQUIRE(registered);
  REQUIRE(registered->status == 201);
  const std::set<std::string> records = {"nova/v1/cloud/workload/keep-me", "nova/v1/cloud/placement/keep-me",
                                         "nova/v1/cloud/cluster/ops-eu"};
  auto held = [&] {
    const auto now = retained(broker, "nova/v1/cloud/#", 16);
    for (const auto& topic : records) {
      if (now.count(topic) == 0 || now.at(topic).empty()) return false;
    }
    return true;
  };
  REQUIRE(poll(held, 10s));
  const auto before = retained(broker, "nova/v1/cloud/placement/keep-me", 1);

  cloud.kill(SIGKILL);
  broker.restart();  // no persistence: every retained record is gone
  REQUIRE(retained(broker, "nova/v1/cloud/#", 1, 300ms).count("nova/v1/cloud/workload/keep-me") == 0);
  const auto restarted = std::chrono::steady_clock::now();
  cloud.start();

  REQUIRE(poll(held, 5s));
  const auto back_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - restarted).count();
  WARN("records back on the broker " << back_ms << " ms after nova-cloud was started again");
  // The same placement, not a new one: revision and node unchanged.
  const auto after = retained(broker, "nova/v1/cloud/placement/keep-me", 1);
  REQUIRE(after.size() == 1);
  auto p_before = schemas::decode_cbor<schemas::Placement>(before.begin()->second);
  auto p_after = schemas::decode_cbor<schemas::Placement>(after.begin()->second);
  REQUIRE(p_before.ok());
  REQUIRE(p_after.ok());
  CHECK(p_after->revision == p_before->revision);
  CHECK(p_after->node == "gw-1");

  const json listed = cloud.get_json("/api/v1/workloads/keep-me");
  CHECK(listed["phase"] == "running");
  CHECK(listed["placement"]["node"] == "gw-1");
  CHECK(cloud.get_json("/api/v1/workloads/done-1")["phase"] == "succeeded");
  const json clusters = cloud.get_json("/api/v1/clusters");
  bool has_cluster = false;
  for (const auto& c : clusters) has_cluster = has_cluster || c["cluster_id"] == "ops-eu";
  CHECK(has_cluster);

  // The broker alone loses everything again; nova-cloud reconnects by itself (Paho's
  // backoff is at most 5 s) and publishes the records again.
  broker.restart();
  REQUIRE(poll(held, 10s));
}

TEST_CASE("a subscription the broker's ACL denies fails readiness, is counted and retried until fixed",
          "[cloud][faults]") {
  struct TempDir {  // removed however the test ends
    fs::path path = fs::temp_directory_path() / ("nova-cloud-acl-" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
  } temp;
  const fs::path dir = temp.path;
  const fs::path acl = dir / "acl";
  auto write_acl = [&](bool alerts_readable) {
    std::ofstream out(acl, std::ios::trunc);
    out << "user nova-cloud\n"
        << "topic readwrite nova/v1/up/+/state\ntopic readwrite nova/v1/up/+/link\n"
        << "topic readwrite nova/v1/up/+/result\ntopic readwrite nova/v1/up/+/metrics\n"
        << "topic readwrite nova/v1/up/+/decision\ntopic readwrite nova/v1/up/+/erasure\n"
        << (alerts_readable ? "topic readwrite nova/v1/up/+/alert\n" : "topic write nova/v1/up/+/alert\n")
        << "topic readwrite nova/v1/cloud/#\ntopic readwrite nova/v1/down/#\n";
  };
  write_acl(false);
  testing::BrokerOptions options;
  options.extra_config = "acl_file " + acl.string() + "\n";
  options.tls = true;  // the ACL's user is nova-cloud's certificate identity
  testing::Broker broker(options);
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");

  json why;
  REQUIRE(poll([&] {
    auto r = cloud.get("/readyz");
    if (!r || r->status != 503) return false;
    why = json::parse(r->body);
    return why["error"].get<std::string>().find("refused") != std::string::npos ||
           why["error"].get<std::string>().find("no probe came back") != std::string::npos;
  }, 15s));
  INFO(why.dump());
  REQUIRE(why["reasons"].size() == 1);
  CHECK(why["error"].get<std::string>().find("nova/v1/up/+/alert") != std::string::npos);
  CHECK(metric(cloud, "nova_cloud_subscriptions_refused_total") >= 1);
  CHECK(metric(cloud, "nova_cloud_ready") == 0);
  REQUIRE(cloud.get_json("/api/v1/health")["status"] == "ok");  // still serving

  write_acl(true);
  REQUIRE(::kill(broker.pid(), SIGHUP) == 0);  // Mosquitto re-reads its ACL file
  REQUIRE(poll([&] {
    auto r = cloud.get("/readyz");
    return r && r->status == 200;
  }, 15s));
  CHECK(metric(cloud, "nova_cloud_ready") == 1);
}
