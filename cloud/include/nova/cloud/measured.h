// Measured placement signals: what nova-cloud learns about each node from its samples and
// its session history, turned into the edge factors of tiers::Candidate.
//
// Sources (docs/cloud.md, "Measured signals"):
//   rtt_ms          the agent's gauge agent.rtt_ms: the round trip from publishing a record
//                   to the cloud's end-to-end ack that covers it, minimum-filtered by the
//                   agent (agent/include/nova/agent/rtt.h). Latest sample wins.
//   stability       share of the last stability_window_ms (10 min) the node was alive, from
//                   the liveness changes live_topology reports (births, wills, goodbyes,
//                   links down above it, silence); over the time observed when shorter.
//   reliability     share of the last reliability_window_ms (24 h) the node was alive;
//                   absent until it was observed for reliability_min_observed_ms (1 h), so
//                   a node seen for minutes is judged by its tier's SLO, not by luck.
//   offline_hours   how long the outbox could hold what the node sends upward:
//                   (agent.outbox_max_bytes - agent.outbox_bytes) / rate, where rate is the
//                   growth of agent.outbox_appended_bytes over the samples of the last
//                   rate_window_ms (10 min), in bytes per hour; capped at offline_hours_cap
//                   (168 h). Nothing appended in the window: the cap. Absent without the
//                   gauges or before two samples span some time.
//   power           battery when power.on_battery is 1; its headroom is
//                   power.battery_pct / 100 (the charge left is the budget left), 1 on mains.
//   throttled       the latest sample's `throttled`.
//
// Latency. nova-cloud estimates a node's one-way latency to a target from the tree
// (workloads.cpp: typical figures per hop). A measured round trip corrects it:
//   latency(node, target) = tree(node, target) + excess
//   excess = max(0, rtt_ms / 2 - tree(node, root))
// The round trip goes up to the root (the cloud) and back, so half of it is the node's
// measured one-way latency to the root; what it exceeds the tree's estimate of that path
// by is a slow link somewhere on the node's own branch, which every path from the node
// crosses (its first hops are its own uplink). A measurement below the estimate does
// not lower it: loopback test rigs and idle LANs measure less than the typical figures,
// and the estimate is what bounds were written against.
//
// Pure logic: the caller passes the time; not thread-safe (Workloads holds its lock).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "nova/cloud/live_topology.h"
#include "nova/schemas/messages.h"
#include "nova/tiers/placement.h"

namespace nova::cloud {

struct MeasurePolicy {
  Timestamp stability_window_ms = 10 * 60'000;
  Timestamp reliability_window_ms = 24 * 3'600'000;
  Timestamp reliability_min_observed_ms = 3'600'000;
  Timestamp rate_window_ms = 10 * 60'000;
  double offline_hours_cap = 168;
};

// What is known of one node; absent: not measured (placement then assumes no penalty,
// or the tier's SLO for reliability).
struct Measured {
  std::optional<double> rtt_ms;
  std::optional<double> stability;
  std::optional<double> reliability;
  std::optional<double> offline_hours;
  bool on_battery = false;
  double power_headroom = 1.0;
  bool throttled = false;

  friend bool operator==(const Measured&, const Measured&) = default;
};

// The latency correction above: how much a node's measured one-way latency to the root
// exceeds the tree's estimate of it, never below 0.
double latency_excess_ms(std::optional<double> rtt_ms, double tree_to_root_ms);

// Sets the candidate's stability, reliability, offline hours, power and throttling from
// `m` (its latency is set by the caller, who knows the targets).
void apply(const Measured& m, tiers::Candidate& c);

class NodeMeasures {
 public:
  explicit NodeMeasures(MeasurePolicy policy = {}) : policy_(policy) {}

  // Every sample of a node's batch, oldest first.
  void observe_sample(const std::string& node, const schemas::MetricSample& sample);
  // The node's liveness is now `l` (a change live_topology reported, or the first time
  // it is seen).
  void observe_liveness(const std::string& node, Liveness l, Timestamp now);
  // Forgets the node (erasure, removal).
  void forget(const std::string& node);

  Measured of(const std::string& node, Timestamp now) const;

 private:
  struct Node {
    // Liveness history: the state at `since` and every change after it, pruned to the
    // reliability window.
    Timestamp first_seen = 0;
    bool up_at_start = false;
    Timestamp since = 0;
    std::deque<std::pair<Timestamp, bool>> changes;
    // From samples.
    std::optional<double> rtt_ms;
    bool on_battery = false;
    std::optional<double> battery_pct;
    bool throttled = false;
    std::optional<double> outbox_bytes, outbox_max_bytes;
    std::deque<std::pair<Timestamp, double>> appended;  // (sample ts, agent.outbox_appended_bytes)
  };
  // Share of [max(first_seen, now - window), now] the node was up; nullopt when that
  // span is empty.
  std::optional<double> up_share(const Node& n, Timestamp window, Timestamp now) const;

  MeasurePolicy policy_;
  std::map<std::string, Node> nodes_;
};

}  // namespace nova::cloud
