// nova-cloud as the production ack source, killed mid-stream: an agent (the real loop,
// fed by a fast generator) sends 30,000 samples while nova-cloud is SIGKILLed three
// times and restarted on the same store. Afterwards the store must hold every sample
// exactly once, and the agent's outbox must be empty: every record was acknowledged,
// and only after the cloud had it on disk.
//
// Also: malformed records and topics at the cloud broker are refused, counted by reason
// on /metrics, and the service keeps ingesting.
#include <catch2/catch.hpp>
#include <leveldb/db.h>

#include <filesystem>
#include <memory>
#include <fstream>
#include <mqtt/async_client.h>
#include <set>
#include <thread>

#include "cloud_process.h"
#include "streaming_agent.h"
#include "nova/agent/agent.h"
#include "nova/agent/outbox.h"
#include "nova/cloud/ingest_store.h"
#include "nova/schemas/codec.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr schemas::Timestamp kStart = test::kGeneratorStart;

std::uint64_t cloud_watermark(const test::CloudProcess& cloud, const std::string& node) {
  auto j = cloud.get_json("/api/v1/nodes/" + node);
  if (j.is_null() || !j.contains("watermarks") || !j["watermarks"].contains("metrics")) return 0;
  return j["watermarks"]["metrics"].get<std::uint64_t>();
}

bool wait_watermark(const test::CloudProcess& cloud, const std::string& node, std::uint64_t at_least,
                    std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cloud_watermark(cloud, node) >= at_least) return true;
    std::this_thread::sleep_for(50ms);  // polling another process's REST API
  }
  return false;
}

}  // namespace

TEST_CASE("nova-cloud SIGKILLed three times mid-stream stores every sample exactly once", "[cloud][ingest]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  auto cloud = std::make_unique<test::CloudProcess>(broker.uri(), dir / "cloud");

  constexpr std::uint64_t kSamples = 30'000;  // 500 batches of 60
  test::Generator generator(kSamples);
  auto created = agent::Agent::create(test::streaming_agent("gw-ingest", broker.uri(), dir / "agent"), &generator);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  std::thread loop([&] { a.run(); });

  std::uint64_t kills = 0;
  for (std::uint64_t mark : {60u, 200u, 350u}) {
    REQUIRE(wait_watermark(*cloud, "gw-ingest", mark, 120s));
    cloud->kill(SIGKILL);
    ++kills;
    // The agent keeps publishing into the void (a clean-session consumer is gone) until
    // its acks stall; wait for that before the cloud comes back.
    const std::uint64_t published = a.counters().published;
    REQUIRE(a.wait_for([&](const agent::AgentCounters& c) { return c.published >= published + 20; }, 60s));
    cloud->start();
  }
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.samples == kSamples; }, 120s));
  a.stop();  // stores the open batch
  loop.join();
  const std::uint64_t batches = a.counters().batches;
  created.value().reset();

  // Drain the rest with a fresh agent on the same outbox.
  test::Generator none(0);
  auto again = agent::Agent::create(test::streaming_agent("gw-ingest", broker.uri(), dir / "agent"), &none);
  REQUIRE(again.ok());
  std::thread loop2([&] { again.value()->run(); });
  const bool all = wait_watermark(*cloud, "gw-ingest", batches, 120s);
  again.value()->stop();
  loop2.join();
  REQUIRE(all);
  cloud->kill(SIGTERM);

  auto store = cloud::IngestStore::open({cloud->store_dir()});
  REQUIRE(store.ok());
  CHECK(store.value()->watermark("gw-ingest", "metrics") == batches);
  const auto samples = store.value()->samples("gw-ingest", 0, kStart + kSamples * 1000 + 1, kSamples * 2);
  std::set<schemas::Timestamp> distinct;
  for (const auto& s : samples) distinct.insert(s.ts);
  CHECK(samples.size() == kSamples);  // nothing lost, nothing twice
  CHECK(distinct.size() == kSamples);
  WARN(kills << " SIGKILLs of nova-cloud; " << batches << " batches, " << samples.size()
             << " samples stored once each");
}

// The eviction gap: an agent whose outbox hits its disk cap while nova-cloud is away
// evicts its oldest unacknowledged batches. When the cloud comes back, the records the
// agent still holds declare the lowest seq held ("first"), so the cloud skips the evicted
// seqs instead of waiting for them forever: everything held is acknowledged, the
// outbox drains to empty, and the cloud counts exactly the evicted seqs as skipped.
TEST_CASE("seqs evicted while nova-cloud is away are declared gone and the rest is acknowledged", "[cloud][ingest][eviction]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  constexpr std::uint64_t kSamples = 12'000;  // 200 batches of 60
  constexpr std::uint64_t kCap = 16 * 1024;   // a few dozen batches
  agent::OutboxOptions outbox_options;
  outbox_options.dir = dir / "agent" / "outbox";
  outbox_options.max_bytes = kCap;

  // No cloud: nothing is acknowledged, so the cap evicts the oldest batches.
  std::uint64_t batches = 0;
  {
    test::Generator generator(kSamples);
    auto created = agent::Agent::create(test::streaming_agent("gw-evict", broker.uri(), dir / "agent", kCap), &generator);
    REQUIRE(created.ok());
    std::thread loop([&] { created.value()->run(); });
    const bool done = created.value()->wait_for([](const agent::AgentCounters& c) { return c.samples == kSamples; }, 120s);
    created.value()->stop();
    loop.join();
    REQUIRE(done);
    batches = created.value()->counters().batches;
  }
  std::uint64_t evicted = 0;
  std::uint64_t held = 0;
  {
    auto outbox = agent::Outbox::open(outbox_options);
    REQUIRE(outbox.ok());
    const agent::StreamStats st = outbox.value()->stats().at("metrics");
    evicted = st.evicted;
    held = st.count;
    CHECK(st.acked == 0);
    CHECK(st.next_seq == batches + 1);
    CHECK(evicted + held == batches);
    CHECK(st.first == evicted + 1);
  }
  REQUIRE(evicted > 0);
  REQUIRE(held > 0);

  // The cloud comes up; an agent on the same outbox (nothing new to sample) drains it.
  test::CloudProcess cloud(broker.uri(), dir / "cloud");
  test::Generator none(0);
  auto again = agent::Agent::create(test::streaming_agent("gw-evict", broker.uri(), dir / "agent", kCap), &none);
  REQUIRE(again.ok());
  std::thread loop2([&] { again.value()->run(); });
  const bool all = wait_watermark(cloud, "gw-evict", batches, 120s);
  const bool empty = all && again.value()->wait_for([](const agent::AgentCounters& c) { return c.outbox_records == 0; }, 30s);
  again.value()->stop();
  loop2.join();
  REQUIRE(all);
  CHECK(empty);
  auto metrics = cloud.get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("nova_cloud_seqs_skipped_total " + std::to_string(evicted) + "\n") != std::string::npos);
  CHECK(metrics->body.find("nova_cloud_records_stored_total " + std::to_string(held) + "\n") != std::string::npos);
  cloud.kill(SIGTERM);
  again.value().reset();

  auto outbox = agent::Outbox::open(outbox_options);
  REQUIRE(outbox.ok());
  const agent::StreamStats st = outbox.value()->stats().at("metrics");
  CHECK(st.count == 0);
  CHECK(st.acked == batches);
  CHECK(st.evicted == evicted);  // nothing more was evicted while draining
  WARN(batches << " batches, " << evicted << " evicted while the cloud was away and skipped by it, "
               << held << " acknowledged");
}

TEST_CASE("nova-cloud's sealed store: a flipped byte is reported, counted and never served", "[cloud][ingest][at_rest]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  const fs::path key_file = dir / "storage.key";
  std::ofstream(key_file) << security::new_storage_key_text();
  fs::permissions(key_file, fs::perms::owner_read | fs::perms::owner_write);
  test::CloudProcess cloud(broker.uri(), dir / "cloud", "nova-cloud", "", 180, std::nullopt, "", key_file);
  constexpr std::uint64_t kBatches = 10;
  {
    test::Generator generator(kBatches * 60 + 1);  // the last sample closes batch 10
    auto created = agent::Agent::create(test::streaming_agent("gw-sealed", broker.uri(), dir / "agent"), &generator);
    REQUIRE(created.ok());
    std::thread loop([&] { created.value()->run(); });
    const bool stored = wait_watermark(cloud, "gw-sealed", kBatches, 60s);
    created.value()->stop();
    loop.join();
    REQUIRE(stored);
  }
  auto samples_served = [&] {
    auto j = cloud.get_json("/api/v1/nodes/gw-sealed/metrics?from=" + std::to_string(kStart) +
                            "&to=" + std::to_string(kStart + 86'400'000));
    std::set<schemas::Timestamp> ts;
    if (j.is_array()) {
      for (const auto& s : j) ts.insert(s["ts"].get<schemas::Timestamp>());
    }
    return ts;
  };
  REQUIRE(samples_served().size() >= kBatches * 60);
  cloud.kill(SIGTERM);
  {
    // A byte of batch 5's stored value flipped on disk while nova-cloud is stopped.
    leveldb::DB* raw = nullptr;
    REQUIRE(leveldb::DB::Open(leveldb::Options(), cloud.store_dir().string(), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    std::vector<std::string> history;
    std::unique_ptr<leveldb::Iterator> it(db->NewIterator(leveldb::ReadOptions()));
    for (it->Seek("h/gw-sealed/"); it->Valid() && it->key().starts_with("h/gw-sealed/"); it->Next()) {
      history.push_back(it->key().ToString());
    }
    it.reset();
    REQUIRE(history.size() >= kBatches);
    std::string value;
    REQUIRE(db->Get(leveldb::ReadOptions(), history[4], &value).ok());
    value[value.size() / 2] = static_cast<char>(value[value.size() / 2] ^ 0x01);
    REQUIRE(db->Put(leveldb::WriteOptions(), history[4], value).ok());
  }
  cloud.start();
  const std::set<schemas::Timestamp> served = samples_served();
  CHECK(served.size() >= (kBatches - 1) * 60);
  for (std::uint64_t i = 4 * 60; i < 5 * 60; ++i) CHECK(served.count(kStart + i * 1000) == 0);  // batch 5's samples
  CHECK(served.count(kStart) == 1);
  CHECK(served.count(kStart + 5 * 60 * 1000) == 1);
  auto metrics = cloud.get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("nova_cloud_store_corrupt_records_total 1\n") != std::string::npos);
  std::ifstream log(cloud.log_file());
  const std::string lines((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK_THAT(lines, Catch::Contains("level=error event=corrupt_record store=cloud key=\"h/gw-sealed/") &&
                        Catch::Contains("reason=\"authentication failed (a changed byte, or a record moved from another "
                                        "key)\" action=deleted"));
}

TEST_CASE("malformed upward records are refused and counted and ingest goes on", "[cloud][bad-input]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  mqtt::async_client client(broker.uri(), "gw-bad", mqtt::create_options(MQTTVERSION_3_1_1));
  client.connect(testing::connect_options(broker, "gw-bad"))->wait();
  auto send = [&](const std::string& topic, const std::string& payload) {
    client.publish(topic, payload.data(), payload.size(), 1, false)->wait();
  };
  schemas::NodeState birth;
  birth.node = "gw-bad";
  birth.bdseq = 1;
  birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  const auto birth_bytes = schemas::encode_cbor(birth);
  send("nova/v1/up/gw-bad/state", std::string(birth_bytes.begin(), birth_bytes.end()));
  send("nova/v1/up/gw-bad/state", "\xa1");  // a map with no entries after its header
  send("nova/v1/up/gw-bad/metrics", "\x9a\x9a\x9a\x9a\x9a\x9a\x9a\x53");  // a length bomb
  send("nova/v1/up/gw-bad/result", "{not cbor");
  send("nova/v1/up/gw-bad/link", "maybe");
  schemas::MetricsBatch spoof;
  spoof.position = {"someone-else", "metrics", 1};
  spoof.samples.push_back(schemas::MetricSample{kStart, 1, 2, 3, 0, 0, 0, {}, {}, {}, {}});
  const auto spoof_bytes = schemas::encode_cbor(spoof);
  send("nova/v1/up/gw-bad/metrics", std::string(spoof_bytes.begin(), spoof_bytes.end()));
  // And a good one afterwards.
  schemas::MetricsBatch good = spoof;
  good.position.node = "gw-bad";
  const auto good_bytes = schemas::encode_cbor(good);
  send("nova/v1/up/gw-bad/metrics", std::string(good_bytes.begin(), good_bytes.end()));
  REQUIRE(wait_watermark(cloud, "gw-bad", 1, 30s));

  auto metrics = cloud.get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("nova_cloud_records_rejected_total{reason=\"undecodable\"} 3") != std::string::npos);
  CHECK(metrics->body.find("nova_cloud_records_rejected_total{reason=\"bad_link_state\"} 1") != std::string::npos);
  CHECK(metrics->body.find("nova_cloud_records_rejected_total{reason=\"node_mismatch\"} 1") != std::string::npos);
  CHECK(metrics->body.find("nova_cloud_records_stored_total 1") != std::string::npos);
  client.disconnect()->wait();
}

// Issue 10's attack on ingest: an outside client publishes one metrics record for a node
// with a huge seq and first. Before the bound, it moved the node's watermark to ~10^12,
// every later genuine record was a "duplicate", and the ack made the agent delete records
// the cloud never stored. Now it is refused and counted; the real agent's records are all
// stored and acknowledged with the watermark they earn.
TEST_CASE("a forged record far ahead of the watermark is refused and the real agent's records still land",
          "[cloud][ingest][hostile]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir();
  test::CloudProcess cloud(broker.uri(), dir / "cloud");

  mqtt::async_client forger(broker.uri(), "forger", mqtt::create_options(MQTTVERSION_3_1_1));
  // The forger holds a device certificate of the PKI (the test broker has no ACL): what
  // stands between it and the watermark is nova-cloud's bound.
  forger.connect(testing::connect_options(broker, "forger"))->wait();
  schemas::MetricsBatch forged;
  forged.position = {"gw-forged", "metrics", 1'000'000'000'000, 999'999'999'999};
  forged.samples.push_back(schemas::MetricSample{kStart, 1, 2, 3, 0, 0, 0, {}, {}, {}, {}});
  const auto forged_bytes = schemas::encode_cbor(forged);
  forger.publish("nova/v1/up/gw-forged/metrics", forged_bytes.data(), forged_bytes.size(), 1, false)->wait();
  forger.disconnect()->wait();
  const auto counted = [&] {
    auto m = cloud.get("/metrics");
    return m && (m->body.find("nova_cloud_records_rejected_total{reason=\"seq_too_far_ahead\"} 1\n") != std::string::npos ||
                 m->body.find("nova_cloud_records_stored_total 1\n") != std::string::npos);
  };
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!counted() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);  // another process
  REQUIRE(counted());

  constexpr std::uint64_t kSamples = 1'200;  // 20 batches of 60
  test::Generator generator(kSamples);
  auto created = agent::Agent::create(test::streaming_agent("gw-forged", broker.uri(), dir / "agent"), &generator);
  REQUIRE(created.ok());
  std::thread loop([&] { created.value()->run(); });
  const bool drained = created.value()->wait_for(
      [](const agent::AgentCounters& c) { return c.samples == kSamples && c.outbox_records == 0; }, 60s);
  const std::uint64_t batches = created.value()->counters().batches;
  created.value()->stop();
  loop.join();
  REQUIRE(drained);
  CHECK(cloud_watermark(cloud, "gw-forged") == batches);
  auto metrics = cloud.get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("nova_cloud_records_rejected_total{reason=\"seq_too_far_ahead\"} 1\n") != std::string::npos);
  CHECK(metrics->body.find("nova_cloud_records_stored_total " + std::to_string(batches) + "\n") != std::string::npos);
  CHECK(metrics->body.find("nova_cloud_seqs_skipped_total 0\n") != std::string::npos);
  std::ifstream log(cloud.log_file());
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("reason=seq_too_far_ahead topic=\"nova/v1/up/gw-forged/metrics\" error=\"position.first: 999999999999 is "
                  "more than 1000000 ahead of the stream's watermark 0\"") != std::string::npos);
}

TEST_CASE("malformed REST requests get a 4xx with the reason", "[cloud][bad-input]") {
  testing::Broker broker(testing::mutual_tls());
  test::CloudProcess cloud(broker.uri(), broker.data_dir() / "cloud");
  auto truncated = cloud.post("/api/v1/workloads", "{\"v\":1,\"workload_id\":");
  REQUIRE(truncated);
  CHECK(truncated->status == 400);
  CHECK(truncated->body.find("\"error\"") != std::string::npos);
  auto wrong_type = cloud.post("/api/v1/workloads",
                               R"({"v":1,"workload_id":"w1","name":"x","argv":["/bin/true"],"res":{"cpu_millis":"lots","memory_mb":1,"storage_mb":0},"caps":[],"tiers":[],"availability":0.9,"clusters_in":[],"clusters_out":[],"timeout_ms":1000})");
  REQUIRE(wrong_type);
  CHECK(wrong_type->status == 400);
  CHECK(wrong_type->body.find("cpu_millis") != std::string::npos);
  auto huge = cloud.post("/api/v1/workloads", std::string(2 << 20, 'x'));
  REQUIRE(huge);
  CHECK(huge->status == 413);
  auto none = cloud.get("/api/v1/nodes/nobody");
  REQUIRE(none);
  CHECK(none->status == 404);
  auto bad_param = cloud.get("/api/v1/nodes/nobody/metrics?from=yesterday");
  REQUIRE(bad_param);
  CHECK(bad_param->status == 400);
  // Nothing is alive: the optimizer says why instead of recommending.
  auto empty = cloud.post("/api/v1/edge/optimize",
                          R"({"v":1,"workload_id":"w1","name":"x","argv":["/bin/true"],"res":{"cpu_millis":1,"memory_mb":1,"storage_mb":0},"caps":[],"tiers":[],"availability":0.9,"clusters_in":[],"clusters_out":[],"timeout_ms":1000})");
  REQUIRE(empty);
  CHECK(empty->status == 422);
  auto health = cloud.get("/api/v1/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  auto dashboard = cloud.get("/");  // the embedded page, its script served apart (CSP)
  REQUIRE(dashboard);
  CHECK(dashboard->status == 200);
  auto script = cloud.get("/dashboard.js");
  REQUIRE(script);
  CHECK(script->body.find("/api/v1/sites") != std::string::npos);
  auto unknown = cloud.get("/api/v2/nothing");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);
  CHECK(unknown->body.find("\"error\"") != std::string::npos);
}

TEST_CASE("nova-cloud refuses a bad config with exit 2 and reloads on SIGHUP and stops on SIGTERM", "[cloud][process]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "cloud-proc";
  fs::create_directories(dir);
  {
    std::ofstream(dir / "bad.yaml") << "http:\n  port: lots\n";
    testing::ChildProcess bad;
    bad.start({NOVA_CLOUD_BIN, "--config", (dir / "bad.yaml").string()}, dir / "bad.log", false);
    const int status = bad.wait();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 2);
    std::ifstream log(dir / "bad.log");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    CHECK(text.find("http.port: expected an integer") != std::string::npos);
  }
  test::CloudProcess cloud(broker.uri(), dir / "good");
  auto log_text = [&] {
    std::ifstream in(cloud.log_file());
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  std::ofstream(dir / "good" / "cloud.yaml", std::ios::app) << "bogus:\n  key: 1\n";
  ::kill(cloud.pid(), SIGHUP);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (log_text().find("event=reload_refused") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);  // a log file another process writes
  }
  CHECK(log_text().find("event=reload_refused") != std::string::npos);
  CHECK(cloud.get("/api/v1/health")->status == 200);  // still serving
  const int status = cloud.kill(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(log_text().find("event=stopped") != std::string::npos);
}
