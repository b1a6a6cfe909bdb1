#include "mqtt_probe.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "nova/bridge/mqtt_wire.h"
#include "nova/bridge/tls_client.h"

namespace nova::bridge::detail {
namespace {

using std::chrono::milliseconds;
using namespace nova::bridge::mqtt;  // the wire format (nova/bridge/mqtt_wire.h)

constexpr std::size_t kMaxPacket = 1 << 20;  // link records and probes are tiny

int millis_left(MqttProbe::Deadline deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<milliseconds::rep>(left.count(), 0, 60'000));
}

}  // namespace

MqttProbe::~MqttProbe() {
  if (connected_) send(packet(kDisconnect, {}), std::chrono::steady_clock::now() + milliseconds(200));
  close();
}

void MqttProbe::close() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  ssl_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  connected_ = false;
}

bool MqttProbe::connect(const std::string& uri, const std::string& client_id, const std::string& username,
                        Deadline deadline, const ProbeTls& tls) {
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
  if (tls.enabled() && !handshake(host, tls, deadline)) {
    close();
    return false;
  }

  // Clean session, keepalive 0: the deadlines bound every wait.
  if (!send(connect_packet(client_id, username, 0, true), deadline)) return false;
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
  if (!send(subscribe_packet(id, filters, 1), deadline)) return false;
  for (;;) {  // PUBLISHes may not arrive before the SUBACK, but keep them if they do
    const auto p = read_packet(deadline);
    if (!p) return false;
    if ((p->header & 0xF0) == kSuback && p->body.size() >= 2 && read_u16(p->body, 0) == id) {
      return std::none_of(p->body.begin() + 2, p->body.end(), [](char c) { return static_cast<std::uint8_t>(c) == 0x80; });
    }
  }
}

bool MqttProbe::publish(const std::string& topic, const std::string& payload, Deadline deadline) {
  return send(publish_packet(topic, payload, 1, false, next_id_++), deadline);
}

std::optional<MqttProbe::Message> MqttProbe::next(Deadline deadline) {
  for (;;) {
    const auto p = read_packet(deadline);
    if (!p) return std::nullopt;
    if ((p->header & 0xF0) != kPublish) continue;  // PUBACK of our probe, ...
    auto m = parse_publish(p->header, p->body);
    if (!m) return std::nullopt;
    // We subscribe at QoS 1, so nothing arrives at QoS 2.
    if (m->qos > 0 && !send(puback_packet(m->id), deadline)) return std::nullopt;
    return Message{std::move(m->topic), std::move(m->payload), m->retained};
  }
}

bool MqttProbe::handshake(const std::string& host, const ProbeTls& tls, Deadline deadline) {
  // A context per handshake: a renewed certificate file is used at the next probe.
  const SslCtxPtr ctx = client_tls_context(tls.ca_file.string(), tls.cert_file.string(), tls.key_file.string());
  if (!ctx) return false;
  ssl_ = SSL_new(ctx.get());  // holds its own reference to ctx
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1 || !expect_broker_name(ssl_, host)) return false;
  for (;;) {
    const int rc = SSL_connect(ssl_);
    if (rc == 1) return true;
    const int error = SSL_get_error(ssl_, rc);
    ERR_clear_error();
    if (error == SSL_ERROR_WANT_READ && wait_io(POLLIN, deadline)) continue;
    if (error == SSL_ERROR_WANT_WRITE && wait_io(POLLOUT, deadline)) continue;
    return false;
  }
}

bool MqttProbe::wait_io(short events, Deadline deadline) const {
  pollfd pfd{fd_, events, 0};
  return ::poll(&pfd, 1, millis_left(deadline)) == 1;
}

bool MqttProbe::send(const std::string& bytes, Deadline deadline) {
  std::size_t sent = 0;
  const SigpipeGuard no_sigpipe;
  while (ssl_ != nullptr && sent < bytes.size()) {
    const int n = SSL_write(ssl_, bytes.data() + sent, static_cast<int>(bytes.size() - sent));
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    const int error = SSL_get_error(ssl_, n);
    ERR_clear_error();
    if (error == SSL_ERROR_WANT_WRITE && wait_io(POLLOUT, deadline)) continue;
    if (error == SSL_ERROR_WANT_READ && wait_io(POLLIN, deadline)) continue;
    close();
    return false;
  }
  while (fd_ >= 0 && ssl_ == nullptr && sent < bytes.size()) {
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
  while (ssl_ != nullptr && in_.size() < bytes) {
    const int n = SSL_read(ssl_, buffer, sizeof buffer);
    if (n > 0) {
      in_.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    const int error = SSL_get_error(ssl_, n);
    ERR_clear_error();
    if (error == SSL_ERROR_WANT_READ) {
      if (wait_io(POLLIN, deadline)) continue;
      return false;  // timeout: the connection stays usable
    }
    if (error == SSL_ERROR_WANT_WRITE && wait_io(POLLOUT, deadline)) continue;
    close();  // closed by the broker, or an error
    return false;
  }
  while (fd_ >= 0 && ssl_ == nullptr && in_.size() < bytes) {
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
  for (;;) {
    const Frame f = parse_frame(in_);
    if (f.status == Frame::Status::malformed || (f.header_len > 0 && f.length > kMaxPacket)) {
      close();
      return std::nullopt;
    }
    if (f.status == Frame::Status::complete) {
      Packet p{f.header, in_.substr(f.header_len, f.length)};
      in_.erase(0, f.header_len + f.length);
      return p;
    }
    // The length when it is known, else one more byte of the fixed header.
    if (!fill(f.header_len > 0 ? f.header_len + f.length : in_.size() + 1, deadline)) return std::nullopt;
  }
}

}  // namespace nova::bridge::detail
