// Live events for browsers (GET /api/v1/events, server-sent events): a fan-out from one
// producer (the operator view's watcher, operator_view.h) to many slow readers.
//
// Contract:
//   - publish() never waits for a reader: each client has a bounded queue
//     (`queue_capacity` events); a client whose queue is full when an event arrives is
//     dropped (closed, counted in `dropped`), never allowed to hold the producer back.
//     A dropped reader sees its stream end with an "event: dropped" line and reconnects;
//     the replay below gives it what it missed if that is still held.
//   - Every event gets the next id (1, 2, ...). The last `replay_capacity` events are kept,
//     so a client reconnecting with Last-Event-ID gets the ones after it (or, when that id
//     is older than what is kept, starts with an "event: reset" telling it to reload).
//   - At most `max_clients` readers at once: each holds one of the HTTP server's threads.
//   - Each event carries the site path it concerns (empty: everyone may see it); a
//     scoped reader gets only events at or below its scope (auth.h's in_scope).
//   - close() ends every reader (the server is stopping) and refuses new ones.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace nova::cloud {

struct LiveEvent {
  std::uint64_t id = 0;  // set by publish()
  std::string type;      // "node", "link", "placement", "workload", "alert", "decision"
  std::string data;      // one JSON object, one line
  std::string site;      // the site path it concerns; empty: visible to every scope
};

struct EventHubCounters {
  std::uint64_t published = 0;
  std::uint64_t dropped = 0;   // readers dropped because their queue was full
  std::uint64_t refused = 0;   // readers refused: max_clients reached or closed
  std::uint64_t clients = 0;   // gauge: readers connected now
};

class EventHub {
 public:
  struct Limits {
    std::size_t queue_capacity = 1024;
    std::size_t replay_capacity = 4096;
    std::size_t max_clients = 16;
  };

  // One reader. Owned by the HTTP handler that streams it; detached from the hub when
  // destroyed.
  class Client {
   public:
    ~Client();
    // Waits up to `timeout` for events; returns what is queued (empty on timeout). After
    // the client was dropped or the hub closed, returns nothing at once and closed() holds.
    std::vector<LiveEvent> next(std::chrono::milliseconds timeout);
    bool closed() const;
    bool dropped() const;

   private:
    friend class EventHub;
    Client(EventHub* hub, std::string scope) : hub_(hub), scope_(std::move(scope)) {}
    EventHub* hub_;
    std::string scope_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<LiveEvent> queue_;
    bool dropped_ = false;
    bool closed_ = false;
  };

  EventHub() : EventHub(Limits{}) {}
  explicit EventHub(Limits limits) : limits_(limits) {}
  ~EventHub();

  // A new reader within `scope`, first given the kept events after `last_id` (0: none).
  // Null when max_clients readers are connected or the hub is closed.
  // `reset`: set true when last_id is older than every kept event (events were lost).
  std::shared_ptr<Client> subscribe(const std::string& scope, std::uint64_t last_id, bool* reset = nullptr);
  void publish(LiveEvent event);
  void close();
  EventHubCounters counters() const;

 private:
  void detach(Client* client);
  static bool visible(const Client& c, const LiveEvent& e);

  Limits limits_;
  mutable std::mutex mutex_;
  std::vector<Client*> clients_;
  std::deque<LiveEvent> replay_;
  std::uint64_t next_id_ = 1;
  bool closed_ = false;
  EventHubCounters counters_;
};

// The SSE wire form of one event: "id: N\nevent: TYPE\ndata: JSON\n\n".
std::string sse_frame(const LiveEvent& e);

}  // namespace nova::cloud
