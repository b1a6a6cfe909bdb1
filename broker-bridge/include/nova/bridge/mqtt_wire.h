// MQTT 3.1.1 packet encoding and framing: the few packets NovaCron's raw clients speak.
//
// Two programs talk MQTT without a client library, each for a measured reason:
//   - the link monitor's MqttProbe (broker-bridge/src/mqtt_probe.h): Paho C 1.3.12
//     makes every connect of a process that already has an idle client wait ~2 s for
//     its shared 1 s poll loop;
//   - nova-sim (sim/), which runs 10,000 clients on one epoll thread for the same
//     reason, at a scale where a thread per client is not an option either.
// This header is their one copy of the wire format (OASIS MQTT 3.1.1, section 2 and 3):
// header-only, no I/O, no state. Strings are byte buffers (std::string), as on the wire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nova::bridge::mqtt {

// First byte of each packet we send or recognise (type << 4 | flags).
constexpr std::uint8_t kConnect = 0x10;
constexpr std::uint8_t kConnack = 0x20;
constexpr std::uint8_t kPublish = 0x30;  // | dup << 3 | qos << 1 | retain
constexpr std::uint8_t kPuback = 0x40;
constexpr std::uint8_t kSubscribe = 0x82;  // type 8, reserved flags 0b0010
constexpr std::uint8_t kSuback = 0x90;
constexpr std::uint8_t kPingreq = 0xC0;
constexpr std::uint8_t kPingresp = 0xD0;
constexpr std::uint8_t kDisconnect = 0xE0;

// Big-endian two-byte integer.
inline std::string u16(std::size_t v) {
  return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}
inline std::uint16_t read_u16(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(s[at]) << 8) | static_cast<std::uint8_t>(s[at + 1]));
}

// Length-prefixed UTF-8 string (or binary data: the will message uses the same form).
inline std::string text(std::string_view s) { return u16(s.size()) + std::string(s); }

// Fixed header (first byte, remaining length as a variable byte integer) + body.
inline std::string packet(std::uint8_t header, std::string_view body) {
  std::string out(1, static_cast<char>(header));
  std::size_t length = body.size();
  do {
    auto byte = static_cast<std::uint8_t>(length % 128);
    length /= 128;
    if (length > 0) byte = static_cast<std::uint8_t>(byte | 0x80);
    out += static_cast<char>(byte);
  } while (length > 0);
  out += body;
  return out;
}

struct Will {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = true;
};

// CONNECT, protocol level 4. `keepalive_s` 0 disables the broker's keepalive check.
inline std::string connect_packet(std::string_view client_id, std::string_view username, std::uint16_t keepalive_s,
                                  bool clean_session, const Will* will = nullptr) {
  std::uint8_t flags = clean_session ? 0x02 : 0x00;
  if (will != nullptr) flags = static_cast<std::uint8_t>(flags | 0x04 | (will->qos & 0x03) << 3 | (will->retain ? 0x20 : 0));
  if (!username.empty()) flags = static_cast<std::uint8_t>(flags | 0x80);
  std::string body = text("MQTT") + '\x04';
  body += static_cast<char>(flags);
  body += u16(keepalive_s) + text(client_id);
  if (will != nullptr) body += text(will->topic) + text(will->payload);
  if (!username.empty()) body += text(username);
  return packet(kConnect, body);
}

// PUBLISH; `id` is written only for QoS > 0.
inline std::string publish_packet(std::string_view topic, std::string_view payload, int qos, bool retain,
                                  std::uint16_t id) {
  const auto header = static_cast<std::uint8_t>(kPublish | (qos & 0x03) << 1 | (retain ? 1 : 0));
  std::string body = text(topic);
  if (qos > 0) body += u16(id);
  body += payload;
  return packet(header, body);
}

inline std::string subscribe_packet(std::uint16_t id, const std::vector<std::string>& filters, int qos) {
  std::string body = u16(id);
  for (const std::string& f : filters) body += text(f) + static_cast<char>(qos & 0x03);
  return packet(kSubscribe, body);
}

inline std::string puback_packet(std::uint16_t id) { return packet(kPuback, u16(id)); }

// One packet's framing in a receive buffer.
struct Frame {
  enum class Status { incomplete, complete, malformed };
  Status status = Status::incomplete;
  std::uint8_t header = 0;
  std::size_t header_len = 0;  // fixed header bytes (2..5)
  std::size_t length = 0;      // remaining length (the body); valid once header_len > 0
};

// Reads the fixed header at the start of `in`. `complete` once the whole body is there
// too; `incomplete` while bytes are missing (header_len > 0 as soon as the length is
// known, so a caller can refuse a too-large packet before buffering it); `malformed`
// for a remaining length over 4 bytes.
inline Frame parse_frame(std::string_view in) {
  Frame f;
  std::size_t length = 0;
  for (std::size_t i = 1;; ++i) {
    if (i > 4) {
      f.status = Frame::Status::malformed;
      return f;
    }
    if (in.size() <= i) return f;
    const auto byte = static_cast<std::uint8_t>(in[i]);
    length |= static_cast<std::size_t>(byte & 0x7F) << (7 * (i - 1));
    if ((byte & 0x80) == 0) {
      f.header = static_cast<std::uint8_t>(in[0]);
      f.header_len = i + 1;
      f.length = length;
      break;
    }
  }
  if (in.size() >= f.header_len + f.length) f.status = Frame::Status::complete;
  return f;
}

struct Publish {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retained = false;
  std::uint16_t id = 0;  // QoS > 0 only
};

// The body of a PUBLISH whose first byte is `header`; nullopt if it is truncated.
inline std::optional<Publish> parse_publish(std::uint8_t header, std::string_view body) {
  Publish p;
  p.qos = (header >> 1) & 0x03;
  p.retained = (header & 0x01) != 0;
  if (body.size() < 2) return std::nullopt;
  const std::size_t topic_len = read_u16(body, 0);
  std::size_t at = 2 + topic_len;
  if (body.size() < at + (p.qos > 0 ? 2 : 0)) return std::nullopt;
  p.topic = std::string(body.substr(2, topic_len));
  if (p.qos > 0) {
    p.id = read_u16(body, at);
    at += 2;
  }
  p.payload = std::string(body.substr(at));
  return p;
}

// "tcp://host:port" (or "host:port") -> host, port.
inline bool split_uri(std::string_view uri, std::string& host, std::string& port) {
  std::string_view rest = uri;
  if (const auto scheme = rest.find("://"); scheme != std::string_view::npos) rest = rest.substr(scheme + 3);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  host = std::string(rest.substr(0, colon));
  port = std::string(rest.substr(colon + 1));
  return !port.empty();
}

}  // namespace nova::bridge::mqtt
