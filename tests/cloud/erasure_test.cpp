// Erasure on request over the real hierarchy (docs/cloud.md, "Erasure"): nova-cloud and
// nova-agent processes, an access broker bridged with mutual TLS to the cloud broker, a
// sensor with its own certificate. A sensor's data and then the whole node's data are
// erased through the REST API; the second request is made while the agent is stopped
// and reaches it when it comes back. The stores are then opened with LevelDB after the
// processes stopped and scanned: no copy of what was erased remains. Unsigned and forged
// erase messages are refused by the agent.
#include <leveldb/db.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>

#include "cloud_process.h"
#include "gateway_agent.h"
#include "hierarchy_support.h"
#include "nova/schemas/codec.h"
#include "nova/security/audit_log.h"
#include "nova/security/control.h"
#include "nova/testing/agent_process.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kEraseTopic = "nova/v1/down/cloud/a1/gw-a1/erase";


// Every key and value of the LevelDB at `dir` (its process stopped).
std::vector<std::pair<std::string, std::string>> scan(const fs::path& dir) {
  leveldb::DB* raw = nullptr;
  const leveldb::Status st = leveldb::DB::Open(leveldb::Options(), dir.string(), &raw);
  REQUIRE(st.ok());
  std::unique_ptr<leveldb::DB> db(raw);
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) out.emplace_back(it->key().ToString(), it->value().ToString());
  return out;
}

// The earliest time a stored upward record speaks of, and whether it holds a gauge of
// sensor cam1; nullopt when the payload is none of the upward records.
struct Content {
  schemas::Timestamp earliest = ~schemas::Timestamp{0};
  bool cam1 = false;
};
std::optional<Content> content_of(std::string_view payload) {
  Content c;
  if (auto b = schemas::decode_cbor<schemas::MetricsBatch>(payload)) {
    for (const auto& s : b->samples) {
      c.earliest = std::min(c.earliest, s.ts);
      for (const auto& [name, v] : s.extra) c.cam1 = c.cam1 || name.starts_with("sensor.cam1.");
    }
    return c;
  }
  if (auto a = schemas::decode_cbor<schemas::Alert>(payload)) return Content{a->ts, a->metric.starts_with("sensor.cam1.")};
  if (auto d = schemas::decode_cbor<schemas::DecisionRecord>(payload)) return Content{d->ts, false};
  if (auto r = schemas::decode_cbor<schemas::TaskResult>(payload)) return Content{r->finished_ts, false};
  return std::nullopt;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("an erasure by REST removes every copy of a sensor's and a node's data", "[cloud][erasure]") {
  const tiers::Topology topology = hiertest::gateway_topology("erasure");
  auto h = hiertest::start_hierarchy(topology, "nova-erasure", testing::Transport::mutual_tls, {}, {"gw-a1.cam1"});
  const fs::path dir = h->dir.path() / "erasure";
  test::CloudProcess cloud(h->tls_uri("cloud"), dir / "cloud", "nova-cloud", "", 180, h->identity("nova-cloud"));

  const fs::path adir = dir / "gw-a1";
  auto agent = test::start_gateway_agent(*h, NOVA_AGENT_BIN, adir,
                                         "metrics: {interval_ms: 100, batch_interval_s: 10}\ndrain: {jitter_ms: 0}\n");
  REQUIRE(cloud.poll_json("/api/v1/nodes/gw-a1", [](const json& n) { return n["liveness"] == "alive"; }, 60s));
  const std::string reading = "mosquitto_pub " + h->mosquitto_client_args("a1", "sensor.gw-a1.cam1") +
                              " -q 1 -t nova/v1/sensor/gw-a1/cam1 -m '{\"v\":1,\"ts\":1,\"values\":{\"temp\":21.5}}'";
  REQUIRE(std::system(reading.c_str()) == 0);
  // Stored at the cloud: the first batch holds the reading's gauge.
  REQUIRE(cloud.poll_json("/api/v1/nodes/gw-a1", [](const json& n) {
    return n["watermarks"].contains("metrics") && n["watermarks"]["metrics"].get<int>() >= 1;
  }, 60s));

  // --- one sensor, the agent online -----------------------------------------------------
  auto posted = cloud.post("/api/v1/erasures", R"({"node": "gw-a1", "sensor": "cam1"})");
  REQUIRE(posted);
  INFO(posted->body);
  REQUIRE(posted->status == 201);
  const json sensor_erasure = json::parse(posted->body);
  CHECK(sensor_erasure["state"] == "pending");
  CHECK(sensor_erasure["cloud"]["raw"].get<int>() >= 1);  // the batch with the reading, rewritten
  const std::string sensor_id = sensor_erasure["erasure_id"];
  REQUIRE(cloud.poll_json("/api/v1/erasures/" + sensor_id, [](const json& e) { return e["state"] == "done"; }, 60s));
  CHECK(cloud.get_json("/api/v1/erasures/" + sensor_id)["node_counts"].contains("outbox_rewritten"));

  // Refused: not a node id, an unknown node, an unknown field.
  CHECK(cloud.post("/api/v1/erasures", R"({"node": "bad/id"})")->status == 400);
  CHECK(cloud.post("/api/v1/erasures", R"({"node": "nobody"})")->status == 404);
  CHECK(cloud.post("/api/v1/erasures", R"({"node": "gw-a1", "colour": "red"})")->status == 400);

  // --- the whole node, requested while its agent is stopped -------------------------------
  REQUIRE(agent->signal(SIGTERM) == 0);
  agent.reset();
  for (const auto& [key, value] : scan(adir / "outbox")) {
    if (key.empty() || key[0] != 'r') continue;
    const auto c = content_of(value);
    if (c) CHECK_FALSE(c->cam1);  // the sensor's erasure reached the outbox
  }
  posted = cloud.post("/api/v1/erasures", R"({"node": "gw-a1"})");
  REQUIRE(posted);
  REQUIRE(posted->status == 201);
  const json node_erasure = json::parse(posted->body);
  const std::string node_id = node_erasure["erasure_id"];
  const schemas::Timestamp requested_at = node_erasure["requested_at"];
  CHECK(node_erasure["cloud"]["raw"].get<int>() >= 1);
  CHECK(cloud.get_json("/api/v1/erasures/" + node_id)["state"] == "pending");  // nobody to confirm it yet

  agent = std::make_unique<testing::AgentProcess>(NOVA_AGENT_BIN, adir / "agent.yaml", adir / "agent.log");
  REQUIRE(cloud.poll_json("/api/v1/erasures/" + node_id, [](const json& e) { return e["state"] == "done"; }, 60s));
  const json done = cloud.get_json("/api/v1/erasures/" + node_id);
  CHECK(done["node_counts"]["outbox_removed"].get<int>() >= 1);  // at least the batch flushed at its stop

  // Unsigned, and signed by a key the agent does not trust: refused, counted, logged.
  schemas::ErasureRequest forged{"erasure-forged", "gw-a1", std::nullopt, requested_at};
  const schemas::Bytes plain = schemas::encode_cbor(forged);
  const fs::path unsigned_file = dir / "unsigned.cbor";
  std::ofstream(unsigned_file, std::ios::binary).write(reinterpret_cast<const char*>(plain.data()), static_cast<long>(plain.size()));
  auto stranger = security::SigningKey::generate();
  REQUIRE(stranger.ok());
  auto claims = security::claims_for_topic(kEraseTopic, requested_at, 60s);
  REQUIRE(claims.ok());
  const schemas::Bytes envelope = security::sign_control(*stranger, *claims, plain);
  const fs::path forged_file = dir / "forged.cbor";
  std::ofstream(forged_file, std::ios::binary).write(reinterpret_cast<const char*>(envelope.data()), static_cast<long>(envelope.size()));
  for (const fs::path& f : {unsigned_file, forged_file}) {
    const std::string pub = "mosquitto_pub " + h->mosquitto_client_args("a1", "nova-cloud") + " -q 1 -t " +
                            kEraseTopic + " -f " + f.string();
    REQUIRE(std::system(pub.c_str()) == 0);
  }
  CHECK(agent->wait_log("event=control_refused reason=unsigned topic=" + std::string(kEraseTopic), 30s));
  CHECK(agent->wait_log("event=control_refused reason=untrusted_key topic=" + std::string(kEraseTopic), 30s));
  CHECK(agent->text().find("erasure=erasure-forged") == std::string::npos);

  REQUIRE(agent->signal(SIGTERM) == 0);
  agent.reset();
  REQUIRE(cloud.kill(SIGTERM) == 0);

  // --- no copy remains --------------------------------------------------------------------
  std::size_t agent_records = 0;
  for (const auto& [key, value] : scan(adir / "outbox")) {
    if (key.empty() || key[0] != 'r') continue;
    ++agent_records;
    if (const auto c = content_of(value)) {
      INFO("outbox record " << key.substr(1, key.find('\0') - 1));
      CHECK(c->earliest > requested_at);
      CHECK_FALSE(c->cam1);
    }
  }
  std::size_t cloud_records = 0;
  for (const auto& [key, value] : scan(cloud.store_dir())) {
    for (const char* tag : {"h/gw-a1/", "r/gw-a1/", "d/gw-a1/", "a/gw-a1/"}) {
      if (!key.starts_with(tag)) continue;
      ++cloud_records;
      INFO("cloud record " << key.substr(0, 8));
      const auto c = content_of(key[0] == 'r' ? std::string_view(value).substr(8) : std::string_view(value));
      REQUIRE(c);
      CHECK(c->earliest > requested_at);
      CHECK_FALSE(c->cam1);
    }
    if (key.starts_with("g/gw-a1/")) {
      ++cloud_records;
      // A minute aggregate of after the erasure may start up to a minute before it.
      std::uint64_t bucket = 0;
      for (std::size_t i = 8; i < 16; ++i) bucket = bucket << 8 | static_cast<unsigned char>(key[i]);
      CHECK(bucket + 60'000 > requested_at);
    }
  }
  INFO("records after the erasure: agent " << agent_records << ", cloud " << cloud_records);

  // Audited with the counts, never the data; the chain holds.
  const std::string audit = read_text(cloud.audit_file());
  CHECK(audit.find("\"action\":\"erasure requested\",\"target\":\"node=gw-a1 sensor=cam1 erasure=" + sensor_id) !=
        std::string::npos);
  CHECK(audit.find("\"action\":\"erasure confirmed\",\"target\":\"node=gw-a1 sensor=* erasure=" + node_id) !=
        std::string::npos);
  CHECK(audit.find("21.5") == std::string::npos);
  const security::AuditVerdict verdict = security::verify_audit_log(cloud.audit_file());
  CHECK_FALSE(verdict.broken_at);
}
