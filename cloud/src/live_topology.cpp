#include "nova/cloud/live_topology.h"

#include <algorithm>

namespace nova::cloud {

std::string_view to_string(Liveness l) {
  switch (l) {
    case Liveness::alive: return "alive";
    case Liveness::offline: return "offline";
    case Liveness::dead: return "dead";
    case Liveness::unreachable: return "unreachable";
    case Liveness::silent: return "silent";
  }
  return "unknown";
}

namespace {

// "cloud/eu/par/par-a1" lies below link site "par" when "par" is one of its levels.
bool path_contains_site(const std::string& path, const std::string& site) {
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t slash = path.find('/', start);
    const std::size_t end = slash == std::string::npos ? path.size() : slash;
    if (path.compare(start, end - start, site) == 0 && end - start == site.size()) return true;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return false;
}

}  // namespace

bool LiveTopology::below_down_link(const NodeView& n) const {
  if (!n.description) return false;
  return std::any_of(links_down_.begin(), links_down_.end(),
                     [&](const std::string& site) { return path_contains_site(n.description->site, site); });
}

Liveness LiveTopology::derive(const NodeView& n, Timestamp now) const {
  switch (n.status) {
    case schemas::NodeStatus::dead: return Liveness::dead;
    case schemas::NodeStatus::offline: return Liveness::offline;
    case schemas::NodeStatus::online: break;
  }
  if (n.unreachable) return Liveness::unreachable;
  if (heartbeat_timeout_ms_ > 0 && now > n.last_seen && now - n.last_seen > heartbeat_timeout_ms_) return Liveness::silent;
  return Liveness::alive;
}

std::vector<LivenessChange> LiveTopology::refresh(Timestamp now, const std::string& cause) {
  std::vector<LivenessChange> changes;
  for (auto& [id, n] : nodes_) {
    n.unreachable = below_down_link(n);
    const Liveness next = derive(n, now);
    if (next != n.liveness) {
      changes.push_back({id, n.liveness, next, cause});
      n.liveness = next;
    }
  }
  if (!changes.empty()) ++revision_;
  return changes;
}

std::vector<LivenessChange> LiveTopology::apply_state(const schemas::NodeState& state, Timestamp now) {
  auto [it, fresh] = nodes_.try_emplace(state.node);
  NodeView& n = it->second;
  if (fresh) {
    n.id = state.node;
    n.liveness = Liveness::dead;  // unknown until this record says otherwise
  }
  const bool is_birth = state.status == schemas::NodeStatus::online;
  if (!fresh) {
    const bool same = n.status == state.status && n.bdseq == state.bdseq &&
                      (!is_birth || n.description == state.description);
    if (same) return {};
    // A death or goodbye for another birth than the one held is stale.
    if (!is_birth && state.bdseq != n.bdseq && n.status == schemas::NodeStatus::online) return {};
  }
  ++revision_;  // past the no-op checks: something about the node changed
  if (is_birth) n.description = state.description;
  if (n.status != state.status || fresh) n.status_since = now;
  n.status = state.status;
  n.bdseq = state.bdseq;
  n.last_seen = now;
  n.unreachable = below_down_link(n);
  const Liveness next = derive(n, now);
  if (next == n.liveness && !fresh) return {};
  LivenessChange change{n.id, n.liveness, next,
                        is_birth ? "birth" : (state.status == schemas::NodeStatus::dead ? "will" : "goodbye")};
  n.liveness = next;
  return {change};
}

std::vector<LivenessChange> LiveTopology::apply_link(const std::string& site_id, bool up, Timestamp now) {
  const bool changed = up ? links_down_.erase(site_id) != 0 : links_down_.insert(site_id).second;
  if (!changed) return {};
  return refresh(now, "link " + site_id + (up ? " up" : " down"));
}

void LiveTopology::heartbeat(const std::string& node, Timestamp now) {
  auto it = nodes_.find(node);
  if (it != nodes_.end()) it->second.last_seen = std::max(it->second.last_seen, now);
}

std::vector<LivenessChange> LiveTopology::check_heartbeats(Timestamp now) {
  std::vector<LivenessChange> changes;
  for (auto& [id, n] : nodes_) {
    const Liveness next = derive(n, now);
    if (next == n.liveness) continue;
    std::string cause = next == Liveness::silent
                            ? "silent " + std::to_string((now - n.last_seen) / 1000) + " s"
                            : "heard again";
    changes.push_back({id, n.liveness, next, std::move(cause)});
    n.liveness = next;
  }
  if (!changes.empty()) ++revision_;
  return changes;
}

const NodeView* LiveTopology::find(const std::string& node) const {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? nullptr : &it->second;
}

std::set<std::string> LiveTopology::site_paths() const {
  std::set<std::string> out;
  for (const auto& [id, n] : nodes_) {
    if (n.description) out.insert(n.description->site);
  }
  return out;
}

std::size_t LiveTopology::count(Liveness l) const {
  return static_cast<std::size_t>(
      std::count_if(nodes_.begin(), nodes_.end(), [l](const auto& kv) { return kv.second.liveness == l; }));
}

}  // namespace nova::cloud
