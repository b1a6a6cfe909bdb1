// Paho MQTT C++ 1.2 helpers shared by the broker-hierarchy integration tests and
// bench/hierarchy_bench.cpp: collecting subscribers that can be awaited, publishers with
// a bounded window of unacknowledged QoS 1 messages, concurrent connection of many
// clients, and where and how an identity connects to a hierarchy's broker (endpoint).
// Header-only so the benchmark can use it without the test libraries.
//
// Two Paho behaviours shape this file (measured on Debian 12, Paho C 1.3.12 / C++ 1.2):
//
// - A client that connects while other clients of the same process are already
//   connected and idle takes ~2.1 s; the first takes ~10 ms. All clients of a process
//   share one receive thread that polls the sockets it knew when the poll began, with a
//   1 s timeout; a new socket is only looked at after that poll times out, twice (TCP
//   connect, then CONNACK). Traffic on any existing socket ends the poll early. So
//   connect_all() starts every connect before waiting for any (all complete in ~10 ms),
//   and tests connect all their clients up front. See paho.mqtt.c issue 1430 and PR 1458.
// - Paho buffers at most 100 messages while disconnected and offers no persistence
//   unless asked: publishers here keep their own bounded window of delivery tokens.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mqtt/async_client.h>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "hierarchy_support.h"
#include "nova/bridge/render.h"
#include "nova/security/layout.h"

namespace nova::hiertest {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// MQTT 3.1.1, clean session unless asked otherwise, no automatic reconnect (tests want
// to see a lost connection, not have Paho hide it).
inline mqtt::connect_options client_options(const std::string& username = {},
                                            bool clean_session = true) {
  auto builder = mqtt::connect_options_builder()
                     .mqtt_version(MQTTVERSION_3_1_1)
                     .clean_session(clean_session)
                     .keep_alive_interval(std::chrono::seconds(30))
                     .connect_timeout(std::chrono::seconds(10));
  if (!username.empty()) builder.user_name(username);
  return builder.finalize();
}

// The same with a client certificate of a PKI folder (nova/security/layout.h paths):
// the broker makes its CN the username and the client id (docs/broker-hierarchy.md).
// The URI must be ssl:// or mqtts://.
inline mqtt::connect_options tls_client_options(const std::filesystem::path& pki_dir, const std::string& cn,
                                                bool clean_session = true) {
  const security::Layout pki(pki_dir);
  auto options = client_options({}, clean_session);
  options.set_ssl(mqtt::ssl_options_builder()
                      .trust_store(pki.trust_ca().string())
                      .key_store(pki.identity_cert(cn).string())
                      .private_key(pki.identity_key(cn).string())
                      .enable_server_cert_auth(true)
                      .verify(true)
                      .finalize());
  return options;
}

// Where and how one identity connects to one broker of a test hierarchy.
struct Endpoint {
  std::string uri;
  std::string client_id;
  mqtt::connect_options options;
};

// `identity` at `site`'s broker: a node id (which the ACL lets publish its own up
// topics at its own site only), nova-cloud (the only writer of down topics) or an
// operator enrolled with start_hierarchy (operator_identity(name): reads up only).
// Under mutual TLS it presents that identity's certificate, and the broker makes the CN
// the client id: two connections of one identity to one broker take over each other's
// session, so concurrent readers of one broker need distinct identities. In the
// insecure plaintext mode a node connects anonymously with its id as client id (the
// plaintext ACL's pattern) and anyone else as the cloud service user.
inline Endpoint endpoint(const RunningHierarchy& running, const std::string& site, const std::string& identity,
                         bool clean_session = true) {
  if (running.transport == Transport::mutual_tls) {
    return {running.tls_uri(site), identity, tls_client_options(running.pki_dir(), identity, clean_session)};
  }
  const bool node = running.hierarchy->topology().find_node(identity) != nullptr;
  return {running.hierarchy->uri(site), identity,
          client_options(node ? std::string() : std::string(bridge::kCloudServiceUser), clean_session)};
}

struct Received {
  std::string topic;
  std::string payload;
  bool retained = false;
  bool duplicate = false;  // the DUP flag of the PUBLISH that delivered it
  int qos = 0;
  Clock::time_point at;
};

// One MQTT client that records every message it receives. Thread-safe; waiters wake on
// each arrival (no polling).
class Client : public virtual mqtt::callback {
 public:
  Client(const std::string& uri, const std::string& client_id,
         mqtt::connect_options options = client_options())
      : client_(uri, client_id), options_(std::move(options)) {
    client_.set_callback(*this);
  }
  explicit Client(Endpoint where) : Client(where.uri, where.client_id, std::move(where.options)) {}
  ~Client() override {
    try {
      if (client_.is_connected()) client_.disconnect(0)->wait_for(std::chrono::seconds(5));
      // The members the callbacks use are destroyed before client_: no callback after
      // this. (Paho refuses while a connection is still in progress; then it throws.)
      client_.disable_callbacks();
    } catch (const mqtt::exception&) {  // best effort while unwinding
    }
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  mqtt::async_client& paho() { return client_; }
  const mqtt::connect_options& options() const { return options_; }

  // Runs on Paho's callback thread for every message before it is recorded (the
  // benchmark timestamps there); keep it short. Set it before messages arrive.
  void on_message(std::function<void(const Received&)> hook) {
    std::lock_guard lock(mutex_);
    hook_ = std::move(hook);
  }
  // Keep only counts, not payloads (large floods).
  void record_payloads(bool on) {
    std::lock_guard lock(mutex_);
    record_ = on;
  }

  // Subscribes at QoS 1 and returns once the broker granted it (throws otherwise).
  void subscribe(const std::string& filter, std::chrono::milliseconds timeout = 10s) {
    auto token = client_.subscribe(filter, 1);
    if (!token->wait_for(timeout)) throw std::runtime_error("SUBACK timeout for " + filter);
    // Paho fails the token of a refused single-topic subscription (granted 0x80); the
    // granted QoS is checked as well, by value (the response is a temporary).
    const mqtt::subscribe_response response = token->get_subscribe_response();
    const std::vector<mqtt::ReasonCode> codes = response.get_reason_codes();
    if (codes.empty() || codes.front() != mqtt::ReasonCode::GRANTED_QOS_1) {
      throw std::runtime_error("subscription to " + filter + " refused");
    }
  }

  // Publishes and waits for the PUBACK.
  void publish_wait(const std::string& topic, const std::string& payload, bool retained,
                    std::chrono::milliseconds timeout = 10s) {
    auto token = client_.publish(mqtt::make_message(topic, payload, 1, retained));
    if (!token->wait_for(timeout)) throw std::runtime_error("PUBACK timeout on " + topic);
  }

  // Waits until pred(messages) holds (evaluated under the lock at each arrival).
  template <class Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, timeout, [&] { return pred(messages_); });
  }
  // Waits until at least n messages have arrived.
  bool wait_count(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, timeout, [&] { return count_ >= n; });
  }
  // Returns true if a message arrives within `period`. This is the one legitimate timed
  // wait: proving that nothing more arrives.
  bool arrives_within(std::chrono::milliseconds period) {
    std::unique_lock lock(mutex_);
    const auto before = count_;
    return arrived_.wait_for(lock, period, [&] { return count_ != before; });
  }

  std::size_t count() const {
    std::lock_guard lock(mutex_);
    return count_;
  }
  std::vector<Received> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    messages_.clear();
    count_ = 0;
  }

  bool connected() const { return connected_.load(); }
  // Waits until the broker has closed the connection (e.g. it was stopped).
  bool wait_disconnected(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, timeout, [&] { return !connected_.load(); });
  }
  std::size_t connections_lost() const { return lost_.load(); }

 private:
  void message_arrived(mqtt::const_message_ptr message) override {
    Received received{message->get_topic(), message->get_payload_str(),
                      message->is_retained(), message->is_duplicate(), message->get_qos(),
                      Clock::now()};
    std::lock_guard lock(mutex_);
    if (hook_) hook_(received);
    ++count_;
    if (record_) messages_.push_back(std::move(received));
    arrived_.notify_all();
  }
  void connected(const std::string&) override { connected_ = true; }
  void connection_lost(const std::string&) override {
    std::lock_guard lock(mutex_);
    connected_ = false;
    ++lost_;
    arrived_.notify_all();  // wakes wait_disconnected
  }

  mqtt::async_client client_;
  mqtt::connect_options options_;
  mutable std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<Received> messages_;
  std::size_t count_ = 0;
  bool record_ = true;
  std::function<void(const Received&)> hook_;
  std::atomic<bool> connected_{false};
  std::atomic<std::size_t> lost_{0};
};

// Starts every connect, then waits for each: clients of one process connected one after
// another take ~2.1 s each after the first (see the top of this file).
inline void connect_all(std::initializer_list<Client*> clients,
                        std::chrono::milliseconds timeout = 15s) {
  std::vector<mqtt::token_ptr> tokens;
  for (Client* client : clients) tokens.push_back(client->paho().connect(client->options()));
  for (auto& token : tokens) {
    if (!token->wait_for(timeout)) throw std::runtime_error("connect timeout");
  }
}
inline void connect_all(const std::vector<Client*>& clients,
                        std::chrono::milliseconds timeout = 15s) {
  std::vector<mqtt::token_ptr> tokens;
  for (Client* client : clients) tokens.push_back(client->paho().connect(client->options()));
  for (auto& token : tokens) {
    if (!token->wait_for(timeout)) throw std::runtime_error("connect timeout");
  }
}

// Publishes QoS 1 messages keeping at most `window` unacknowledged; the broker's PUBACK
// completes each token. acked() counts completed deliveries.
class WindowedPublisher {
 public:
  WindowedPublisher(mqtt::async_client& client, std::size_t window,
                    std::chrono::milliseconds ack_timeout = 30s)
      : client_(client), window_(window), ack_timeout_(ack_timeout) {}

  void publish(const std::string& topic, const std::string& payload, bool retained = false) {
    while (pending_.size() >= window_) retire_one();
    pending_.push_back(client_.publish(mqtt::make_message(topic, payload, 1, retained)));
    ++sent_;
  }
  // Waits for every outstanding PUBACK.
  void drain() {
    while (!pending_.empty()) retire_one();
  }
  std::size_t sent() const { return sent_; }
  std::size_t acked() const { return acked_; }

 private:
  void retire_one() {
    if (!pending_.front()->wait_for(ack_timeout_)) {
      throw std::runtime_error("no PUBACK within the timeout (" + std::to_string(acked_) +
                               " acked so far)");
    }
    pending_.pop_front();
    ++acked_;
  }

  mqtt::async_client& client_;
  std::size_t window_;
  std::chrono::milliseconds ack_timeout_;
  std::deque<mqtt::delivery_token_ptr> pending_;
  std::size_t sent_ = 0;
  std::size_t acked_ = 0;
};

}  // namespace nova::hiertest
