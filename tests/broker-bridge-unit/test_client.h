// A Paho client for the broker-bridge tests: QoS 1 publishes that wait for the PUBACK,
// subscriptions that report the SUBACK, and "everything up to a marker" reads, which
// prove a message's absence without waiting for a timeout (see acl_test.cpp).
// With a TlsIdentity it connects with that certificate (ssl:// URIs).
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <mqtt/async_client.h>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nova::bridge::testing {

using namespace std::chrono_literals;

struct TlsIdentity {
  std::filesystem::path ca_file;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
};

using Received = std::vector<std::pair<std::string, std::string>>;  // topic, payload

class TestClient {
 public:
  TestClient(const std::string& uri, const std::string& id, const std::string& user = "",
             const std::optional<TlsIdentity>& tls = std::nullopt)
      : client_(uri, id) {
    client_.start_consuming();
    auto builder = mqtt::connect_options_builder();
    builder.mqtt_version(MQTTVERSION_3_1_1).clean_session(true).connect_timeout(5s);
    if (!user.empty()) builder.user_name(user);
    if (tls) {
      builder.ssl(mqtt::ssl_options_builder()
                      .trust_store(tls->ca_file.string())
                      .key_store(tls->cert_file.string())
                      .private_key(tls->key_file.string())
                      .enable_server_cert_auth(true)
                      .verify(true)
                      .finalize());
    }
    client_.connect(builder.finalize())->wait();
  }
  ~TestClient() {
    try {
      if (client_.is_connected()) client_.disconnect()->wait();
    } catch (const mqtt::exception&) {  // already gone (e.g. disconnected by the broker)
    }
  }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  // True when the broker granted the subscription (SUBACK without 0x80).
  bool subscribe(const std::string& filter) {
    try {
      client_.subscribe(filter, 1)->wait();
      return true;
    } catch (const mqtt::exception&) {
      return false;
    }
  }
  // QoS 1; returns once the broker's PUBACK arrived.
  void publish(const std::string& topic, const std::string& payload, bool retained = false) {
    client_.publish(mqtt::make_message(topic, payload, 1, retained))->wait();
  }
  // Everything received up to and including a message on `marker`.
  Received until(const std::string& marker) {
    Received got;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    mqtt::const_message_ptr m;
    while (client_.try_consume_message_until(&m, deadline) && m) {
      got.emplace_back(m->get_topic(), m->get_payload_str());
      if (m->get_topic() == marker) return got;
    }
    FAIL("no message on " << marker << " within 10 s");
    return got;
  }
  // Waits for Paho's connection-lost notice (an empty message in the consumer queue).
  bool wait_connection_lost() {
    mqtt::const_message_ptr m;
    while (client_.try_consume_message_for(&m, 10s)) {
      if (!m) return true;
    }
    return false;
  }
  mqtt::async_client& paho() { return client_; }

 private:
  mqtt::async_client client_;
};


}  // namespace nova::bridge::testing
