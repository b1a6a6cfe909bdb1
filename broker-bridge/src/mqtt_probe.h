// A minimal, blocking MQTT 3.1.1 client for the link monitor (private to nova_bridge).
//
// Why not Paho: Paho C 1.3.12's async clients share one receive thread that polls with
// a 1 s timeout, and a new connection waits for that cycle while any other client of
// the process is connected and idle: 2.1 s per connect, measured (0.15 s otherwise).
// A link read is a short-lived connection, so the monitor speaks the few packets it
// needs itself: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH (QoS 0/1) and PUBACK,
// DISCONNECT. Every call blocks at most until the deadline, with poll().
// The packet encoding is shared with nova-sim: nova/bridge/mqtt_wire.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

struct ssl_st;

namespace nova::bridge::detail {

// A client certificate for TLS brokers (OpenSSL, TLS 1.2 or later, the broker's
// certificate and host name or IP address checked against ca_file). Empty: plaintext.
struct ProbeTls {
  std::filesystem::path ca_file;
  std::filesystem::path cert_file;  // certificate chain (leaf, then intermediate)
  std::filesystem::path key_file;
  bool enabled() const { return !ca_file.empty(); }
};

class MqttProbe {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  struct Message {
    std::string topic;
    std::string payload;
    bool retained = false;
  };

  MqttProbe() = default;
  ~MqttProbe();  // sends DISCONNECT if connected, closes the socket
  MqttProbe(const MqttProbe&) = delete;
  MqttProbe& operator=(const MqttProbe&) = delete;

  // "tcp://host:port". Clean session, keepalive 0 (the deadlines bound every wait).
  // False if the broker is unreachable or refuses the connection.
  // With `tls` enabled the handshake comes first (within the same deadline).
  bool connect(const std::string& uri, const std::string& client_id, const std::string& username,
               Deadline deadline, const ProbeTls& tls = {});
  // Subscribes to every filter at QoS 1 and waits for the SUBACK; false if any is refused.
  bool subscribe(const std::vector<std::string>& filters, Deadline deadline);
  // Sends a QoS 1 PUBLISH (does not wait for its PUBACK).
  bool publish(const std::string& topic, const std::string& payload, Deadline deadline);
  // The next PUBLISH from the broker (acknowledged if QoS 1); nullopt on timeout, on a
  // closed connection or a protocol error.
  std::optional<Message> next(Deadline deadline);

 private:
  struct Packet {
    std::uint8_t header = 0;
    std::string body;
  };
  bool send(const std::string& bytes, Deadline deadline);
  std::optional<Packet> read_packet(Deadline deadline);
  bool fill(std::size_t bytes, Deadline deadline);
  bool handshake(const std::string& host, const ProbeTls& tls, Deadline deadline);
  // Waits until the socket is ready for what the last SSL call wants (or either, for
  // plaintext `events`). False on timeout.
  bool wait_io(short events, Deadline deadline) const;
  void close();

  int fd_ = -1;
  ssl_st* ssl_ = nullptr;  // set while a TLS connection is open
  bool connected_ = false;
  std::uint16_t next_id_ = 1;
  std::string in_;  // bytes received and not yet parsed
};

}  // namespace nova::bridge::detail
