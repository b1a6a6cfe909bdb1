// The real nova-agent binary against a real broker: birth, a task run end to end,
// malformed downward messages, hot reload of its config file, clean shutdown, sensor
// readings, and local decisions (alerts, decision records, models).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <fstream>
#include <mqtt/async_client.h>
#include <mutex>
#include <sstream>
#include <thread>

#include "nova/schemas/codec.h"
#include "nova/testing/publish.h"
#include "nova/testing/ack_consumer.h"
#include "nova/testing/agent_process.h"
#include "nova/testing/broker.h"
#include "nova/testing/child_process.h"
#include "nova/testing/paho_tls.h"
#include "nova/testing/poll.h"

using namespace nova;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kSite = "cloud/eu/par/par-a1";

// The test agent's config (nova/testing/agent_process.h) as node gw-proc at kSite, with
// 200 ms samples unless `extra` sets the metrics section itself.
void write_config(const fs::path& file, const std::string& uri, const fs::path& dir,
                  const std::string& extra = "") {
  const bool own_metrics = extra.find("metrics:") != std::string::npos;
  testing::write_agent_config(file, "gw-proc", kSite, 4, uri, dir,
                              (own_metrics ? "" : "metrics: {interval_ms: 200, batch_interval_s: 10}\n") + extra);
}

// Publishes `payload` as it is, except on a down topic, where it goes in an envelope
// signed by the key test agents trust (signer.h), as nova-cloud sends it.
void publish(const std::string& uri, const std::string& topic, const std::string& payload, bool retained = false) {
  testing::publish_as_cloud(uri, topic, payload, retained);
}

std::string cbor(const auto& message) {
  const schemas::Bytes b = schemas::encode_cbor(message);
  return std::string(b.begin(), b.end());
}

std::string down_topic(const char* kind) { return std::string("nova/v1/down/") + kSite + "/gw-proc/" + kind; }

}  // namespace

TEST_CASE("nova-agent runs tasks, survives bad input, reloads config, stops cleanly", "[agent][process]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const fs::path dir = broker.data_dir() / "agent";
  fs::create_directories(dir);
  const fs::path config = dir / "agent.yaml";
  write_config(config, broker.uri(), dir);
  testing::AgentProcess agent(NOVA_AGENT_BIN, config, dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  // Malformed task, config and ack: logged with the reason, and the agent keeps serving.
  publish(broker.uri(), down_topic("task"), "\xa1\x61v\x02");
  publish(broker.uri(), down_topic("config"), "not cbor at all");
  publish(broker.uri(), down_topic("ack"), cbor(schemas::Ack{"someone-else", 1, {{"metrics", 1}}}));
  REQUIRE(agent.wait_log("event=bad_message", 10s, 3));
  const std::string log = agent.text();
  CHECK_THAT(log, Catch::Contains("task.v: unsupported schema version 2"));
  CHECK_THAT(log, Catch::Contains("ack for node 'someone-else'"));

  // A valid task runs and its result comes back up through the outbox.
  schemas::Task task{"t-1", std::nullopt, {"/bin/sh", "-c", "echo hello from task"}, {}, 10000, 0, 0, 1, 1, std::nullopt};
  publish(broker.uri(), down_topic("task"), cbor(task));
  REQUIRE(consumer.wait_for("gw-proc", "results", 1, 30s));

  // Metrics batches arrive and are acknowledged (batch every 10 s of 200 ms samples).
  REQUIRE(consumer.wait_for("gw-proc", "metrics", 1, 30s));

  // Hot reload: a valid change applies without restart; an invalid one is refused
  // naming the key, and the agent keeps running on the old configuration.
  write_config(config, broker.uri(), dir, "drain: {rate_per_s: 25}\n");
  REQUIRE(agent.wait_log("event=config_applied", 10s));
  write_config(config, broker.uri(), dir, "drain: {burst: 0}\n");
  REQUIRE(agent.wait_log("event=reload_refused", 10s));
  CHECK_THAT(agent.text(), Catch::Contains("drain.burst"));
  ::kill(agent.pid(), SIGHUP);
  REQUIRE(agent.wait_log("event=reload_refused", 10s, 2));

  const int status = agent.signal(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_THAT(agent.text(), Catch::Contains("event=stopped"));
  CHECK(consumer.undecodable() == 0);
}

TEST_CASE("nova-agent refuses a bad config file with exit code 2 naming the key", "[agent][process]") {
  const fs::path dir = fs::temp_directory_path() / ("nova-agent-badcfg-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // Plaintext uri on purpose: the agent exits on the config before any connect.
  write_config(dir / "agent.yaml", "tcp://127.0.0.1:1", dir, "metrics: {interval_ms: 5}\n");
  {
    testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
    const int status = agent.wait();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 2);
    CHECK_THAT(agent.text(), Catch::Contains("metrics"));
  }
  fs::remove_all(dir);
}

namespace {

// Collects the messages of one topic filter.
class Collector final : public virtual mqtt::callback {
 public:
  Collector(const std::string& uri, const std::string& filter)
      : client_(uri, "test-collector-" + std::to_string(next_id_++), mqtt::create_options(MQTTVERSION_3_1_1)) {
    client_.set_callback(*this);
    client_.connect(testing::connect_options(uri, "test-collector"))->wait();
    client_.subscribe(filter, 1)->wait();
  }
  ~Collector() override {
    try {
      client_.disconnect()->wait();
    } catch (const mqtt::exception&) {
    }
  }
  void message_arrived(mqtt::const_message_ptr msg) override {
    std::lock_guard lock(mutex_);
    payloads_.push_back(msg->get_payload_str());
    cv_.notify_all();
  }
  // Waits until `n` payloads arrived; returns how many did.
  std::size_t wait_count(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return payloads_.size() >= n; });
    return payloads_.size();
  }
  std::vector<std::string> payloads() {
    std::lock_guard lock(mutex_);
    return payloads_;
  }
  // Waits for a payload that satisfies `pred`; returns it, or "" on timeout.
  std::string wait_for(const std::function<bool(const std::string&)>& pred, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    std::string found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& p : payloads_) {
        if (pred(p)) {
          found = p;
          return true;
        }
      }
      return false;
    });
    return found;
  }

 private:
  static inline int next_id_ = 0;  // client ids must differ: the broker drops a duplicate
  mqtt::async_client client_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> payloads_;
};

// Publishes each payload as one QoS 1 message with mosquitto_pub (-l: one message per
// line of stdin, all on one connection, as fast as the broker takes them); returns its
// exit status.
int mosquitto_pub(const testing::Broker& broker, const std::string& topic, const std::vector<std::string>& payloads) {
  const std::string cmd = "mosquitto_pub " + broker.mosquitto_client_args("test-pub") + " -q 1 -i test-pub-" +
                          std::to_string(::getpid()) + " -t '" + topic + "' -l";
  FILE* in = ::popen(cmd.c_str(), "w");
  if (in == nullptr) return -1;
  for (const std::string& p : payloads) {
    std::fwrite(p.data(), 1, p.size(), in);
    std::fputc('\n', in);
  }
  return ::pclose(in);
}

}  // namespace

TEST_CASE("nova-agent survives readings with invalid UTF-8 and answers each with an error", "[agent][process][sensors]") {
  testing::Broker broker(testing::mutual_tls());
  const fs::path dir = broker.data_dir() / "agent-utf8";
  fs::create_directories(dir);
  write_config(dir / "agent.yaml", broker.uri(), dir);
  Collector errors(broker.uri(), "nova/v1/sensor/gw-proc/t1/error");
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  // The 0xff byte inside a string (a key), then after the document.
  REQUIRE(mosquitto_pub(broker, "nova/v1/sensor/gw-proc/t1",
                        {"{\"v\":1,\"ts\":1732650000000,\"values\":{\"t\xff\":1}}",
                         "{\"v\":1,\"ts\":1732650000000,\"values\":{\"t\":1}}\xff"}) == 0);
  REQUIRE(errors.wait_count(2, 20s) == 2);
  for (const std::string& reply : errors.payloads()) {
    auto error = schemas::decode_json<schemas::SensorError>(reply);
    REQUIRE(error.ok());
    CHECK(error->field.empty());  // the payload as a whole is not JSON
    CHECK_THAT(error->reason, Catch::Contains("\\xff"));
  }
  CHECK(agent.running());
  // And it goes on serving: the next reading is answered too.
  publish(broker.uri(), "nova/v1/sensor/gw-proc/t1", R"({"v":1,"ts":1732650000000,"values":{"temp":"warm"}})");
  CHECK(errors.wait_count(3, 20s) == 3);
  const int status = agent.signal(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("nova-agent answers every one of 200 bad readings sent at once, and a quiet sensor still gets through", "[agent][process][sensors]") {
  // The readings wait in the agent's session while it is stopped; with no in-flight cap
  // the broker then hands all of them over at once, so the agent refuses 200 readings
  // in one go (Paho's client refuses publishes past 100 waiting to be sent).
  testing::BrokerOptions options = testing::mutual_tls();
  options.extra_config = "max_inflight_messages 0\n";
  testing::Broker broker(options);
  const fs::path dir = broker.data_dir() / "agent-burst";
  fs::create_directories(dir);
  write_config(dir / "agent.yaml", broker.uri(), dir);
  {
    testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent-first.log");
    REQUIRE(agent.wait_log("event=connected", 20s));  // its session now holds the sensor filter
    REQUIRE(WIFEXITED(agent.signal(SIGTERM)));
  }
  Collector errors(broker.uri(), "nova/v1/sensor/gw-proc/noisy/error");
  Collector batches(broker.uri(), "nova/v1/up/gw-proc/metrics");
  std::vector<std::string> flood;
  for (int i = 0; i < 200; ++i) flood.push_back(R"({"v":1,"ts":)" + std::to_string(i) + R"(,"values":{"t":"warm"}})");
  REQUIRE(mosquitto_pub(broker, "nova/v1/sensor/gw-proc/noisy", std::vector(flood.begin(), flood.begin() + 100)) == 0);
  publish(broker.uri(), "nova/v1/sensor/gw-proc/quiet", R"({"v":1,"ts":1732650000000,"values":{"temp":21.5}})");
  REQUIRE(mosquitto_pub(broker, "nova/v1/sensor/gw-proc/noisy", std::vector(flood.begin() + 100, flood.end())) == 0);

  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=sensor_reading_refused", 30s, 200));
  CHECK(errors.wait_count(200, 30s) == 200);
  CHECK(agent.text().find("event=sensor_reply_dropped") == std::string::npos);
  const std::string batch = batches.wait_for(
      [](const std::string& p) {
        auto b = schemas::decode_cbor<schemas::MetricsBatch>(p);
        if (!b) return false;
        for (const auto& s : b->samples) {
          if (s.extra.count("sensor.quiet.temp") != 0) return true;
        }
        return false;
      },
      40s);
  CHECK_FALSE(batch.empty());
  agent.signal(SIGTERM);
}

TEST_CASE("nova-agent answers a malformed sensor reading and sends good ones up in its metrics", "[agent][process][sensors]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const fs::path dir = broker.data_dir() / "agent-sensors";
  fs::create_directories(dir);
  write_config(dir / "agent.yaml", broker.uri(), dir);
  Collector errors(broker.uri(), "nova/v1/sensor/gw-proc/t1/error");
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  publish(broker.uri(), "nova/v1/sensor/gw-proc/t1", R"({"v":1,"ts":1732650000000,"values":{"temp":"warm"}})");
  const std::string reply = errors.wait_for([](const std::string&) { return true; }, 20s);
  REQUIRE_FALSE(reply.empty());
  auto error = schemas::decode_json<schemas::SensorError>(reply);  // JSON, like the reading
  REQUIRE(error.ok());
  CHECK(error->sensor == "t1");
  CHECK_THAT(error->field, Catch::Contains("values.temp"));
  REQUIRE(agent.wait_log("event=sensor_reading_refused", 10s));

  Collector batches(broker.uri(), "nova/v1/up/gw-proc/metrics");
  publish(broker.uri(), "nova/v1/sensor/gw-proc/t1", R"({"v":1,"ts":1732650000000,"values":{"temp":21.5}})");
  const std::string batch = batches.wait_for(
      [](const std::string& p) {
        auto b = schemas::decode_cbor<schemas::MetricsBatch>(p);
        if (!b) return false;
        for (const auto& s : b->samples) {
          if (s.extra.count("sensor.t1.temp") != 0) return true;
        }
        return false;
      },
      40s);
  CHECK_FALSE(batch.empty());  // the reading went up inside the acknowledged metrics stream
  agent.signal(SIGTERM);
}

TEST_CASE("nova-agent decides locally: an alert and its decision reach the cloud on their streams", "[agent][process][decisions]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const fs::path dir = broker.data_dir() / "agent-decisions";
  fs::create_directories(dir);
  // Any real filesystem is at least 1% full: the first sample crosses this level. The
  // other levels and the anomaly detector are off, so the host's own load and noise
  // cannot add alerts.
  write_config(dir / "agent.yaml", broker.uri(), dir,
               "alerts: {disk_pct_warning: 1, cpu_pct_warning: 0, cpu_pct_critical: 0, mem_pct_warning: 0,"
               " mem_pct_critical: 0, temp_c_warning: 0, temp_c_critical: 0}\nanomaly: {zscore: 0}\n");
  Collector decisions(broker.uri(), "nova/v1/up/gw-proc/decision");
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  REQUIRE(consumer.wait_for("gw-proc", "alerts", 1, 30s));
  REQUIRE(consumer.wait_for("gw-proc", "decisions", 1, 30s));
  const std::string payload = decisions.wait_for(
      [](const std::string& p) {
        auto d = schemas::decode_cbor<schemas::DecisionRecord>(p);
        return d && d->kind == "threshold_alert";
      },
      20s);
  REQUIRE_FALSE(payload.empty());
  auto d = schemas::decode_cbor<schemas::DecisionRecord>(payload);
  REQUIRE(d.ok());
  CHECK(d->inputs.count("disk") == 1);
  CHECK(d->inputs.at("threshold") == 1);
  CHECK(d->action == "alerted");
  CHECK(d->position.stream == "decisions");
  CHECK_THAT(agent.text(), Catch::Contains("event=alert"));
  // Once per condition, not per sample (200 ms samples, repeat_s 300).
  CHECK(consumer.count("gw-proc", "alerts").seqs.size() == 1);

  // A model of a kind this agent does not run is refused with the reason; a zscore
  // model is put in force.
  publish(broker.uri(), down_topic("model"), cbor(schemas::Model{"m1", 1, "linear", {{"slope", 2}}, {}, 1}), true);
  REQUIRE(agent.wait_log("event=bad_message", 10s));
  CHECK_THAT(agent.text(), Catch::Contains("model kind 'linear' is not supported"));
  publish(broker.uri(), down_topic("model"),
          cbor(schemas::Model{"m1", 2, "zscore", {{"threshold", 6}, {"min_samples", 120}}, {}, 1}), true);
  REQUIRE(agent.wait_log("event=model_applied", 10s));
  CHECK_THAT(agent.text(), Catch::Contains("min_samples=120"));

  agent.signal(SIGTERM);
  CHECK(consumer.undecodable() == 0);
}

TEST_CASE("nova-agent raises a robust anomaly on a sensor stream on its local topic and upward", "[agent][process][decisions]") {
  testing::Broker broker(testing::mutual_tls());
  testing::AckConsumer consumer(broker.uri());
  const fs::path dir = broker.data_dir() / "agent-anomaly";
  fs::create_directories(dir);
  // Threshold alerts off, so the host's own state adds nothing; the default detector
  // rule (sensor.* mad at 6) with a short warm-up.
  const std::string no_thresholds =
      "alerts: {disk_pct_warning: 0, disk_pct_critical: 0, cpu_pct_warning: 0, cpu_pct_critical: 0,"
      " mem_pct_warning: 0, mem_pct_critical: 0, temp_c_warning: 0, temp_c_critical: 0}\n";
  write_config(dir / "agent.yaml", broker.uri(), dir,
               no_thresholds + "anomaly: {streams: [\"sensor.* mad threshold=6 min_samples=15\"]}\n");
  // The local alert topic as an outside client sees it: mosquitto_sub, payloads in hex,
  // line-buffered (stdbuf) so that each line is in the file when it is printed.
  const fs::path local = dir / "local.txt";
  testing::ChildProcess sub;
  sub.start({"/bin/sh", "-c",
             "exec stdbuf -oL mosquitto_sub " + broker.mosquitto_client_args("local-actuator") +
                 " -q 1 -d -t nova/v1/local/gw-proc/alert -F 'payload %x' >'" + local.string() + "'"},
            dir / "sub.err", false);
  const auto local_text = [&] {
    std::ifstream in(local);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  REQUIRE(testing::poll_until([&] { return local_text().find("SUBACK") != std::string::npos; }, 10s));
  testing::AgentProcess agent(NOVA_AGENT_BIN, dir / "agent.yaml", dir / "agent.log");
  REQUIRE(agent.wait_log("event=connected", 20s));

  // A steady reading (21.0 .. 21.2 degC), one per sample or so, then one far off.
  const auto reading = [](double v) {
    return R"({"v":1,"ts":1732650000000,"values":{"temp":)" + std::to_string(v) + "}}";
  };
  for (int i = 0; i < 25; ++i) {
    REQUIRE(mosquitto_pub(broker, "nova/v1/sensor/gw-proc/t1", {reading(21.0 + 0.1 * (i % 3))}) == 0);
    std::this_thread::sleep_for(250ms);  // a sensor publishing at 4 Hz (the agent samples at 5 Hz)
  }
  CHECK(local_text().find("payload ") == std::string::npos);  // nothing judged anomalous yet
  REQUIRE(mosquitto_pub(broker, "nova/v1/sensor/gw-proc/t1", {reading(35)}) == 0);

  REQUIRE(testing::poll_until([&] { return local_text().find("payload ") != std::string::npos; }, 20s));
  const std::string text = local_text();
  const std::size_t at = text.find("payload ") + 8;
  std::string hex = text.substr(at, text.find('\n', at) - at);
  schemas::Bytes bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  auto alert = schemas::decode_cbor<schemas::Alert>(bytes);
  REQUIRE(alert.ok());
  CHECK(alert->metric == "sensor.t1.temp");
  CHECK(alert->observed == 35);
  CHECK_THAT(alert->message, Catch::Contains("robust standard deviations above its median"));
  CHECK(alert->position.stream == "alerts");  // the same record that goes upward

  // Upward too: stored, sent and acknowledged end to end, with its decision record.
  REQUIRE(consumer.wait_for("gw-proc", "alerts", 1, 30s));
  REQUIRE(consumer.wait_for("gw-proc", "decisions", 1, 30s));
  CHECK(consumer.count("gw-proc", "alerts").seqs.size() == 1);

  // Hot reload: a rule the agent cannot use is refused naming the key, item and field;
  // a good one applies.
  write_config(dir / "agent.yaml", broker.uri(), dir, no_thresholds + "anomaly: {streams: [\"sensor.* seasonal\"]}\n");
  REQUIRE(agent.wait_log("event=reload_refused", 10s));
  CHECK_THAT(agent.text(), Catch::Contains("anomaly.streams: item 0 ('sensor.* seasonal'): season:"));
  write_config(dir / "agent.yaml", broker.uri(), dir,
               no_thresholds + "anomaly: {streams: [\"sensor.* seasonal season=24\"]}\n");
  REQUIRE(agent.wait_log("event=config_applied", 10s));
  CHECK_THAT(agent.text(), Catch::Contains("sensor.* seasonal season=24"));
  agent.signal(SIGTERM);
  sub.signal(SIGTERM);
}
