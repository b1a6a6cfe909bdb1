// Personal sensor data stays at the node (docs/agent.md, "Personal data"): a real
// nova-agent at an access site, bridged with mutual TLS to the cloud broker, takes
// readings that sensors publish with mosquitto_pub (JSON and CBOR, each with its own
// certificate) and sends only window aggregates of the values marked personal. An
// operator at the cloud broker reads everything that goes up; nova-cloud's identity
// there reads the raw sensor topics. Neither ever sees a personal value as read.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "hierarchy_support.h"
#include "mqtt_support.h"
#include "nova/schemas/codec.h"
#include "nova/testing/agent_process.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {


// What the metrics batches of gw-a1 that reached the cloud hold, each batch once.
struct Seen {
  std::set<std::uint64_t> seqs;
  std::map<std::string, std::vector<double>> gauges;  // every value of every sensor gauge
};

Seen sensor_gauges(const std::vector<hiertest::Received>& messages) {
  Seen seen;
  for (const auto& m : messages) {
    if (m.topic != "nova/v1/up/gw-a1/metrics") continue;
    auto batch = schemas::decode_cbor<schemas::MetricsBatch>(m.payload);
    if (!batch || !seen.seqs.insert(batch->position.seq).second) continue;
    for (const auto& s : batch->samples) {
      for (const auto& [name, value] : s.extra) {
        if (name.starts_with("sensor.")) seen.gauges[name].push_back(value);
      }
    }
  }
  return seen;
}

double sum(const std::vector<double>& v) {
  double total = 0;
  for (double x : v) total += x;
  return total;
}

}  // namespace

TEST_CASE("personal sensor values reach the cloud broker only as window aggregates", "[agent][privacy]") {
  const tiers::Topology topology = hiertest::gateway_topology("privacy");
  auto h = hiertest::start_hierarchy(topology, "nova-privacy", testing::Transport::mutual_tls, {"watcher"},
                                     {"gw-a1.cam1", "gw-a1.badge"});

  hiertest::Client watcher(hiertest::endpoint(*h, "cloud", hiertest::operator_identity("watcher")));
  hiertest::Client cloud(hiertest::endpoint(*h, "cloud", "nova-cloud"));
  hiertest::connect_all({&watcher, &cloud});
  watcher.subscribe("nova/v1/up/#");
  // No identity may read raw sensor topics at the cloud broker: the ACL plugin refuses
  // even nova-cloud's subscription (SUBACK 0x80: no read grant overlaps it).
  CHECK_THROWS_WITH(cloud.subscribe("nova/v1/sensor/#"), Catch::Contains("128"));

  const fs::path dir = h->dir.path() / "gw-a1";
  fs::create_directories(dir);
  testing::write_agent_config(dir / "agent.yaml", "gw-a1", "cloud/a1", 2, h->tls_uri("a1"), dir,
                              "metrics: {interval_ms: 100, batch_interval_s: 10}\ndrain: {jitter_ms: 0}\n"
                              "privacy: {personal: [cam1/face_count, badge], window_s: 5, min_readings: 3}\n",
                              h->agent_tls_keys("gw-a1"));
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  // The birth follows the agent's SUBACK: from then on it takes readings.
  REQUIRE(watcher.wait_until([](const auto& ms) {
    for (const auto& m : ms) {
      if (m.topic == "nova/v1/up/gw-a1/state") return true;
    }
    return false;
  }, 60s));

  auto publish = [&](const std::string& sensor, const std::string& args) {
    const std::string command = "mosquitto_pub " + h->mosquitto_client_args("a1", "sensor.gw-a1." + sensor) +
                                " -q 1 -t nova/v1/sensor/gw-a1/" + sensor + " " + args;
    REQUIRE(std::system(command.c_str()) == 0);
  };
  auto cbor_file = [&](const std::string& name, std::map<std::string, double> values) {
    schemas::SensorReading r;
    r.ts = 1;
    r.values = std::move(values);
    const schemas::Bytes b = schemas::encode_cbor(r);
    const fs::path file = dir / name;
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<long>(b.size()));
    return file.string();
  };
  publish("cam1", R"(-m '{"v":1,"ts":1,"values":{"face_count":3,"lux":200}}')");
  publish("cam1", "-f " + cbor_file("cam1.cbor", {{"face_count", 5}}));
  publish("cam1", R"(-m '{"v":1,"ts":1,"values":{"face_count":10}}')");
  publish("badge", "-f " + cbor_file("badge.cbor", {{"id", 4711}}));

  // Until the aggregates of both personal values have gone up.
  INFO(agent.text());
  REQUIRE(watcher.wait_until([](const auto& ms) {
    const Seen seen = sensor_gauges(ms);
    return seen.gauges.count("sensor.cam1.face_count.count") != 0 && seen.gauges.count("sensor.badge.id.count") != 0;
  }, 60s));
  const Seen seen = sensor_gauges(watcher.messages());
  // Not personal: as read.
  CHECK(seen.gauges.at("sensor.cam1.lux") == std::vector<double>{200});
  // Personal: never as read, only the window's aggregates.
  CHECK(seen.gauges.count("sensor.cam1.face_count") == 0);
  CHECK(seen.gauges.count("sensor.badge.id") == 0);
  CHECK(seen.gauges.at("sensor.cam1.face_count.count") == std::vector<double>{3});
  CHECK(seen.gauges.at("sensor.cam1.face_count.mean") == std::vector<double>{6});
  CHECK(seen.gauges.at("sensor.cam1.face_count.min") == std::vector<double>{3});
  CHECK(seen.gauges.at("sensor.cam1.face_count.max") == std::vector<double>{10});
  // One badge reading: fewer than min_readings, so its count only.
  CHECK(sum(seen.gauges.at("sensor.badge.id.count")) == 1);
  CHECK(seen.gauges.count("sensor.badge.id.mean") == 0);
  CHECK(seen.gauges.count("sensor.badge.id.min") == 0);
  CHECK(seen.gauges.count("sensor.badge.id.max") == 0);
  // No raw reading was bridged to the cloud broker.
  CHECK(cloud.count() == 0);
  for (const auto& m : watcher.messages()) CHECK_FALSE(m.topic.starts_with("nova/v1/sensor/"));
  agent.signal(SIGTERM);
}
