#include "nova/sim/simulator.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <queue>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "nova/bridge/mqtt_wire.h"
#include "nova/bridge/tls_client.h"
#include "nova/common/log.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/signed.h"
#include "nova/schemas/messages.h"

namespace nova::sim {
namespace {

namespace mqtt = bridge::mqtt;
using common::log_line;
using common::logfmt_quote;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxPacket = 64 * 1024;  // acks are tiny; anything bigger is a broker bug
constexpr std::uint32_t kStopTag = 0xFFFFFFFF;
constexpr std::size_t kLoggedFailures = 10;  // per kind; the rest only count

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

// xorshift32: cheap, deterministic per node, good enough for plausible gauges.
std::uint32_t next_random(std::uint32_t& state) {
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return state;
}

// Why the last OpenSSL call failed, for a log line; clears OpenSSL's error queue.
std::string tls_error(SSL* ssl, int error) {
  std::string why;
  if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK) {
    why = std::string("certificate: ") + X509_verify_cert_error_string(verify);
  } else if (const unsigned long e = ERR_peek_last_error(); e != 0) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof buffer);
    why = buffer;
  } else if (error == SSL_ERROR_ZERO_RETURN || error == SSL_ERROR_SYSCALL) {
    why = "closed by the broker";
  } else {
    why = "SSL error " + std::to_string(error);
  }
  ERR_clear_error();
  return "TLS: " + why;
}

}  // namespace

schemas::Result<BrokerTarget> parse_broker(const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos) return schemas::Error{"broker", "expected URI=SITE_PATH, e.g. tcp://127.0.0.1:1883=cloud/eu/par/acc-01"};
  BrokerTarget t;
  const std::string uri = spec.substr(0, eq);
  if (const auto scheme_end = uri.find("://"); scheme_end != std::string::npos) {
    const std::string scheme = uri.substr(0, scheme_end);
    if (scheme == "mqtts" || scheme == "ssl") {
      t.tls = true;
    } else if (scheme != "tcp" && scheme != "mqtt") {
      return schemas::Error{"broker", "scheme '" + scheme + "://' is not tcp:// or mqtt:// (plaintext), mqtts:// or ssl:// (TLS)"};
    }
  }
  std::string port;
  if (!mqtt::split_uri(uri, t.host, port)) return schemas::Error{"broker", "'" + uri + "' is not tcp://host:port or mqtts://host:port"};
  char* end = nullptr;
  const unsigned long p = std::strtoul(port.c_str(), &end, 10);
  if (*end != '\0' || p == 0 || p > 65535) return schemas::Error{"broker", "port '" + port + "' is not 1..65535"};
  t.port = static_cast<std::uint16_t>(p);
  t.site_path = spec.substr(eq + 1);
  // The site path goes into topics: 1..8 ids, no wildcards (schemas/topics.md).
  if (t.site_path.empty() || t.site_path.front() == '/' || t.site_path.back() == '/' ||
      t.site_path.find_first_of("+#") != std::string::npos || t.site_path.find("//") != std::string::npos) {
    return schemas::Error{"broker", "site path '" + t.site_path + "' is not a path of site ids, e.g. cloud/eu/par/acc-01"};
  }
  return t;
}

std::string Simulator::node_id(const std::string& prefix, std::size_t index, std::size_t nodes) {
  const std::size_t width = std::to_string(std::max<std::size_t>(nodes, 1)).size();
  std::string n = std::to_string(index);
  return prefix + "-" + std::string(width > n.size() ? width - n.size() : 0, '0') + n;
}

struct Simulator::Impl {
  // connecting: TCP; tls: the TLS handshake (TLS brokers only); handshake: CONNECT sent.
  enum class State : std::uint8_t { idle, connecting, tls, handshake, online, closing };
  enum class TimerKind : std::uint8_t { connect_timeout, ping, metrics, reconnect };

  struct Node {
    std::string id;
    std::uint32_t broker = 0;
    int fd = -1;
    SSL* ssl = nullptr;  // a TLS broker's connection, from the TCP connect on
    State state = State::idle;
    std::uint32_t gen = 0;  // bumped whenever the connection is reset; events and timers carry it
    std::uint64_t bdseq = 0;
    std::uint16_t next_id = 1;
    std::uint16_t birth_id = 0;  // packet id of the birth awaiting its PUBACK
    bool born = false;
    bool writing = false;  // EPOLLOUT registered
    std::uint64_t seq = 0;    // last metrics seq published
    std::uint64_t acked = 0;  // the cloud's metrics watermark
    std::uint32_t rng = 1;
    std::string in;
    std::string out;
  };

  struct Timer {
    std::int64_t at;
    std::uint32_t node;
    std::uint32_t gen;
    TimerKind kind;
    bool operator>(const Timer& o) const { return at > o.at; }
  };

  const SimOptions& opt;
  bridge::SslCtxPtr tls_ctx;  // when any broker is TLS
  std::vector<Node> nodes;
  std::vector<sockaddr_storage> addrs;
  std::vector<socklen_t> addr_lens;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers;
  std::deque<std::uint32_t> to_connect;
  int ep = -1;
  bool stopping = false;
  SimStats stats;
  std::array<std::size_t, 3> failures_logged{};  // connect, refused, lost

  explicit Impl(const SimOptions& o) : opt(o) {}
  ~Impl() {
    for (Node& n : nodes) {
      if (n.ssl != nullptr) SSL_free(n.ssl);
      if (n.fd >= 0) ::close(n.fd);
    }
    if (ep >= 0) ::close(ep);
  }

  static std::uint64_t tag(const Node& n, std::size_t index) {
    return static_cast<std::uint64_t>(n.gen) << 32 | static_cast<std::uint32_t>(index);
  }
  std::uint32_t index_of(const Node& n) const { return static_cast<std::uint32_t>(&n - nodes.data()); }

  void log_failure(std::size_t kind, const char* event, const Node& n, const std::string& why) {
    if (failures_logged[kind]++ < kLoggedFailures) {
      const BrokerTarget& b = opt.brokers[n.broker];
      log_line("warn", event,
               "node=" + n.id + " broker=" + b.host + ":" + std::to_string(b.port) + " reason=" + logfmt_quote(why) +
                   (failures_logged[kind] == kLoggedFailures ? " note=\"further ones are only counted\"" : ""));
    }
  }

  void schedule(Node& n, std::int64_t at, TimerKind kind) { timers.push(Timer{at, index_of(n), n.gen, kind}); }

  schemas::Status resolve() {
    for (const BrokerTarget& b : opt.brokers) {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      const int rc = ::getaddrinfo(b.host.c_str(), std::to_string(b.port).c_str(), &hints, &found);
      if (rc != 0 || found == nullptr) return schemas::Error{"broker", b.host + ": " + ::gai_strerror(rc)};
      sockaddr_storage a{};
      std::memcpy(&a, found->ai_addr, found->ai_addrlen);
      addrs.push_back(a);
      addr_lens.push_back(found->ai_addrlen);
      ::freeaddrinfo(found);
    }
    return schemas::Ok{};
  }

  // One context for the run: the files are read and checked once, not per connection.
  schemas::Status load_tls() {
    if (std::none_of(opt.brokers.begin(), opt.brokers.end(), [](const BrokerTarget& b) { return b.tls; })) {
      return schemas::Ok{};
    }
    if (!opt.tls) return schemas::Error{"tls", "a broker is mqtts:// but no TLS files were given"};
    tls_ctx = bridge::client_tls_context(opt.tls->ca_file, opt.tls->cert_file, opt.tls->key_file);
    if (!tls_ctx) return schemas::Error{"tls", "the CA, certificate or key file cannot be loaded, or the key does not match"};
    SSL_CTX_set_mode(tls_ctx.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return schemas::Ok{};
  }

  // --- connection lifecycle ----------------------------------------------------------

  void start_connect(Node& n) {
    if (n.state != State::idle || stopping) return;
    const int fd = ::socket(addrs[n.broker].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      // Out of descriptors or ports: count it and retry later like any failed connect.
      ++stats.connect_failures;
      log_failure(0, "connect_failed", n, std::strerror(errno));
      schedule_reconnect(n);
      return;
    }
    if (stats.first_connect_ms == 0) stats.first_connect_ms = epoch_ms();
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    n.fd = fd;
    n.state = State::connecting;
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addrs[n.broker]), addr_lens[n.broker]);
    if (rc != 0 && errno != EINPROGRESS) {
      drop(n, std::string("connect: ") + std::strerror(errno));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = tag(n, index_of(n));
    n.writing = true;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    schedule(n, steady_ms() + opt.connect_timeout.count(), TimerKind::connect_timeout);
  }

  void schedule_reconnect(Node& n) {
    if (stopping) return;
    const auto base = std::max<std::int64_t>(opt.reconnect_delay.count(), 1);
    const auto jitter = static_cast<std::int64_t>(next_random(n.rng) % static_cast<std::uint32_t>(base));
    schedule(n, steady_ms() + base + jitter, TimerKind::reconnect);
  }

  // Closes the connection (if any); a node that was online counts as a disconnect, one
  // that never got its CONNACK as a failed connect. Retried unless we are stopping.
  void drop(Node& n, const std::string& why) {
    if (n.ssl != nullptr) SSL_free(n.ssl);
    n.ssl = nullptr;
    if (n.fd >= 0) ::close(n.fd);  // also removes it from the epoll set
    n.fd = -1;
    if (n.state == State::online) {
      --stats.online;
      ++stats.disconnects;
      log_failure(2, "connection_lost", n, why);
    } else if (n.state == State::connecting || n.state == State::tls || n.state == State::handshake) {
      ++stats.connect_failures;
      log_failure(0, "connect_failed", n, why);
    }
    const bool was_closing = n.state == State::closing;
    n.state = State::idle;
    ++n.gen;
    ++n.bdseq;  // the next connection is a new birth/death pair
    n.writing = false;
    n.birth_id = 0;
    n.in.clear();
    n.out.clear();
    if (!was_closing) schedule_reconnect(n);
  }

  void set_writing(Node& n, bool on) {
    if (n.writing == on || n.fd < 0) return;
    epoll_event ev{};
    ev.events = on ? static_cast<std::uint32_t>(EPOLLIN | EPOLLOUT) : static_cast<std::uint32_t>(EPOLLIN);
    ev.data.u64 = tag(n, index_of(n));
    ::epoll_ctl(ep, EPOLL_CTL_MOD, n.fd, &ev);
    n.writing = on;
  }

  // Writes what the kernel takes now; the rest waits for EPOLLOUT. False if dropped.
  bool flush(Node& n) {
    std::size_t sent = 0;
    // OpenSSL may need to read before it can write (a TLS 1.3 key update): then the
    // rest waits for EPOLLIN (on_event flushes after reading), not for EPOLLOUT, which a
    // writable socket would report at once, again and again.
    bool needs_read = false;
    while (n.ssl != nullptr && sent < n.out.size()) {
      const int w = SSL_write(n.ssl, n.out.data() + sent, static_cast<int>(n.out.size() - sent));
      if (w > 0) {
        sent += static_cast<std::size_t>(w);
        continue;
      }
      const int error = SSL_get_error(n.ssl, w);
      needs_read = error == SSL_ERROR_WANT_READ;
      if (error == SSL_ERROR_WANT_WRITE || needs_read) break;
      drop(n, tls_error(n.ssl, error));
      return false;
    }
    while (n.ssl == nullptr && sent < n.out.size()) {
      const auto w = ::send(n.fd, n.out.data() + sent, n.out.size() - sent, MSG_NOSIGNAL);
      if (w > 0) {
        sent += static_cast<std::size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) break;
      drop(n, std::string("send: ") + std::strerror(errno));
      return false;
    }
    n.out.erase(0, sent);
    set_writing(n, !n.out.empty() && !needs_read);
    if (n.out.empty() && n.state == State::closing) ::shutdown(n.fd, SHUT_WR);  // then read until EOF
    return true;
  }

  bool send(Node& n, const std::string& bytes) {
    if (n.fd < 0) return false;
    n.out += bytes;
    return n.writing ? true : flush(n);
  }

  std::uint16_t next_packet_id(Node& n) {
    if (n.next_id == 0) n.next_id = 1;  // 0 is not a valid packet id
    return n.next_id++;
  }

  // --- node behaviour -------------------------------------------------------------------

  std::string state_topic(const Node& n) const { return "nova/v1/up/" + n.id + "/state"; }
  std::string ack_topic(const Node& n) const {
    return "nova/v1/down/" + opt.brokers[n.broker].site_path + "/" + n.id + "/ack";
  }

  std::string state_payload(const Node& n, schemas::NodeStatus status) {
    schemas::NodeState s;
    s.node = n.id;
    s.status = status;
    s.bdseq = n.bdseq;
    s.ts = static_cast<schemas::Timestamp>(epoch_ms());
    if (status == schemas::NodeStatus::online) {
      // Varied but deterministic per node index, so two runs describe the same fleet.
      static constexpr std::array<const char*, 4> kArch = {"x86_64", "aarch64", "armv7l", "riscv64"};
      const std::size_t i = index_of(n);
      schemas::NodeDescription d;
      d.level = 5;
      d.site = opt.brokers[n.broker].site_path;
      d.arch = kArch[i % kArch.size()];
      d.version = "nova-sim";
      if (d.arch == "aarch64") d.capabilities.emplace_back("arm64");
      if (i % 10 == 0) d.capabilities.emplace_back("gpu");
      d.resources.cpu_millis = 1000 * (1 + i % 4);
      d.resources.memory_mb = 512u << (i % 4);
      d.resources.storage_mb = 4000 + 1000 * (i % 8);
      s.description = std::move(d);
    }
    const schemas::Bytes b = schemas::encode_cbor(s);
    return {b.begin(), b.end()};
  }

  // The TCP connection is up: a TLS broker's handshake first, then CONNECT.
  void on_tcp_connected(Node& n) {
    if (!opt.brokers[n.broker].tls) {
      on_connected(n);
      return;
    }
    n.ssl = SSL_new(tls_ctx.get());
    if (n.ssl == nullptr || SSL_set_fd(n.ssl, n.fd) != 1 || !bridge::expect_broker_name(n.ssl, opt.brokers[n.broker].host)) {
      drop(n, tls_error(n.ssl, SSL_ERROR_SSL));
      return;
    }
    SSL_set_connect_state(n.ssl);
    n.state = State::tls;
    continue_tls_handshake(n);
  }

  // One non-blocking step of the handshake; the socket's next event resumes it.
  void continue_tls_handshake(Node& n) {
    const int rc = SSL_do_handshake(n.ssl);
    if (rc == 1) {
      set_writing(n, false);
      on_connected(n);
      return;
    }
    const int error = SSL_get_error(n.ssl, rc);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      set_writing(n, error == SSL_ERROR_WANT_WRITE);
      return;
    }
    drop(n, tls_error(n.ssl, error));
  }

  void on_connected(Node& n) {
    n.state = State::handshake;
    const mqtt::Will will{state_topic(n), state_payload(n, schemas::NodeStatus::dead), 1, true};
    send(n, mqtt::connect_packet(n.id, "", opt.keepalive_s, true, &will));
  }

  void on_connack(Node& n, std::string_view body) {
    if (body.size() != 2 || body[1] != 0) {
      const int rc = body.size() == 2 ? static_cast<std::uint8_t>(body[1]) : -1;
      log_failure(1, "connect_refused", n, "CONNACK return code " + std::to_string(rc));
      drop(n, "refused");
      return;
    }
    n.state = State::online;
    ++stats.online;
    ++stats.connects;
    const std::int64_t now = steady_ms();
    if (opt.subscribe_acks && !send(n, mqtt::subscribe_packet(next_packet_id(n), {ack_topic(n)}, 1))) return;
    n.birth_id = next_packet_id(n);
    if (!send(n, mqtt::publish_packet(state_topic(n), state_payload(n, schemas::NodeStatus::online), 1, true, n.birth_id))) return;
    ++stats.births_sent;
    if (!n.born) {
      const std::int64_t t = epoch_ms();
      if (stats.first_birth_ms == 0) stats.first_birth_ms = t;
      stats.last_birth_sent_ms = t;
    }
    if (opt.keepalive_s > 0) schedule(n, now + opt.keepalive_s * 500, TimerKind::ping);
    if (opt.metrics_interval.count() > 0) {
      // Spread the nodes evenly over one interval: node i starts at i/N of it.
      const auto interval = opt.metrics_interval.count();
      const auto phase = static_cast<std::int64_t>(static_cast<double>(index_of(n)) * static_cast<double>(interval) /
                                                   static_cast<double>(nodes.size()));
      schedule(n, now + opt.metrics_delay.count() + phase, TimerKind::metrics);
    }
  }

  void publish_metrics(Node& n) {
    schemas::MetricsBatch b;
    b.position = {n.id, "metrics", n.seq + 1};
    const auto now = static_cast<schemas::Timestamp>(epoch_ms());
    const std::size_t count = std::max<std::size_t>(opt.samples_per_batch, 1);
    const auto step = static_cast<schemas::Timestamp>(opt.metrics_interval.count()) / count;
    for (std::size_t k = 0; k < count; ++k) {
      schemas::MetricSample s;
      s.ts = now - step * (count - 1 - k);
      s.cpu_pct = next_random(n.rng) % 1000 / 10.0;
      s.mem_pct = 20 + next_random(n.rng) % 600 / 10.0;
      s.disk_pct = 40 + next_random(n.rng) % 100 / 10.0;
      s.load1 = next_random(n.rng) % 400 / 100.0;
      s.net_rx_bps = next_random(n.rng) % 100000;
      s.net_tx_bps = next_random(n.rng) % 50000;
      s.temp_c = 30 + next_random(n.rng) % 300 / 10.0;
      b.samples.push_back(s);
    }
    const schemas::Bytes payload = schemas::encode_cbor(b);
    if (send(n, mqtt::publish_packet("nova/v1/up/" + n.id + "/metrics",
                                     std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()), 1,
                                     false, next_packet_id(n)))) {
      ++n.seq;
      ++stats.batches_sent;
    }
  }

  void on_puback(Node& n, std::string_view body) {
    if (body.size() < 2) return;
    const std::uint16_t id = mqtt::read_u16(body, 0);
    if (id != n.birth_id) {
      ++stats.batches_acked;  // metrics (the goodbye is never awaited)
      return;
    }
    n.birth_id = 0;
    ++stats.births_acked;
    if (n.born) return;
    n.born = true;
    if (++stats.nodes_born == nodes.size()) stats.all_born_ms = epoch_ms();
  }

  void on_publish(Node& n, std::uint8_t header, std::string_view body) {
    auto p = mqtt::parse_publish(header, body);
    if (!p) {
      drop(n, "truncated PUBLISH");
      return;
    }
    if (p->qos > 0 && !send(n, mqtt::puback_packet(p->id))) return;
    if (!p->topic.ends_with("/ack")) return;
    // nova-cloud signs its acks. A simulated node is load, not a security boundary: it
    // takes the ack out of the envelope without checking the signature (nova-agent does).
    std::string_view payload(p->payload);
    const auto envelope = schemas::decode_cose_sign1(
        std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()));
    if (envelope) payload = std::string_view(reinterpret_cast<const char*>(envelope->message.data()), envelope->message.size());
    auto ack = schemas::decode_cbor<schemas::Ack>(payload);
    if (!ack || ack->node != n.id) {
      ++stats.bad_acks;
      return;
    }
    ++stats.acks_received;
    if (const auto it = ack->watermarks.find("metrics"); it != ack->watermarks.end()) n.acked = std::max(n.acked, it->second);
  }

  void on_readable(Node& n) {
    char buffer[16 * 1024];
    while (n.ssl != nullptr) {
      const int r = SSL_read(n.ssl, buffer, sizeof buffer);
      if (r > 0) {
        n.in.append(buffer, static_cast<std::size_t>(r));
        continue;  // until OpenSSL has nothing left: level-triggered epoll sees only the socket
      }
      const int error = SSL_get_error(n.ssl, r);
      if (error == SSL_ERROR_WANT_READ) break;
      if (error == SSL_ERROR_WANT_WRITE) {
        set_writing(n, true);
        break;
      }
      drop(n, error == SSL_ERROR_ZERO_RETURN ? std::string("closed by the broker") : tls_error(n.ssl, error));
      return;
    }
    while (n.ssl == nullptr) {
      const auto r = ::recv(n.fd, buffer, sizeof buffer, 0);
      if (r > 0) {
        n.in.append(buffer, static_cast<std::size_t>(r));
        if (static_cast<std::size_t>(r) < sizeof buffer) break;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) break;
      drop(n, r == 0 ? "closed by the broker" : std::string("recv: ") + std::strerror(errno));
      return;
    }
    if (n.state == State::closing) {
      n.in.clear();  // waiting for EOF only
      return;
    }
    const std::uint32_t gen = n.gen;
    std::size_t at = 0;
    while (n.gen == gen) {
      const std::string_view rest = std::string_view(n.in).substr(at);
      const mqtt::Frame f = mqtt::parse_frame(rest);
      if (f.status == mqtt::Frame::Status::malformed || (f.header_len > 0 && f.length > kMaxPacket)) {
        drop(n, "malformed packet");
        return;
      }
      if (f.status == mqtt::Frame::Status::incomplete) break;
      const std::string_view body = rest.substr(f.header_len, f.length);
      at += f.header_len + f.length;
      switch (f.header & 0xF0) {
        case mqtt::kConnack: on_connack(n, body); break;
        case mqtt::kPuback: on_puback(n, body); break;
        case mqtt::kPublish: on_publish(n, f.header, body); break;
        default: break;  // SUBACK, PINGRESP
      }
    }
    if (n.gen == gen) n.in.erase(0, at);
  }

  void on_event(std::uint64_t data, std::uint32_t events) {
    const auto index = static_cast<std::uint32_t>(data);
    Node& n = nodes[index];
    if (static_cast<std::uint32_t>(data >> 32) != n.gen || n.fd < 0) return;  // an earlier connection's
    if (n.state == State::connecting) {
      int error = 0;
      socklen_t len = sizeof error;
      ::getsockopt(n.fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
        drop(n, std::string("connect: ") + std::strerror(error != 0 ? error : ECONNREFUSED));
        return;
      }
      n.writing = true;  // forces set_writing to rewrite the mask with EPOLLIN
      set_writing(n, false);
      on_tcp_connected(n);
      return;
    }
    if (n.state == State::tls) {
      continue_tls_handshake(n);
      return;
    }
    if ((events & EPOLLIN) != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
      on_readable(n);
      if (n.fd < 0 || static_cast<std::uint32_t>(data >> 32) != n.gen) return;
    }
    if ((events & EPOLLOUT) != 0 || (n.ssl != nullptr && !n.out.empty() && !n.writing)) flush(n);
  }

  void on_timer(const Timer& t) {
    Node& n = nodes[t.node];
    if (t.gen != n.gen) return;
    switch (t.kind) {
      case TimerKind::connect_timeout:
        if (n.state == State::connecting || n.state == State::tls || n.state == State::handshake) {
          drop(n, "connect timed out");
        }
        break;
      case TimerKind::reconnect:
        if (n.state == State::idle && !stopping) to_connect.push_back(t.node);
        break;
      case TimerKind::ping:
        if (n.state == State::online && send(n, mqtt::packet(mqtt::kPingreq, {}))) {
          schedule(n, t.at + opt.keepalive_s * 500, TimerKind::ping);
        }
        break;
      case TimerKind::metrics:
        if (n.state == State::online) {
          publish_metrics(n);
          if (n.state == State::online) schedule(n, t.at + opt.metrics_interval.count(), TimerKind::metrics);
        }
        break;
    }
  }

  SimStats snapshot() {
    SimStats s = stats;
    s.nodes = nodes.size();
    s.nodes_fully_acked = static_cast<std::size_t>(
        std::count_if(nodes.begin(), nodes.end(), [](const Node& n) { return n.seq > 0 && n.acked >= n.seq; }));
    return s;
  }

  // Goodbye (offline + DISCONNECT, then wait for the broker to close) or just close.
  void shut_down() {
    stopping = true;
    for (Node& n : nodes) {
      if (n.fd < 0) continue;
      const bool online = n.state == State::online;
      if (online) --stats.online;
      if (!opt.goodbye || !online) {
        n.state = State::closing;  // not a lost connection: no reconnect, not counted
        drop(n, "stopping");
        continue;
      }
      send(n, mqtt::publish_packet(state_topic(n), state_payload(n, schemas::NodeStatus::offline), 1, true,
                                   next_packet_id(n)));
      n.state = State::closing;
      send(n, mqtt::packet(mqtt::kDisconnect, {}));
    }
    // The broker closes each connection after the DISCONNECT; give it a few seconds.
    const std::int64_t deadline = steady_ms() + 5000;
    std::array<epoll_event, 1024> events{};
    while (std::any_of(nodes.begin(), nodes.end(), [](const Node& n) { return n.fd >= 0; }) &&
           steady_ms() < deadline) {
      const int k = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
      for (int e = 0; e < k; ++e) {
        const epoll_event& ev = events[static_cast<std::size_t>(e)];
        if (static_cast<std::uint32_t>(ev.data.u64) != kStopTag) on_event(ev.data.u64, ev.events);
      }
    }
    for (Node& n : nodes) {
      if (n.fd >= 0) drop(n, "stopping");
    }
  }
};

Simulator::Simulator(SimOptions options) : options_(std::move(options)) {}
Simulator::~Simulator() = default;

schemas::Result<SimStats> Simulator::run(int stop_fd, std::chrono::milliseconds run_for, const StatsFn& on_born,
                                         const StatsFn& on_progress, std::chrono::milliseconds progress_every) {
  if (options_.brokers.empty()) return schemas::Error{"broker", "no broker given"};
  Impl impl(options_);
  if (auto s = impl.resolve(); !s) return s.error();
  if (auto s = impl.load_tls(); !s) return s.error();
  const bridge::SigpipeGuard no_sigpipe;  // SSL_write raises SIGPIPE on a closed connection
  impl.ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (impl.ep < 0) return schemas::Error{"", std::string("epoll_create1: ") + std::strerror(errno)};
  if (stop_fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStopTag;
    ::epoll_ctl(impl.ep, EPOLL_CTL_ADD, stop_fd, &ev);
  }

  impl.nodes.resize(options_.nodes);
  for (std::size_t i = 0; i < options_.nodes; ++i) {
    auto& n = impl.nodes[i];
    n.id = node_id(options_.prefix, i + 1, options_.nodes);
    n.broker = static_cast<std::uint32_t>(i % options_.brokers.size());
    n.bdseq = options_.bdseq;
    n.rng = static_cast<std::uint32_t>(2654435761u * (i + 1)) | 1u;
    impl.to_connect.push_back(static_cast<std::uint32_t>(i));
  }

  // Connects are paced by a token bucket that holds at most 10 ms worth of tokens, so
  // they go out evenly rather than in bursts.
  const double rate = std::max(options_.connect_rate, 1.0);
  const double burst = std::max(1.0, rate / 100);
  double tokens = burst;
  std::int64_t last_refill = steady_ms();
  const std::int64_t started = last_refill;
  std::int64_t next_progress = started + progress_every.count();
  bool born_reported = false;
  std::int64_t born_at = 0;
  std::array<epoll_event, 1024> events{};

  for (;;) {
    std::int64_t now = steady_ms();
    while (!impl.timers.empty() && impl.timers.top().at <= now) {
      const auto t = impl.timers.top();
      impl.timers.pop();
      impl.on_timer(t);
    }
    tokens = std::min(burst, tokens + static_cast<double>(now - last_refill) * rate / 1000.0);
    last_refill = now;
    while (tokens >= 1 && !impl.to_connect.empty()) {
      const std::uint32_t i = impl.to_connect.front();
      impl.to_connect.pop_front();
      impl.start_connect(impl.nodes[i]);
      tokens -= 1;
    }

    if (!born_reported && impl.stats.nodes_born == impl.nodes.size()) {
      born_reported = true;
      born_at = now;
      if (on_born) on_born(impl.snapshot());
    }
    if (born_reported && run_for.count() > 0 && now - born_at >= run_for.count()) break;
    if (!born_reported && options_.births_timeout.count() > 0 && now - started >= options_.births_timeout.count()) {
      log_line("error", "births_timeout", "born=" + std::to_string(impl.stats.nodes_born) + " nodes=" +
                                              std::to_string(impl.nodes.size()));
      break;
    }
    if (progress_every.count() > 0 && now >= next_progress) {
      next_progress = now + progress_every.count();
      if (on_progress) on_progress(impl.snapshot());
    }

    std::int64_t wake = now + 100;
    if (!impl.timers.empty()) wake = std::min(wake, impl.timers.top().at);
    if (!impl.to_connect.empty()) wake = std::min<std::int64_t>(wake, now + std::max<std::int64_t>(1, static_cast<std::int64_t>(1000 / rate)));
    if (progress_every.count() > 0) wake = std::min(wake, next_progress);
    const int k = ::epoll_wait(impl.ep, events.data(), static_cast<int>(events.size()),
                               static_cast<int>(std::max<std::int64_t>(0, wake - now)));
    if (k < 0 && errno != EINTR) return schemas::Error{"", std::string("epoll_wait: ") + std::strerror(errno)};
    bool stop = false;
    for (int e = 0; e < k; ++e) {
      const epoll_event& ev = events[static_cast<std::size_t>(e)];
      if (static_cast<std::uint32_t>(ev.data.u64) == kStopTag) {
        stop = true;
        continue;
      }
      impl.on_event(ev.data.u64, ev.events);
    }
    if (stop) break;
  }

  impl.shut_down();
  return impl.snapshot();
}

}  // namespace nova::sim
