// Placement quality through a real nova-cloud's REST API (issue 13, item 5): on tight
// capacity, what a REST user gets leaves no feasible workload pending and never
// overcommits a node, by the batch route and by one-at-a-time submissions followed by
// the re-optimiser's fenced moves.
//
// Two gateways, gw-1 with 2000 cpu millis and gw-2 with 1000, and two workloads, "small"
// (1000) and "big" (2000): one at a time, "small" takes gw-1 (half full scores better
// than full) and "big" finds no room; together both run. The gateways' births and the
// moved run's answer to its cancel are published by the test as the devices would (as in
// faults_test); the REST calls go through cpp-httplib and curl, the state is read back
// over REST.
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mqtt/async_client.h>

#include "cloud_process.h"
#include "nova/schemas/codec.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"
#include "nova/testing/poll.h"

using namespace nova;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const std::map<std::string, std::uint64_t> kCpu = {{"gw-1", 2000}, {"gw-2", 1000}};

void publish(const testing::Broker& broker, const std::string& topic, const schemas::Bytes& payload, bool retain) {
  mqtt::async_client client(broker.uri(), "test-devices", mqtt::create_options(MQTTVERSION_3_1_1));
  client.connect(testing::connect_options(broker, "test-devices"))->wait();
  client.publish(topic, payload.data(), payload.size(), 1, retain)->wait();
  client.disconnect()->wait();
}

void births(const testing::Broker& broker, const test::CloudProcess& cloud) {
  for (const auto& [node, cpu] : kCpu) {
    schemas::NodeState s;
    s.node = node;
    s.status = schemas::NodeStatus::online;
    s.bdseq = 1;
    s.description = schemas::NodeDescription{4, "cloud/eu/par/" + node, "x86_64", "test", {}, {cpu, 4096, 0}, std::nullopt};
    publish(broker, "nova/v1/up/" + node + "/state", schemas::encode_cbor(s), true);
  }
  REQUIRE(testing::poll_until([&] { return cloud.get_json("/api/v1/nodes").size() == kCpu.size(); }, 10s));
}

json spec(const std::string& id, std::uint64_t cpu) {
  return {{"v", 1}, {"workload_id", id}, {"name", id}, {"argv", {"/bin/sleep", "600"}},
          {"res", {{"cpu_millis", cpu}, {"memory_mb", 16}, {"storage_mb", 0}}}, {"caps", json::array()},
          {"tiers", json::array()}, {"availability", 0.9}, {"clusters_in", json::array()},
          {"clusters_out", json::array()}, {"timeout_ms", 600000}};
}

// The cpu each node's runs hold now, from GET /api/v1/workloads: a running workload's
// current run (unless it waits behind a fence for its old run to stop) and every old run
// not yet known stopped.
std::map<std::string, std::uint64_t> held(const test::CloudProcess& cloud) {
  std::map<std::string, std::uint64_t> out;
  for (const json& w : cloud.get_json("/api/v1/workloads")) {
    const auto cpu = w["spec"]["res"]["cpu_millis"].get<std::uint64_t>();
    const bool waits = w.contains("stopping") && w["stopping"].contains("next");
    if (w.contains("stopping")) out[w["stopping"]["node"].get<std::string>()] += cpu;
    if (w["phase"] == "running" && !waits) out[w["placement"]["node"].get<std::string>()] += cpu;
  }
  return out;
}

void no_overcommit(const test::CloudProcess& cloud) {
  for (const auto& [node, cpu] : held(cloud)) {
    INFO("node " << node);
    CHECK(cpu <= kCpu.at(node));
  }
}

std::string node_of(const test::CloudProcess& cloud, const std::string& id) {
  const json w = cloud.get_json("/api/v1/workloads/" + id);
  return w.is_object() && w["phase"] == "running" ? w["placement"]["node"].get<std::string>() : "";
}

}  // namespace

TEST_CASE("the batch route places a tight set that one at a time cannot", "[cloud][placement][integration]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  births(broker, cloud);
  const json batch = {{"workloads", {spec("small", 1000), spec("big", 2000)}}};
  const std::string command = "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer " +
                              cloud.admin_token() + "' -H 'Content-Type: application/json' --data '" + batch.dump() +
                              "' http://127.0.0.1:" + std::to_string(cloud.port()) + "/api/v1/workloads:batch";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char status[8] = {};
  const std::size_t got = std::fread(status, 1, sizeof status - 1, pipe);
  REQUIRE(::pclose(pipe) == 0);
  CHECK(std::string(status, got) == "201");
  CHECK(node_of(cloud, "big") == "gw-1");
  CHECK(node_of(cloud, "small") == "gw-2");
  no_overcommit(cloud);
}

TEST_CASE("one at a time then the re-optimiser leaves no feasible workload pending and never overcommits",
          "[cloud][placement][integration]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud", "nova-cloud", "", 180, std::nullopt,
                           "migration:\n  min_dwell_s: 1\nreoptimiser:\n  interval_s: 1\n  migration_budget: 2\n");
  births(broker, cloud);
  for (const auto& [id, cpu] : {std::pair{"small", 1000}, std::pair{"big", 2000}}) {
    auto r = cloud.post("/api/v1/workloads", spec(id, static_cast<std::uint64_t>(cpu)).dump());
    REQUIRE(r);
    REQUIRE(r->status == 201);
  }
  CHECK(node_of(cloud, "small") == "gw-1");
  CHECK(cloud.get_json("/api/v1/workloads/big")["phase"] == "pending");

  // The re-optimiser moves "small" to gw-2; its old run holds gw-1 until it is known
  // stopped (fence.h), so "big" still waits and nothing is overcommitted meanwhile.
  REQUIRE(cloud.poll_json("/api/v1/workloads/small", [](const json& w) {
    return w.contains("stopping") && w["stopping"]["node"] == "gw-1" && w["placement"]["node"] == "gw-2";
  }, 15s));
  CHECK(cloud.get_json("/api/v1/workloads/big")["phase"] == "pending");
  no_overcommit(cloud);

  // gw-1 answers the cancel as nova-agent does: the old run ended "cancelled".
  schemas::TaskResult stopped;
  stopped.position = {"gw-1", "results", 1, std::nullopt};
  stopped.task_id = "small.r1";
  stopped.status = schemas::TaskStatus::cancelled;
  stopped.reason = "cancelled: reoptimiser";
  stopped.finished_ts = 1;
  publish(broker, "nova/v1/up/gw-1/result", schemas::encode_cbor(stopped), false);

  REQUIRE(testing::poll_until([&] { return node_of(cloud, "big") == "gw-1"; }, 15s));
  CHECK(node_of(cloud, "small") == "gw-2");
  no_overcommit(cloud);
}
