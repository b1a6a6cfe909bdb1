// The re-optimiser: moves pending and running workloads toward the batch optimum.
//
// One POST /api/v1/workloads at a time is placed greedily on arrival, which on tight
// capacity leaves feasible workloads pending and scores well below what placing them
// together would (docs/placement.md, "Objective"). Every `interval_ms`, the owner of a set
// of workloads asks plan_reoptimisation() what to change: it places the pending and the
// movable running workloads together with tiers::place_batch (the immovable ones stay
// where they are and hold their resources; each running one earns a stay bonus of 0.5
// points where it is, so that among assignments that place as many the target moves
// fewer workloads), and when that assignment beats the current one -- more workloads
// placed, or as many and a total score higher by at least `min_gain` (hysteresis: small
// gains do not move running work) -- it returns the steps toward it that are possible now:
//   1. pending workloads placed on their target node where it has room,
//   2. at most `migration_budget` running workloads moved to their target, where it has
//      room, largest demand first (the big ones are the ones that unblock others), in
//      passes until nothing more fits (a move can make room for another),
//   3. pending workloads again after each pass, on the room the moves left,
//   4. when nothing could move (the target permutes full nodes: a swap, a cycle), one
//      detour: a workload the target moves off a node that a blocked step needs is
//      parked on the best node with room now other than both, when that gives the
//      blocked step its room once the parked workload's old run has stopped. A later
//      round moves the parked workload on.
// Steps never overcommit a node on the current state: room is accounted as they are
// planned. What is not possible now (a target still full) waits for the next round, so a
// tight cluster converges over rounds, each bounded by the budget.
//
// "Movable" is the caller's to decide, with the migration limits of migration.h: placed
// at least the minimum dwell time ago, its old run known stopped (no fence, fence.h; a
// workload moved before may move again after the dwell), and its node under the
// per-node cap. Pure logic: no I/O, no clock.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/tiers/placement.h"

namespace nova::cloud {

struct ReoptimiserPolicy {
  schemas::Timestamp interval_ms = 10'000;  // between rounds; 0: never
  std::size_t migration_budget = 2;         // running workloads moved per round, at most
  double min_gain = 1.0;                    // total score a round must gain to move anything running
};

// One workload as the re-optimiser sees it.
struct Standing {
  schemas::WorkloadSpec spec;
  std::optional<std::string> node;  // where it runs; absent: pending
  bool movable = false;             // running and allowed to move now (see above)
};

struct ReoptimiserStep {
  std::size_t index = 0;      // into the standing span
  tiers::Decision decision;   // decision.best: the target, with its score on the batch optimum
  bool migration = false;     // false: a pending workload placed
};

// `candidates`: every node, with `used` counting everything except the standing
// workloads (the caller leaves them out; immovable ones are added back here).
std::vector<ReoptimiserStep> plan_reoptimisation(std::span<const Standing> standing,
                                                 std::vector<tiers::Candidate> candidates,
                                                 const ReoptimiserPolicy& policy);

}  // namespace nova::cloud
