// Placement: hard constraints, the seed's score, the reference scans and the selection
// rules (best + failover). The index lives in placement_engine.cpp and shares the
// scoring functions of placement_core.h, so both paths compute bit-identical scores.
#include "nova/tiers/placement.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "placement_core.h"

namespace nova::tiers {

namespace detail {

std::string_view canonical_cap(std::string_view name) {
  // Architecture spellings that mean the same machine (Debian, Docker, uname).
  if (name == "arm64") return "aarch64";
  if (name == "amd64" || name == "x64") return "x86_64";
  if (name == "armhf" || name == "armv7") return "armv7l";
  return name;
}

std::vector<std::string> canonical_set(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  out.reserve(names.size());
  for (const auto& n : names) out.emplace_back(canonical_cap(n));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> sorted_set(const std::vector<std::string>& names) {
  std::vector<std::string> out = names;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {
// NaN and out-of-range inputs land inside 0..1 (NaN -> lo): a bad metric must never
// make a score NaN, because NaN breaks every ordering.
double clamp_to(double x, double lo, double hi) {
  if (!(x >= lo)) return lo;
  if (x > hi) return hi;
  return x;
}
}  // namespace

Factors factors_of(const Candidate& c) {
  Factors f;
  const double thermal = c.thermal_throttled ? 0.5 : 1.0;
  const double power = 0.5 + 0.5 * clamp_to(c.power_headroom, 0, 1);
  f.res_mult = thermal * power;
  const double bw = clamp_to(c.bandwidth_mbps, 0, 1e12);
  f.link = 0.6 * clamp_to(c.connection_stability, 0, 1) + 0.4 * std::min(1.0, bw / 100.0);
  const std::uint8_t lvl = std::clamp(c.level, kMinLevel, kMaxLevel);
  const double expected =
      c.reliability ? clamp_to(*c.reliability, 0, 1) : profile(lvl).uptime_slo_pct / 100.0;
  f.down = 1.0 - expected;
  const double maint = c.maintenance == Maintenance::soon ? 0.5 : 1.0;
  const double battery = c.power == PowerSource::battery ? 0.8 : 1.0;
  const double offline = 0.8 + 0.2 * std::min(1.0, clamp_to(c.offline_hours, 0, 1e9) / 24.0);
  f.avail_mult = maint * battery * offline;
  return f;
}

double resource_component(const std::uint64_t alloc[3], const std::uint64_t post[3],
                          const std::uint64_t req[3], double mult) {
  // Fit looks at every dimension the node has; balance only at cpu and memory, the pair
  // that strands each other (storage is used independently of both).
  bool any = false;
  double umax = 0, ureq = -1;
  double u[3] = {0, 0, 0};
  for (int d = 0; d < 3; ++d) {
    if (alloc[d] == 0) continue;
    u[d] = static_cast<double>(post[d]) / static_cast<double>(alloc[d]);
    umax = any ? std::max(umax, u[d]) : u[d];
    any = true;
    if (req[d] > 0) ureq = std::max(ureq, u[d]);
  }
  double binding = 0, balance = 1;
  if (any) binding = ureq >= 0 ? ureq : umax;
  if (alloc[0] > 0 && alloc[1] > 0) balance = std::max(0.0, 1.0 - std::abs(u[0] - u[1]));
  double fit;
  if (binding <= kFitKnee) {
    fit = 0.5 + 0.5 * (binding / kFitKnee);
  } else {
    fit = std::max(0.1, 1.0 - 0.9 * ((binding - kFitKnee) / (1.0 - kFitKnee)));
  }
  return 100.0 * (0.7 * fit + 0.3 * balance) * mult;
}

double resource_upper(double mult) { return 100.0 * (0.7 * 1.0 + 0.3 * 1.0) * mult; }

double latency_component(double proximity, double link) {
  return 100.0 * (0.7 * proximity + 0.3 * link);
}

double proximity(double ms, double max_ms) { return max_ms > 0 ? 1.0 - ms / max_ms : 1.0; }

double capability_component(std::size_t declared, std::size_t matched) {
  return 100.0 * (0.5 + 0.5 * (static_cast<double>(matched + 1) /
                               static_cast<double>(declared + 1)));
}

double level_component(const std::vector<std::uint8_t>& pref, std::uint8_t level) {
  if (pref.empty()) return 100.0;
  for (std::size_t i = 0; i < pref.size(); ++i) {
    if (pref[i] == level) return std::max(25.0, 100.0 - 25.0 * static_cast<double>(i));
  }
  return 0.0;
}

double availability_component(double need_down, double down, double mult) {
  double meet;
  if (down <= need_down) {
    meet = 1.0;
  } else if (need_down <= 0) {
    meet = 0.0;
  } else {
    meet = need_down / down;
  }
  return 100.0 * meet * mult;
}

Query prepare(const WorkloadSpec& spec) {
  Query q;
  q.spec = &spec;
  q.req[0] = spec.resources.cpu_millis;
  q.req[1] = spec.resources.memory_mb;
  q.req[2] = spec.resources.storage_mb;
  q.caps = canonical_set(spec.capabilities);
  q.include = sorted_set(spec.clusters_include);
  q.exclude = sorted_set(spec.clusters_exclude);
  if (spec.latency) {
    q.has_latency = true;
    q.max_ms = static_cast<double>(spec.latency->max_ms);
    q.to = spec.latency->to;
  }
  q.need_down = 1.0 - clamp_to(spec.availability, 0, 1);
  return q;
}

std::optional<double> latency_to(const Candidate& c, std::string_view to) {
  auto it = c.latency_ms.find(to);
  if (it == c.latency_ms.end() || std::isnan(it->second)) return std::nullopt;
  return std::max(0.0, it->second);
}

std::uint64_t free_of(std::uint64_t alloc, std::uint64_t used) {
  return used >= alloc ? 0 : alloc - used;
}

std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) {
  const std::uint64_t s = a + b;
  return s < a ? UINT64_MAX : s;
}

bool cluster_ok(const Query& q, const std::vector<std::string>& node_clusters_sorted,
                Rejection* why) {
  if (!q.include.empty()) {
    bool in = false;
    for (const auto& c : q.include) {
      if (std::binary_search(node_clusters_sorted.begin(), node_clusters_sorted.end(), c)) {
        in = true;
        break;
      }
    }
    if (!in) {
      if (why) *why = Rejection::cluster_not_included;
      return false;
    }
  }
  for (const auto& c : q.exclude) {
    if (std::binary_search(node_clusters_sorted.begin(), node_clusters_sorted.end(), c)) {
      if (why) *why = Rejection::cluster_excluded;
      return false;
    }
  }
  return true;
}

std::size_t missing_cap(const Query& q, const std::vector<std::string>& caps_sorted,
                        std::string_view arch) {
  for (std::size_t i = 0; i < q.caps.size(); ++i) {
    const auto& r = q.caps[i];
    if (r == arch) continue;
    if (!std::binary_search(caps_sorted.begin(), caps_sorted.end(), r)) return i;
  }
  return q.caps.size();
}

std::size_t matched_caps(const Query& q, const std::vector<std::string>& caps_sorted) {
  std::size_t m = 0;
  for (const auto& r : q.caps) {
    if (std::binary_search(caps_sorted.begin(), caps_sorted.end(), r)) ++m;
  }
  return m;
}

Rejection check_resources(const Query& q, const std::uint64_t alloc[3],
                          const std::uint64_t used[3]) {
  static constexpr Rejection kDim[3] = {Rejection::cpu, Rejection::memory,
                                        Rejection::storage};
  for (int d = 0; d < 3; ++d) {
    if (q.req[d] > free_of(alloc[d], used[d])) return kDim[d];
  }
  return Rejection::none;
}

void resources_of(const Resources& r, std::uint64_t out[3]) {
  out[0] = r.cpu_millis;
  out[1] = r.memory_mb;
  out[2] = r.storage_mb;
}

Rejection check_prepared(const Query& q, const Candidate& c, bool resources) {
  if (!c.alive) return Rejection::dead;
  if (c.maintenance == Maintenance::now) return Rejection::maintenance;
  if (q.spec->region && (!c.region || *c.region != *q.spec->region)) return Rejection::region;
  if (!q.include.empty() || !q.exclude.empty()) {
    Rejection why = Rejection::none;
    if (!cluster_ok(q, sorted_set(c.clusters), &why)) return why;
  }
  if (!q.caps.empty()) {
    const auto caps = canonical_set(c.capabilities);
    if (missing_cap(q, caps, canonical_cap(c.arch)) != q.caps.size()) {
      return Rejection::capability;
    }
  }
  if (resources) {
    std::uint64_t alloc[3], used[3];
    resources_of(c.allocatable, alloc);
    resources_of(c.used, used);
    const Rejection r = check_resources(q, alloc, used);
    if (r != Rejection::none) return r;
  }
  if (q.has_latency) {
    const auto ms = latency_to(c, q.to);
    if (!ms) return Rejection::latency_unknown;
    if (*ms > q.max_ms) return Rejection::latency_exceeded;
  }
  return Rejection::none;
}

ScoreBreakdown static_components(const Query& q, const Candidate& c, const Factors& f) {
  ScoreBreakdown b;
  double prox = 1.0;
  if (q.has_latency) {
    const auto ms = latency_to(c, q.to);
    prox = proximity(ms ? *ms : q.max_ms, q.max_ms);
  }
  b.latency = latency_component(prox, f.link);
  const auto caps = canonical_set(c.capabilities);
  b.capability = capability_component(caps.size(), matched_caps(q, caps));
  b.level = level_component(q.spec->tier_preference, c.level);
  b.availability = availability_component(q.need_down, f.down, f.avail_mult);
  return b;
}

ScoreBreakdown score_prepared(const Query& q, const Candidate& c) {
  const Factors f = factors_of(c);
  ScoreBreakdown b = static_components(q, c, f);
  std::uint64_t alloc[3], used[3], post[3];
  resources_of(c.allocatable, alloc);
  resources_of(c.used, used);
  for (int d = 0; d < 3; ++d) post[d] = sat_add(used[d], q.req[d]);
  b.resource = resource_component(alloc, post, q.req, f.res_mult);
  return b;
}

bool better(double sa, const std::string& na, double sb, const std::string& nb) {
  if (sa != sb) return sa > sb;
  return na < nb;
}

Decision select(std::vector<Ranked> all, std::size_t k) {
  std::sort(all.begin(), all.end(), [](const Ranked& a, const Ranked& b) {
    return better(a.score, a.node, b.score, b.node);
  });
  Decision d;
  if (all.empty()) return d;
  d.best = all.front();
  std::vector<bool> taken(all.size(), false);
  std::vector<const std::string*> sites{&all.front().site};
  for (std::size_t i = 1; i < all.size() && d.failover.size() < k; ++i) {
    bool seen = false;
    for (const auto* s : sites) seen = seen || *s == all[i].site;
    if (seen) continue;
    sites.push_back(&all[i].site);
    taken[i] = true;
    d.failover.push_back(all[i]);
  }
  for (std::size_t i = 1; i < all.size() && d.failover.size() < k; ++i) {
    if (!taken[i]) d.failover.push_back(all[i]);
  }
  return d;
}

}  // namespace detail

using namespace detail;

double total(const ScoreBreakdown& b) {
  return kWeightResource * b.resource + kWeightLatency * b.latency +
         kWeightCapability * b.capability + kWeightLevel * b.level +
         kWeightAvailability * b.availability;
}

std::string_view to_string(Rejection r) {
  switch (r) {
    case Rejection::none: return "none";
    case Rejection::dead: return "dead";
    case Rejection::maintenance: return "maintenance";
    case Rejection::region: return "region";
    case Rejection::cluster_not_included: return "cluster_not_included";
    case Rejection::cluster_excluded: return "cluster_excluded";
    case Rejection::capability: return "capability";
    case Rejection::cpu: return "cpu";
    case Rejection::memory: return "memory";
    case Rejection::storage: return "storage";
    case Rejection::latency_unknown: return "latency_unknown";
    case Rejection::latency_exceeded: return "latency_exceeded";
  }
  return "unknown";
}

Rejection check(const WorkloadSpec& spec, const Candidate& c) {
  return check_prepared(prepare(spec), c, true);
}

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

}  // namespace

std::string explain(const WorkloadSpec& spec, const Candidate& c) {
  const Query q = prepare(spec);
  const Rejection r = check_prepared(q, c, true);
  const std::string node = "node '" + c.node + "' ";
  switch (r) {
    case Rejection::none: return "";
    case Rejection::dead: return "dead: " + node + "is not alive";
    case Rejection::maintenance: return "maintenance: " + node + "is in a maintenance window";
    case Rejection::region:
      return "region: the workload must stay in '" + *spec.region + "', " + node +
             (c.region ? "is in '" + *c.region + "'" : "has no region");
    case Rejection::cluster_not_included:
      return "cluster: " + node + "is in none of the required clusters [" + join(q.include) +
             "] (it is in [" + join(sorted_set(c.clusters)) + "])";
    case Rejection::cluster_excluded: {
      const auto mine = sorted_set(c.clusters);
      std::string which;
      for (const auto& x : q.exclude) {
        if (std::binary_search(mine.begin(), mine.end(), x)) {
          which = x;
          break;
        }
      }
      return "cluster: " + node + "is in the excluded cluster '" + which + "'";
    }
    case Rejection::capability: {
      const auto caps = canonical_set(c.capabilities);
      const std::size_t i = missing_cap(q, caps, canonical_cap(c.arch));
      return "capability: '" + q.caps[i] + "' missing (" + node + "has: " +
             (caps.empty() ? std::string("no capabilities") : join(caps)) + ", arch " +
             (c.arch.empty() ? std::string("unknown") : c.arch) + ")";
    }
    case Rejection::cpu:
    case Rejection::memory:
    case Rejection::storage: {
      const int d = r == Rejection::cpu ? 0 : r == Rejection::memory ? 1 : 2;
      static constexpr const char* kName[3] = {"cpu", "memory", "storage"};
      static constexpr const char* kUnit[3] = {"millis", "MB", "MB"};
      std::uint64_t alloc[3], used[3];
      resources_of(c.allocatable, alloc);
      resources_of(c.used, used);
      return std::string(kName[d]) + ": needs " + std::to_string(q.req[d]) + " " + kUnit[d] +
             ", " + node + "has " + std::to_string(free_of(alloc[d], used[d])) + " free (" +
             std::to_string(used[d]) + " of " + std::to_string(alloc[d]) + " used)";
    }
    case Rejection::latency_unknown:
      return "latency: no measurement from " + node + "to '" + q.to + "'";
    case Rejection::latency_exceeded:
      return "latency: " + num(*latency_to(c, q.to)) + " ms from " + node + "to '" + q.to +
             "' exceeds the bound of " + num(q.max_ms) + " ms";
  }
  return "unknown";
}

ScoreBreakdown score(const WorkloadSpec& spec, const Candidate& c) {
  return score_prepared(prepare(spec), c);
}

Placement to_placement(const WorkloadSpec& spec, const Decision& d) {
  Placement p;
  p.workload_id = spec.workload_id;
  p.node = d.best->node;
  p.site = d.best->site;
  p.score = d.best->score;
  p.breakdown = d.best->breakdown;
  for (const auto& f : d.failover) p.failover.push_back(f.node);
  return p;
}

namespace {

std::vector<Ranked> scan_all(const WorkloadSpec& spec, std::span<const Candidate> cs) {
  const Query q = prepare(spec);
  std::vector<Ranked> all;
  for (std::size_t i = 0; i < cs.size(); ++i) {
    if (check_prepared(q, cs[i], true) != Rejection::none) continue;
    Ranked r;
    r.index = i;
    r.node = cs[i].node;
    r.site = cs[i].site;
    r.breakdown = score_prepared(q, cs[i]);
    r.score = total(r.breakdown);
    all.push_back(std::move(r));
  }
  return all;
}

}  // namespace

Decision place_one(const WorkloadSpec& spec, std::span<const Candidate> candidates,
                   const PlacementOptions& opts) {
  return select(scan_all(spec, candidates), opts.failover_count);
}

std::vector<Ranked> rank(const WorkloadSpec& spec, std::span<const Candidate> candidates,
                         std::size_t k) {
  auto all = scan_all(spec, candidates);
  std::sort(all.begin(), all.end(), [](const Ranked& a, const Ranked& b) {
    return better(a.score, a.node, b.score, b.node);
  });
  if (all.size() > k) all.resize(k);
  return all;
}

BatchResult place_batch(std::span<const WorkloadSpec> specs,
                        std::span<const Candidate> candidates, const PlacementOptions& opts) {
  return PlacementEngine(candidates).place_batch(specs, opts);
}

}  // namespace nova::tiers
