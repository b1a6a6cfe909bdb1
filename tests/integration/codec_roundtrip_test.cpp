// The codec over a real broker: payloads encoded by nova::schemas travel through
// Mosquitto with Paho and decode to the value that was sent, on the topics the topic
// API builds.

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <mqtt/async_client.h>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "nova/schemas/codec.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/topic.h"
#include "nova/testing/broker.h"
#include "nova/testing/paho_tls.h"

namespace {

using namespace std::chrono_literals;
using nova::schemas::Bytes;
using nova::testing::Broker;

constexpr auto kTimeout = 10s;

nova::topics::Id id(std::string_view text) {
  auto parsed = nova::topics::Id::parse(text);
  REQUIRE(parsed.ok());
  return std::move(parsed).value();
}

// With the client's certificate of the test PKI (client ids are valid CNs here).
mqtt::connect_options client_options(const Broker& broker, const std::string& client_id) {
  mqtt::connect_options opts = nova::testing::connect_options(broker, client_id);
  opts.set_connect_timeout(5s);
  return opts;
}

// A connected client (no client-side persistence) that queues every message it
// receives for try_consume_message_for.
class Client {
 public:
  Client(const Broker& broker, const std::string& client_id)
      : client_(broker.uri(), client_id) {
    client_.start_consuming();
    REQUIRE(client_.connect(client_options(broker, client_id))->wait_for(kTimeout));
  }
  ~Client() {
    try {
      if (client_.is_connected()) client_.disconnect()->wait_for(kTimeout);
    } catch (const mqtt::exception&) {  // best effort while unwinding a failed test
    }
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Returns once the broker acknowledged the subscription (SUBACK).
  void subscribe(const std::string& filter) {
    REQUIRE(client_.subscribe(filter, 1)->wait_for(kTimeout));
  }

  // Returns once the broker acknowledged the message (PUBACK).
  void publish(const std::string& topic, const Bytes& payload, bool retained) {
    auto message = mqtt::make_message(topic, payload.data(), payload.size(), 1, retained);
    REQUIRE(client_.publish(message)->wait_for(kTimeout));
  }

  // The next message received, or nullptr after kTimeout.
  mqtt::const_message_ptr next() {
    mqtt::const_message_ptr message;
    client_.try_consume_message_for(&message, kTimeout);
    return message;
  }

 private:
  mqtt::async_client client_;
};

std::string_view payload_of(const mqtt::const_message_ptr& message) {
  const auto& payload = message->get_payload_ref();
  return {payload.data(), payload.size()};
}

nova::schemas::NodeState sample_birth() {
  nova::schemas::NodeDescription description;
  description.level = 4;
  description.site = "cloud/eu/par/acc-01";
  description.arch = "x86_64";
  description.version = "0.1.0";
  description.capabilities = {"arm64", "gpu"};
  description.resources = {.cpu_millis = 4000, .memory_mb = 2048, .storage_mb = 16000};
  description.region = "eu-west";

  nova::schemas::NodeState state;
  state.node = "gw-01";
  state.status = nova::schemas::NodeStatus::online;
  state.bdseq = 7;
  state.ts = 1'732'650'000'000;
  state.description = description;
  return state;
}

nova::schemas::MetricsBatch sample_batch(std::size_t samples) {
  nova::schemas::MetricsBatch batch;
  batch.position = {"gw-01", "metrics", 42};
  batch.encoding = nova::schemas::BatchEncoding::zstd;
  for (std::size_t i = 0; i < samples; ++i) {
    const double x = static_cast<double>(i);
    nova::schemas::MetricSample sample;
    sample.ts = 1'732'650'000'000 + i * 1000;
    sample.cpu_pct = 12.5 + x * 0.75;  // 12.5 .. 56.75, exact in binary
    sample.mem_pct = 40.0 + x / 8.0;
    sample.disk_pct = 63.2;             // not exact in binary: must still round-trip
    sample.load1 = 0.1 * x;
    sample.net_rx_bps = 125'000.0 + x * 3.0;
    sample.net_tx_bps = 48'000.0 - x * 2.0;
    if (i % 2 == 0) sample.temp_c = 51.5 + x / 4.0;
    if (i % 3 == 0) sample.throttled = (i % 6 == 0);
    if (i % 5 == 0) sample.power_w = 7.25;
    if (i % 10 == 0) sample.extra = {{"gpu_pct", x}, {"fan_rpm", 2400.0}};
    batch.samples.push_back(sample);
  }
  return batch;
}

}  // namespace

TEST_CASE("a retained NodeState birth reaches a subscriber that connects later",
          "[integration][codec]") {
  Broker broker(nova::testing::mutual_tls());
  const auto node = id("gw-01");
  const std::string topic = nova::topics::up(node, nova::topics::UpKind::state);
  const auto birth = sample_birth();
  const Bytes payload = nova::schemas::encode_cbor(birth);
  REQUIRE_FALSE(payload.empty());

  {
    Client publisher(broker, "it-birth-pub");
    publisher.publish(topic, payload, /*retained=*/true);
  }

  Client subscriber(broker, "it-birth-sub");
  subscriber.subscribe(nova::topics::up_all());
  const auto message = subscriber.next();
  REQUIRE(message != nullptr);
  CHECK(message->is_retained());
  CHECK(message->get_topic() == topic);

  const auto parsed = nova::topics::parse(message->get_topic());
  REQUIRE(parsed.ok());
  const auto* up = std::get_if<nova::topics::UpTopic>(&*parsed);
  REQUIRE(up != nullptr);
  CHECK(up->node == node);
  CHECK(up->kind == nova::topics::UpKind::state);

  const auto decoded = nova::schemas::decode_cbor<nova::schemas::NodeState>(payload_of(message));
  INFO((decoded.ok() ? std::string() : decoded.error().message()));
  REQUIRE(decoded.ok());
  CHECK(decoded.value() == birth);
}

TEST_CASE("a zstd MetricsBatch of 60 samples travels at QoS 1 and decodes equal",
          "[integration][codec]") {
  Broker broker(nova::testing::mutual_tls());
  const auto node = id("gw-01");
  const std::string topic = nova::topics::up(node, nova::topics::UpKind::metrics);
  const auto batch = sample_batch(60);
  const Bytes payload = nova::schemas::encode_cbor(batch);

  auto plain = batch;
  plain.encoding = nova::schemas::BatchEncoding::plain;
  CHECK(payload.size() < nova::schemas::encode_cbor(plain).size());  // really compressed

  Client subscriber(broker, "it-metrics-sub");
  subscriber.subscribe(topic);
  Client publisher(broker, "it-metrics-pub");
  publisher.publish(topic, payload, /*retained=*/false);

  const auto message = subscriber.next();
  REQUIRE(message != nullptr);
  CHECK(message->get_qos() == 1);
  CHECK_FALSE(message->is_retained());

  const auto parsed = nova::topics::parse(message->get_topic());
  REQUIRE(parsed.ok());
  const auto* up = std::get_if<nova::topics::UpTopic>(&*parsed);
  REQUIRE(up != nullptr);
  CHECK(up->node == node);
  CHECK(up->kind == nova::topics::UpKind::metrics);

  const auto decoded =
      nova::schemas::decode_cbor<nova::schemas::MetricsBatch>(payload_of(message));
  INFO((decoded.ok() ? std::string() : decoded.error().message()));
  REQUIRE(decoded.ok());
  CHECK(decoded.value().encoding == nova::schemas::BatchEncoding::zstd);
  CHECK(decoded.value().samples.size() == 60);
  CHECK(decoded.value() == batch);
}
