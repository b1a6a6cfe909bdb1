// Agent::deliver, the agent's handling of one incoming message, without a broker: a
// handler that throws is a counted bad message and the agent goes on.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <stdexcept>

#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"
#include "nova/testing/signer.h"

using namespace nova;
namespace fs = std::filesystem;

TEST_CASE("a message whose handler throws is counted as a bad message and the agent goes on", "[agent][deliver]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-deliver-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    agent::AgentOptions o;
    o.birth.node = "gw-1";
    o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
    o.broker_uri = "tcp://127.0.0.1:1";  // never reached: run() is not called
    o.outbox.dir = dir / "outbox";
    o.state_dir = dir / "state";
    o.control.keys = {testing::test_signer().verify_key()};
    int configs = 0;
    o.on_remote_config = [&](const schemas::Config&) {
      if (++configs == 1) throw std::runtime_error("boom");
    };
    auto created = agent::Agent::create(std::move(o), nullptr);
    REQUIRE(created.ok());
    agent::Agent& a = *created.value();

    schemas::Config config;
    config.revision = 1;
    config.values = {{"drain.rate_per_s", std::int64_t{25}}};
    const schemas::Bytes b = schemas::encode_cbor(config);
    const std::string topic = "nova/v1/down/cloud/eu/par/par-a1/gw-1/config";
    const std::string message(b.begin(), b.end());
    REQUIRE_NOTHROW(a.deliver(topic, testing::test_signer().sign(topic, message)));
    CHECK(a.counters().handler_failures == 1);
    CHECK(a.counters().bad_messages == 1);
    a.deliver(topic, testing::test_signer().sign(topic, message));  // the next one is handled
    CHECK(configs == 2);
    CHECK(a.counters().configs_received == 2);
    CHECK(a.counters().handler_failures == 1);
  }
  fs::remove_all(dir);
}

TEST_CASE("every batch the agent stores decodes, however many sensor gauges its samples carry", "[agent][deliver][sensors]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-batches-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  {
    agent::AgentOptions o;
    o.birth.node = "gw-1";
    o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
    o.broker_uri = "tcp://127.0.0.1:1";  // never reached: run() is not called
    o.outbox.dir = dir / "outbox";
    o.outbox.sync = false;
    o.state_dir = dir / "state";
    o.batch_interval = std::chrono::seconds(4096);  // the most samples a batch may hold
    auto created = agent::Agent::create(std::move(o), nullptr);
    REQUIRE(created.ok());
    agent::Agent& a = *created.value();
    std::mt19937_64 rng(7);
    // Four sensors fill the 128 sensor gauges before every sample, with values that do
    // not compress, next to 120 host gauges: 2,000 samples of 250 gauges.
    for (int i = 0; i < 2000; ++i) {
      for (int s = 0; s < 4; ++s) {
        schemas::SensorReading r;
        r.ts = 1732650000000;
        for (int v = 0; v < 32; ++v) r.values["v" + std::to_string(v)] = static_cast<double>(rng() % 1000000) / 1000.0;
        const schemas::Bytes b = schemas::encode_cbor(r);
        a.deliver("nova/v1/sensor/gw-1/s" + std::to_string(s), std::string(b.begin(), b.end()));
      }
      schemas::MetricSample sample;
      sample.ts = 1732650000000 + static_cast<std::uint64_t>(i) * 1000;
      for (int g = 0; g < 119; ++g) sample.extra["host.g" + std::to_string(g)] = static_cast<double>(rng() % 100000) / 10.0;
      a.add_sample(sample);
    }
    a.flush_batch();
    CHECK(a.counters().sensor_refused == 0);
    auto records = a.outbox().read("metrics", 0, 1000);
    REQUIRE(records.ok());
    REQUIRE_FALSE(records->empty());
    std::size_t samples = 0;
    for (const auto& r : *records) {
      auto batch = schemas::decode_cbor<schemas::MetricsBatch>(r.payload);
      INFO("record " << r.seq << " of " << r.payload.size() << " bytes");
      REQUIRE(batch.ok());
      samples += batch->samples.size();
    }
    CHECK(samples == 2000);  // split, never lost
    CHECK(records->size() > 1);
  }
  fs::remove_all(dir);
}

TEST_CASE("the control gate counts each refusal by reason and applies a retained message once per run",
          "[agent][deliver][signing]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-deliver-gate-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string config_topic = "nova/v1/down/cloud/eu/par/par-a1/gw-1/config";
  const std::string ack_topic = "nova/v1/down/cloud/eu/par/par-a1/gw-1/ack";
  schemas::Config config;
  config.revision = 1;
  config.values = {{"drain.rate_per_s", std::int64_t{25}}};
  const schemas::Bytes cb = schemas::encode_cbor(config);
  const std::string config_cbor(cb.begin(), cb.end());
  const std::string older = testing::test_signer().sign(config_topic, config_cbor);
  const std::string newer = testing::test_signer().sign(config_topic, config_cbor);
  const schemas::Bytes ab = schemas::encode_cbor(schemas::Ack{"gw-1", 1, {{"metrics", 0}}});
  const std::string ack = testing::test_signer().sign(ack_topic, std::string(ab.begin(), ab.end()));
  auto make = [&](int& configs) {
    agent::AgentOptions o;
    o.birth.node = "gw-1";
    o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
    o.broker_uri = "tcp://127.0.0.1:1";  // never reached: run() is not called
    o.outbox.dir = dir / "outbox";
    o.state_dir = dir / "state";
    o.control.keys = {testing::test_signer().verify_key()};
    o.on_remote_config = [&](const schemas::Config&) { ++configs; };
    return agent::Agent::create(std::move(o), nullptr).value();
  };
  {
    int configs = 0;
    auto a = make(configs);
    a->deliver(config_topic, newer);
    a->deliver(config_topic, newer);  // the broker's re-delivery on a reconnect
    a->deliver(config_topic, older);  // issued before the one in force
    a->deliver(config_topic, config_cbor);  // unsigned
    a->deliver(ack_topic, ack);
    a->deliver(ack_topic, ack);
    CHECK(configs == 1);
    const agent::AgentCounters c = a->counters();
    CHECK(c.control_duplicates == 1);
    CHECK(c.control_stale == 1);
    CHECK(c.control_unsigned == 1);
    CHECK(c.control_replayed == 1);
    CHECK(c.acks == 1);
    CHECK(c.control_refused() == 3);
    CHECK(c.bad_messages == 0);
  }
  {
    // Restarted on the same state: the config in force is put in force again, once; the
    // ack is still a replay.
    int configs = 0;
    auto a = make(configs);
    a->deliver(config_topic, newer);
    a->deliver(config_topic, newer);
    a->deliver(ack_topic, ack);
    CHECK(configs == 1);
    CHECK(a->counters().control_duplicates == 1);
    CHECK(a->counters().control_replayed == 1);
  }
  fs::remove_all(dir);
}
