// The live topology as the cloud sees it, rebuilt from what arrives on `up`:
//   - retained node state records (birth "online", goodbye "offline", will "dead"),
//   - Mosquitto's bridge notifications on nova/v1/up/<site>/link ("1"/"0"),
//   - any upward record of a node, which counts as a heartbeat.
//
// Liveness rules (schemas/topics.md, Sparkplug B's model):
//   - a death or goodbye whose bdseq differs from the birth held is stale and ignored
//     (a will a broker fires late for a connection the node has already replaced);
//   - a record identical to the one held is a no-op (bridges re-send retained records
//     on every reconnect);
//   - a link "0" makes every node whose site lies at or below that site unreachable,
//     but not dead; "1" makes them reachable again;
//   - a node online but silent for longer than the heartbeat timeout is "silent".
//
// Pure logic: no clock of its own (callers pass `now`), no I/O, not thread-safe (the
// service serialises access).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"

namespace nova::cloud {

using schemas::Timestamp;

// What the cloud can currently do with a node. Only `alive` nodes receive placements.
enum class Liveness { alive, offline, dead, unreachable, silent };
std::string_view to_string(Liveness l);

struct NodeView {
  std::string id;
  schemas::NodeStatus status = schemas::NodeStatus::online;
  std::uint64_t bdseq = 0;
  std::optional<schemas::NodeDescription> description;  // from the latest birth
  Timestamp last_seen = 0;      // last record of any kind, ms
  Timestamp status_since = 0;   // when `status` last changed, ms
  bool unreachable = false;     // a bridge at or above its site is down
  Liveness liveness = Liveness::alive;
};

// A node whose liveness changed (e.g. alive -> dead triggers failover).
struct LivenessChange {
  std::string node;
  Liveness from;
  Liveness to;
  std::string cause;  // "will", "goodbye", "birth", "link <site> down", "silent 35 s", ...
};

class LiveTopology {
 public:
  explicit LiveTopology(std::uint64_t heartbeat_timeout_ms) : heartbeat_timeout_ms_(heartbeat_timeout_ms) {}

  std::vector<LivenessChange> apply_state(const schemas::NodeState& state, Timestamp now);
  std::vector<LivenessChange> apply_link(const std::string& site_id, bool up, Timestamp now);
  void heartbeat(const std::string& node, Timestamp now);
  // Marks online nodes silent past the timeout (and silent ones alive again when heard).
  std::vector<LivenessChange> check_heartbeats(Timestamp now);

  const NodeView* find(const std::string& node) const;
  const std::map<std::string, NodeView>& nodes() const { return nodes_; }
  // Site paths seen in births, and the links reported down (site ids).
  std::set<std::string> site_paths() const;
  const std::set<std::string>& links_down() const { return links_down_; }
  std::size_t count(Liveness l) const;
  // Moves whenever a node is added or its status, description or liveness changes (a
  // heartbeat that changes nothing else does not move it).
  std::uint64_t revision() const { return revision_; }

 private:
  Liveness derive(const NodeView& n, Timestamp now) const;
  std::vector<LivenessChange> refresh(Timestamp now, const std::string& cause);
  bool below_down_link(const NodeView& n) const;

  std::uint64_t heartbeat_timeout_ms_;
  std::map<std::string, NodeView> nodes_;
  std::set<std::string> links_down_;
  std::uint64_t revision_ = 0;
};

}  // namespace nova::cloud
