// What the operator's dashboard is told as it happens: a watcher that turns changes of
// nova-cloud's state into live events (event_hub.h), and the liveness history behind the
// offline statistics of GET /api/v1/offline.
//
// Changes are found by comparing snapshots, every `interval` (250 ms by default), on a
// thread of its own: the ingest thread and the MQTT callbacks never wait for it, and an
// event reaches a browser at most one interval after nova-cloud's state changed.
//   node       a node's liveness changed (or a node appeared): {id, site, level,
//              liveness, from, ts}
//   link       a bridge link went down or came back: {site, state: "up"|"down", ts}
//   placement  a workload got a (new) placement: {workload_id, node, site, score,
//              breakdown, revision, reason (the placement's history entry), ts}
//   workload   a workload's phase or pending reason changed: {workload_id, phase,
//              unplaced_reason, ts}
//   alert      an alert was stored: {node, alert_id, severity, metric, observed,
//              threshold, message, ts, received}
//   decision   a decision was stored or judged: the GET /api/v1/decisions entry
//
// The first round after start publishes nothing: it learns the state the REST snapshot
// shows, so a page that loads the snapshot and then listens misses no change.
//
// Liveness history: every transition seen since this process started, per node (the
// last kMaxTransitions of each); offline time is measured on it, so it starts at zero
// with each nova-cloud start.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "nova/cloud/event_hub.h"
#include "nova/cloud/live_topology.h"

namespace nova::cloud {

class CloudService;

// Per node, the liveness states it went through and since when. Thread-safe.
class LivenessHistory {
 public:
  static constexpr std::size_t kMaxTransitions = 256;
  struct Span {
    Timestamp since = 0;
    Liveness state = Liveness::alive;
  };
  // The node is in `state` from `ts` on (a repeat of the current state is ignored).
  void record(const std::string& node, Liveness state, Timestamp ts);
  // Over [from, to): milliseconds spent in any state but alive (time before the first
  // record counts as alive: unknown), and how many periods away from alive began in it.
  struct Offline {
    Timestamp offline_ms = 0;
    std::uint64_t periods = 0;
    Timestamp first_seen = 0;  // the first record kept
  };
  Offline offline(const std::string& node, Timestamp from, Timestamp to) const;
  std::vector<Span> spans(const std::string& node) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<Span>> spans_;
};

class OperatorView {
 public:
  // Starts the watcher thread (interval 0: none; tests call tick() themselves).
  OperatorView(CloudService& service, EventHub& hub, std::chrono::milliseconds interval);
  ~OperatorView();  // stops the thread
  // One comparison round at `now`: publishes what changed since the last one.
  void tick(Timestamp now);
  const LivenessHistory& history() const { return history_; }

 private:
  void run(std::chrono::milliseconds interval);

  CloudService& service_;
  EventHub& hub_;
  LivenessHistory history_;
  bool primed_ = false;
  std::map<std::string, Liveness> liveness_;
  std::set<std::string> links_down_;
  std::map<std::string, std::string> placements_;  // workload id -> "node@revision"
  std::map<std::string, std::string> phases_;      // workload id -> "phase|reason"
  std::map<std::string, std::string> decisions_;   // node/stream/seq -> verdict state
  Timestamp alerts_since_ = 0;
  std::set<std::string> alerts_seen_;              // at alerts_since_ (same received ms)
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nova::cloud
