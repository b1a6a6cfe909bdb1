// The re-optimiser's plan: the batch optimum of the pending and movable workloads, and
// the steps toward it that fit now (reoptimiser.h).
#include "nova/cloud/reoptimiser.h"

#include <algorithm>
#include <map>

namespace nova::cloud {

namespace {

using schemas::Resources;

void add(Resources& to, const Resources& r) {
  to.cpu_millis += r.cpu_millis;
  to.memory_mb += r.memory_mb;
  to.storage_mb += r.storage_mb;
}

void subtract(Resources& from, const Resources& r) {
  from.cpu_millis -= std::min(from.cpu_millis, r.cpu_millis);
  from.memory_mb -= std::min(from.memory_mb, r.memory_mb);
  from.storage_mb -= std::min(from.storage_mb, r.storage_mb);
}

bool room(const tiers::Candidate& c, const Resources& r) {
  auto fits = [](std::uint64_t alloc, std::uint64_t used, std::uint64_t want) {
    return used <= alloc && want <= alloc - used;
  };
  return fits(c.allocatable.cpu_millis, c.used.cpu_millis, r.cpu_millis) &&
         fits(c.allocatable.memory_mb, c.used.memory_mb, r.memory_mb) &&
         fits(c.allocatable.storage_mb, c.used.storage_mb, r.storage_mb);
}

std::uint64_t demand(const schemas::WorkloadSpec& s) { return s.resources.cpu_millis + s.resources.memory_mb; }

// What a running workload earns in the target's search by staying where it is (score
// points): among assignments that place as many, the target moves fewer workloads, and
// a move must gain more than this (reoptimiser.h).
constexpr double kStayBonus = 0.5;

}  // namespace

std::vector<ReoptimiserStep> plan_reoptimisation(std::span<const Standing> standing,
                                                 std::vector<tiers::Candidate> candidates,
                                                 const ReoptimiserPolicy& policy) {
  std::map<std::string, std::size_t, std::less<>> at;
  for (std::size_t i = 0; i < candidates.size(); ++i) at[candidates[i].node] = i;
  auto slot_of = [&](const std::optional<std::string>& node) -> std::optional<std::size_t> {
    if (!node) return std::nullopt;
    auto it = at.find(*node);
    if (it == at.end()) return std::nullopt;
    return it->second;
  };
  // Immovable running workloads hold their resources; the rest is placed together.
  std::vector<std::size_t> free_ones;
  for (std::size_t i = 0; i < standing.size(); ++i) {
    const Standing& s = standing[i];
    const auto slot = slot_of(s.node);
    if (s.node && !s.movable) {
      if (slot) add(candidates[*slot].used, s.spec.resources);
      continue;
    }
    if (s.node && !slot) continue;  // runs on a node we do not see: failover's business
    free_ones.push_back(i);
  }
  if (free_ones.empty()) return {};
  std::vector<schemas::WorkloadSpec> specs;
  tiers::PlacementOptions opts;
  opts.stay_bonus = kStayBonus;
  for (std::size_t i : free_ones) {
    specs.push_back(standing[i].spec);
    opts.current.push_back(standing[i].node.value_or(""));
  }
  const tiers::BatchResult target = tiers::place_batch(specs, candidates, opts);

  // The current assignment of the same workloads on the same objective: each running
  // one scored on its node's current state.
  std::vector<tiers::Candidate> now = candidates;
  for (std::size_t i : free_ones) {
    if (auto slot = slot_of(standing[i].node)) add(now[*slot].used, standing[i].spec.resources);
  }
  std::size_t placed_now = 0;
  double score_now = 0;
  for (std::size_t i : free_ones) {
    const auto slot = slot_of(standing[i].node);
    if (!slot) continue;
    ++placed_now;
    tiers::Candidate c = now[*slot];
    subtract(c.used, standing[i].spec.resources);
    if (tiers::check(standing[i].spec, c) == tiers::Rejection::none) {
      score_now += tiers::total(tiers::score(standing[i].spec, c));
    }
  }
  const bool more = target.placed > placed_now;
  const bool moves_pay = more || (target.placed == placed_now && target.objective >= score_now + policy.min_gain);

  std::vector<ReoptimiserStep> steps;
  std::vector<bool> done(free_ones.size(), false);
  auto place_pending = [&] {
    for (std::size_t k = 0; k < free_ones.size(); ++k) {
      const Standing& s = standing[free_ones[k]];
      const auto& d = target.decisions[k];
      if (done[k] || s.node || !d.best || !room(now[d.best->index], s.spec.resources)) continue;
      add(now[d.best->index].used, s.spec.resources);
      steps.push_back({free_ones[k], d, false});
      done[k] = true;
    }
  };
  place_pending();
  if (moves_pay) {
    std::vector<std::size_t> movers;
    for (std::size_t k = 0; k < free_ones.size(); ++k) {
      const Standing& s = standing[free_ones[k]];
      const auto& d = target.decisions[k];
      if (s.node && d.best && d.best->node != *s.node) movers.push_back(k);
    }
    std::stable_sort(movers.begin(), movers.end(), [&](std::size_t a, std::size_t b) {
      return demand(standing[free_ones[a]].spec) > demand(standing[free_ones[b]].spec);
    });
    // Passes until nothing more fits: a move can make room for an earlier one.
    std::size_t moved = 0;
    for (bool progress = true; progress && moved < policy.migration_budget;) {
      progress = false;
      for (std::size_t k : movers) {
        if (moved >= policy.migration_budget) break;
        const Standing& s = standing[free_ones[k]];
        const auto& d = target.decisions[k];
        if (done[k] || !room(now[d.best->index], s.spec.resources)) continue;
        add(now[d.best->index].used, s.spec.resources);
        subtract(now[*slot_of(s.node)].used, s.spec.resources);
        steps.push_back({free_ones[k], d, true});
        done[k] = true;
        ++moved;
        progress = true;
      }
      place_pending();
    }
    // A detour when nothing could move: the target is often a permutation of full nodes
    // (a swap, a cycle), where no move has room now. Then a workload that the target
    // moves off a node some blocked step needs goes to the best node with room now other
    // than both (it is parked there; a later round, after the dwell time, moves it on),
    // so the blocked step finds its room once the parked workload's old run has stopped.
    for (std::size_t k = 0; k < free_ones.size() && moved == 0 && policy.migration_budget > 0; ++k) {
      const auto& d = target.decisions[k];
      if (done[k] || !d.best || standing[free_ones[k]].node == d.best->node) continue;
      const std::size_t blocked = d.best->index;  // the node step k waits for
      for (std::size_t x = 0; x < free_ones.size() && moved == 0; ++x) {
        const Standing& s = standing[free_ones[x]];
        const auto& dx = target.decisions[x];
        if (x == k || done[x] || !s.node || *s.node != candidates[blocked].node || (dx.best && dx.best->index == blocked)) {
          continue;
        }
        // Only a detour that gives step k its room once the parked run has stopped.
        tiers::Candidate after = now[blocked];
        subtract(after.used, s.spec.resources);
        if (!room(after, standing[free_ones[k]].spec.resources)) continue;
        std::vector<tiers::Candidate> elsewhere = now;
        elsewhere[blocked].alive = false;
        elsewhere[*slot_of(s.node)].alive = false;
        tiers::Decision park = tiers::place_one(s.spec, elsewhere);
        if (!park.best) continue;
        add(now[park.best->index].used, s.spec.resources);
        subtract(now[blocked].used, s.spec.resources);
        steps.push_back({free_ones[x], std::move(park), true});
        done[x] = true;
        ++moved;
      }
    }
  }
  return steps;
}

}  // namespace nova::cloud
