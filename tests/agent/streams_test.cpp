// Go-back-N is per stream: one stream's acks must not hide another stream's loss.
//
// A broker that acknowledged a publish (PUBACK) can still lose it: it crashes before
// saving, or it has no subscriber yet after a restart. The agent then learns of the loss
// only because the cloud's acks for that stream stop advancing. Here the consumer drops
// the first delivery of alert 1 on purpose, while metrics batches keep flowing and being
// acknowledged every 100 ms; alert 1 must still be sent again.
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <thread>

#include "nova/agent/agent.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/broker.h"
#include "nova/testing/signer.h"
#include "nova/testing/test_pki.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Samples one second apart (by their timestamps) with the CPU above the critical level:
// every sample closes a one-second batch, and the first raises one alert (the next
// would come only after `repeat`).
agent::AgentOptions gateway_options(const testing::Broker& broker) {
  agent::AgentOptions o;
  o.birth.node = "gw-1";
  o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = broker.uri();
  o.tls = testing::tls_files_for(broker.uri(), "gw-1");
  o.outbox.dir = broker.data_dir() / "agent" / "outbox";
  o.state_dir = broker.data_dir() / "agent" / "state";
  o.control.keys = {testing::test_signer().verify_key()};  // the acking consumer's key
  o.drain.jitter = 0ms;
  o.decisions.zscore.threshold = 0;  // alert 1 stays the only alert
  return o;
}

class HotSamples final : public agent::SampleSource {
 public:
  // After `limit` samples the source runs dry (the agent then only drains).
  explicit HotSamples(std::uint64_t limit = UINT64_MAX) : limit_(limit) {}
  const schemas::MetricSample* sample(schemas::Timestamp) override {
    if (calls_ >= limit_) return nullptr;
    s_.ts = 1732650000000 + calls_++ * 1000;
    s_.cpu_pct = 99;
    s_.mem_pct = 40;
    s_.disk_pct = 50;
    return &s_;
  }

 private:
  std::uint64_t limit_;
  std::uint64_t calls_ = 0;
  schemas::MetricSample s_;
};

}  // namespace

TEST_CASE("an alert lost after its PUBACK is resent while metrics keep being acknowledged",
          "[agent][resend][streams]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  consumer.drop_next("alerts", 1);

  HotSamples source;
  agent::AgentOptions o = gateway_options(broker);
  o.sample_interval = 100ms;   // a metrics batch, and its ack, every 100 ms
  o.batch_interval = 1s;       // of sample time: one sample per batch
  o.drain.resend_after = 1s;   // far longer than the gap between two metrics acks
  auto created = agent::Agent::create(o, &source);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  std::thread loop([&] { a.run(); });

  // The decision behind alert 1 arrives (acked); alert 1 itself was dropped.
  REQUIRE(consumer.wait_for("gw-1", "decisions", 1, 30s));
  REQUIRE(consumer.wait_for("gw-1", "alerts", 1, 30s));
  const testing::StreamCount metrics = consumer.count("gw-1", "metrics");
  CHECK(metrics.acked >= 5);  // metrics acks kept coming meanwhile
  CHECK(a.counters().resends >= 1);
  CHECK(a.counters().connects == 1);  // resent by the alerts stream's own stall timer
  a.stop();
  loop.join();
}

// agent_broker_faults_test's regional partition: the acks for the backlog released when
// the link came back were lost on their way down (the generating agent stopped before
// applying them), so a fresh agent resent records the consumer already held. A consumer
// that acks only when its watermark advances never answered, and the drain waited out
// its 5-minute limit. nova-cloud answers a repeated record with its watermark
// (docs/cloud.md), and so must the consumer that stands in for it.
TEST_CASE("records resent after their acks were lost are answered and the outbox empties",
          "[agent][resend][streams]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  consumer.lose_acks(true);

  HotSamples source(5);
  agent::AgentOptions o = gateway_options(broker);
  o.sample_interval = 10ms;
  o.batch_interval = 1s;  // of sample time: one sample per batch
  o.drain.resend_after = 1s;
  auto created = agent::Agent::create(o, &source);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();
  std::thread loop([&] { a.run(); });

  // Every record arrived, every ack was lost, and the agent went back for lack of one:
  // from here on it only repeats what the consumer holds.
  REQUIRE(consumer.wait_for("gw-1", "metrics", 4, 30s));
  REQUIRE(a.wait_for([](const agent::AgentCounters& c) { return c.resends >= 1; }, 30s));
  consumer.lose_acks(false);
  CHECK(a.wait_for([](const agent::AgentCounters& c) { return c.outbox_records == 0; }, 20s));
  CHECK(consumer.count("gw-1", "metrics").duplicates >= 1);
  a.stop();
  loop.join();
}
