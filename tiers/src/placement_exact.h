// Private to tiers/src/placement*.cpp: an exact solve of batch placement.
//
// The batch objective (docs/placement.md, "Objective") is lexicographic: the most placed
// workloads, then the highest total score, each workload scored on its node's final
// state. The score is not linear in a workload-to-node assignment, but it is in the sets
// of workloads each node takes: exact_batch() enumerates, for every node, each set of
// workloads that fits there together (capacity; the other hard constraints are in each
// workload's options), values it with the caller's exact score of that set on that node,
// and solves the set-packing integer program (each node takes at most one set, each
// workload is in at most one chosen set) with GLPK's branch and cut (glp_intopt): first
// the most workloads, then the best score with at least that many. The set formulation's
// LP bound is tight where the plain assignment model's is not (a cardinality knapsack
// over 20 nodes took cbc 26 s to prove in that form), so these solves are quick -- but
// the sets grow exponentially with the workloads a node can take, so a size limit on
// the enumeration and a time limit on each solve bound it; beyond them the heuristic
// stays the answer.
//
// GLPK is a host library: the device build (NOVA_FIRMWARE), whose agent never places a
// batch, compiles placement_exact_none.cpp instead, which always answers `unavailable`.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace nova::tiers::detail {

struct Packing {
  // Per node: what is free (allocatable - used) in cpu, memory, storage.
  std::vector<std::array<std::uint64_t, 3>> room;
  // Per workload: its request, and the nodes it may use (every hard constraint but
  // capacity already checked).
  std::vector<std::array<std::uint64_t, 3>> req;
  std::vector<std::vector<std::uint32_t>> options;
  // The exact total score of `members` together on `node` (they fit there).
  std::function<double(std::uint32_t node, const std::vector<std::uint32_t>& members)> value;
  // Per workload: its node in a known assignment that fits (the heuristic's), or
  // kUnplaced; the solver's first incumbent.
  std::vector<std::uint32_t> start;
  // Per node: the first node identical to it for this batch (same room, same workloads
  // may use it, same value of every set: `value` of one answers for all), or itself.
  // Identical nodes share their sets (a class row takes as many sets as it has nodes),
  // which keeps a uniform cluster's enumeration small and takes the symmetry out of the
  // search. Empty: every node is its own.
  std::vector<std::uint32_t> twin_of;
};

inline constexpr std::uint32_t kUnplaced = 0xffffffffu;

struct PackingLimits {
  std::size_t max_sets = 20'000;  // enumerated (node class, set) pairs; above: not attempted
  // Per solve (count, then score): branch-and-cut nodes, which keeps the answer
  // independent of the machine's load, and a time limit as a backstop.
  int max_nodes = 2000;
  int time_ms = 3000;
};

struct PackingResult {
  enum class Status {
    optimal,      // the most workloads, then the best score (both proven)
    count_only,   // the most workloads (proven); the score solve hit a limit
    failed,       // no proven count within the limits
    too_large,    // over max_sets: not attempted
    unavailable,  // built without a solver
  };
  Status status = Status::unavailable;
  std::vector<std::uint32_t> assign;  // node per workload or kUnplaced (optimal, count_only)
  std::size_t placed = 0;
  double score = 0;
  std::size_t sets = 0;  // how many were enumerated
};

PackingResult exact_batch(const Packing& p, const PackingLimits& limits);

}  // namespace nova::tiers::detail
