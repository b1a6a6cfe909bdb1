#include "mqtt_probe.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace nova::bridge::detail {
namespace {

using std::chrono::milliseconds;

constexpr std::uint8_t kConnect = 0x10;
constexpr std::uint8_t kConnack = 0x20;
constexpr std::uint8_t kPublish = 0x30;
constexpr std::uint8_t kPuback = 0x40;
constexpr std::uint8_t kSubscribe = 0x82;  // type 8, reserved flags 0b0010
constexpr std::uint8_t kSuback = 0x90;
constexpr std::uint8_t kDisconnect = 0xE0;
constexpr std::size_t kMaxPacket = 1 << 20;  // link records and probes are tiny

int millis_left(MqttProbe::Deadline deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<milliseconds::rep>(left.count(), 0, 60'000));
}

std::string u16(std::size_t v) {
  return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

std::string text(const std::string& s) { return u16(s.size()) + s; }

std::string packet(std::uint8_t header, const std::string& body) {
  std::string out(1, static_cast<char>(header));
  std::size_t length = body.size();
  do {  // MQTT variable byte integer
    auto byte = static_cast<std::uint8_t>(length % 128);
    length /= 128;
    if (length > 0) byte = static_cast<std::uint8_t>(byte | 0x80);
    out += static_cast<char>(byte);
  } while (length > 0);
  return out + body;
}

std::uint16_t read_u16(const std::string& s, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(s[at]) << 8) | static_cast<std::uint8_t>(s[at + 1]));
}

// "tcp://host:port" -> host, port.
bool split_uri(const std::string& uri, std::string& host, std::string& port) {
  std::string rest = uri;
  if (const auto scheme = rest.find("://"); scheme != std::string::npos) rest = rest.substr(scheme + 3);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = rest.substr(0, colon);
  port = rest.substr(colon + 1);
  return !port.empty();
}

}  // namespace

MqttProbe::~MqttProbe() {
  if (connected_) send(packet(kDisconnect, {}), std::chrono::steady_clock::now() + milliseconds(200));
  close();
}

void MqttProbe::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  connected_ = false;
}

bool MqttProbe::connect(const std::string& uri, const std::string& client_id, const std::string& username,
                        Deadline deadline) {
  std::string host;
  std::string port;
  if (!split_uri(uri, host, port)) return false;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) return false;
  for (const addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
    fd_ = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd_ < 0) continue;
    if (::connect(fd_, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      close();
      continue;
    }
    pollfd pfd{fd_, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof error;
    if (::poll(&pfd, 1, millis_left(deadline)) != 1 || ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &len) != 0 ||
        error != 0) {
      close();
    }
  }
  ::freeaddrinfo(found);
  if (fd_ < 0) return false;
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  // Protocol "MQTT" level 4 (3.1.1); flags: username, clean session; keepalive 0.
  std::string body = text("MQTT") + '\x04';
  body += static_cast<char>(username.empty() ? 0x02 : 0x82);
  body += u16(0) + text(client_id);
  if (!username.empty()) body += text(username);
  if (!send(packet(kConnect, body), deadline)) return false;
  const auto ack = read_packet(deadline);
  if (!ack || (ack->header & 0xF0) != kConnack || ack->body.size() != 2 || ack->body[1] != 0) {
    close();
    return false;
  }
  connected_ = true;
  return true;
}

bool MqttProbe::subscribe(const std::vector<std::string>& filters, Deadline deadline) {
  const std::uint16_t id = next_id_++;
  std::string body = u16(id);
  for (const std::string& f : filters) body += text(f) + '\x01';
  if (!send(packet(kSubscribe, body), deadline)) return false;
  for (;;) {  // PUBLISHes may not arrive before the SUBACK, but keep them if they do
    const auto p = read_packet(deadline);
    if (!p) return false;
    if ((p->header & 0xF0) == kSuback && p->body.size() >= 2 && read_u16(p->body, 0) == id) {
      return std::none_of(p->body.begin() + 2, p->body.end(), [](char c) { return static_cast<std::uint8_t>(c) == 0x80; });
    }
  }
}

bool MqttProbe::publish(const std::string& topic, const std::string& payload, Deadline deadline) {
  return send(packet(kPublish | 0x02, text(topic) + u16(next_id_++) + payload), deadline);
}

std::optional<MqttProbe::Message> MqttProbe::next(Deadline deadline) {
  for (;;) {
    const auto p = read_packet(deadline);
    if (!p) return std::nullopt;
    if ((p->header & 0xF0) != kPublish) continue;  // PUBACK of our probe, ...
    const int qos = (p->header >> 1) & 0x03;
    if (p->body.size() < 2) return std::nullopt;
    const std::size_t topic_len = read_u16(p->body, 0);
    std::size_t at = 2 + topic_len;
    if (p->body.size() < at + (qos > 0 ? 2 : 0)) return std::nullopt;
    Message m{p->body.substr(2, topic_len), {}, (p->header & 0x01) != 0};
    if (qos > 0) {
      const std::uint16_t id = read_u16(p->body, at);
      at += 2;
      // We subscribe at QoS 1, so nothing arrives at QoS 2.
      if (!send(packet(kPuback, u16(id)), deadline)) return std::nullopt;
    }
    m.payload = p->body.substr(at);
    return m;
  }
}

bool MqttProbe::send(const std::string& bytes, Deadline deadline) {
  std::size_t sent = 0;
  while (fd_ >= 0 && sent < bytes.size()) {
    const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd pfd{fd_, POLLOUT, 0};
      if (::poll(&pfd, 1, millis_left(deadline)) == 1) continue;
    }
    close();
    return false;
  }
  return fd_ >= 0;
}

bool MqttProbe::fill(std::size_t bytes, Deadline deadline) {
  char buffer[4096];
  while (fd_ >= 0 && in_.size() < bytes) {
    const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n > 0) {
      in_.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, millis_left(deadline)) == 1) continue;
      return false;  // timeout: the connection stays usable
    }
    close();  // closed by the broker, or an error
    return false;
  }
  return fd_ >= 0;
}

std::optional<MqttProbe::Packet> MqttProbe::read_packet(Deadline deadline) {
  // Fixed header: one byte, then the remaining length in 1..4 bytes.
  std::size_t length = 0;
  std::size_t header_len = 1;
  for (int shift = 0;; shift += 7) {
    if (!fill(header_len + 1, deadline)) return std::nullopt;
    const auto byte = static_cast<std::uint8_t>(in_[header_len]);
    length |= static_cast<std::size_t>(byte & 0x7F) << shift;
    ++header_len;
    if ((byte & 0x80) == 0) break;
    if (header_len > 4) {
      close();
      return std::nullopt;
    }
  }
  if (length > kMaxPacket) {
    close();
    return std::nullopt;
  }
  if (!fill(header_len + length, deadline)) return std::nullopt;
  Packet p{static_cast<std::uint8_t>(in_[0]), in_.substr(header_len, length)};
  in_.erase(0, header_len + length);
  return p;
}

}  // namespace nova::bridge::detail
