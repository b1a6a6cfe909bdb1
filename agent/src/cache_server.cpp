#include "nova/agent/cache_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nova/agent/cache_protocol.h"
#include "nova/common/log.h"

namespace nova::agent {
namespace {

using schemas::Error;

constexpr std::size_t kPrefetchQueue = 64;

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads from `fd` into `buf` (after what it holds); false on EOF, error or idle timeout.
bool fill(int fd, std::string& buf) {
  char chunk[16384];
  const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
  if (n <= 0) return false;
  buf.append(chunk, static_cast<std::size_t>(n));
  return true;
}

}  // namespace

schemas::Result<std::unique_ptr<CacheServer>> CacheServer::start(Cache& cache, CacheServerOptions options) {
  const std::string path = options.socket.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Error{"cache.socket", "'" + path + "' must be 1.." + std::to_string(sizeof addr.sun_path - 1) + " bytes"};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::error_code ec;
  if (options.socket.has_parent_path()) std::filesystem::create_directories(options.socket.parent_path(), ec);
  // A socket left by an agent that was killed is ours to replace; nothing else is.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{"cache.socket", std::string("socket: ") + std::strerror(errno)};
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    bool served = false;
    if (S_ISSOCK(st.st_mode)) {
      const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      served = probe >= 0 && ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
      if (probe >= 0) ::close(probe);
    }
    if (!S_ISSOCK(st.st_mode) || served) {
      ::close(fd);
      return Error{"cache.socket", "'" + path + (served ? "' is served by another process" : "' exists and is not a socket")};
    }
    ::unlink(path.c_str());
  }
  // Closed to everyone but the owner before anyone can connect: listen() comes after.
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::chmod(path.c_str(), 0600) != 0 ||
      ::listen(fd, 16) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return Error{"cache.socket", "'" + path + "': " + why};
  }
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::unique_ptr<CacheServer> server(new CacheServer(cache, std::move(options), fd, wake));
  server->accept_thread_ = std::thread([s = server.get()] { s->accept_loop(); });
  server->prefetch_thread_ = std::thread([s = server.get()] { s->prefetch_loop(); });
  return server;
}

CacheServer::CacheServer(Cache& cache, CacheServerOptions options, int listen_fd, int wake_fd)
    : cache_(cache), options_(std::move(options)), listen_fd_(listen_fd), wake_fd_(wake_fd) {}

CacheServer::~CacheServer() {
  {
    std::lock_guard lock(prefetch_mutex_);  // the prefetch thread checks it under this lock
    stopping_ = true;
  }
  const std::uint64_t one = 1;
  if (::write(wake_fd_, &one, sizeof one) < 0) {
    // The accept thread also wakes from its poll timeout.
  }
  prefetch_cv_.notify_all();
  if (accept_thread_.joinable()) accept_thread_.join();
  if (prefetch_thread_.joinable()) prefetch_thread_.join();
  {
    std::lock_guard lock(connections_mutex_);
    for (Connection& c : connections_) ::shutdown(c.fd, SHUT_RDWR);  // wakes their recv
  }
  for (Connection& c : connections_) {
    if (c.thread.joinable()) c.thread.join();
    ::close(c.fd);
  }
  ::close(listen_fd_);
  ::close(wake_fd_);
  ::unlink(options_.socket.c_str());
}

void CacheServer::accept_loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, 1000) <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(connections_mutex_);
    // Threads of closed connections are joined here, so the list stays short.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        it->thread.join();
        ::close(it->fd);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    if (connections_.size() >= options_.max_connections) {
      bad_request(Error{"connection", "too many connections (" + std::to_string(options_.max_connections) + " open)"});
      send_all(fd, cache_error_reply(Error{"connection", "too many connections (" +
                                                             std::to_string(options_.max_connections) + " open)"}));
      ::close(fd);
      continue;
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(options_.idle_timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((options_.idle_timeout.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    Connection& c = connections_.emplace_back();
    c.fd = fd;
    // The fd is closed only after its thread is joined, so a shutdown() at stop never
    // reaches a number the kernel gave to another file meanwhile; the client sees the
    // end of the connection at once all the same.
    c.thread = std::thread([this, &c] {
      serve(c.fd);
      ::shutdown(c.fd, SHUT_RDWR);
      c.done = true;
    });
  }
}

void CacheServer::bad_request(const Error& e) {
  ++bad_requests_;
  if (options_.log) {
    options_.log("warning", "cache_bad_request",
                 "field=" + e.path + " reason=" + common::logfmt_quote(e.reason));
  }
}

void CacheServer::serve(int fd) {
  std::string buf;
  while (!stopping_) {
    const auto eol = buf.find('\n');
    if (eol == std::string::npos) {
      if (buf.size() > kCacheMaxLine) {
        const Error e{"line", "longer than " + std::to_string(kCacheMaxLine) + " bytes without a line break"};
        bad_request(e);
        send_all(fd, cache_error_reply(e));
        return;
      }
      if (!fill(fd, buf)) return;
      continue;
    }
    auto request = parse_cache_request(std::string_view(buf).substr(0, eol));
    buf.erase(0, eol + 1);
    if (!request) {
      bad_request(request.error());
      if (!send_all(fd, cache_error_reply(request.error())) || request.error().path == "length") return;
      continue;
    }
    const CacheRequest& r = request.value();
    std::string reply;
    switch (r.op) {
      case CacheRequest::Op::get: {
        auto got = cache_.get_or_fetch(r.key, options_.origin);
        if (!got) {
          reply = cache_error_reply(got.error());
        } else if (got.value()) {
          reply = "VALUE " + std::to_string(got.value()->size()) + "\n" + *got.value();
        } else {
          reply = "MISS\n";
        }
        break;
      }
      case CacheRequest::Op::put: {
        while (buf.size() < r.length) {
          if (!fill(fd, buf)) return;  // the value never came: nothing is stored
        }
        const auto stored = cache_.put(r.key, std::string_view(buf).substr(0, r.length));
        buf.erase(0, r.length);
        if (!stored) bad_request(stored.error());
        reply = stored ? "OK\n" : cache_error_reply(stored.error());
        break;
      }
      case CacheRequest::Op::del:
        reply = cache_.erase(r.key) ? "OK\n" : "MISS\n";
        break;
      case CacheRequest::Op::stats:
        reply = cache_stats_reply(cache_.stats());
        break;
    }
    if (!send_all(fd, reply)) return;
    if (r.op == CacheRequest::Op::get && options_.origin) queue_prefetch(r.key);
  }
}

void CacheServer::queue_prefetch(const std::string& key) {
  {
    std::lock_guard lock(prefetch_mutex_);
    if (prefetch_queue_.size() >= kPrefetchQueue) prefetch_queue_.pop_front();
    prefetch_queue_.push_back(key);
  }
  prefetch_cv_.notify_one();
}

void CacheServer::prefetch_loop() {
  for (;;) {
    std::string key;
    {
      std::unique_lock lock(prefetch_mutex_);
      prefetch_cv_.wait(lock, [&] { return stopping_ || !prefetch_queue_.empty(); });
      if (stopping_) return;
      key = std::move(prefetch_queue_.front());
      prefetch_queue_.pop_front();
    }
    cache_.prefetch(key, options_.origin);
  }
}

}  // namespace nova::agent
