// Verdicts: nova-cloud judges every decision an agent took on its own against the cloud
// policy (config section `verdicts`, docs/cloud.md "Verdicts") and sends the verdict down
// on nova/v1/down/<site>/<node>/verdict (signed, like every downward message).
//
// The rules, in this order; the first that applies decides:
//   1. rate limit: a node's decisions are counted in a sliding window by their own
//      timestamps (so a backlog decided offline and delivered after a reconnect is
//      judged by when it was taken, not by when it arrived); a decision that finds
//      `rate_limit` of them already in the window before it is "rejected";
//   2. allowed actions per tier level: a level listed in `allowed_actions` allows only
//      the actions listed for it ("rejected" otherwise); a level not listed allows any;
//   3. threshold bounds per gauge: a "threshold_alert" decision reports the levels in
//      force (inputs "warning" and "critical", 0 = off); a level outside the gauge's
//      bounds is "overridden": the verdict carries the levels brought within the bounds,
//      which the agent puts in force and records (a decision record whose "applies"
//      names this decision);
//   4. anything else is "accepted".
// A record that carries out a verdict (applies) is not judged: it marks its decision's
// override as applied.
//
// A decision of a node whose birth has not been seen waits (at most kMaxWaiting per
// node) until it is: the verdict needs the node's tier level and site path. Every
// decision is judged once: the service calls on_decision for records its store admitted
// as new, never for duplicates.
//
// The decisions and their verdicts are kept (the newest kMaxKept, in the store as cloud
// records of kind "verdict", synced) for GET /api/v1/decisions. With several instances
// sharing ingest, each judges and lists the decisions the broker handed it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::cloud {

// A gauge's allowed threshold levels, inclusive.
struct ThresholdBounds {
  double min = 0;
  double max = 0;
  friend bool operator==(const ThresholdBounds&, const ThresholdBounds&) = default;
};

struct VerdictPolicy {
  bool enabled = true;           // false: decisions are stored, never judged
  std::uint32_t rate_limit = 0;  // decisions per node per window; 0: no limit
  std::chrono::seconds rate_window{3600};
  std::map<std::uint32_t, std::set<std::string>> allowed_actions;  // by tier level 1..5
  std::map<std::string, ThresholdBounds> threshold_bounds;         // by gauge
  friend bool operator==(const VerdictPolicy&, const VerdictPolicy&) = default;
};

// The policy from the config's list values; errors name the key and the entry:
//   verdicts.allowed_actions: "9:alerted": level must be 1..5
// `allowed_actions` entries are "<level>:<action>"; `threshold_bounds` entries are
// "<gauge>:<min>..<max>" with 0 <= min <= max.
schemas::Result<VerdictPolicy> parse_verdict_policy(bool enabled, std::uint32_t rate_limit,
                                                    std::uint32_t rate_window_s,
                                                    const std::vector<std::string>& allowed_actions,
                                                    const std::vector<std::string>& threshold_bounds);

// The rules above, without I/O. Not thread-safe (Verdicts holds it under its lock).
class VerdictJudge {
 public:
  explicit VerdictJudge(VerdictPolicy policy) : policy_(std::move(policy)) {}
  // The verdict on `d` of `node` at tier `level`, issued at `now`.
  schemas::DecisionVerdict judge(const std::string& node, std::uint32_t level, const schemas::DecisionRecord& d,
                                 schemas::Timestamp now);

 private:
  bool over_rate(const std::string& node, schemas::Timestamp ts);
  VerdictPolicy policy_;
  std::map<std::string, std::multiset<schemas::Timestamp>> recent_;  // per node, within the window
};

// One decision as the API shows it.
struct DecisionEntry {
  std::string site;  // the node's site path when judged (empty while waiting)
  schemas::DecisionRecord record;
  std::optional<schemas::DecisionVerdict> verdict;  // none: waiting for the node's birth
  std::optional<schemas::DecisionRecord> applied;   // the agent's record of the override
};

struct VerdictCounters {
  std::uint64_t accepted = 0;
  std::uint64_t overridden = 0;
  std::uint64_t rejected = 0;
  std::uint64_t applied = 0;   // overrides the agents recorded as applied
  std::uint64_t waiting = 0;   // gauge: decisions waiting for their node's birth
  std::uint64_t dropped = 0;   // decisions not judged: kMaxWaiting of their node were waiting
};

class Verdicts {
 public:
  static constexpr std::size_t kMaxKept = 10000;
  static constexpr std::size_t kMaxWaiting = 256;

  struct Hooks {
    // QoS 1, not retained; the service signs down topics.
    std::function<bool(const std::string& topic, const std::vector<std::uint8_t>& payload)> publish;
    // The node's tier level and site path, once its birth was seen.
    std::function<std::optional<std::pair<std::uint32_t, std::string>>(const std::string& node)> placement_of;
    // Keeps (or, empty, forgets) an entry's JSON under `id`, synced.
    std::function<schemas::Status(const std::string& id, const std::string& json)> persist;
    std::function<void(const char* level, const std::string& event, const std::string& fields)> log;
    // A decision accepted (or, with verdicts off, any decision): the cloud's part of
    // carrying it out, e.g. a request_migration (service.cpp). Called under the lock.
    std::function<void(const schemas::DecisionRecord& record, schemas::Timestamp now)> accepted;
  };
  Verdicts(VerdictPolicy policy, Hooks hooks);

  // An entry kept by an earlier run (its JSON); false if unreadable.
  bool restore(const std::string& json);
  // A decision record the store admitted as new (ingest thread).
  void on_decision(const schemas::DecisionRecord& record, schemas::Timestamp now);
  // `node`'s birth was seen: its waiting decisions are judged now.
  void on_birth(const std::string& node, schemas::Timestamp now);

  // The newest first, at most `limit`; `keep` filters (node, site). Thread-safe.
  std::vector<DecisionEntry> list(std::size_t limit,
                                  const std::function<bool(const DecisionEntry&)>& keep) const;
  VerdictCounters counters() const;

 private:
  using Key = std::pair<std::string, std::string>;  // node, decision id
  void judge_and_send(DecisionEntry& entry, std::uint32_t level, schemas::Timestamp now);
  void keep(const Key& key, DecisionEntry entry);
  void persist(const Key& key, const DecisionEntry* entry);
  void log(const char* level, const std::string& event, const std::string& fields) const;

  Hooks hooks_;
  const bool enabled_;
  mutable std::mutex mutex_;
  VerdictJudge judge_;
  std::map<Key, DecisionEntry> entries_;
  std::deque<Key> order_;  // oldest kept first
  std::map<std::string, std::vector<schemas::DecisionRecord>> waiting_;  // by node
  VerdictCounters counters_;
};

// An entry as the API and the store write it (JSON): the decision record's fields, and
// "site", "verdict" (null while waiting) and "applied" (null until the agent's record).
std::string to_json(const DecisionEntry& entry);
// The counters in Prometheus text format (nova_cloud_verdicts_total{verdict}, ...).
std::string verdict_metrics(const VerdictCounters& c);

}  // namespace nova::cloud
