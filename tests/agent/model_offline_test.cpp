// The local model decides with the agent's own session down (docs/agent.md, "Local
// model"): an in-process agent, so that the test sets the sensor gauge its samples carry,
// on a real Mosquitto with mutual TLS. A tree ensemble is published signed and retained
// with mosquitto_pub and put in force; the broker stops, the model keeps taking decisions,
// marked offline, and once the broker is back an acking consumer receives each decision
// record once (the go-back-N resends are counted as duplicates and removed).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "gateway_options.h"
#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"
#include "../models/tree_nodes.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"
#include "nova/testing/signer.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Samples stamped with the loop's clock, carrying the sensor gauge the test sets.
class SensorSamples final : public agent::SampleSource {
 public:
  void set(double temp) {
    std::lock_guard lock(mutex_);
    temp_ = temp;
  }
  const schemas::MetricSample* sample(schemas::Timestamp now_ms) override {
    std::lock_guard lock(mutex_);
    s_ = {};
    s_.ts = now_ms;
    s_.cpu_pct = 20;
    s_.mem_pct = 40;
    s_.disk_pct = 50;
    s_.load1 = 0.5;
    s_.extra["sensor.s1.temp"] = temp_;
    return &s_;
  }

 private:
  std::mutex mutex_;
  double temp_ = 20;
  schemas::MetricSample s_;
};

}  // namespace

TEST_CASE("a local model keeps deciding while the agent's broker is down and each decision arrives once",
          "[agent][model][offline]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);

  // One tree: temp >= 70 scores 1 (the threshold), below 0.
  schemas::Model model{"hot-pump", 3, "tree_ensemble", {{"threshold", 1}}, {}, 1};
  model.features = {"sensor.s1.temp"};
  const schemas::TreeNode root = test::split(0, 70, 1, 2), cold = test::leaf(0), hot = test::leaf(1);
  model.trees = {{root, cold, hot}};
  const std::string topic = "nova/v1/down/cloud/eu/par/par-a1/gw-1/model";
  const schemas::Bytes cbor = schemas::encode_cbor(model);
  const fs::path envelope = dir / "model.cose";
  std::ofstream(envelope, std::ios::binary) << testing::test_signer().sign(topic, std::string(cbor.begin(), cbor.end()));
  const std::string publish = "mosquitto_pub " + broker.mosquitto_client_args("nova-cloud") + " -q 1 -r -t " + topic +
                              " -f " + envelope.string();
  REQUIRE(std::system(publish.c_str()) == 0);

  agent::AgentOptions o = test::gateway_options(broker.uri(), dir);
  o.sample_interval = 50ms;
  o.drain.jitter = 0ms;
  o.drain.resend_after = 1s;  // what went up to nobody is sent again soon
  o.decisions.zscore.threshold = 0;
  SensorSamples samples;
  auto created = agent::Agent::create(std::move(o), &samples);
  REQUIRE(created.ok());
  std::unique_ptr<agent::Agent> owner = std::move(created).value();
  agent::Agent& a = *owner;
  std::thread loop([&] { a.run(); });
  struct StopOnExit {
    std::unique_ptr<agent::Agent>& a;
    std::thread& t;
    ~StopOnExit() {
      if (a) a->stop();
      if (t.joinable()) t.join();
    }
  } stop_on_exit{owner, loop};

  // The retained model is applied (a model_applied record), then the model decides online.
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.models_applied == 1 && c.decisions == 1; }, 30s));
  samples.set(80);
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.decisions == 2; }, 10s));
  samples.set(20);
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.alerts == 2; }, 10s));  // recovered

  // The broker goes down: three more decisions, offline.
  broker.stop();
  REQUIRE(a.wait_for([&](const agent::AgentCounters&) { return !a.connected(); }, 30s));
  for (std::uint64_t i = 1; i <= 3; ++i) {
    samples.set(80);
    REQUIRE(a.wait_for([&](const agent::AgentCounters& c) { return c.decisions == 2 + i; }, 10s));
    samples.set(20);
    REQUIRE(a.wait_for([&](const agent::AgentCounters& c) { return c.alerts == 2 + 2 * i; }, 10s));
  }

  // Back: the consumer acknowledges what it receives, each seq once.
  broker.restart();
  testing::AckConsumer consumer(broker.uri());
  REQUIRE(consumer.wait_for("gw-1", "decisions", 5, 60s));
  const testing::StreamCount count = consumer.count("gw-1", "decisions");
  CHECK(count.seqs == std::set<std::uint64_t>{1, 2, 3, 4, 5});
  const std::vector<schemas::DecisionRecord> records = consumer.decisions("gw-1");
  REQUIRE(records.size() == 5);
  std::map<std::uint64_t, schemas::DecisionRecord> by_seq;
  for (const auto& r : records) by_seq.emplace(r.position.seq, r);
  CHECK(by_seq.at(1).kind == "model_applied");
  CHECK(by_seq.at(1).inputs.at("revision") == 3);
  for (std::uint64_t seq = 2; seq <= 5; ++seq) {
    const schemas::DecisionRecord& d = by_seq.at(seq);
    CHECK(d.kind == "model_decision");
    CHECK(d.action == "model hot-pump: alerted");
    CHECK(d.inputs.at("sensor.s1.temp") == 80);
    CHECK(d.inputs.at("score") == 1);
    CHECK(d.inputs.at("model_revision") == 3);
    CHECK(d.confidence == 1);  // a raw score is no probability
    CHECK(d.offline == (seq > 2));  // the first while connected, the other three not
  }
  CHECK(consumer.undecodable() == 0);
  CHECK(a.counters().bad_messages == 0);

  // The samples report what the model did: the batch stored at stop (not acknowledged,
  // so still in the outbox) ends with the counts since the model was applied.
  a.stop();
  loop.join();
  owner.reset();  // releases the outbox (LevelDB allows one owner)
  agent::OutboxOptions box;
  box.dir = dir / "outbox";
  auto outbox = agent::Outbox::open(box);
  REQUIRE(outbox.ok());
  auto pending = outbox.value()->read("metrics", 0, 1000);
  REQUIRE(pending.ok());
  REQUIRE_FALSE(pending->empty());
  auto batch = schemas::decode_cbor<schemas::MetricsBatch>(pending->back().payload);
  REQUIRE(batch.ok());
  const auto& extra = batch->samples.back().extra;
  CHECK(extra.at("agent.model.positives") == 4);
  CHECK(extra.at("agent.model.evaluations") > 4);
  CHECK(extra.at("agent.model.skipped") == 0);  // every sample carries the sensor's gauge
}
