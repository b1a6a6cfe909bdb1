// PlacementEngine: the candidate index, branch-and-bound decisions and batch placement.
//
// Index. Candidates with the same (region, level, arch, capabilities, clusters) share a
// bucket. Every hard constraint except liveness, resources and latency is decided once
// per bucket and query, and so are the capability and level components. Each bucket
// keeps bounds over its usable members (largest free amount per dimension, best
// resource multiplier, best link, lowest expected downtime, best availability
// multiplier), which give an upper bound on any member's score for a query. A query
// scans buckets in decreasing bound order and stops when the next bound is below the
// score a candidate needs to change the result (the selector's threshold).
//
// Inside a bucket, the usable members are also kept in decreasing order of a per-node
// key (node_key): a bound on the node's score for any workload without a latency bound,
// minus a request-dependent term bounded per bucket. It includes the node's current
// utilisation (the fit curve rises until the knee, and a request can raise the binding
// utilisation by at most its size over the allocatable), so it separates nodes whose
// only difference is usage. A query walks a bucket in that order and stops at the first
// node whose bound is below the threshold. Usage changes move the node in O(log n).
//
// Latency-bound queries walk instead the per-target list of (latency, node), sorted by
// latency: it ends at the bound, and the proximity term only falls along it, so the
// bound over the rest of the list is checked as it goes.
//
// Bounds are weighted sums of per-component maxima computed with the same functions as
// the scores; IEEE rounding is monotone, so a bound is never below a member's score.
#include <algorithm>
#include <random>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "nova/tiers/placement.h"
#include "placement_core.h"
#include "placement_exact.h"

namespace nova::tiers {

using namespace detail;

namespace {

constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
static_assert(kNone == kUnplaced, "an unplaced workload is the same to the exact count");
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// Local search improvement must beat this, so rounding noise cannot make it cycle.
constexpr double kImprove = 1e-9;
// Candidate nodes per workload for batch local search above kSmallBatchNodes nodes.
constexpr std::size_t kBatchOptions = 16;
constexpr std::size_t kSmallBatchNodes = 256;
// Upper limit of node evaluations the local search may spend (bounds large batches).
constexpr std::size_t kSearchBudget = 20'000'000;
// The exact neighbourhood solve: at most this many workloads per neighbourhood (its
// search tree has at most (nodes + 1)^this leaves), triples of nodes while the batch
// has at most kHoodTripleNodes candidate nodes, pairs up to kHoodPairNodes; above that
// only the neighbourhoods of unplaced workloads.
constexpr std::size_t kHoodWorkloads = 12;
constexpr std::size_t kHoodQuadNodes = 12;
// Ejection chains evict at most this many workloads in a row to place one more.
constexpr std::size_t kChainDepth = 3;
// Passes of the packing start (one in size order, the others perturbed).
constexpr std::uint32_t kPackPasses = 64;
constexpr std::size_t kHoodTripleNodes = 24;
constexpr std::size_t kHoodPairNodes = 96;
constexpr std::size_t kWholeNodes = 6;
// Ruin-and-recreate rounds for the placed count (each O(workloads x options)).
constexpr std::size_t kRuinRounds = 400;
// Search steps one neighbourhood may take (its best so far counts when they run out), and
// all of them together: they bound the latency a batch submission adds.
constexpr std::size_t kHoodSolveBudget = 50'000;
constexpr std::size_t kHoodsBudget = 4'000'000;
// The exact solve looks for identical nodes while nodes x workloads is at most this
// (each node's signature holds an entry per workload).
constexpr std::size_t kTwinCells = 100'000;

// The batch objective is lexicographic: more placed workloads first, then a higher total
// score. A step improves it when it places more, or as many and scores more than rounding.
bool improves(int placed_gain, double score_gain) {
  return placed_gain > 0 || (placed_gain == 0 && score_gain > kImprove);
}

// Added to the node-level bounds (which are computed in a different order than the
// scores): larger than any rounding difference on 0..100, so a bound is never below the
// score it bounds; a bound that is too high only costs a little pruning.
constexpr double kBoundSlack = 1e-6;

thread_local std::size_t g_last_scored = 0;

struct BucketKey {
  std::optional<std::string> region;
  std::uint8_t level = 0;
  std::string arch;                   // canonical
  std::vector<std::string> caps;      // canonical, sorted, unique
  std::vector<std::string> clusters;  // sorted, unique

  auto operator<=>(const BucketKey&) const = default;
  bool operator==(const BucketKey&) const = default;
};

BucketKey key_of(const Candidate& c) {
  return BucketKey{c.region, c.level, std::string(canonical_cap(c.arch)),
                   canonical_set(c.capabilities), sorted_set(c.clusters)};
}

struct Bounds {
  std::size_t usable = 0;
  std::uint64_t max_free[3] = {0, 0, 0};
  // Smallest non-zero allocatable per dimension (0: no usable member has the dimension).
  std::uint64_t min_alloc[3] = {0, 0, 0};
  double max_res_mult = 0, max_link = 0, min_down = 1, max_avail_mult = 0;

  bool operator==(const Bounds& o) const {
    for (int d = 0; d < 3; ++d) {
      if (max_free[d] != o.max_free[d] || min_alloc[d] != o.min_alloc[d]) return false;
    }
    return usable == o.usable && max_res_mult == o.max_res_mult && max_link == o.max_link &&
           min_down == o.min_down && max_avail_mult == o.max_avail_mult;
  }
};

// The usable members of a bucket in decreasing order of their key (see node_key), as
// (-key, slot).
using Order = std::set<std::pair<double, std::uint32_t>>;

struct Bucket {
  BucketKey key;
  std::vector<std::uint32_t> members;
  Bounds bounds;
  Order order;
};

struct Slot {
  bool occupied = false;
  bool usable = false;  // alive and not in maintenance
  bool ordered = false;  // in its bucket's order, under `key`
  std::uint32_t bucket = kNone, pos = 0, site = 0;
  std::uint64_t alloc[3] = {0, 0, 0}, used[3] = {0, 0, 0};
  Factors f;
  double key = 0;
};

// A query-independent part of an upper bound on the slot's score for any workload without
// a latency bound. With u = the node's fullest dimension now (the binding dimension after
// placement is at most u + delta, delta = the largest request/allocatable ratio of the
// dimensions requested) and fit rising until the knee, fit <= fit(min(u, knee)) +
// 0.5 delta / knee; balance, proximity and the availability "meet" are at most 1. So
//   score <= 0.20 capability + 0.15 level + key + 0.25 x 100 x res_mult x 0.7 x 0.5 delta / knee
// where key collects the rest. Only the last term depends on the request, and it is
// bounded per bucket (res_mult <= 1, delta from the bucket's smallest allocatable).
double node_key(const Slot& s) {
  bool any = false;
  double u = 0;
  for (int d = 0; d < 3; ++d) {
    if (s.alloc[d] == 0) continue;
    const double x = static_cast<double>(s.used[d]) / static_cast<double>(s.alloc[d]);
    u = any ? std::max(u, x) : x;
    any = true;
  }
  const double fit = 0.5 + 0.5 * (std::min(u, kFitKnee) / kFitKnee);
  return kWeightResource * 100.0 * s.f.res_mult * (0.7 * fit + 0.3) +
         kWeightLatency * latency_component(1.0, s.f.link) +
         kWeightAvailability * 100.0 * s.f.avail_mult;
}

struct LatEntry {
  double ms;
  std::uint32_t slot;
  bool operator<(const LatEntry& o) const { return ms != o.ms ? ms < o.ms : slot < o.slot; }
};

struct Entry {
  double score = 0;
  std::uint32_t slot = 0, site = 0;
  const std::string* node = nullptr;
  ScoreBreakdown b;
};

bool ahead(const Entry& a, const Entry& b) { return better(a.score, *a.node, b.score, *b.node); }

void insert_top(std::vector<Entry>& v, const Entry& e, std::size_t cap) {
  if (v.size() >= cap && !ahead(e, v.back())) return;
  auto at = std::find_if(v.begin(), v.end(), [&](const Entry& x) { return ahead(e, x); });
  v.insert(at, e);
  if (v.size() > cap) v.pop_back();
}

// Keeps what a decision needs while candidates stream in: the best node of each of the
// best k_sites sites (skipping excluded_site) and the k_all best nodes overall. In rank
// mode (diverse = false) only the latter.
//
// A site evicted from `sites` can never come back with a stale score: it was evicted
// because its best was below the list's last entry, which only rises afterwards.
class Selector {
 public:
  Selector(std::size_t k_sites, std::size_t k_all, bool diverse, std::uint32_t excluded_site)
      : k_sites_(k_sites), k_all_(k_all), diverse_(diverse), excluded_(excluded_site) {}

  void offer(const Entry& e) {
    insert_top(all, e, k_all_);
    if (!diverse_ || e.site == excluded_) return;
    auto it = std::find_if(sites.begin(), sites.end(),
                           [&](const Entry& x) { return x.site == e.site; });
    if (it == sites.end()) {
      insert_top(sites, e, k_sites_);
      return;
    }
    if (!ahead(e, *it)) return;
    *it = e;
    while (it != sites.begin() && ahead(*it, *(it - 1))) {
      std::iter_swap(it, it - 1);
      --it;
    }
  }

  // A candidate scoring below this cannot change the result. With diversity the result
  // needs the fill list only while fewer than k_sites sites were seen.
  double threshold() const {
    if (diverse_) return sites.size() >= k_sites_ ? sites.back().score : kNegInf;
    return all.size() >= k_all_ ? all.back().score : kNegInf;
  }

  std::vector<Entry> sites, all;

 private:
  std::size_t k_sites_, k_all_;
  bool diverse_;
  std::uint32_t excluded_;
};

struct Plan {
  std::uint32_t bucket;
  double capability, level, ub;
  double base = 0;  // node bound = base + key (queries without a latency bound)
  ScoreBreakdown upper;  // per-component bounds
};

}  // namespace

struct PlacementEngine::Impl {
  std::vector<Candidate> cands;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> free_slots;
  std::map<std::string, std::uint32_t, std::less<>> by_node;
  std::map<std::string, std::uint32_t, std::less<>> site_ids;
  std::map<BucketKey, std::uint32_t> bucket_ids;
  std::vector<Bucket> buckets;
  std::map<std::string, std::uint32_t, std::less<>> target_ids;
  std::vector<std::vector<LatEntry>> lat_lists;
  std::size_t held = 0;

  // ---- maintenance of the index -------------------------------------------------------

  static std::uint32_t intern(std::map<std::string, std::uint32_t, std::less<>>& m,
                              std::string_view s) {
    auto it = m.find(s);
    if (it != m.end()) return it->second;
    const auto id = static_cast<std::uint32_t>(m.size());
    m.emplace(std::string(s), id);
    return id;
  }

  Bounds bounds_of(const Bucket& b) const {
    Bounds x;
    for (std::uint32_t m : b.members) {
      const Slot& s = slots[m];
      if (!s.usable) continue;
      ++x.usable;
      for (int d = 0; d < 3; ++d) {
        x.max_free[d] = std::max(x.max_free[d], free_of(s.alloc[d], s.used[d]));
        if (s.alloc[d] > 0 && (x.min_alloc[d] == 0 || s.alloc[d] < x.min_alloc[d])) {
          x.min_alloc[d] = s.alloc[d];
        }
      }
      x.max_res_mult = std::max(x.max_res_mult, s.f.res_mult);
      x.max_link = std::max(x.max_link, s.f.link);
      x.min_down = std::min(x.min_down, s.f.down);
      x.max_avail_mult = std::max(x.max_avail_mult, s.f.avail_mult);
    }
    return x;
  }

  void refresh(std::uint32_t b) { buckets[b].bounds = bounds_of(buckets[b]); }

  // Takes slot i out of its bucket's order / puts it back with a fresh key: O(log n).
  void unorder(std::uint32_t i) {
    Slot& s = slots[i];
    if (!s.ordered) return;
    buckets[s.bucket].order.erase({-s.key, i});
    s.ordered = false;
  }
  void reorder(std::uint32_t i) {
    Slot& s = slots[i];
    unorder(i);
    if (!s.occupied || !s.usable || s.bucket == kNone) return;
    s.key = node_key(s);
    buckets[s.bucket].order.insert({-s.key, i});
    s.ordered = true;
  }

  void load_slot(std::uint32_t i) {
    const Candidate& c = cands[i];
    Slot& s = slots[i];
    s.occupied = true;
    s.usable = c.alive && c.maintenance != Maintenance::now;
    resources_of(c.allocatable, s.alloc);
    resources_of(c.used, s.used);
    s.f = factors_of(c);
    s.site = intern(site_ids, c.site);
  }

  void attach(std::uint32_t i) {
    load_slot(i);
    BucketKey key = key_of(cands[i]);
    auto it = bucket_ids.find(key);
    std::uint32_t b;
    if (it == bucket_ids.end()) {
      b = static_cast<std::uint32_t>(buckets.size());
      buckets.push_back(Bucket{key, {}, {}, {}});
      bucket_ids.emplace(std::move(key), b);
    } else {
      b = it->second;
    }
    slots[i].bucket = b;
    slots[i].pos = static_cast<std::uint32_t>(buckets[b].members.size());
    buckets[b].members.push_back(i);
    refresh(b);
    reorder(i);
    for (const auto& [target, ms] : cands[i].latency_ms) {
      if (std::isnan(ms)) continue;
      const std::uint32_t t = intern(target_ids, target);
      if (t >= lat_lists.size()) lat_lists.resize(t + 1);
      auto& list = lat_lists[t];
      const LatEntry e{std::max(0.0, ms), i};
      list.insert(std::lower_bound(list.begin(), list.end(), e), e);
    }
  }

  void detach(std::uint32_t i) {
    unorder(i);
    Slot& s = slots[i];
    Bucket& b = buckets[s.bucket];
    const std::uint32_t last = b.members.back();
    b.members[s.pos] = last;
    slots[last].pos = s.pos;
    b.members.pop_back();
    const std::uint32_t bid = s.bucket;
    s.bucket = kNone;
    s.occupied = s.usable = false;
    refresh(bid);
    for (const auto& [target, ms] : cands[i].latency_ms) {
      auto t = target_ids.find(target);
      if (t == target_ids.end()) continue;
      auto& list = lat_lists[t->second];
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const LatEntry& e) { return e.slot == i; }),
                 list.end());
    }
  }

  std::size_t upsert(const Candidate& c) {
    auto it = by_node.find(c.node);
    std::uint32_t i;
    if (it != by_node.end()) {
      i = it->second;
      detach(i);
    } else {
      if (!free_slots.empty()) {
        i = free_slots.back();
        free_slots.pop_back();
      } else {
        i = static_cast<std::uint32_t>(slots.size());
        slots.emplace_back();
        cands.emplace_back();
      }
      by_node.emplace(c.node, i);
      ++held;
    }
    cands[i] = c;
    attach(i);
    return i;
  }

  bool remove(std::string_view node) {
    auto it = by_node.find(node);
    if (it == by_node.end()) return false;
    const std::uint32_t i = it->second;
    detach(i);
    cands[i] = Candidate{};
    by_node.erase(it);
    free_slots.push_back(i);
    --held;
    return true;
  }

  std::uint32_t slot_of(std::string_view node) const {
    auto it = by_node.find(node);
    return it == by_node.end() ? kNone : it->second;
  }

  // Usage changes are the frequent update: the bucket's largest free amounts are kept
  // incrementally (a rescan of the bucket only when its largest one shrank) and the
  // node moves in the bucket's order in O(log n).
  void set_used_slot(std::uint32_t i, const Resources& used) {
    Slot& s = slots[i];
    std::uint64_t before[3];
    for (int d = 0; d < 3; ++d) before[d] = free_of(s.alloc[d], s.used[d]);
    cands[i].used = used;
    resources_of(used, s.used);
    reorder(i);
    if (!s.usable) return;
    Bounds& x = buckets[s.bucket].bounds;
    bool rescan = false;
    for (int d = 0; d < 3; ++d) {
      const std::uint64_t now = free_of(s.alloc[d], s.used[d]);
      if (now >= x.max_free[d]) {
        x.max_free[d] = now;
      } else if (before[d] == x.max_free[d]) {
        rescan = true;
      }
    }
    if (rescan) refresh(s.bucket);
  }

  void set_alive_slot(std::uint32_t i, bool alive) {
    cands[i].alive = alive;
    load_slot(i);
    reorder(i);
    refresh(slots[i].bucket);
  }

  // The request-dependent term of the node-level bound (see node_key), for bucket b.
  static double key_penalty(const Query& q, const Bounds& x) {
    double delta = 0;
    for (int d = 0; d < 3; ++d) {
      if (q.req[d] == 0) continue;
      if (x.min_alloc[d] == 0) return std::numeric_limits<double>::infinity();
      delta = std::max(delta, static_cast<double>(q.req[d]) / static_cast<double>(x.min_alloc[d]));
    }
    return kWeightResource * 100.0 * 0.7 * 0.5 * (delta / kFitKnee);
  }

  // ---- queries ------------------------------------------------------------------------

  // The buckets that can hold a feasible candidate, with their bounds.
  void plan(const Query& q, std::vector<Plan>& out) const {
    out.clear();
    for (std::uint32_t b = 0; b < buckets.size(); ++b) {
      const Bucket& bk = buckets[b];
      const Bounds& x = bk.bounds;
      if (x.usable == 0) continue;
      if (x.max_free[0] < q.req[0] || x.max_free[1] < q.req[1] || x.max_free[2] < q.req[2]) continue;
      if (q.spec->region && bk.key.region != q.spec->region) continue;
      if ((!q.include.empty() || !q.exclude.empty()) && !cluster_ok(q, bk.key.clusters, nullptr)) continue;
      if (!q.caps.empty() && missing_cap(q, bk.key.caps, bk.key.arch) != q.caps.size()) continue;
      Plan p;
      p.bucket = b;
      p.capability = capability_component(bk.key.caps.size(), matched_caps(q, bk.key.caps));
      p.level = level_component(q.spec->tier_preference, bk.key.level);
      p.upper.resource = resource_upper(x.max_res_mult);
      p.upper.latency = latency_component(1.0, x.max_link);
      p.upper.capability = p.capability;
      p.upper.level = p.level;
      p.upper.availability = availability_component(q.need_down, x.min_down, x.max_avail_mult);
      p.ub = total(p.upper);
      out.push_back(p);
    }
  }

  // Scores slot i (known feasible apart from resources) and offers it.
  void evaluate(const Query& q, std::uint32_t i, double prox, double capability, double level,
                Selector& sel, std::size_t& scored) const {
    const Slot& s = slots[i];
    if (q.req[0] > free_of(s.alloc[0], s.used[0]) || q.req[1] > free_of(s.alloc[1], s.used[1]) ||
        q.req[2] > free_of(s.alloc[2], s.used[2])) {
      return;
    }
    Entry e;
    std::uint64_t post[3];
    for (int d = 0; d < 3; ++d) post[d] = sat_add(s.used[d], q.req[d]);
    e.b.resource = resource_component(s.alloc, post, q.req, s.f.res_mult);
    e.b.latency = latency_component(prox, s.f.link);
    e.b.capability = capability;
    e.b.level = level;
    e.b.availability = availability_component(q.need_down, s.f.down, s.f.avail_mult);
    e.score = total(e.b);
    e.slot = i;
    e.site = s.site;
    e.node = &cands[i].node;
    ++scored;
    sel.offer(e);
  }

  void scan(const Query& q, Selector& sel, std::uint32_t exclude) const {
    thread_local std::vector<Plan> plans;
    std::size_t scored = 0;
    plan(q, plans);
    if (!q.has_latency) {
      // Node bounds: the bucket's best member bounds the bucket too.
      for (Plan& p : plans) {
        const Bucket& bk = buckets[p.bucket];
        p.base = kWeightCapability * p.capability + kWeightLevel * p.level +
                 key_penalty(q, bk.bounds) + kBoundSlack;
        if (!bk.order.empty()) p.ub = std::min(p.ub, p.base - bk.order.begin()->first);
      }
      std::sort(plans.begin(), plans.end(),
                [](const Plan& a, const Plan& b) { return a.ub > b.ub; });
      for (const Plan& p : plans) {
        if (p.ub < sel.threshold()) break;
        // Members in decreasing key order: the first whose bound is below the threshold
        // ends the bucket.
        for (const auto& [neg_key, i] : buckets[p.bucket].order) {
          if (p.base - neg_key < sel.threshold()) break;
          if (i == exclude) continue;
          evaluate(q, i, 1.0, p.capability, p.level, sel, scored);
        }
      }
      g_last_scored = scored;
      return;
    }
    auto t = target_ids.find(q.to);
    if (t != target_ids.end() && !plans.empty()) {
      thread_local std::vector<std::int32_t> plan_of;
      plan_of.assign(buckets.size(), -1);
      ScoreBreakdown top{0, 0, 0, 0, 0};
      double max_link = 0;
      for (std::size_t j = 0; j < plans.size(); ++j) {
        const Plan& p = plans[j];
        plan_of[p.bucket] = static_cast<std::int32_t>(j);
        top.resource = std::max(top.resource, p.upper.resource);
        top.capability = std::max(top.capability, p.upper.capability);
        top.level = std::max(top.level, p.upper.level);
        top.availability = std::max(top.availability, p.upper.availability);
        max_link = std::max(max_link, buckets[p.bucket].bounds.max_link);
      }
      const auto& list = lat_lists[t->second];
      for (std::size_t n = 0; n < list.size(); ++n) {
        const LatEntry& e = list[n];
        if (e.ms > q.max_ms) break;
        const double prox = proximity(e.ms, q.max_ms);
        if ((n & 7) == 0) {
          top.latency = latency_component(prox, max_link);
          if (total(top) < sel.threshold()) break;
        }
        const Slot& s = slots[e.slot];
        if (e.slot == exclude || !s.usable) continue;
        const std::int32_t j = plan_of[s.bucket];
        if (j < 0) continue;
        const Plan& p = plans[static_cast<std::size_t>(j)];
        evaluate(q, e.slot, prox, p.capability, p.level, sel, scored);
      }
    }
    g_last_scored = scored;
  }

  Ranked ranked_of(const Entry& e) const {
    Ranked r;
    r.index = e.slot;
    r.node = cands[e.slot].node;
    r.site = cands[e.slot].site;
    r.score = e.score;
    r.breakdown = e.b;
    return r;
  }

  Decision place_one(const Query& q, std::size_t k) const {
    Selector sel(k + 1, k + 1, true, kNone);
    scan(q, sel, kNone);
    Decision d;
    if (sel.sites.empty()) return d;
    d.best = ranked_of(sel.sites.front());
    for (std::size_t i = 1; i < sel.sites.size(); ++i) d.failover.push_back(ranked_of(sel.sites[i]));
    fill(d.failover, sel, k, sel.sites.front().slot);
    return d;
  }

  // Completes a failover list from the overall best when too few sites qualified.
  void fill(std::vector<Ranked>& failover, const Selector& sel, std::size_t k,
            std::uint32_t primary) const {
    for (const Entry& e : sel.all) {
      if (failover.size() >= k) break;
      if (e.slot == primary) continue;
      bool taken = false;
      for (const Ranked& r : failover) taken = taken || r.index == e.slot;
      if (!taken) failover.push_back(ranked_of(e));
    }
  }

  // Failover list for a workload already placed on `primary`.
  std::vector<Ranked> failover_for(const Query& q, std::uint32_t primary, std::size_t k) const {
    std::vector<Ranked> out;
    if (k == 0) return out;
    Selector sel(k, k, true, slots[primary].site);
    scan(q, sel, primary);
    for (const Entry& e : sel.sites) out.push_back(ranked_of(e));
    fill(out, sel, k, primary);
    return out;
  }

  std::vector<Ranked> rank(const Query& q, std::size_t k) const {
    std::vector<Ranked> out;
    if (k == 0) return out;
    Selector sel(0, k, false, kNone);
    scan(q, sel, kNone);
    for (const Entry& e : sel.all) out.push_back(ranked_of(e));
    return out;
  }

  // ---- batch --------------------------------------------------------------------------

  BatchResult batch(std::span<const WorkloadSpec> specs, const PlacementOptions& opts) const;

  std::string verify() const;
};

namespace {

struct Option {
  std::uint32_t slot;
  ScoreBreakdown fixed;  // every component but resource
};

}  // namespace

BatchResult PlacementEngine::Impl::batch(std::span<const WorkloadSpec> specs,
                                         const PlacementOptions& opts) const {
  const std::size_t W = specs.size();
  BatchResult out;
  out.decisions.resize(W);
  if (W == 0) return out;
  std::vector<Query> qs;
  qs.reserve(W);
  for (const auto& s : specs) qs.push_back(prepare(s));

  Impl work;
  std::vector<std::uint32_t> assign(W, kNone);
  std::vector<std::array<std::uint64_t, 3>> load(slots.size(), {0, 0, 0});
  std::vector<std::vector<std::uint32_t>> members(slots.size());
  std::size_t spent = 0;  // work done, against kSearchBudget

  // 1. Regret order: how much a workload loses if it misses its best node.
  std::vector<double> regret(W, 0);
  std::vector<bool> placeable(W, false);
  for (std::size_t w = 0; w < W; ++w) {
    const auto top = rank(qs[w], 2);
    if (top.empty()) continue;
    placeable[w] = true;
    regret[w] = top[0].score - (top.size() > 1 ? top[1].score : 0.0);
  }
  std::vector<std::uint32_t> order;
  for (std::uint32_t w = 0; w < W; ++w) {
    if (placeable[w]) order.push_back(w);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return regret[a] > regret[b]; });

  // Each workload's options: every feasible node, or above kSmallBatchNodes its best ones.
  std::vector<std::vector<Option>> options(W);
  auto fixed_of = [&](std::size_t w, std::uint32_t n) {
    const Candidate& c = cands[n];
    return static_components(qs[w], c, slots[n].f);
  };
  for (std::uint32_t w : order) {
    if (held <= kSmallBatchNodes) {
      for (std::uint32_t n = 0; n < slots.size(); ++n) {
        if (!slots[n].occupied) continue;
        if (check_prepared(qs[w], cands[n], true) != Rejection::none) continue;
        options[w].push_back({n, fixed_of(w, n)});
      }
    } else {
      for (const Ranked& r : rank(qs[w], kBatchOptions)) {
        options[w].push_back({static_cast<std::uint32_t>(r.index), r.breakdown});
      }
    }
  }
  // 2. Greedy on the current state, from three orders: regret, largest demand first
  // (first-fit decreasing: big workloads find room before small ones fragment it) and
  // smallest first (the most workloads in a knapsack). The
  // start that places more workloads, then scores more at decision time, wins.
  std::vector<std::uint32_t> by_size = order;
  std::stable_sort(by_size.begin(), by_size.end(), [&](std::uint32_t a, std::uint32_t b) {
    return sat_add(qs[a].req[0], qs[a].req[1]) > sat_add(qs[b].req[0], qs[b].req[1]);
  });
  // Smallest demand first: on tight capacity it places the most workloads, which the
  // objective counts before score.
  std::vector<std::uint32_t> smallest(by_size.rbegin(), by_size.rend());
  std::size_t best_placed = 0;
  double best_sum = kNegInf;
  for (const auto* start : {&order, &by_size, &smallest}) {
    Impl trial = *this;
    std::vector<std::uint32_t> t_assign(W, kNone);
    std::size_t t_placed = 0;
    double t_sum = 0;
    for (std::uint32_t w : *start) {
      const auto top = trial.rank(qs[w], 1);
      if (top.empty()) continue;
      const auto n = static_cast<std::uint32_t>(top[0].index);
      t_assign[w] = n;
      ++t_placed;
      t_sum += top[0].score;
      Resources used = trial.cands[n].used;
      used.cpu_millis = sat_add(used.cpu_millis, qs[w].req[0]);
      used.memory_mb = sat_add(used.memory_mb, qs[w].req[1]);
      used.storage_mb = sat_add(used.storage_mb, qs[w].req[2]);
      trial.set_used_slot(n, used);
    }
    if (t_placed > best_placed || (t_placed == best_placed && t_sum > best_sum)) {
      best_placed = t_placed;
      best_sum = t_sum;
      assign = std::move(t_assign);
      work = std::move(trial);
    }
  }
  // A packing start, for the placed count alone: workloads by size (relative to the total
  // free capacity per dimension), smallest or largest first, each on the option it fills
  // tightest (best fit). Kept only when it places more than the scored starts.
  {
    double total_free[3] = {0, 0, 0};
    for (std::uint32_t n = 0; n < slots.size(); ++n) {
      if (!slots[n].occupied) continue;
      for (std::size_t d = 0; d < 3; ++d) total_free[d] += static_cast<double>(free_of(slots[n].alloc[d], slots[n].used[d]));
    }
    auto size_of = [&](std::uint32_t w) {
      double x = 0;
      for (std::size_t d = 0; d < 3; ++d) {
        if (total_free[d] > 0) x += static_cast<double>(qs[w].req[d]) / total_free[d];
      }
      return x;
    };
    // The first two passes in exact size order, the others with each size scaled by a
    // random factor in [0.6, 1.4] (seeded: the result stays deterministic).
    std::mt19937_64 rng(0x6e6f7661);
    std::vector<double> sizes(W, 0);
    for (std::uint32_t pass = 0; pass < kPackPasses && spent < kSearchBudget; ++pass) {
    for (std::uint32_t w : order) {
      sizes[w] = size_of(w) * (pass < 2 ? 1.0 : std::uniform_real_distribution<double>(0.6, 1.4)(rng));
    }
    std::vector<std::uint32_t> pack_order = order;
    // Even passes smallest first (the most workloads when not all fit), odd passes
    // largest first (first-fit decreasing: all of them, when they can all fit).
    const bool largest_first = pass % 2 == 1;
    std::stable_sort(pack_order.begin(), pack_order.end(), [&](std::uint32_t a, std::uint32_t b) {
      return largest_first ? sizes[a] > sizes[b] : sizes[a] < sizes[b];
    });
    std::vector<std::array<std::uint64_t, 3>> packed(slots.size(), {0, 0, 0});
    std::vector<std::uint32_t> p_assign(W, kNone);
    std::size_t p_placed = 0;
    for (std::uint32_t w : pack_order) {
      spent += options[w].size();
      std::uint32_t where = kNone;
      double tightest = 0;
      for (const Option& o : options[w]) {
        const Slot& sl = slots[o.slot];
        double slack = 0;
        bool ok = true;
        for (std::size_t d = 0; d < 3 && ok; ++d) {
          const std::uint64_t left = free_of(sl.alloc[d], sl.used[d]);
          const std::uint64_t want = packed[o.slot][d] + qs[w].req[d];
          ok = want <= left;
          if (ok && sl.alloc[d] > 0) slack += static_cast<double>(left - want) / static_cast<double>(sl.alloc[d]);
        }
        if (ok && (where == kNone || slack < tightest)) {
          where = o.slot;
          tightest = slack;
        }
      }
      if (where == kNone) continue;
      p_assign[w] = where;
      ++p_placed;
      for (std::size_t d = 0; d < 3; ++d) packed[where][d] += qs[w].req[d];
    }
    if (p_placed > best_placed) {
      best_placed = p_placed;
      assign = std::move(p_assign);
      work = *this;
    }
    }
  }
  for (std::uint32_t w = 0; w < W; ++w) {
    const std::uint32_t n = assign[w];
    if (n == kNone) continue;
    members[n].push_back(w);
    for (std::size_t d = 0; d < 3; ++d) load[n][d] += qs[w].req[d];
    // Above kSmallBatchNodes a start may have used a node outside the best options.
    if (std::none_of(options[w].begin(), options[w].end(), [&](const Option& o) { return o.slot == n; })) {
      options[w].push_back({n, fixed_of(w, n)});
    }
  }

  // 3. Local search on the true objective over each workload's options.

  auto option = [&](std::size_t w, std::uint32_t n) -> const Option* {
    for (const Option& o : options[w]) {
      if (o.slot == n) return &o;
    }
    return nullptr;
  };
  auto fits = [&](std::uint32_t n, const std::array<std::uint64_t, 3>& l) {
    const Slot& s = slots[n];
    for (std::size_t d = 0; d < 3; ++d) {
      if (l[d] > free_of(s.alloc[d], s.used[d])) return false;
    }
    return true;
  };
  // Where each workload runs now (opts.current), for the stay bonus.
  std::vector<std::uint32_t> now_on(W, kNone);
  if (opts.stay_bonus > 0) {
    for (std::size_t w = 0; w < W && w < opts.current.size(); ++w) {
      if (opts.current[w].empty()) continue;
      for (std::uint32_t n = 0; n < slots.size(); ++n) {
        if (slots[n].occupied && cands[n].node == opts.current[w]) now_on[w] = n;
      }
    }
  }
  auto value = [&](std::uint32_t n, const std::vector<std::uint32_t>& mem,
                   const std::array<std::uint64_t, 3>& l) {
    if (n == kNone) return 0.0;
    const Slot& s = slots[n];
    std::uint64_t post[3];
    for (std::size_t d = 0; d < 3; ++d) post[d] = sat_add(s.used[d], l[d]);
    double v = 0;
    for (std::uint32_t w : mem) {
      ScoreBreakdown b = option(w, n)->fixed;
      b.resource = resource_component(s.alloc, post, qs[w].req, s.f.res_mult);
      v += total(b) + (now_on[w] == n ? opts.stay_bonus : 0.0);
    }
    spent += mem.size() + 1;
    return v;
  };
  auto with = [&](std::uint32_t n, std::uint32_t drop, std::uint32_t add,
                  std::vector<std::uint32_t>& mem, std::array<std::uint64_t, 3>& l) {
    mem = members[n];
    l = load[n];
    if (drop != kNone) {
      mem.erase(std::find(mem.begin(), mem.end(), drop));
      for (std::size_t d = 0; d < 3; ++d) l[d] -= qs[drop].req[d];
    }
    if (add != kNone) {
      mem.push_back(add);
      for (std::size_t d = 0; d < 3; ++d) l[d] += qs[add].req[d];
    }
  };
  // Moves w_a from a to b and w_b (if any) from b to a when that improves the objective.
  std::vector<std::uint32_t> mem_a, mem_b;
  std::array<std::uint64_t, 3> load_a{}, load_b{};
  auto try_exchange = [&](std::uint32_t wa, std::uint32_t wb, std::uint32_t b) {
    const std::uint32_t a = assign[wa];
    if (a == b) return false;
    if (b != kNone && !option(wa, b)) return false;
    if (wb != kNone && a != kNone && !option(wb, a)) return false;
    double before = 0, after = 0;
    if (a != kNone) {
      with(a, wa, wb, mem_a, load_a);
      if (!fits(a, load_a)) return false;
      before += value(a, members[a], load[a]);
      after += value(a, mem_a, load_a);
    }
    if (b != kNone) {
      with(b, wb, wa, mem_b, load_b);
      if (!fits(b, load_b)) return false;
      before += value(b, members[b], load[b]);
      after += value(b, mem_b, load_b);
    }
    // Placed count first (docs/placement.md, "Objective"): wa is placed before when a is
    // a node and after when b is; wb goes the other way.
    int gained = (b != kNone) - (a != kNone);
    if (wb != kNone) gained -= (b != kNone) - (a != kNone);
    if (!improves(gained, after - before)) return false;
    if (a != kNone) {
      members[a] = mem_a;
      load[a] = load_a;
    }
    if (b != kNone) {
      members[b] = mem_b;
      load[b] = load_b;
    }
    assign[wa] = b;
    if (wb != kNone) assign[wb] = a;
    return true;
  };
  // Ejection: put an unplaced workload on a node by evicting one of its workloads, then
  // re-insert unplaced workloads where they gain most. This finds the "one out, two in"
  // exchanges (a large workload blocking two smaller ones) and frees scarce nodes (gpu)
  // taken by workloads that could run elsewhere, which single moves and swaps cannot
  // reach. Changes are logged so a losing attempt is undone exactly.
  struct Change {
    std::uint32_t w, from;
  };
  std::vector<Change> log;
  std::vector<std::pair<std::uint32_t, double>> before;  // touched node, value before
  auto touch = [&](std::uint32_t n) {
    if (n == kNone) return;
    for (const auto& t : before) {
      if (t.first == n) return;
    }
    before.emplace_back(n, value(n, members[n], load[n]));
  };
  auto relocate = [&](std::uint32_t w, std::uint32_t to, bool record) {
    const std::uint32_t from = assign[w];
    if (record) {
      touch(from);
      touch(to);
      log.push_back({w, from});
    }
    if (from != kNone) {
      auto& m = members[from];
      m.erase(std::find(m.begin(), m.end(), w));
      for (std::size_t d = 0; d < 3; ++d) load[from][d] -= qs[w].req[d];
    }
    if (to != kNone) {
      members[to].push_back(w);
      for (std::size_t d = 0; d < 3; ++d) load[to][d] += qs[w].req[d];
    }
    assign[w] = to;
  };
  auto room = [&](std::uint32_t n, std::uint32_t w) {
    std::array<std::uint64_t, 3> l = load[n];
    for (std::size_t d = 0; d < 3; ++d) l[d] += qs[w].req[d];
    return fits(n, l);
  };
  const bool small = held <= kSmallBatchNodes && W <= 64;
  auto eject = [&](std::uint32_t u) {
    for (const Option& o : options[u]) {
      const std::uint32_t n = o.slot;
      const std::vector<std::uint32_t> victims = members[n];
      for (std::uint32_t x : victims) {
        log.clear();
        before.clear();
        relocate(x, kNone, true);
        if (room(n, u)) {
          relocate(u, n, true);
          // Small batches re-insert every unplaced workload, large ones only the victim.
          const std::vector<std::uint32_t> one{x};
          for (std::uint32_t y : small ? order : one) {
            if (assign[y] != kNone) continue;
            std::uint32_t where = kNone;
            double gain = kImprove;
            for (const Option& oy : options[y]) {
              if (!room(oy.slot, y)) continue;
              std::vector<std::uint32_t> m = members[oy.slot];
              m.push_back(y);
              std::array<std::uint64_t, 3> l = load[oy.slot];
              for (std::size_t d = 0; d < 3; ++d) l[d] += qs[y].req[d];
              const double g = value(oy.slot, m, l) - value(oy.slot, members[oy.slot], load[oy.slot]);
              if (g > gain) {
                gain = g;
                where = oy.slot;
              }
            }
            if (where != kNone) relocate(y, where, true);
          }
          double delta = 0;
          for (const auto& [t, v] : before) delta += value(t, members[t], load[t]) - v;
          int gained = 0;  // each moved workload once: where it was first, where it is
          for (std::size_t i = 0; i < log.size(); ++i) {
            const bool first = std::none_of(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(i),
                                            [&](const Change& c) { return c.w == log[i].w; });
            if (first) gained += (assign[log[i].w] != kNone) - (log[i].from != kNone);
          }
          if (improves(gained, delta)) return true;
        }
        for (auto it = log.rbegin(); it != log.rend(); ++it) relocate(it->w, it->from, false);
      }
    }
    return false;
  };

  // Ejection chains: an unplaced workload goes to a node with room, or to a node where
  // evicting one workload makes room, and the evicted one is placed the same way, up to
  // kChainDepth evictions deep (an augmenting path: every workload of the chain ends up
  // placed, so the chain places one more). Score is left to the other steps.
  std::vector<char> in_chain(W, 0);
  auto augment = [&](auto&& self, std::uint32_t w, std::size_t depth) -> bool {
    if (++spent >= kSearchBudget) return false;
    for (const Option& o : options[w]) {
      if (room(o.slot, w)) {
        relocate(w, o.slot, false);
        return true;
      }
    }
    if (depth == 0) return false;
    in_chain[w] = 1;
    for (const Option& o : options[w]) {
      const std::vector<std::uint32_t> victims = members[o.slot];
      for (std::uint32_t x : victims) {
        if (in_chain[x]) continue;
        relocate(x, kNone, false);
        if (room(o.slot, w)) {
          relocate(w, o.slot, false);
          if (self(self, x, depth - 1)) {
            in_chain[w] = 0;
            return true;
          }
          relocate(w, kNone, false);
        }
        relocate(x, o.slot, false);
      }
    }
    in_chain[w] = 0;
    return false;
  };
  auto local_search = [&] {
  for (bool improved = true; improved && spent < kSearchBudget;) {
    improved = false;
    for (std::uint32_t w : order) {
      if (assign[w] == kNone && spent < kSearchBudget && augment(augment, w, kChainDepth)) improved = true;
    }
    for (std::uint32_t w : order) {
      if (assign[w] == kNone && spent < kSearchBudget && eject(w)) improved = true;
    }
    for (std::uint32_t w : order) {
      for (std::size_t o = 0; o <= options[w].size(); ++o) {
        const std::uint32_t b = o < options[w].size() ? options[w][o].slot : kNone;
        if (try_exchange(w, kNone, b)) improved = true;
      }
    }
    for (std::uint32_t w : order) {
      for (std::size_t o = 0; o < options[w].size() && spent < kSearchBudget; ++o) {
        const std::uint32_t b = options[w][o].slot;
        if (b == assign[w]) continue;
        const std::vector<std::uint32_t> others = members[b];
        for (std::uint32_t x : others) {
          if (try_exchange(w, x, b)) {
            improved = true;
            break;
          }
        }
      }
    }
  }
  };

  // 3b. Exact solve of small neighbourhoods. Some improvements need three or more
  // coordinated moves (a cycle over three nodes, or two moves that make room for an
  // unplaced workload): moves, swaps and ejection each change at most two workloads' nodes
  // at a time and stop before them. A neighbourhood is two or three nodes with every
  // workload on them and every unplaced workload that could go there; it is solved
  // exactly by depth-first search (each workload on one of its nodes or unplaced,
  // capacity checked at every step, pruned by an upper bound on the score) and the best
  // assignment replaces the current one when it improves the objective.
  auto option_upper = [&](std::uint32_t w, std::uint32_t n) {
    ScoreBreakdown b = option(w, n)->fixed;
    b.resource = resource_upper(slots[n].f.res_mult);
    return total(b) + (now_on[w] == n ? opts.stay_bonus : 0.0) + kBoundSlack;
  };
  // Solves the workloads on `nodes` plus the unplaced workloads `waiting` exactly.
  auto solve_hood_with = [&](const std::vector<std::uint32_t>& nodes, const std::vector<std::uint32_t>& waiting) {
    std::vector<std::uint32_t> hood;
    for (std::uint32_t n : nodes) hood.insert(hood.end(), members[n].begin(), members[n].end());
    hood.insert(hood.end(), waiting.begin(), waiting.end());
    if (hood.empty() || hood.size() > kHoodWorkloads) return false;
    const std::size_t H = hood.size(), K = nodes.size();
    int placed_now = 0;
    double score_now = 0;
    for (std::uint32_t w : hood) placed_now += assign[w] != kNone;
    for (std::uint32_t n : nodes) score_now += value(n, members[n], load[n]);
    // best_rest[i]: an upper bound on what hood[i..] can add.
    std::vector<double> best_rest(H + 1, 0);
    for (std::size_t i = H; i-- > 0;) {
      double u = 0;
      for (std::uint32_t n : nodes) {
        if (option(hood[i], n)) u = std::max(u, option_upper(hood[i], n));
      }
      best_rest[i] = best_rest[i + 1] + u;
    }
    std::vector<std::vector<std::uint32_t>> mem(K);
    std::vector<std::array<std::uint64_t, 3>> l(K, {0, 0, 0});
    std::vector<std::uint32_t> pick(H, kNone), hood_pick;
    int hood_placed = placed_now;
    double hood_score = score_now + kImprove;  // must beat the current assignment
    const std::size_t stop = std::min(kSearchBudget, spent + kHoodSolveBudget);
    auto dfs = [&](auto&& self, std::size_t i, int placed, double bound) -> void {
      if (++spent >= stop) return;
      const int can_place = placed + static_cast<int>(H - i);
      if (can_place < hood_placed) return;
      if (can_place == hood_placed && bound + best_rest[i] <= hood_score) return;
      if (i == H) {
        double v = 0;
        for (std::size_t k = 0; k < K; ++k) v += value(nodes[k], mem[k], l[k]);
        if (placed > hood_placed || v > hood_score) {
          hood_placed = placed;
          hood_score = v;
          hood_pick = pick;
        }
        return;
      }
      const std::uint32_t w = hood[i];
      for (std::size_t k = 0; k < K; ++k) {
        if (!option(w, nodes[k])) continue;
        auto next = l[k];
        for (std::size_t d = 0; d < 3; ++d) next[d] += qs[w].req[d];
        if (!fits(nodes[k], next)) continue;
        std::swap(l[k], next);
        mem[k].push_back(w);
        pick[i] = nodes[k];
        self(self, i + 1, placed + 1, bound + option_upper(w, nodes[k]));
        mem[k].pop_back();
        std::swap(l[k], next);
      }
      pick[i] = kNone;
      self(self, i + 1, placed, bound);
    };
    dfs(dfs, 0, 0, 0.0);
    if (hood_pick.empty()) return false;
    for (std::size_t i = 0; i < H; ++i) relocate(hood[i], kNone, false);
    for (std::size_t i = 0; i < H; ++i) relocate(hood[i], hood_pick[i], false);
    return true;
  };
  // The neighbourhood of `nodes`: with every unplaced workload that could go there when
  // they are few enough, else with each of them in turn (one more placed is already an
  // improvement).
  auto solve_hood = [&](const std::vector<std::uint32_t>& nodes) {
    std::vector<std::uint32_t> waiting;
    for (std::uint32_t w : order) {
      if (assign[w] != kNone) continue;
      if (std::any_of(nodes.begin(), nodes.end(), [&](std::uint32_t n) { return option(w, n) != nullptr; })) {
        waiting.push_back(w);
      }
    }
    std::size_t on = 0;
    for (std::uint32_t n : nodes) on += members[n].size();
    if (on + waiting.size() <= kHoodWorkloads || waiting.size() <= 1) return solve_hood_with(nodes, waiting);
    bool improved = solve_hood_with(nodes, {});
    for (std::uint32_t w : waiting) {
      if (assign[w] == kNone && solve_hood_with(nodes, {w})) improved = true;
    }
    return improved;
  };
  // The nodes some workload could use, in slot order.
  std::vector<std::uint32_t> active;
  {
    std::vector<bool> seen(slots.size(), false);
    for (std::uint32_t w : order) {
      for (const Option& o : options[w]) seen[o.slot] = true;
    }
    for (std::uint32_t n = 0; n < slots.size(); ++n) {
      if (seen[n]) active.push_back(n);
    }
  }
  std::size_t hoods_stop = std::min(kSearchBudget, spent + kHoodsBudget);
  auto exact_hoods = [&] {
    bool improved = false;
    const std::size_t A = active.size();
    // A batch this small is one neighbourhood: solved exactly as a whole.
    if (A <= kWholeNodes && W <= kHoodWorkloads && solve_hood(active)) improved = true;
    // Every set of `size` active nodes, smaller sets first.
    const std::size_t largest = A <= kHoodQuadNodes ? 4 : A <= kHoodTripleNodes ? 3 : A <= kHoodPairNodes ? 2 : 0;
    std::vector<std::uint32_t> set;
    auto sets = [&](auto&& self, std::size_t from, std::size_t size) -> void {
      if (set.size() == size) {
        if (solve_hood(set)) improved = true;
        return;
      }
      for (std::size_t i = from; i < A && spent < hoods_stop; ++i) {
        set.push_back(active[i]);
        self(self, i + 1, size);
        set.pop_back();
      }
    };
    for (std::size_t size = 2; size <= largest && spent < hoods_stop; ++size) sets(sets, 0, size);
    // Large batches: the neighbourhoods of each unplaced workload, its best two options
    // with each other node it could use.
    if (A > kHoodPairNodes) {
      for (std::uint32_t w : order) {
        if (assign[w] != kNone) continue;
        for (std::size_t o = 0; o < std::min<std::size_t>(2, options[w].size()); ++o) {
          for (const Option& p : options[w]) {
            if (spent >= hoods_stop) return improved;
            if (p.slot != options[w][o].slot && solve_hood({options[w][o].slot, p.slot})) improved = true;
          }
        }
      }
    }
    return improved;
  };
  do {
    local_search();
  } while (spent < hoods_stop && exact_hoods());

  auto placed_count = [&] {
    std::size_t n = 0;
    for (std::uint32_t w : order) n += assign[w] != kNone;
    return n;
  };
  // 3c. The exact solve (placement_exact.h), when the batch is small enough: every set of
  // workloads each node can take, valued exactly on that node, solved as a set-packing
  // program (the most workloads, then the best score). Its assignment is taken when it
  // improves the objective (every node's load checked again here); a proven optimum ends
  // the search, a proven count alone leaves the score to the local search (which never
  // lowers the count), and without either the search for the count below goes on.
  bool count_proven = false, score_proven = false;
  {
    Packing pk;
    pk.room.resize(slots.size(), {0, 0, 0});
    for (std::uint32_t n = 0; n < slots.size(); ++n) {
      if (!slots[n].occupied) continue;
      for (std::size_t d = 0; d < 3; ++d) pk.room[n][d] = free_of(slots[n].alloc[d], slots[n].used[d]);
    }
    pk.req.resize(W);
    pk.options.resize(W);
    for (std::uint32_t w = 0; w < W; ++w) {
      for (std::size_t d = 0; d < 3; ++d) pk.req[w][d] = qs[w].req[d];
      for (const Option& o : options[w]) pk.options[w].push_back(o.slot);
    }
    pk.start = assign;
    // Twins: nodes that no set can tell apart (room, usage, factors, every workload's
    // option on them, no running workload's stay bonus), found by their signature.
    if (slots.size() * W <= kTwinCells) {
      std::map<std::vector<double>, std::uint32_t> first;
      pk.twin_of.resize(slots.size());
      for (std::uint32_t n = 0; n < slots.size(); ++n) {
        const Slot& sl = slots[n];
        std::vector<double> sig{sl.f.res_mult, sl.f.link, sl.f.down, sl.f.avail_mult};
        for (std::size_t d = 0; d < 3; ++d) {
          sig.push_back(static_cast<double>(sl.alloc[d]));
          sig.push_back(static_cast<double>(sl.used[d]));
        }
        for (std::uint32_t w = 0; w < W; ++w) {
          const Option* o = option(w, n);
          sig.push_back(o ? 1.0 : 0.0);
          if (o) sig.insert(sig.end(), {o->fixed.resource, o->fixed.latency, o->fixed.capability, o->fixed.level,
                                        o->fixed.availability, now_on[w] == n ? 1.0 : 0.0});
        }
        pk.twin_of[n] = sl.occupied ? first.try_emplace(std::move(sig), n).first->second : n;
      }
    }
    pk.value = [&](std::uint32_t n, const std::vector<std::uint32_t>& mem) {
      std::array<std::uint64_t, 3> l{0, 0, 0};
      for (std::uint32_t w : mem) {
        for (std::size_t d = 0; d < 3; ++d) l[d] += qs[w].req[d];
      }
      return value(n, mem, l);
    };
    const PackingResult exact = exact_batch(pk, {});
    count_proven = exact.status == PackingResult::Status::optimal || exact.status == PackingResult::Status::count_only;
    score_proven = exact.status == PackingResult::Status::optimal;
    if (count_proven) {
      std::vector<std::array<std::uint64_t, 3>> l(slots.size(), {0, 0, 0});
      bool valid = true;
      for (std::uint32_t w = 0; w < W && valid; ++w) {
        const std::uint32_t n = exact.assign[w];
        if (n == kUnplaced) continue;
        valid = option(w, n) != nullptr;
        for (std::size_t d = 0; d < 3 && valid; ++d) l[n][d] += qs[w].req[d];
      }
      for (std::uint32_t n = 0; n < slots.size() && valid; ++n) valid = fits(n, l[n]);
      double now = 0;
      for (std::uint32_t n = 0; n < slots.size(); ++n) now += value(n, members[n], load[n]);
      const int gained = static_cast<int>(exact.placed) - static_cast<int>(placed_count());
      count_proven = count_proven && valid;
      score_proven = score_proven && valid;
      if (valid && improves(gained, exact.score - now)) {
        for (std::uint32_t w = 0; w < W; ++w) relocate(w, kNone, false);
        for (std::uint32_t w = 0; w < W; ++w) {
          if (exact.assign[w] != kUnplaced) relocate(w, exact.assign[w], false);
        }
        if (!score_proven) {
          hoods_stop = std::min(kSearchBudget, spent + kHoodsBudget);
          do {
            local_search();
          } while (spent < hoods_stop && exact_hoods());
        }
      }
    }
  }

  // 3d. Ruin and recreate, for the count, when it is not proven the most possible:
  // placing one more can need most nodes to change, beyond any neighbourhood above. Each
  // round empties the nodes of up to three options of a random unplaced workload, puts
  // every unplaced workload back in random order on the option it fills tightest, then
  // runs the ejection chains; a round is kept only when it places more (then the local
  // search improves the score), else undone.
  if (!count_proven) {
    std::mt19937_64 rng(0x72756e);
    std::size_t best_count = placed_count();
    for (std::size_t round = 0; round < kRuinRounds && best_count < order.size() && spent < kSearchBudget; ++round) {
      std::vector<std::uint32_t> waiting;
      for (std::uint32_t w : order) {
        if (assign[w] == kNone && !options[w].empty()) waiting.push_back(w);
      }
      if (waiting.empty()) break;
      const auto saved_assign = assign;
      const auto saved_members = members;
      const auto saved_load = load;
      const std::uint32_t u = waiting[std::uniform_int_distribution<std::size_t>(0, waiting.size() - 1)(rng)];
      std::vector<Option> emptied = options[u];
      std::shuffle(emptied.begin(), emptied.end(), rng);
      if (emptied.size() > 3) emptied.resize(3);
      for (const Option& o : emptied) {
        const std::vector<std::uint32_t> evicted = members[o.slot];
        for (std::uint32_t x : evicted) relocate(x, kNone, false);
      }
      std::vector<std::uint32_t> again;
      for (std::uint32_t w : order) {
        if (assign[w] == kNone) again.push_back(w);
      }
      std::shuffle(again.begin(), again.end(), rng);
      for (std::uint32_t w : again) {
        std::uint32_t where = kNone;
        double tightest = 0;
        for (const Option& o : options[w]) {
          ++spent;
          if (!room(o.slot, w)) continue;
          const Slot& sl = slots[o.slot];
          double slack = 0;
          for (std::size_t d = 0; d < 3; ++d) {
            if (sl.alloc[d] == 0) continue;
            const std::uint64_t left = free_of(sl.alloc[d], sl.used[d]) - load[o.slot][d] - qs[w].req[d];
            slack += static_cast<double>(left) / static_cast<double>(sl.alloc[d]);
          }
          if (where == kNone || slack < tightest) {
            where = o.slot;
            tightest = slack;
          }
        }
        if (where != kNone) relocate(w, where, false);
      }
      for (std::uint32_t w : order) {
        if (assign[w] == kNone && spent < kSearchBudget) augment(augment, w, kChainDepth);
      }
      const std::size_t count = placed_count();
      if (count > best_count) {
        best_count = count;
        local_search();
      } else {
        assign = saved_assign;
        members = saved_members;
        load = saved_load;
      }
    }
  }

  // 4. Final breakdowns on the final state, and failover lists on it.
  for (std::uint32_t n = 0; n < slots.size(); ++n) {
    if (!slots[n].occupied) continue;
    const bool touched = !members[n].empty() || work.cands[n].used != cands[n].used;
    if (!touched) continue;
    Resources used = cands[n].used;
    used.cpu_millis = sat_add(used.cpu_millis, load[n][0]);
    used.memory_mb = sat_add(used.memory_mb, load[n][1]);
    used.storage_mb = sat_add(used.storage_mb, load[n][2]);
    work.set_used_slot(n, used);
  }
  for (std::size_t w = 0; w < W; ++w) {
    const std::uint32_t n = assign[w];
    if (n == kNone) continue;
    const Slot& s = slots[n];
    std::uint64_t post[3];
    for (std::size_t d = 0; d < 3; ++d) post[d] = sat_add(s.used[d], load[n][d]);
    Ranked r;
    r.index = n;
    r.node = cands[n].node;
    r.site = cands[n].site;
    r.breakdown = option(w, n)->fixed;
    r.breakdown.resource = resource_component(s.alloc, post, qs[w].req, s.f.res_mult);
    r.score = total(r.breakdown);
    out.objective += r.score;
    ++out.placed;
    out.decisions[w].best = std::move(r);
    out.decisions[w].failover = work.failover_for(qs[w], n, opts.failover_count);
  }
  return out;
}

std::string PlacementEngine::Impl::verify() const {
  std::size_t count = 0;
  for (std::uint32_t i = 0; i < slots.size(); ++i) {
    const Slot& s = slots[i];
    if (!s.occupied) continue;
    ++count;
    const Candidate& c = cands[i];
    const std::string who = "slot " + std::to_string(i) + " ('" + c.node + "'): ";
    auto it = by_node.find(c.node);
    if (it == by_node.end() || it->second != i) return who + "not in the node map";
    if (s.bucket >= buckets.size()) return who + "no bucket";
    const Bucket& b = buckets[s.bucket];
    if (!(b.key == key_of(c))) return who + "in the wrong bucket";
    if (s.pos >= b.members.size() || b.members[s.pos] != i) return who + "bucket position wrong";
    std::uint64_t alloc[3], used[3];
    resources_of(c.allocatable, alloc);
    resources_of(c.used, used);
    for (int d = 0; d < 3; ++d) {
      if (alloc[d] != s.alloc[d] || used[d] != s.used[d]) return who + "resources differ";
    }
    if (s.usable != (c.alive && c.maintenance != Maintenance::now)) return who + "usable flag wrong";
    const Factors f = factors_of(c);
    if (f.res_mult != s.f.res_mult || f.link != s.f.link || f.down != s.f.down ||
        f.avail_mult != s.f.avail_mult) {
      return who + "factors differ";
    }
    for (const auto& [target, ms] : c.latency_ms) {
      if (std::isnan(ms)) continue;
      auto t = target_ids.find(target);
      if (t == target_ids.end()) return who + "latency target '" + target + "' not indexed";
      const auto& list = lat_lists[t->second];
      const double want = std::max(0.0, ms);  // clang 14 cannot capture a structured binding
      const auto n = std::count_if(list.begin(), list.end(), [&](const LatEntry& e) {
        return e.slot == i && e.ms == want;
      });
      if (n != 1) return who + "latency to '" + target + "' indexed " + std::to_string(n) + " times";
    }
  }
  if (count != held || by_node.size() != held) return "node count mismatch";
  std::size_t in_buckets = 0;
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    in_buckets += buckets[b].members.size();
    for (std::uint32_t m : buckets[b].members) {
      if (!slots[m].occupied || slots[m].bucket != b) return "bucket " + std::to_string(b) + " holds a stale slot";
    }
    if (!(bounds_of(buckets[b]) == buckets[b].bounds)) return "bucket " + std::to_string(b) + " bounds stale";
    if (buckets[b].order.size() != buckets[b].bounds.usable) {
      return "bucket " + std::to_string(b) + " order holds " + std::to_string(buckets[b].order.size()) +
             " of " + std::to_string(buckets[b].bounds.usable) + " usable members";
    }
    for (const auto& [neg_key, m] : buckets[b].order) {
      const Slot& s = slots[m];
      if (!s.occupied || !s.usable || !s.ordered || s.bucket != b) {
        return "bucket " + std::to_string(b) + " order holds slot " + std::to_string(m) + " wrongly";
      }
      if (neg_key != -s.key || s.key != node_key(s)) {
        return "slot " + std::to_string(m) + " order key stale";
      }
    }
  }
  if (in_buckets != held) return "bucket membership count mismatch";
  std::size_t entries = 0, expected = 0;
  for (const auto& list : lat_lists) {
    entries += list.size();
    if (!std::is_sorted(list.begin(), list.end())) return "latency list not sorted";
    for (const LatEntry& e : list) {
      if (!slots[e.slot].occupied) return "latency list holds a removed node";
    }
  }
  for (std::uint32_t i = 0; i < slots.size(); ++i) {
    if (!slots[i].occupied) continue;
    for (const auto& [target, ms] : cands[i].latency_ms) expected += std::isnan(ms) ? 0u : 1u;
  }
  if (entries != expected) return "latency lists hold stale entries";
  return "";
}

// ---- the public face ------------------------------------------------------------------

PlacementEngine::PlacementEngine() : impl_(std::make_unique<Impl>()) {}
PlacementEngine::PlacementEngine(std::span<const Candidate> candidates)
    : impl_(std::make_unique<Impl>()) {
  for (const auto& c : candidates) impl_->upsert(c);
}
PlacementEngine::PlacementEngine(const PlacementEngine& o)
    : impl_(std::make_unique<Impl>(*o.impl_)) {}
PlacementEngine& PlacementEngine::operator=(const PlacementEngine& o) {
  if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}
PlacementEngine::PlacementEngine(PlacementEngine&&) noexcept = default;
PlacementEngine& PlacementEngine::operator=(PlacementEngine&&) noexcept = default;
PlacementEngine::~PlacementEngine() = default;

std::size_t PlacementEngine::size() const { return impl_->held; }
std::size_t PlacementEngine::upsert(const Candidate& c) { return impl_->upsert(c); }
bool PlacementEngine::remove(std::string_view node) { return impl_->remove(node); }

std::optional<std::size_t> PlacementEngine::find(std::string_view node) const {
  const std::uint32_t i = impl_->slot_of(node);
  if (i == kNone) return std::nullopt;
  return i;
}

const Candidate& PlacementEngine::candidate(std::size_t slot) const { return impl_->cands.at(slot); }

bool PlacementEngine::set_used(std::string_view node, const Resources& used) {
  const std::uint32_t i = impl_->slot_of(node);
  if (i == kNone) return false;
  impl_->set_used_slot(i, used);
  return true;
}

bool PlacementEngine::set_alive(std::string_view node, bool alive) {
  const std::uint32_t i = impl_->slot_of(node);
  if (i == kNone) return false;
  impl_->set_alive_slot(i, alive);
  return true;
}

void PlacementEngine::reserve(std::size_t slot, const Resources& r) {
  Resources u = impl_->cands.at(slot).used;
  u.cpu_millis = sat_add(u.cpu_millis, r.cpu_millis);
  u.memory_mb = sat_add(u.memory_mb, r.memory_mb);
  u.storage_mb = sat_add(u.storage_mb, r.storage_mb);
  impl_->set_used_slot(static_cast<std::uint32_t>(slot), u);
}

void PlacementEngine::release(std::size_t slot, const Resources& r) {
  Resources u = impl_->cands.at(slot).used;
  auto sub = [](std::uint64_t a, std::uint64_t b) { return a > b ? a - b : 0; };
  u.cpu_millis = sub(u.cpu_millis, r.cpu_millis);
  u.memory_mb = sub(u.memory_mb, r.memory_mb);
  u.storage_mb = sub(u.storage_mb, r.storage_mb);
  impl_->set_used_slot(static_cast<std::uint32_t>(slot), u);
}

Decision PlacementEngine::place_one(const WorkloadSpec& spec, const PlacementOptions& opts) const {
  return impl_->place_one(prepare(spec), opts.failover_count);
}

std::vector<Ranked> PlacementEngine::rank(const WorkloadSpec& spec, std::size_t k) const {
  return impl_->rank(prepare(spec), k);
}

BatchResult PlacementEngine::place_batch(std::span<const WorkloadSpec> specs,
                                         const PlacementOptions& opts) const {
  return impl_->batch(specs, opts);
}

std::size_t PlacementEngine::last_scored() { return g_last_scored; }

std::string PlacementEngine::verify() const { return impl_->verify(); }

}  // namespace nova::tiers
