// The task cache's local interface: a Unix stream socket (cache.socket) speaking
// cache_protocol.h, served by its own threads so a slow client never blocks the agent's
// loop. Tasks find it in their environment as NOVA_CACHE_SOCKET.
//
// Access: the socket is made mode 0600 before it listens; nova-agent then gives it to
// the user tasks run as (tasks.user when the agent is root), so only tasks and the
// agent's user reach it. A stale socket left by a killed agent is replaced; a socket
// another process still serves, or any other file at the path, is an error, never removed.
//
// Threads: one accepts; each connection has one (at most max_connections; the next is
// told "ERR connection ..." and closed); one prefetches. A GET is answered first, then
// its key goes to the prefetch thread's queue (at most 64 keys, the oldest dropped), so
// prefetching never delays an answer. A connection idle for idle_timeout is closed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "nova/agent/cache.h"
#include "nova/schemas/result.h"

namespace nova::agent {

struct CacheServerOptions {
  std::filesystem::path socket;
  Origin origin;  // empty: misses are misses, nothing is prefetched
  std::size_t max_connections = 16;
  std::chrono::milliseconds idle_timeout{30000};
  // Structured log sink (level, event, logfmt fields); none: silent.
  std::function<void(const char*, const std::string&, const std::string&)> log;
};

class CacheServer {
 public:
  // Errors name cache.socket and the reason (cannot bind, path taken by another file).
  static schemas::Result<std::unique_ptr<CacheServer>> start(Cache& cache, CacheServerOptions options);
  // Stops accepting, closes every connection, joins the threads, removes the socket.
  ~CacheServer();

  std::uint64_t bad_requests() const { return bad_requests_.load(); }

 private:
  CacheServer(Cache& cache, CacheServerOptions options, int listen_fd, int wake_fd);
  void accept_loop();
  void serve(int fd);
  void prefetch_loop();
  void queue_prefetch(const std::string& key);
  void bad_request(const schemas::Error& e);

  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  Cache& cache_;
  CacheServerOptions options_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> bad_requests_{0};
  std::mutex connections_mutex_;
  std::list<Connection> connections_;
  std::mutex prefetch_mutex_;
  std::condition_variable prefetch_cv_;
  std::deque<std::string> prefetch_queue_;
  std::thread accept_thread_;
  std::thread prefetch_thread_;
};

}  // namespace nova::agent
