#include "nova/testing/delay_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <list>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "nova/bridge/net.h"

namespace nova::testing {

namespace {

using Clock = std::chrono::steady_clock;

// Bytes read from one side, due on the other side at `due`; empty bytes: end of stream.
struct Chunk {
  Clock::time_point due;
  std::string bytes;
  bool eof = false;
};

struct Direction {
  int from = -1;
  int to = -1;
  std::deque<Chunk> held;
  std::size_t written = 0;  // of held.front()
};

struct Pair {
  Direction up;    // client -> upstream
  Direction down;  // upstream -> client
  bool closed = false;
};

void nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

struct DelayProxy::Impl {
  std::uint16_t upstream = 0;
  std::uint16_t port = 0;
  int listener = -1;
  int wake[2] = {-1, -1};
  std::atomic<long long> delay_ms{0};
  std::atomic<std::size_t> accepted{0};
  std::list<Pair> pairs;
  std::thread thread;

  void accept_one() {
    const int client = ::accept(listener, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in a = bridge::loopback_address(upstream);
    if (server < 0 || ::connect(server, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
      ::close(client);
      if (server >= 0) ::close(server);
      return;
    }
    nonblocking(client);
    nonblocking(server);
    Pair& p = pairs.emplace_back();
    p.up.from = p.down.to = client;
    p.up.to = p.down.from = server;
    ++accepted;
  }

  // Reads what `d.from` has, stamped with its due time.
  void read_side(Direction& d) {
    char buf[16384];
    const ssize_t n = ::read(d.from, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    Clock::time_point due = Clock::now() + std::chrono::milliseconds(delay_ms.load());
    if (!d.held.empty()) due = std::max(due, d.held.back().due);  // never reorder
    if (n <= 0) {
      d.held.push_back({due, {}, true});
      return;
    }
    d.held.push_back({due, std::string(buf, static_cast<std::size_t>(n)), false});
  }

  // Writes every chunk that is due; false when the pair is to be closed.
  bool write_side(Direction& d) {
    const auto now = Clock::now();
    while (!d.held.empty() && d.held.front().due <= now) {
      Chunk& c = d.held.front();
      if (c.eof) return false;
      const ssize_t n = ::write(d.to, c.bytes.data() + d.written, c.bytes.size() - d.written);
      if (n < 0) return errno == EAGAIN || errno == EINTR;
      d.written += static_cast<std::size_t>(n);
      if (d.written < c.bytes.size()) return true;
      d.written = 0;
      d.held.pop_front();
    }
    return true;
  }

  void run() {
    for (;;) {
      std::vector<pollfd> fds{{wake[0], POLLIN, 0}, {listener, POLLIN, 0}};
      auto next_due = Clock::time_point::max();
      for (Pair& p : pairs) {
        for (Direction* d : {&p.up, &p.down}) {
          // Once it saw end of stream a side is not read again.
          const bool ended = !d->held.empty() && d->held.back().eof;
          fds.push_back({ended ? -1 : d->from, POLLIN, 0});
          if (!d->held.empty()) {
            next_due = std::min(next_due, d->held.front().due);
            if (d->held.front().due <= Clock::now()) fds.push_back({d->to, POLLOUT, 0});
          }
        }
      }
      int timeout = -1;
      if (next_due != Clock::time_point::max()) {
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_due - Clock::now()).count();
        timeout = static_cast<int>(std::max<long long>(0, wait) + 1);
      }
      if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;  // the destructor
      if (fds[1].revents & POLLIN) accept_one();
      for (Pair& p : pairs) {
        for (Direction* d : {&p.up, &p.down}) {
          for (const pollfd& f : fds) {
            if (f.fd == d->from && (f.revents & (POLLIN | POLLHUP | POLLERR)) && f.events == POLLIN) read_side(*d);
          }
          if (!write_side(*d)) p.closed = true;
        }
      }
      for (auto it = pairs.begin(); it != pairs.end();) {
        if (!it->closed) {
          ++it;
          continue;
        }
        ::close(it->up.from);
        ::close(it->up.to);
        it = pairs.erase(it);
      }
    }
  }
};

DelayProxy::DelayProxy(std::uint16_t upstream_port, std::chrono::milliseconds one_way) : impl_(std::make_unique<Impl>()) {
  impl_->upstream = upstream_port;
  impl_->delay_ms = one_way.count();
  impl_->listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = bridge::loopback_address(0);
  socklen_t len = sizeof a;
  if (impl_->listener < 0 || ::bind(impl_->listener, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(impl_->listener, 16) != 0 || ::getsockname(impl_->listener, reinterpret_cast<sockaddr*>(&a), &len) != 0 ||
      ::pipe2(impl_->wake, O_CLOEXEC) != 0) {
    throw std::runtime_error("delay proxy: cannot listen on loopback");
  }
  impl_->port = ntohs(a.sin_port);
  impl_->thread = std::thread([this] { impl_->run(); });
}

DelayProxy::~DelayProxy() {
  const char byte = 0;
  (void)::write(impl_->wake[1], &byte, 1);
  impl_->thread.join();
  for (Pair& p : impl_->pairs) {
    ::close(p.up.from);
    ::close(p.up.to);
  }
  ::close(impl_->listener);
  ::close(impl_->wake[0]);
  ::close(impl_->wake[1]);
}

std::uint16_t DelayProxy::port() const { return impl_->port; }
void DelayProxy::set_delay(std::chrono::milliseconds one_way) { impl_->delay_ms = one_way.count(); }
std::size_t DelayProxy::accepted() const { return impl_->accepted; }

}  // namespace nova::testing
