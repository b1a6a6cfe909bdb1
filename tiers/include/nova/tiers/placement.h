// Workload placement: which node of the hierarchy should run a workload, and why.
//
// This is pure logic (no I/O, no clock, no MQTT): nova-cloud feeds it the nodes it knows
// from retained state and metrics, and publishes what it decides. docs/placement.md
// explains the model at length; this header is the specification.
//
// A decision has two stages.
//
// 1. Hard constraints filter. A node that fails one is never chosen, whatever its score.
//    They are checked in this order, and check() reports the first that fails:
//      dead         the node is not alive (last will, missed heartbeats, removed)
//      maintenance  the node is inside a maintenance window now
//      region       the workload names a data-residency region and the node is not in it
//                   (a node without a region never satisfies a region requirement)
//      cluster      the workload lists clusters_include and the node is in none of them,
//                   or the node is in one of clusters_exclude
//      capability   a required capability is missing (see "Capabilities" below)
//      cpu, memory, storage
//                   the request does not fit in allocatable - used, per dimension
//      latency      the workload has a latency bound {max_ms, to} and the node's measured
//                   latency to `to` is unknown or above max_ms. Unknown is infeasible on
//                   purpose: a bound we cannot verify is a bound we may break.
//    Tier preference and availability are NOT hard constraints: a workload whose
//    preferred tiers are full still runs somewhere, ranked lower (see "level").
//
// 2. The seed's multi-objective score ranks the feasible nodes. Every component is
//    0..100 and the total is
//      total = 0.25 resource + 0.25 latency + 0.20 capability + 0.15 level
//            + 0.15 availability
//    so the total is 0..100 too. Every decision carries its ScoreBreakdown, and the
//    breakdown's weighted sum is exactly the decision's score. The edge factors of a
//    Candidate enter the components like this:
//
//      resource      fit of the request on the node after placement, u = utilisation of
//                    the binding dimension (the fullest of the dimensions the workload
//                    requests): fit = 0.5 + 0.5 u / 0.85 up to 85 %, then falls linearly
//                    to 0.1 at 100 %. Best fit (tight packing keeps large holes free for
//                    large workloads) but not past the >90 % migration trigger.
//                    balance = 1 - |cpu - memory utilisation| after placement: low
//                    fragmentation (a node whose CPU is full and memory empty strands
//                    its memory; storage is used independently and left out).
//                    resource = 100 (0.7 fit + 0.3 balance) x thermal x power, where
//                    thermal = 0.5 when the node is throttling (its CPU is worth half)
//                    and power = 0.5 + 0.5 power_headroom.
//      latency       proximity = 1 - latency/max_ms with a bound (1 without one), and
//                    link = 0.6 connection_stability + 0.4 min(1, bandwidth/100 Mbit/s):
//                    latency = 100 (0.7 proximity + 0.3 link).
//      capability    100 (0.5 + 0.5 (m + 1) / (c + 1)), c = the node's declared
//                    capabilities, m = how many of them the workload requires. A node
//                    whose special hardware (gpu, npu, ...) goes unused scores lower, so
//                    it stays free for the workloads that need it.
//      level         tier_preference empty: 100 everywhere. Otherwise the level at
//                    position i of the list scores 100 - 25 i (at least 25); a level
//                    not in the list scores 0.
//      availability  expected uptime e = reliability (observed) or, when unknown, the
//                    tier's SLO (profile.h). meet = 1 when 1 - e <= 1 - need, else the
//                    share of the downtime budget it respects, (1 - need) / (1 - e).
//                    availability = 100 meet x maintenance x power x offline, where
//                    maintenance = 0.5 when a window is near, power = 0.8 on battery,
//                    offline = 0.8 + 0.2 min(1, offline_hours / 24) (a node that keeps
//                    working 24 h without uplink loses nothing).
//
// Capabilities. Names are compared exactly, except for these aliases, which are folded
// before comparing: arm64 = aarch64, amd64 = x64 = x86_64, armhf = armv7 = armv7l.
// The node's arch counts as a capability, so a workload requiring "arm64" runs on a node
// whose arch is "aarch64" even when its capability list does not say so.
//
// Ties. Candidates are ordered by score (higher first), then by node id (lexicographic,
// smaller first), so every result is deterministic and independent of input order.
//
// Failover candidates. place_one() returns the best node and up to k alternatives, the
// precomputed failover list: the best node of each other site first, in score order
// (a site is one broker and often one power feed, so a second node at the same site
// likely fails with the first), then, when fewer than k other sites have a feasible
// node, the best remaining nodes in score order. Alternatives are distinct nodes, never
// the chosen one.
//
// Batch placement. place_batch() places many workloads at once and never overcommits a
// node: capacity is accounted as workloads are placed. Its objective is lexicographic:
// first the number of placed workloads (a feasible workload is never left pending when
// an assignment could place it), then the sum of the placed workloads' scores, where each
// workload's resource score is evaluated on its node's final state (with every batch
// workload assigned to that node), so the objective does not depend on placement order.
// The heuristic: greedy placement on the current state from two orders, regret
// (workloads whose best option is much better than their second go first, the classic
// generalised-assignment heuristic) and largest demand first, plus a packing start for
// the count (by size, best fit, seeded passes), keeping the start that places more;
// then local search (ejection chains that place one more, move one workload, swap two,
// eject one to make room for an unplaced one; "unplaced" is a valid place) alternating
// with exact solves of small neighbourhoods (two to four nodes with their workloads and
// the unplaced ones that could go there) until nothing improves the objective, then
// an exact solve when the batch is small enough (every set of workloads each node can
// take, valued exactly, solved as a set-packing program with GLPK: the most workloads,
// then the best score; bounded in sets, branch-and-cut nodes and time, the heuristic's
// answer kept otherwise), then, when the count is not proven, seeded ruin-and-recreate
// rounds kept only when they place more. On 2,400 exhaustively solved small instances it
// finds the optimum every time; larger tight instances against cbc are in
// docs/benchmarks.md. PlacementOptions::current and stay_bonus make it prefer keeping
// running workloads where they are (the re-optimiser's use).
//
// Performance. The free functions scan every candidate and are the reference semantics.
// PlacementEngine holds the candidates in an index (buckets of equal region, level,
// arch, capabilities and clusters, each with bounds on its best achievable score; inside
// each bucket its usable nodes ordered by a per-node score bound that includes the
// node's current utilisation, re-ordered in O(log n) on every usage change; plus
// per-target lists sorted by latency) and answers the same questions touching only the
// buckets, and within them the nodes, that can still beat the current k-th best (branch
// and bound). Its results are identical to the free functions' (same scores, same
// order), which the tests check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"

namespace nova::tiers {

using schemas::Placement;
using schemas::Resources;
using schemas::ScoreBreakdown;
using schemas::WorkloadSpec;

// The seed's weights, in ScoreBreakdown order.
inline constexpr double kWeightResource = 0.25;
inline constexpr double kWeightLatency = 0.25;
inline constexpr double kWeightCapability = 0.20;
inline constexpr double kWeightLevel = 0.15;
inline constexpr double kWeightAvailability = 0.15;

// The weighted sum of a breakdown, 0..100.
double total(const ScoreBreakdown& b);

enum class PowerSource : std::uint8_t { mains, battery };
enum class Maintenance : std::uint8_t {
  none,  // no window planned soon
  soon,  // a window starts soon: feasible, availability halved
  now,   // inside a window: infeasible
};

// What placement knows about one node. nova-cloud builds these from retained births
// (level, site, arch, caps, allocatable, region), metrics (used, throttling, power),
// cluster registrations and its latency measurements. Defaults are "no penalty", so a
// caller that does not know a factor does not punish the node for it.
struct Candidate {
  std::string node;                       // node id, unique among candidates
  std::string site;                       // site path, e.g. "cloud/eu/par/acc-01"
  std::uint8_t level = 5;                 // 1 cloud .. 5 device
  std::string arch;                       // e.g. "aarch64", "x86_64"
  std::vector<std::string> capabilities;  // declared, e.g. {"gpu", "camera"}
  std::optional<std::string> region;      // data-residency region
  std::vector<std::string> clusters;      // ids of the federated clusters it belongs to
  Resources allocatable;
  Resources used;  // may exceed allocatable (then nothing fits)
  bool alive = true;

  // Edge factors.
  // Measured latency in ms from this node to targets (site ids or sensor ids), the
  // `to` of a LatencyBound. A target missing here is unknown (infeasible for a bound).
  std::map<std::string, double, std::less<>> latency_ms;
  double bandwidth_mbps = 1000;       // uplink bandwidth available
  double connection_stability = 1.0;  // 0..1, share of time the uplink was up recently
  PowerSource power = PowerSource::mains;
  double power_headroom = 1.0;        // 0..1, unused share of the node's power budget
  bool thermal_throttled = false;
  double offline_hours = 24;          // how long it keeps working without uplink
  Maintenance maintenance = Maintenance::none;
  std::optional<double> reliability;  // observed uptime 0..1; absent: the tier's SLO
};

// Why a candidate cannot take a workload; the first failing check in the order above.
enum class Rejection : std::uint8_t {
  none,  // feasible
  dead,
  maintenance,
  region,
  cluster_not_included,
  cluster_excluded,
  capability,
  cpu,
  memory,
  storage,
  latency_unknown,
  latency_exceeded,
};

std::string_view to_string(Rejection r);  // "none", "dead", ..., "latency_exceeded"

// The first hard constraint the candidate violates, or Rejection::none.
Rejection check(const WorkloadSpec& spec, const Candidate& c);

// "Why not": "" when feasible, else one line naming the constraint and the numbers, e.g.
//   "cpu: needs 2000 millis, 500 free (3500 of 4000 used)"
//   "latency: 14.5 ms to 'acc-01' exceeds the bound of 10 ms"
//   "capability: 'gpu' missing (node has: camera, arch aarch64)"
std::string explain(const WorkloadSpec& spec, const Candidate& c);

// The score of placing spec on c now (c.used + the request). Precondition: check() ==
// Rejection::none. Components are 0..100; total(score(...)) is the decision's score.
ScoreBreakdown score(const WorkloadSpec& spec, const Candidate& c);

// One scored, feasible candidate.
struct Ranked {
  std::size_t index = 0;  // into the candidate span, or the engine's slot
  std::string node;
  std::string site;
  double score = 0;
  ScoreBreakdown breakdown;
};

struct Decision {
  std::optional<Ranked> best;   // absent: no candidate is feasible
  std::vector<Ranked> failover; // up to k alternatives, see "Failover candidates"
};

struct PlacementOptions {
  std::size_t failover_count = 3;  // k
  // place_batch only: the node each spec runs on now (same order as the specs; "" or
  // absent: nowhere) and a bonus, in score points, that a workload earns by staying
  // there. The search then prefers, among assignments that place as many, the one that
  // moves fewer running workloads unless moving gains more than the bonus (the
  // re-optimiser's hysteresis per workload). The result's scores and objective never
  // include it. 0: no preference.
  std::vector<std::string> current;
  double stay_bonus = 0;
};

// The placement record for a decision (revision and ts are the caller's to set).
// Precondition: d.best.
Placement to_placement(const WorkloadSpec& spec, const Decision& d);

// Reference implementations: score every candidate.
Decision place_one(const WorkloadSpec& spec, std::span<const Candidate> candidates,
                   const PlacementOptions& opts = {});
// The k best feasible candidates in score order (no site diversity): the
// "optimize" endpoint's recommendations. Nothing is committed.
std::vector<Ranked> rank(const WorkloadSpec& spec, std::span<const Candidate> candidates,
                         std::size_t k);

struct BatchResult {
  // One per spec, same order. best absent: unplaced. Breakdowns are on the final state
  // (every batch workload on its node); failover lists are computed on that state too.
  std::vector<Decision> decisions;
  double objective = 0;  // sum of the placed workloads' scores
  std::size_t placed = 0;
};

// Places specs together on candidates (which are not modified), never overcommitting.
BatchResult place_batch(std::span<const WorkloadSpec> specs,
                        std::span<const Candidate> candidates,
                        const PlacementOptions& opts = {});

// The indexed placer. Holds a copy of every candidate; update it as nodes change (births,
// deaths, metrics, reservations) and ask it for decisions. Each decision touches only
// the buckets that can still beat the current best (see "Performance"); results equal
// the free functions' over the same candidates.
//
// Not thread-safe for writers: concurrent const calls are fine, any mutation needs
// exclusive access. Slot indices (Ranked::index) are stable until the node is removed;
// a removed node's slot may be reused by a later upsert.
class PlacementEngine {
 public:
  PlacementEngine();
  explicit PlacementEngine(std::span<const Candidate> candidates);
  PlacementEngine(const PlacementEngine&);
  PlacementEngine& operator=(const PlacementEngine&);
  PlacementEngine(PlacementEngine&&) noexcept;
  PlacementEngine& operator=(PlacementEngine&&) noexcept;
  ~PlacementEngine();

  std::size_t size() const;  // nodes held
  // Adds the node or replaces the one with the same id; returns its slot.
  std::size_t upsert(const Candidate& c);
  bool remove(std::string_view node);
  std::optional<std::size_t> find(std::string_view node) const;
  const Candidate& candidate(std::size_t slot) const;  // precondition: slot is held

  // Cheap updates for the frequent changes (metrics, liveness, commits).
  bool set_used(std::string_view node, const Resources& used);
  bool set_alive(std::string_view node, bool alive);
  // Adds (reserve) or subtracts (release, saturating at 0) a workload's resources.
  void reserve(std::size_t slot, const Resources& r);
  void release(std::size_t slot, const Resources& r);

  Decision place_one(const WorkloadSpec& spec, const PlacementOptions& opts = {}) const;
  std::vector<Ranked> rank(const WorkloadSpec& spec, std::size_t k) const;
  // As the free place_batch, over the held candidates (which are not modified; commit
  // the result with reserve()).
  BatchResult place_batch(std::span<const WorkloadSpec> specs,
                          const PlacementOptions& opts = {}) const;

  // How many candidates the last decision scored in full on this thread (benchmarks,
  // tests of the pruning); the free functions score every feasible one.
  static std::size_t last_scored();

  // Checks that the index agrees with the candidates it holds; "" when it does, else
  // what is wrong. For tests; O(size).
  std::string verify() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nova::tiers
