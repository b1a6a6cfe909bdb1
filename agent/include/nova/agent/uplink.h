// The agent's MQTT transport to its local broker (the Paho C asynchronous API, MQTTAsync,
// used as a plain transport), in plain MQTT or in TLS with a client certificate (see
// docs/agent.md, "TLS").
//
// Paho's own offline buffer (100 messages) and automatic reconnect are not used: Paho
// reports message loss during automatic reconnect, and the outbox is the only buffer
// that matters. Instead the agent's loop decides when to connect (jittered exponential
// back-off), what to publish (from the outbox), and treats every publish as in flight
// until the broker's PUBACK; end-to-end safety comes from the cloud's acks, not from
// Paho.
//
// Threading: Paho calls back on its own threads; Uplink turns every callback into an
// Event on a queue that the agent's single loop thread drains with wait(). All other
// methods are called from that loop thread, except renew() and wake().
//
// TLS: Paho reads the three files at every connect (a new TLS context per connection),
// so a rotated certificate is used from the next reconnect on; renew() makes that
// reconnect happen now. Only the Paho library the URI needs is loaded (paho_api.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/security/tls_files.h"

namespace nova::agent {
namespace detail {
struct PahoApi;
}

// The TLS identity, its check and the plaintext test have one home, shared with
// nova-cloud: nova/security/tls_files.h.
using security::is_plaintext_uri;
using security::TlsFileProblem;
using security::TlsFiles;

// security::check_tls_files on the OpenSSL the agent loads at run time (paho_api.h), so
// that a plaintext agent never maps libcrypto.
std::optional<TlsFileProblem> check_tls_files(const TlsFiles& files);

struct UplinkOptions {
  std::string uri;        // tcp://, mqtt://, ws:// (plain); ssl://, mqtts://, wss:// (TLS)
  std::optional<TlsFiles> tls;  // required for a TLS uri, ignored otherwise
  std::string client_id;  // the node id: stable, so the broker keeps the session
  std::chrono::seconds keepalive{30};
  std::optional<std::string> username;
  // Last will: published by the broker if this client vanishes without DISCONNECT.
  std::string will_topic;
  std::string will_payload;
  // Called on Paho's thread for each incoming message before Paho acknowledges it;
  // must be thread-safe and quick (see inbox.h). Optional.
  std::function<void(const std::string& topic, const std::string& payload)> before_ack;
};

// What the broker answered for one filter of a subscribe (its SUBACK).
struct SubscriptionGrant {
  static constexpr int kRefused = 0x80;  // the SUBACK failure code
  std::string filter;
  int qos = kRefused;  // the QoS granted (0..2), or kRefused
};

struct UplinkEvent {
  enum class Kind { connected, connect_failed, connection_lost, message, delivered, subscribed };
  Kind kind;
  std::string topic;    // message
  std::string payload;  // message; reason for connect_failed / connection_lost / a failed subscribe
  std::vector<SubscriptionGrant> grants;  // subscribed: one per filter, in request order
};

class Uplink {
 public:
  explicit Uplink(UplinkOptions options);
  ~Uplink();

  // Starts an asynchronous connect (clean session false, MQTT 3.1.1, with the will).
  // The outcome arrives as a connected or connect_failed event.
  void connect();
  // Replaces the will used by the next connect() (a new bdseq per connection).
  void set_will_payload(std::string payload) { options_.will_payload = std::move(payload); }
  // Clean DISCONNECT (the broker then does not publish the will), bounded by `timeout`.
  void disconnect(std::chrono::milliseconds timeout);
  bool connected() const;

  // QoS 1 subscribe; call after a connected event. The broker's answer arrives as a
  // subscribed event with a grant per filter; a subscribe the broker or Paho failed as a
  // whole reports every filter refused, with the reason in payload.
  void subscribe(const std::vector<std::string>& filters);

  // Publishes at QoS 1 and tracks the delivery until PUBACK. Returns false if not
  // connected (nothing is sent).
  bool publish(const std::string& topic, const std::string& payload, bool retained,
               std::uint64_t tag = 0);
  // Tags of publishes acknowledged by the broker since the last call.
  std::vector<std::uint64_t> take_delivered();
  // Publishes still awaiting PUBACK. Cleared when the connection is lost.
  std::size_t in_flight() const;

  // Waits until an event is queued or `deadline` passes; returns queued events.
  std::vector<UplinkEvent> wait(std::chrono::steady_clock::time_point deadline);
  // Wakes wait() from another thread (e.g. a signal-handling thread).
  void wake();
  // Any thread: drop the connection (clean DISCONNECT, so no will) from the loop thread's
  // next wait(), which reports it as connection_lost, so that the next connect reads the
  // TLS files again. For a rotated certificate. Nothing if not connected.
  void renew();

 private:
  struct Callbacks;  // Paho's C callbacks (uplink.cpp)
  void push(UplinkEvent e);

  void take_renew();  // loop thread: performs a requested renew()

  UplinkOptions options_;
  const detail::PahoApi& paho_;  // the library this URI needs (paho_api.h)
  void* client_ = nullptr;  // MQTTAsync handle
  mutable std::mutex mutex_;  // guards events_, woken_, pending_'s states, disconnected_
  std::condition_variable cv_;
  std::deque<UplinkEvent> events_;
  bool woken_ = false;
  bool renew_ = false;
  std::string tls_error_;  // OpenSSL's last error text of this connection attempt
  bool disconnected_ = false;  // the last disconnect() completed
  // One per publish, the context of its completion callbacks: owned here so that its
  // address stays valid until Paho reports the outcome (or the client is destroyed).
  struct Pending;
  std::vector<std::unique_ptr<Pending>> pending_;
  // One per subscribe awaiting its SUBACK: the filters, for the grants (guarded by mutex_).
  struct Subscribe;
  std::vector<std::unique_ptr<Subscribe>> subscribes_;
};

}  // namespace nova::agent
