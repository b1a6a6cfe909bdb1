#include "nova/cloud/measured.h"

#include <algorithm>

namespace nova::cloud {

namespace {

// A flapping node's history stays bounded; the oldest changes fold into the start state.
constexpr std::size_t kMaxChanges = 4096;

std::optional<double> gauge(const schemas::MetricSample& s, const char* name) {
  auto it = s.extra.find(name);
  if (it == s.extra.end()) return std::nullopt;
  return it->second;
}

}  // namespace

double latency_excess_ms(std::optional<double> rtt_ms, double tree_to_root_ms) {
  if (!rtt_ms) return 0;
  return std::max(0.0, *rtt_ms / 2 - tree_to_root_ms);
}

void apply(const Measured& m, tiers::Candidate& c) {
  if (m.stability) c.connection_stability = *m.stability;
  c.reliability = m.reliability;
  if (m.offline_hours) c.offline_hours = *m.offline_hours;
  c.power = m.on_battery ? tiers::PowerSource::battery : tiers::PowerSource::mains;
  c.power_headroom = m.power_headroom;
  c.thermal_throttled = m.throttled;
}

void NodeMeasures::observe_sample(const std::string& node, const schemas::MetricSample& s) {
  Node& n = nodes_[node];
  if (auto v = gauge(s, "agent.rtt_ms"); v && *v >= 0) n.rtt_ms = *v;
  n.throttled = s.throttled.value_or(false);
  if (auto v = gauge(s, "power.on_battery")) n.on_battery = *v >= 0.5;
  if (auto v = gauge(s, "power.battery_pct")) n.battery_pct = std::clamp(*v, 0.0, 100.0);
  if (auto v = gauge(s, "agent.outbox_bytes")) n.outbox_bytes = *v;
  if (auto v = gauge(s, "agent.outbox_max_bytes")) n.outbox_max_bytes = *v;
  if (auto v = gauge(s, "agent.outbox_appended_bytes")) {
    // A counter that went back (the agent restarted) starts the window again, as does a
    // clock that did.
    if (!n.appended.empty() && (*v < n.appended.back().second || s.ts < n.appended.back().first)) n.appended.clear();
    n.appended.emplace_back(s.ts, *v);
    while (n.appended.size() > 2 && n.appended[1].first + policy_.rate_window_ms <= s.ts) n.appended.pop_front();
  }
}

void NodeMeasures::observe_liveness(const std::string& node, Liveness l, Timestamp now) {
  Node& n = nodes_[node];
  const bool up = l == Liveness::alive;
  if (n.first_seen == 0) {
    n.first_seen = n.since = now;
    n.up_at_start = up;
    return;
  }
  const bool current = n.changes.empty() ? n.up_at_start : n.changes.back().second;
  if (up != current) n.changes.emplace_back(now, up);
  const Timestamp horizon = now > policy_.reliability_window_ms ? now - policy_.reliability_window_ms : 0;
  while (!n.changes.empty() && (n.changes.front().first <= horizon || n.changes.size() > kMaxChanges)) {
    n.up_at_start = n.changes.front().second;
    n.since = n.changes.front().first;
    n.changes.pop_front();
  }
}

void NodeMeasures::forget(const std::string& node) { nodes_.erase(node); }

std::optional<double> NodeMeasures::up_share(const Node& n, Timestamp window, Timestamp now) const {
  const Timestamp start = std::max({n.first_seen, n.since, now > window ? now - window : Timestamp{0}});
  if (n.first_seen == 0 || now <= start) return std::nullopt;
  bool up = n.up_at_start;
  Timestamp at = start;
  double up_ms = 0;
  for (const auto& [ts, state] : n.changes) {
    if (ts >= now) break;
    if (ts > at) {
      if (up) up_ms += static_cast<double>(ts - at);
      at = ts;
    }
    up = state;
  }
  if (up) up_ms += static_cast<double>(now - at);
  return up_ms / static_cast<double>(now - start);
}

Measured NodeMeasures::of(const std::string& node, Timestamp now) const {
  Measured m;
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return m;
  const Node& n = it->second;
  m.rtt_ms = n.rtt_ms;
  m.throttled = n.throttled;
  m.on_battery = n.on_battery;
  if (n.on_battery && n.battery_pct) m.power_headroom = *n.battery_pct / 100;
  m.stability = up_share(n, policy_.stability_window_ms, now);
  if (n.first_seen != 0 && now >= n.first_seen + policy_.reliability_min_observed_ms) {
    m.reliability = up_share(n, policy_.reliability_window_ms, now);
  }
  if (n.outbox_bytes && n.outbox_max_bytes && n.appended.size() >= 2 &&
      n.appended.back().first > n.appended.front().first) {
    const double grown = n.appended.back().second - n.appended.front().second;
    const double per_hour = grown / static_cast<double>(n.appended.back().first - n.appended.front().first) * 3'600'000;
    const double headroom = std::max(0.0, *n.outbox_max_bytes - *n.outbox_bytes);
    m.offline_hours = per_hour <= 0 ? policy_.offline_hours_cap : std::min(policy_.offline_hours_cap, headroom / per_hour);
  }
  return m;
}

}  // namespace nova::cloud
