// Placement: hard constraints and their explanations, the seed's weights, failover order,
// the index agreeing with the reference scan, and batch placement against the exact
// optimum found by exhaustive search (issue 5's "placement accuracy" acceptance).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "nova/tiers/placement.h"

using namespace nova::tiers;

namespace {

Candidate node(std::string id, std::string site, std::uint8_t level = 3,
               std::uint64_t cpu = 4000, std::uint64_t mem = 4096, std::uint64_t sto = 10000) {
  Candidate c;
  c.node = std::move(id);
  c.site = std::move(site);
  c.level = level;
  c.arch = "x86_64";
  c.allocatable = {cpu, mem, sto};
  return c;
}

WorkloadSpec workload(std::uint64_t cpu = 1000, std::uint64_t mem = 512, std::uint64_t sto = 0) {
  WorkloadSpec w;
  w.workload_id = "w1";
  w.resources = {cpu, mem, sto};
  return w;
}

double weighted(const ScoreBreakdown& b) {
  return 0.25 * b.resource + 0.25 * b.latency + 0.20 * b.capability + 0.15 * b.level +
         0.15 * b.availability;
}

// ---- random instances ----------------------------------------------------------------

struct Gen {
  std::mt19937_64 rng;
  explicit Gen(std::uint64_t seed) : rng(seed) {}
  std::uint64_t u(std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  }
  double d(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
  bool p(double prob) { return d(0, 1) < prob; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[u(0, v.size() - 1)];
  }

  Candidate candidate(std::size_t i, std::size_t sites) {
    Candidate c;
    c.node = "n" + std::to_string(i);
    c.site = "site-" + std::to_string(u(0, sites - 1));
    c.level = static_cast<std::uint8_t>(u(1, 5));
    c.arch = pick<std::string>({"x86_64", "aarch64", "armv7l"});
    for (const char* cap : {"gpu", "camera", "modbus"}) {
      if (p(0.3)) c.capabilities.emplace_back(cap);
    }
    if (p(0.8)) c.region = pick<std::string>({"eu", "us"});
    for (const char* cl : {"c1", "c2"}) {
      if (p(0.4)) c.clusters.emplace_back(cl);
    }
    c.allocatable = {u(4, 16) * 250, u(2, 16) * 256, p(0.5) ? u(1, 8) * 1000 : 0};
    c.used = {u(0, c.allocatable.cpu_millis / 2), u(0, c.allocatable.memory_mb / 2),
              u(0, c.allocatable.storage_mb / 2)};
    c.alive = p(0.95);
    for (const char* t : {"s1", "s2"}) {
      if (p(0.7)) c.latency_ms[t] = d(0.5, 60);
    }
    c.bandwidth_mbps = d(5, 500);
    c.connection_stability = d(0.5, 1);
    c.power = p(0.2) ? PowerSource::battery : PowerSource::mains;
    c.power_headroom = d(0.3, 1);
    c.thermal_throttled = p(0.1);
    c.offline_hours = d(0, 48);
    const double m = d(0, 1);
    c.maintenance = m < 0.05 ? Maintenance::now : m < 0.15 ? Maintenance::soon : Maintenance::none;
    if (p(0.6)) c.reliability = d(0.9, 1);
    return c;
  }

  WorkloadSpec spec(std::size_t i) {
    WorkloadSpec w;
    w.workload_id = "w" + std::to_string(i);
    w.resources = {u(2, 10) * 250, u(1, 8) * 256, p(0.3) ? u(1, 4) * 500 : 0};
    if (p(0.4)) w.latency = nova::schemas::LatencyBound{u(10, 60), pick<std::string>({"s1", "s2"})};
    if (p(0.3)) w.capabilities.push_back(pick<std::string>({"gpu", "camera", "arm64", "amd64"}));
    std::vector<std::uint8_t> levels{1, 2, 3, 4, 5};
    std::shuffle(levels.begin(), levels.end(), rng);
    levels.resize(u(0, 3));
    w.tier_preference = levels;
    if (p(0.3)) w.region = pick<std::string>({"eu", "us"});
    w.availability = d(0.9, 0.9999);
    if (p(0.15)) w.clusters_include.push_back(pick<std::string>({"c1", "c2"}));
    if (p(0.15)) w.clusters_exclude.push_back(pick<std::string>({"c1", "c2"}));
    return w;
  }
};

bool same(const std::optional<Ranked>& a, const std::optional<Ranked>& b) {
  if (!a || !b) return !a && !b;
  return a->node == b->node && a->score == b->score && a->breakdown == b->breakdown;
}

bool same(const std::vector<Ranked>& a, const std::vector<Ranked>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].node != b[i].node || a[i].score != b[i].score) return false;
  }
  return true;
}

std::vector<Candidate> held(const PlacementEngine& e, const std::vector<std::string>& ids) {
  std::vector<Candidate> out;
  for (const auto& id : ids) {
    if (auto s = e.find(id)) out.push_back(e.candidate(*s));
  }
  return out;
}

}  // namespace

TEST_CASE("the total is the seed's weighted sum of the breakdown", "[placement]") {
  CHECK(kWeightResource + kWeightLatency + kWeightCapability + kWeightLevel +
            kWeightAvailability == Approx(1.0));
  CHECK(total({100, 0, 0, 0, 0}) == Approx(25));
  CHECK(total({0, 100, 0, 0, 0}) == Approx(25));
  CHECK(total({0, 0, 100, 0, 0}) == Approx(20));
  CHECK(total({0, 0, 0, 100, 0}) == Approx(15));
  CHECK(total({0, 0, 0, 0, 100}) == Approx(15));
  CHECK(total({100, 100, 100, 100, 100}) == Approx(100));

  Gen g(7);
  std::vector<Candidate> cs;
  for (std::size_t i = 0; i < 200; ++i) cs.push_back(g.candidate(i, 20));
  int decided = 0;
  for (std::size_t i = 0; i < 200; ++i) {
    const WorkloadSpec w = g.spec(i);
    const Decision d = place_one(w, cs);
    if (!d.best) continue;
    ++decided;
    const ScoreBreakdown& b = d.best->breakdown;
    for (double x : {b.resource, b.latency, b.capability, b.level, b.availability}) {
      CHECK(x >= 0);
      CHECK(x <= 100 + 1e-9);
    }
    CHECK(d.best->score == Approx(weighted(b)).margin(1e-9));
    CHECK(d.best->score == total(score(w, cs[d.best->index])));
    for (const Ranked& f : d.failover) CHECK(f.score == Approx(weighted(f.breakdown)).margin(1e-9));
  }
  CHECK(decided > 50);
}

TEST_CASE("every hard constraint filters and explains itself", "[placement]") {
  const Candidate ok = node("ok", "cloud/eu/par/a1");
  WorkloadSpec w = workload();
  REQUIRE(check(w, ok) == Rejection::none);
  CHECK(explain(w, ok).empty());

  auto rejected = [&](const WorkloadSpec& spec, const Candidate& bad, Rejection why,
                      const std::string& message) {
    INFO(to_string(why));
    CHECK(check(spec, bad) == why);
    CHECK(explain(spec, bad) == message);
    // The bad node is never chosen even when it would score higher: it has more
    // headroom and the ok node is throttled.
    Candidate weak = ok;
    weak.thermal_throttled = true;
    weak.connection_stability = 0.1;
    std::vector<Candidate> both{bad, weak};
    const Decision d = place_one(spec, both);
    if (check(spec, weak) == Rejection::none) {
      REQUIRE(d.best);
      CHECK(d.best->node == "ok");
      CHECK(d.failover.empty());
    }
    PlacementEngine e(both);
    CHECK(same(e.place_one(spec).best, d.best));
  };

  Candidate c = ok;
  c.node = "n";
  c.alive = false;
  rejected(w, c, Rejection::dead, "dead: node 'n' is not alive");

  c = ok;
  c.node = "n";
  c.maintenance = Maintenance::now;
  rejected(w, c, Rejection::maintenance, "maintenance: node 'n' is in a maintenance window");
  c.maintenance = Maintenance::soon;  // soon is only a penalty
  CHECK(check(w, c) == Rejection::none);

  WorkloadSpec wr = w;
  wr.region = "eu-west";
  c = ok;
  c.node = "n";
  c.region = "us-east";
  rejected(wr, c, Rejection::region,
           "region: the workload must stay in 'eu-west', node 'n' is in 'us-east'");
  c.region.reset();
  rejected(wr, c, Rejection::region, "region: the workload must stay in 'eu-west', node 'n' has no region");

  WorkloadSpec wc = w;
  wc.clusters_include = {"edge-b", "edge-a"};
  c = ok;
  c.node = "n";
  c.clusters = {"core"};
  CHECK(check(wc, c) == Rejection::cluster_not_included);
  CHECK(explain(wc, c) ==
        "cluster: node 'n' is in none of the required clusters [edge-a, edge-b] (it is in [core])");
  c.clusters = {"core", "edge-b"};
  CHECK(check(wc, c) == Rejection::none);
  wc.clusters_exclude = {"core"};
  CHECK(check(wc, c) == Rejection::cluster_excluded);
  CHECK(explain(wc, c) == "cluster: node 'n' is in the excluded cluster 'core'");

  WorkloadSpec wg = w;
  wg.capabilities = {"gpu"};
  c = ok;
  c.node = "n";
  c.arch = "aarch64";
  c.capabilities = {"camera"};
  rejected(wg, c, Rejection::capability,
           "capability: 'gpu' missing (node 'n' has: camera, arch aarch64)");

  c = ok;
  c.node = "n";
  c.used.cpu_millis = 3500;
  rejected(w, c, Rejection::cpu, "cpu: needs 1000 millis, node 'n' has 500 free (3500 of 4000 used)");
  c = ok;
  c.node = "n";
  c.used.memory_mb = 4000;
  rejected(w, c, Rejection::memory, "memory: needs 512 MB, node 'n' has 96 free (4000 of 4096 used)");
  WorkloadSpec ws = workload(1000, 512, 20000);
  c = ok;
  c.node = "n";
  rejected(ws, c, Rejection::storage, "storage: needs 20000 MB, node 'n' has 10000 free (0 of 10000 used)");
  c.used.storage_mb = 99999;  // over-used: nothing fits, not a wrap-around
  CHECK(check(ws, c) == Rejection::storage);

  WorkloadSpec wl = w;
  wl.latency = nova::schemas::LatencyBound{10, "acc-01"};
  Candidate okl = ok;
  okl.latency_ms["acc-01"] = 3;
  c = okl;
  c.node = "n";
  c.latency_ms.clear();
  c.latency_ms["metro-1"] = 1;
  CHECK(check(wl, c) == Rejection::latency_unknown);
  CHECK(explain(wl, c) == "latency: no measurement from node 'n' to 'acc-01'");
  c.latency_ms["acc-01"] = 14.5;
  CHECK(check(wl, c) == Rejection::latency_exceeded);
  CHECK(explain(wl, c) == "latency: 14.5 ms from node 'n' to 'acc-01' exceeds the bound of 10 ms");
  c.latency_ms["acc-01"] = 10;  // the bound is inclusive
  CHECK(check(wl, c) == Rejection::none);
  c.latency_ms["acc-01"] = std::nan("");
  CHECK(check(wl, c) == Rejection::latency_unknown);
}

TEST_CASE("architecture aliases satisfy capability requirements", "[placement]") {
  Candidate c = node("pi", "cloud/eu/par/a1/pi", 5);
  c.arch = "aarch64";
  WorkloadSpec w = workload();
  w.capabilities = {"arm64"};
  CHECK(check(w, c) == Rejection::none);
  w.capabilities = {"aarch64"};
  CHECK(check(w, c) == Rejection::none);
  w.capabilities = {"amd64"};
  CHECK(check(w, c) == Rejection::capability);
  c.arch = "x86_64";
  CHECK(check(w, c) == Rejection::none);
  c.arch = "armv7l";
  w.capabilities = {"armhf"};
  CHECK(check(w, c) == Rejection::none);
  // Declared capabilities fold too.
  c.arch = "";
  c.capabilities = {"arm64"};
  w.capabilities = {"aarch64"};
  CHECK(check(w, c) == Rejection::none);
}

TEST_CASE("tier preference ranks but never excludes", "[placement]") {
  std::vector<Candidate> cs{node("dev", "s/d", 5), node("metro", "s/m", 3), node("acc", "s/a", 4)};
  WorkloadSpec w = workload();
  w.tier_preference = {4, 3};
  Decision d = place_one(w, cs);
  REQUIRE(d.best);
  CHECK(d.best->node == "acc");
  CHECK(d.best->breakdown.level == 100);
  REQUIRE(d.failover.size() == 2);
  CHECK(d.failover[0].node == "metro");
  CHECK(d.failover[0].breakdown.level == 75);
  CHECK(d.failover[1].node == "dev");
  CHECK(d.failover[1].breakdown.level == 0);

  w.tier_preference = {1};  // nothing at level 1: still placed
  d = place_one(w, cs);
  REQUIRE(d.best);
  CHECK(d.best->breakdown.level == 0);
}

TEST_CASE("each edge factor moves its own score component", "[placement]") {
  const Candidate base = node("n", "s/a", 3);
  WorkloadSpec w = workload();
  w.availability = 0.99;
  const ScoreBreakdown b0 = score(w, base);

  auto component_drops = [&](const Candidate& c, double ScoreBreakdown::*field) {
    const ScoreBreakdown b = score(w, c);
    CHECK(b.*field < b0.*field);
    for (double ScoreBreakdown::*other :
         {&ScoreBreakdown::resource, &ScoreBreakdown::latency, &ScoreBreakdown::capability,
          &ScoreBreakdown::level, &ScoreBreakdown::availability}) {
      if (other != field) CHECK(b.*other == b0.*other);
    }
  };
  Candidate c = base;
  c.thermal_throttled = true;
  component_drops(c, &ScoreBreakdown::resource);
  c = base;
  c.power_headroom = 0.2;
  component_drops(c, &ScoreBreakdown::resource);
  c = base;
  c.connection_stability = 0.5;
  component_drops(c, &ScoreBreakdown::latency);
  c = base;
  c.bandwidth_mbps = 10;
  component_drops(c, &ScoreBreakdown::latency);
  c = base;
  c.capabilities = {"gpu"};  // special hardware the workload does not need
  component_drops(c, &ScoreBreakdown::capability);
  c = base;
  c.reliability = 0.95;
  component_drops(c, &ScoreBreakdown::availability);
  c = base;
  c.maintenance = Maintenance::soon;
  component_drops(c, &ScoreBreakdown::availability);
  c = base;
  c.power = PowerSource::battery;
  component_drops(c, &ScoreBreakdown::availability);
  c = base;
  c.offline_hours = 2;
  component_drops(c, &ScoreBreakdown::availability);

  // Latency: nearer is better within the bound.
  w.latency = nova::schemas::LatencyBound{20, "acc-01"};
  Candidate near = base, far = base;
  near.latency_ms["acc-01"] = 2;
  far.latency_ms["acc-01"] = 18;
  CHECK(score(w, near).latency > score(w, far).latency);

  // Resource: best fit on the binding dimension up to the knee, then the penalty.
  WorkloadSpec r = workload(1000, 1024);
  Candidate fresh = node("f", "s", 3, 4000, 4096), busy = fresh, full = fresh, lopsided = fresh;
  busy.used = {2000, 2048, 0};      // 75 % on both after placement: a good fit
  full.used = {2900, 2900, 0};      // 97 %: past the migration trigger
  lopsided.used = {2000, 0, 0};     // cpu 75 %, memory 25 %: fragmenting
  CHECK(score(r, busy).resource > score(r, fresh).resource);
  CHECK(score(r, busy).resource > score(r, full).resource);
  CHECK(score(r, busy).resource > score(r, lopsided).resource);
}

TEST_CASE("failover candidates prefer other sites, then fill in score order", "[placement]") {
  auto n = [](const char* id, const char* site, double stability) {
    Candidate c = node(id, site);
    c.connection_stability = stability;
    return c;
  };
  std::vector<Candidate> cs{n("a1", "A", 1.0), n("a2", "A", 0.9), n("b1", "B", 0.8),
                            n("b2", "B", 0.75), n("c1", "C", 0.7)};
  const WorkloadSpec w = workload();
  Decision d = place_one(w, cs);
  REQUIRE(d.best);
  CHECK(d.best->node == "a1");
  std::vector<std::string> order;
  for (const auto& f : d.failover) order.push_back(f.node);
  CHECK(order == std::vector<std::string>{"b1", "c1", "a2"});

  PlacementEngine e(cs);
  const Decision de = e.place_one(w);
  CHECK(same(de.best, d.best));
  CHECK(same(de.failover, d.failover));

  PlacementOptions one;
  one.failover_count = 1;
  CHECK(place_one(w, cs, one).failover.size() == 1);
  CHECK(e.place_one(w, one).failover.at(0).node == "b1");

  // rank() is plain score order, no diversity.
  const auto r = rank(w, cs, 3);
  REQUIRE(r.size() == 3);
  CHECK(r[0].node == "a1");
  CHECK(r[1].node == "a2");
  CHECK(r[2].node == "b1");
  CHECK(same(e.rank(w, 3), r));

  // Ties are broken by node id, whatever the input order.
  std::vector<Candidate> twins{node("z", "Z"), node("y", "Y")};
  CHECK(place_one(w, twins).best->node == "y");
  std::reverse(twins.begin(), twins.end());
  CHECK(place_one(w, twins).best->node == "y");

  const nova::schemas::Placement p = to_placement(w, d);
  CHECK(p.workload_id == "w1");
  CHECK(p.node == "a1");
  CHECK(p.site == "A");
  CHECK(p.score == d.best->score);
  CHECK(p.breakdown == d.best->breakdown);
  CHECK(p.failover == std::vector<std::string>{"b1", "c1", "a2"});
}

TEST_CASE("the index gives the reference scan's answers, also after updates", "[placement]") {
  Gen g(42);
  std::vector<Candidate> cs;
  for (std::size_t i = 0; i < 400; ++i) cs.push_back(g.candidate(i, 60));
  PlacementEngine e(cs);
  REQUIRE(e.verify().empty());
  std::vector<std::string> ids;
  for (const auto& c : cs) ids.push_back(c.node);

  int checked = 0, mismatches = 0;
  for (int round = 0; round < 30; ++round) {
    const auto now = held(e, ids);
    for (int i = 0; i < 20; ++i) {
      const WorkloadSpec w = g.spec(static_cast<std::size_t>(i));
      const Decision ref = place_one(w, now);
      const Decision got = e.place_one(w);
      ++checked;
      if (!same(ref.best, got.best) || !same(ref.failover, got.failover) ||
          !same(rank(w, now, 5), e.rank(w, 5))) {
        ++mismatches;
        UNSCOPED_INFO("round " << round << " spec " << i << " ref "
                               << (ref.best ? ref.best->node : "-") << " got "
                               << (got.best ? got.best->node : "-"));
      }
    }
    // Mutate: usage, liveness, reservations, replacement, removal, new nodes.
    for (int m = 0; m < 25; ++m) {
      const std::string& id = ids[g.u(0, ids.size() - 1)];
      const auto slot = e.find(id);
      switch (g.u(0, 5)) {
        case 0:
          if (slot) e.set_used(id, g.candidate(0, 1).used);
          break;
        case 1:
          if (slot) e.set_alive(id, g.p(0.5));
          break;
        case 2:
          if (slot) e.reserve(*slot, {500, 256, 0});
          break;
        case 3:
          if (slot) e.release(*slot, {700, 100, 1});
          break;
        case 4: {
          Candidate c = g.candidate(0, 60);
          c.node = id;
          e.upsert(c);
          break;
        }
        case 5:
          e.remove(id);
          break;
      }
      REQUIRE(e.verify().empty());
    }
  }
  CHECK(mismatches == 0);
  CHECK(checked == 600);
}

TEST_CASE("the index stays exact under heavy usage churn", "[placement]") {
  // Few, large buckets and mostly unconstrained workloads: the case where only the
  // resource score separates nodes, so the per-bucket order by usage does the pruning.
  // Hundreds of reserve/release/set_used calls between decisions move nodes in it.
  Gen g(2024);
  std::vector<Candidate> cs;
  for (std::size_t i = 0; i < 600; ++i) {
    Candidate c = g.candidate(i, 40);
    if (g.p(0.7)) {
      c.capabilities.clear();
      c.clusters.clear();
      c.region = "eu";
      c.arch = "x86_64";
      c.level = static_cast<std::uint8_t>(g.u(2, 3));
    }
    if (g.p(0.3)) c.allocatable = {64000, 262144, g.p(0.5) ? 1000000u : 0u};  // big nodes
    cs.push_back(c);
  }
  PlacementEngine e(cs);
  REQUIRE(e.verify().empty());
  std::vector<std::string> ids;
  for (const auto& c : cs) ids.push_back(c.node);

  auto unconstrained = [&](std::size_t i) {
    WorkloadSpec w;
    w.workload_id = "u" + std::to_string(i);
    switch (g.u(0, 3)) {
      case 0: w.resources = {g.u(1, 4) * 250, g.u(1, 4) * 256, 0}; break;
      case 1: w.resources = {g.u(1, 40) * 250, 0, 0}; break;
      case 2: w.resources = {0, 0, 0}; break;
      default: w.resources = {g.u(0, 8) * 500, g.u(0, 16) * 512, g.u(0, 2) * 1000}; break;
    }
    w.availability = g.pick<double>({0.0, 0.9, 0.99, 0.9999});
    return w;
  };

  int checked = 0, mismatches = 0;
  for (int round = 0; round < 40; ++round) {
    for (int m = 0; m < 300; ++m) {
      const std::string& id = ids[g.u(0, ids.size() - 1)];
      const auto slot = e.find(id);
      const auto op = g.u(0, 99);
      if (!slot) {
        if (op < 10) {
          Candidate c = g.candidate(0, 40);
          c.node = id;
          e.upsert(c);
        }
        continue;
      }
      const Candidate& c = e.candidate(*slot);
      if (op < 35) {
        e.reserve(*slot, {g.u(0, 8) * 250, g.u(0, 8) * 256, g.u(0, 2) * 500});
      } else if (op < 70) {
        e.release(*slot, {g.u(0, 8) * 250, g.u(0, 8) * 256, g.u(0, 2) * 500});
      } else if (op < 90) {
        // Anywhere from empty to overcommitted.
        const auto frac = [&](std::uint64_t a) {
          return static_cast<std::uint64_t>(static_cast<double>(a) * g.d(0, 1.1));
        };
        e.set_used(id, {frac(c.allocatable.cpu_millis), frac(c.allocatable.memory_mb),
                        frac(c.allocatable.storage_mb)});
      } else if (op < 95) {
        e.set_alive(id, g.p(0.7));
      } else if (op < 98) {
        Candidate n = g.candidate(0, 40);
        n.node = id;
        e.upsert(n);
      } else {
        e.remove(id);
      }
    }
    REQUIRE(e.verify().empty());
    const auto now = held(e, ids);
    for (int i = 0; i < 20; ++i) {
      const WorkloadSpec w = i < 14 ? unconstrained(static_cast<std::size_t>(i)) : g.spec(static_cast<std::size_t>(i));
      PlacementOptions opts;
      opts.failover_count = g.u(0, 5);
      const Decision ref = place_one(w, now, opts);
      const Decision got = e.place_one(w, opts);
      const std::size_t k = g.u(1, 8);
      ++checked;
      if (!same(ref.best, got.best) || !same(ref.failover, got.failover) ||
          !same(rank(w, now, k), e.rank(w, k))) {
        ++mismatches;
        UNSCOPED_INFO("round " << round << " spec " << i << " ref "
                               << (ref.best ? ref.best->node : "-") << " got "
                               << (got.best ? got.best->node : "-"));
      }
    }
  }
  CHECK(mismatches == 0);
  CHECK(checked == 800);
}

TEST_CASE("unconstrained decisions score a fraction of a large uniform bucket", "[placement]") {
  // 2,000 identical-looking nodes (one bucket) differing only in usage: the order by
  // usage lets the scan stop long before the end of the bucket.
  Gen g(99);
  std::vector<Candidate> cs;
  for (int i = 0; i < 2000; ++i) {
    Candidate c = node("n" + std::to_string(i), "site-" + std::to_string(i % 50), 2, 64000, 262144, 0);
    c.used = {g.u(0, 44800), g.u(0, 183500), 0};
    cs.push_back(c);
  }
  PlacementEngine e(cs);
  const WorkloadSpec w = workload(500, 512);
  const Decision d = e.place_one(w);
  const std::size_t scored = PlacementEngine::last_scored();
  const Decision ref = place_one(w, cs);
  CHECK(same(d.best, ref.best));
  CHECK(same(d.failover, ref.failover));
  CHECK(scored < 400);
}

TEST_CASE("branch and bound skips buckets that cannot win", "[placement]") {
  std::vector<Candidate> cs;
  for (int i = 0; i < 50; ++i) cs.push_back(node("m" + std::to_string(i), "metro", 3));
  for (int i = 0; i < 500; ++i) cs.push_back(node("d" + std::to_string(i), "dev" + std::to_string(i), 5));
  PlacementEngine e(cs);
  WorkloadSpec w = workload();
  w.tier_preference = {3};
  const Decision d = e.place_one(w);
  REQUIRE(d.best);
  CHECK(d.best->breakdown.level == 100);
  // rank() has its 3 best after the metro bucket, and the device bucket's bound (level
  // score 0) is below them: only the metro nodes are scored. place_one() must still look
  // at the devices, because its failover list wants other sites.
  CHECK(same(e.rank(w, 3), rank(w, cs, 3)));
  CHECK(PlacementEngine::last_scored() <= 50);
  CHECK(same(d.failover, place_one(w, cs).failover));
}

TEST_CASE("batch placement never overcommits and never breaks a hard constraint", "[placement]") {
  Gen g(99);
  std::vector<Candidate> cs;
  for (std::size_t i = 0; i < 60; ++i) cs.push_back(g.candidate(i, 15));
  std::vector<WorkloadSpec> ws;
  for (std::size_t i = 0; i < 300; ++i) ws.push_back(g.spec(i));
  const BatchResult r = place_batch(ws, cs);
  REQUIRE(r.decisions.size() == ws.size());
  std::vector<Resources> load(cs.size());
  double sum = 0;
  std::size_t placed = 0;
  for (std::size_t i = 0; i < ws.size(); ++i) {
    const auto& best = r.decisions[i].best;
    if (!best) continue;
    ++placed;
    sum += best->score;
    load[best->index].cpu_millis += ws[i].resources.cpu_millis;
    load[best->index].memory_mb += ws[i].resources.memory_mb;
    load[best->index].storage_mb += ws[i].resources.storage_mb;
    for (const auto& f : r.decisions[i].failover) CHECK(f.node != best->node);
  }
  CHECK(placed == r.placed);
  CHECK(placed > 50);
  CHECK(r.objective == Approx(sum));
  for (std::size_t n = 0; n < cs.size(); ++n) {
    const Candidate& c = cs[n];
    CHECK(c.used.cpu_millis + load[n].cpu_millis <= std::max(c.allocatable.cpu_millis, c.used.cpu_millis));
    CHECK(c.used.memory_mb + load[n].memory_mb <= std::max(c.allocatable.memory_mb, c.used.memory_mb));
    CHECK(c.used.storage_mb + load[n].storage_mb <= std::max(c.allocatable.storage_mb, c.used.storage_mb));
  }
  for (std::size_t i = 0; i < ws.size(); ++i) {
    const auto& best = r.decisions[i].best;
    if (!best) continue;
    // Feasible on the node's final state minus this workload.
    Candidate c = cs[best->index];
    c.used.cpu_millis += load[best->index].cpu_millis - ws[i].resources.cpu_millis;
    c.used.memory_mb += load[best->index].memory_mb - ws[i].resources.memory_mb;
    c.used.storage_mb += load[best->index].storage_mb - ws[i].resources.storage_mb;
    INFO(explain(ws[i], c));
    CHECK(check(ws[i], c) == Rejection::none);
    CHECK(best->score == total(score(ws[i], c)));
  }
}

// The exact optimum of a small instance by trying every assignment (each workload on a
// node or unplaced), under the batch objective of docs/placement.md: most placed
// workloads first, then the highest total score, each workload scored on its node's
// final state.
struct Exhaustive {
  std::size_t N, W;
  // value[n][S]: total score of workload subset S on node n, or -inf if infeasible.
  std::vector<std::vector<double>> value;
  std::size_t best_placed = 0;
  double best = 0;

  Exhaustive(const std::vector<WorkloadSpec>& ws, const std::vector<Candidate>& cs)
      : N(cs.size()), W(ws.size()) {
    const std::size_t subsets = std::size_t{1} << W;
    value.assign(N, std::vector<double>(subsets, -kInf));
    for (std::size_t n = 0; n < N; ++n) {
      for (std::size_t S = 0; S < subsets; ++S) {
        Resources load;
        for (std::size_t w = 0; w < W; ++w) {
          if (!(S >> w & 1)) continue;
          load.cpu_millis += ws[w].resources.cpu_millis;
          load.memory_mb += ws[w].resources.memory_mb;
          load.storage_mb += ws[w].resources.storage_mb;
        }
        double v = 0;
        bool ok = true;
        for (std::size_t w = 0; w < W && ok; ++w) {
          if (!(S >> w & 1)) continue;
          Candidate c = cs[n];  // the node with every other workload of S on it
          c.used.cpu_millis += load.cpu_millis - ws[w].resources.cpu_millis;
          c.used.memory_mb += load.memory_mb - ws[w].resources.memory_mb;
          c.used.storage_mb += load.storage_mb - ws[w].resources.storage_mb;
          ok = check(ws[w], c) == Rejection::none;
          if (ok) v += total(score(ws[w], c));
        }
        if (ok) value[n][S] = v;
      }
    }
    std::vector<std::size_t> a(W, 0);  // 0 = unplaced, n + 1 = node n
    for (;;) {
      std::size_t placed = 0;
      for (std::size_t w = 0; w < W; ++w) placed += a[w] ? 1u : 0u;
      const double v = of(a);
      if (v > -kInf && (placed > best_placed || (placed == best_placed && v > best))) {
        best_placed = placed;
        best = v;
      }
      std::size_t w = 0;
      while (w < W && ++a[w] == N + 1) a[w++] = 0;
      if (w == W) break;
    }
  }

  // The objective of an assignment (0 = unplaced, n + 1 = node n); -inf if it overcommits
  // a node or breaks a hard constraint.
  double of(const std::vector<std::size_t>& a) const {
    std::vector<std::size_t> subset(N, 0);
    for (std::size_t w = 0; w < W; ++w) {
      if (a[w]) subset[a[w] - 1] |= std::size_t{1} << w;
    }
    double v = 0;
    for (std::size_t n = 0; n < N; ++n) v += value[n][subset[n]];
    return v;
  }

  static constexpr double kInf = std::numeric_limits<double>::infinity();
};

struct Accuracy {
  int instances = 0, optimal = 0, violations = 0, pending = 0;
  double ratio_sum = 0, ratio_min = 1;

  // Places ws on cs with place_batch and compares with the exhaustive optimum.
  void add(const std::vector<WorkloadSpec>& ws, const std::vector<Candidate>& cs) {
    const Exhaustive ex(ws, cs);
    const BatchResult r = place_batch(ws, cs);
    std::vector<std::size_t> a(ws.size(), 0);
    for (std::size_t w = 0; w < ws.size(); ++w) {
      if (r.decisions[w].best) a[w] = r.decisions[w].best->index + 1;
    }
    const double got = ex.of(a);
    ++instances;
    if (!(got > -Exhaustive::kInf)) ++violations;  // overcommit or constraint broken
    if (std::abs(got - r.objective) > 1e-6) ++violations;
    if (r.placed < ex.best_placed) ++pending;  // a feasible workload left pending
    const double ratio = ex.best > 0 ? std::max(0.0, got) / ex.best : 1.0;
    if (ratio >= 1 - 1e-9 && r.placed == ex.best_placed) ++optimal;
    ratio_sum += ratio;
    ratio_min = std::min(ratio_min, ratio);
  }
  double average() const { return ratio_sum / instances; }
  std::string line() const {
    return std::to_string(instances) + " instances: average ratio to optimum " + std::to_string(average()) +
           ", minimum " + std::to_string(ratio_min) + ", optimal in " + std::to_string(optimal) +
           ", feasible workloads left pending in " + std::to_string(pending) + ", violations " +
           std::to_string(violations);
  }
};

// Issue 5 acceptance: >= 1,000 instances small enough for exhaustive search; batch
// placement places as many workloads as the optimum, reaches >= 99 % of its total score
// on average and never violates a hard constraint or overcommits.
TEST_CASE("batch placement is within 1 % of the exhaustive optimum", "[placement][accuracy]") {
  Gen g(20241126);
  Accuracy acc;
  for (int inst = 0; inst < 2000; ++inst) {
    const std::size_t N = g.u(3, 6), W = g.u(2, 5);
    std::vector<Candidate> cs;
    for (std::size_t i = 0; i < N; ++i) cs.push_back(g.candidate(i, 4));
    std::vector<WorkloadSpec> ws;
    for (std::size_t i = 0; i < W; ++i) ws.push_back(g.spec(i));
    acc.add(ws, cs);
  }
  std::cout << "placement accuracy: " << acc.line() << "\n";
  WARN("placement accuracy: " << acc.line());
  CHECK(acc.violations == 0);
  CHECK(acc.pending == 0);
  CHECK(acc.average() >= 0.99);
  CHECK(acc.ratio_min >= 0.95);
}

// Tight capacity: the workloads ask for about as much as the nodes have free, so
// placing one blocks others and the order matters. Issue 13 item 5: a feasible workload
// is never left pending when it could be placed, and nothing is overcommitted.
TEST_CASE("batch placement on tight capacity leaves no feasible workload pending", "[placement][accuracy]") {
  Gen g(20261205);
  Accuracy acc;
  for (int inst = 0; inst < 400; ++inst) {
    const std::size_t N = g.u(2, 4), W = g.u(4, 7);
    std::vector<Candidate> cs;
    for (std::size_t i = 0; i < N; ++i) {
      Candidate c = g.candidate(i, 3);
      c.alive = true;
      c.maintenance = Maintenance::none;
      c.allocatable = {g.u(4, 12) * 250, g.u(4, 12) * 256, 0};
      c.used = {};
      cs.push_back(std::move(c));
    }
    std::vector<WorkloadSpec> ws;
    for (std::size_t i = 0; i < W; ++i) {
      WorkloadSpec w = g.spec(i);
      w.resources = {g.u(2, 8) * 250, g.u(1, 6) * 256, 0};
      w.region.reset();
      w.clusters_include.clear();
      if (g.p(0.5)) w.latency.reset();
      if (g.p(0.5)) w.capabilities.clear();
      ws.push_back(std::move(w));
    }
    acc.add(ws, cs);
  }
  std::cout << "tight placement accuracy: " << acc.line() << "\n";
  WARN("tight placement accuracy: " << acc.line());
  CHECK(acc.violations == 0);
  CHECK(acc.pending == 0);
  CHECK(acc.average() >= 0.99);
  CHECK(acc.ratio_min >= 0.95);
}

TEST_CASE("batch placement places every workload of a perfect packing", "[placement][accuracy]") {
  // Each node's capacity split into 2-4 random parts: every workload fits only when each
  // node gets exactly its parts back (or another perfect arrangement), which first-fit and
  // local moves often miss. The exact solve must place them all, whatever the order.
  std::mt19937_64 rng(20261205);
  auto u = [&](std::uint64_t lo, std::uint64_t hi) { return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng); };
  for (int inst = 0; inst < 20; ++inst) {
    std::vector<Candidate> cs;
    std::vector<WorkloadSpec> ws;
    const std::size_t N = u(5, 8);
    for (std::size_t n = 0; n < N; ++n) {
      cs.push_back(node("n" + std::to_string(n), "cloud/eu/s" + std::to_string(n), 3, 2000, 4096, 0));
      std::uint64_t left = 40;  // in units of 50 millis
      const std::uint64_t parts = u(2, 4);
      for (std::uint64_t p = 1; p <= parts; ++p) {
        const std::uint64_t take = p == parts ? left : u(4, left - 4 * (parts - p));
        left -= take;
        WorkloadSpec w = workload(take * 50, 256, 0);
        w.workload_id = "w" + std::to_string(ws.size());
        ws.push_back(std::move(w));
      }
    }
    std::shuffle(ws.begin(), ws.end(), rng);
    const BatchResult r = place_batch(ws, cs);
    INFO("instance " << inst << ": " << ws.size() << " workloads on " << N << " nodes");
    CHECK(r.placed == ws.size());
  }
}

TEST_CASE("batch placement's stay bonus keeps a running workload where it is", "[placement]") {
  // Two identical nodes: without a preference the tie goes to the smaller id.
  const std::vector<Candidate> cs{node("a", "cloud/eu/a"), node("b", "cloud/eu/b")};
  const std::vector<WorkloadSpec> ws{workload()};
  const BatchResult plain = place_batch(ws, cs);
  REQUIRE(plain.decisions[0].best);
  CHECK(plain.decisions[0].best->node == "a");
  PlacementOptions stay;
  stay.current = {"b"};
  stay.stay_bonus = 0.5;
  const BatchResult kept = place_batch(ws, cs, stay);
  REQUIRE(kept.decisions[0].best);
  CHECK(kept.decisions[0].best->node == "b");
  CHECK(kept.objective == Approx(plain.objective));  // the bonus is never part of the score
  // A move that gains more than the bonus still happens: b throttles (its resource
  // component halves, several points).
  std::vector<Candidate> hot = cs;
  hot[1].thermal_throttled = true;
  const BatchResult moved = place_batch(ws, hot, stay);
  REQUIRE(moved.decisions[0].best);
  CHECK(moved.decisions[0].best->node == "a");
}
