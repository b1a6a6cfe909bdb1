// Migration: when a running workload should leave its node, and the plan for moving it.
//
// Triggers (first match wins, checked every second for the workloads an instance owns):
//   requested     the node itself asked (a rule's request_migration decision the
//                 verdicts accepted; Workloads::request_migration)
//   utilisation   the node is overloaded (OverloadTracker below): its CPU or memory has
//                 stayed above the high watermark for the sustained window, and it stays
//                 overloaded until a sample at or below the low watermark
//   thermal       the node reports thermal throttling
//   maintenance   the node's cluster has a maintenance window that is open now or opens
//                 within 30 minutes (cluster policy "maintenance_window": "HH:MM-HH:MM",
//                 UTC, daily; a window may wrap midnight)
//   connectivity  the node changed liveness 3 or more times in the last 10 minutes (a
//                 flapping uplink; a node that is down outright fails over instead)
//   cost          the node's cluster costs more (policy "cost", relative, default 1) and
//                 a node costing at most 70 % of it scores within 5 points
//
// Limits (MigrationPolicy, the cloud config's migration.* keys): no trigger moves a
// workload placed less than the minimum dwell time ago (a migration is a placement too,
// so this also spaces one workload's moves), and at most max_per_node migrations leave
// one node per window -- so a node that crosses 90 % keeps its work for the sustained
// window, and a node hovering around the mark never sheds it.
//
// A plan moves a workload only to a node that passes every hard constraint. It carries
// the data to move (the workload's storage_mb), the sync strategy ("restart" for a
// stateless workload, "copy-then-switch" when it has storage: the new run is told where
// it came from through its environment, NOVA_MIGRATED_FROM and NOVA_SYNC_STRATEGY, and
// pulls its state before serving), the estimated transfer time, and the placement to
// return to. If the target fails to start (it refuses the task, fails without starting,
// or dies before reporting), the plan rolls back: the placement returns to the source,
// whose run was never stopped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"
#include "nova/tiers/placement.h"

namespace nova::cloud {

using schemas::Timestamp;

// When utilisation moves work, and how much. Defaults are the cloud config's.
struct MigrationPolicy {
  double high_pct = 90;               // above this for `sustain_ms`: overloaded
  double low_pct = 75;                // overloaded until a sample at or below this
  Timestamp sustain_ms = 60'000;      // in the samples' own time
  Timestamp min_dwell_ms = 300'000;   // a placement younger than this is never migrated
  std::uint32_t max_per_node = 2;     // migrations off one node ...
  Timestamp node_window_ms = 600'000; // ... per this sliding window
};

// One node's CPU and memory judged with hysteresis, each on its own, from every sample
// of its batches in the samples' own time: a batch of 60 one-second samples counts as
// 60 s of evidence however late it arrives, and the agent's clock skew cancels out.
class OverloadTracker {
 public:
  // Samples not newer than the newest seen are ignored (a replay after a reconnect).
  void observe(const schemas::MetricSample& sample, const MigrationPolicy& policy);
  // While overloaded, why: "cpu above 90 % for 65 s (last sample 100 %)"; else nullopt.
  std::optional<std::string> overloaded() const;

 private:
  struct Gauge {
    explicit Gauge(const char* gauge_name) : name(gauge_name) {}
    const char* name;
    std::optional<Timestamp> above_since;  // first sample of the current run above high
    bool overloaded = false;
    double last = 0;
    void observe(double value, Timestamp ts, const MigrationPolicy& policy);
  };
  Gauge cpu_{"cpu"};
  Gauge mem_{"memory"};
  double high_pct_ = 90;
  Timestamp newest_ = 0;
  bool seen_ = false;
};

// What the cloud knows about a node when it considers moving work off it.
struct NodeSignals {
  std::optional<std::string> overloaded;  // OverloadTracker::overloaded()
  bool throttled = false;                 // its latest sample reports thermal throttling
  std::size_t liveness_changes_10min = 0;
  tiers::Maintenance maintenance = tiers::Maintenance::none;
};

// The reason to move, e.g. "cpu 95 % > 90 %", or nullopt. Cost is judged separately: it
// needs the alternatives' scores.
std::optional<std::string> migration_trigger(const NodeSignals& node);

// Where `now` stands relative to a daily UTC window "HH:MM-HH:MM" (none / soon: opens
// within 30 minutes / now). A malformed window is an error naming the problem.
schemas::Result<tiers::Maintenance> maintenance_at(std::string_view window, Timestamp now);

struct MigrationPlan {
  std::string from;
  std::string to;
  std::string trigger;
  double score_from = 0;  // the current placement's score
  double score_to = 0;    // the target's
  std::uint64_t data_mb = 0;
  std::string sync;                        // "restart" | "copy-then-switch"
  std::uint64_t estimated_transfer_ms = 0; // data_mb over the path (100 Mbit/s assumed)
  schemas::Placement rollback;             // where it returns if the target fails
  Timestamp started_ts = 0;
};

MigrationPlan plan_migration(const schemas::WorkloadSpec& spec, const schemas::Placement& current,
                             const schemas::Placement& target, std::string trigger, Timestamp now);

}  // namespace nova::cloud
