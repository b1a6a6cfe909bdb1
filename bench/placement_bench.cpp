// Placement decisions per second (issue 5: >= 10,000/s for single workloads over 10,000
// nodes). 10,000 generated nodes in a five-tier tree; the same workload mix is decided by
// the indexed PlacementEngine and, in the same run, by the reference full scan
// (tiers::place_one over every candidate), which is the peer. Also: decide + commit, and
// batch placement of 1,000 workloads. A plain main; deterministic (seeded).
//
//   build-placement/bench/placement_bench [decisions]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "nova/tiers/placement.h"

using namespace nova::tiers;
using Clock = std::chrono::steady_clock;

namespace {

struct World {
  std::vector<Candidate> nodes;
  std::vector<std::string> access_sites, metro_sites, sensors;
  std::vector<std::string> regions;
};

World make_world(std::mt19937_64& rng, std::size_t total) {
  auto u = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  auto coin = [&](double p) { return u(0, 1) < p; };
  World w;
  w.regions = {"eu-west", "eu-central", "us-east", "ap-south"};
  auto add = [&](std::string id, std::string site, std::uint8_t level, std::string arch,
                 Resources alloc, std::optional<std::string> region,
                 std::vector<std::pair<std::string, double>> lat) {
    Candidate c;
    c.node = std::move(id);
    c.site = std::move(site);
    c.level = level;
    c.arch = std::move(arch);
    c.region = std::move(region);
    c.allocatable = alloc;
    const double busy = u(0, 0.7);
    c.used = {static_cast<std::uint64_t>(static_cast<double>(alloc.cpu_millis) * busy),
              static_cast<std::uint64_t>(static_cast<double>(alloc.memory_mb) * u(0, 0.7)),
              static_cast<std::uint64_t>(static_cast<double>(alloc.storage_mb) * u(0, 0.5))};
    for (auto& [t, ms] : lat) c.latency_ms[t] = ms;
    c.connection_stability = level <= 2 ? 1.0 : u(0.8, 1.0);
    c.bandwidth_mbps = level <= 2 ? 10000 : level == 3 ? 1000 : level == 4 ? u(50, 500) : u(2, 50);
    if (level == 5) {
      c.power = coin(0.3) ? PowerSource::battery : PowerSource::mains;
      c.power_headroom = u(0.2, 1);
      c.offline_hours = u(1, 48);
    }
    c.thermal_throttled = level >= 4 && coin(0.05);
    c.maintenance = coin(0.01) ? Maintenance::now : coin(0.03) ? Maintenance::soon : Maintenance::none;
    if (coin(0.7)) c.reliability = u(level <= 2 ? 0.999 : 0.95, 1.0);
    w.nodes.push_back(std::move(c));
  };
  std::size_t id = 0;
  auto next = [&](const char* p) { return std::string(p) + std::to_string(id++); };
  const std::string cloud = "cloud";
  for (int i = 0; i < 40; ++i) {
    add(next("cl-"), cloud, 1, "x86_64", {64000, 262144, 2000000}, "eu-west", {{cloud, 1}});
    if (coin(0.5)) w.nodes.back().capabilities = {"gpu"};
    w.nodes.back().clusters = {"core"};
  }
  const std::size_t devices = total - 40 - 100 - 320 - 1536;
  for (std::size_t r = 0; r < 4; ++r) {
    const std::string reg = "reg-" + std::to_string(r), region = w.regions[r];
    const std::string reg_path = cloud + "/" + reg;
    for (int i = 0; i < 25; ++i) {
      add(next("rg-"), reg_path, 2, "x86_64", {32000, 131072, 1000000}, region,
          {{reg, 1}, {cloud, u(20, 40)}});
      if (coin(0.3)) w.nodes.back().capabilities = {"gpu"};
      w.nodes.back().clusters = {"edge-" + region};
    }
    for (int m = 0; m < 4; ++m) {
      const std::string metro = reg + "-m" + std::to_string(m), metro_path = reg_path + "/" + metro;
      w.metro_sites.push_back(metro);
      for (int i = 0; i < 20; ++i) {
        add(next("mt-"), metro_path, 3, "x86_64", {16000, 65536, 500000}, region,
            {{metro, 1}, {reg, u(5, 10)}, {cloud, u(30, 50)}});
        if (coin(0.1)) w.nodes.back().capabilities = {"gpu"};
        w.nodes.back().clusters = {"edge-" + region};
      }
      for (int a = 0; a < 8; ++a) {
        const std::string acc = metro + "-a" + std::to_string(a), acc_path = metro_path + "/" + acc;
        w.access_sites.push_back(acc);
        std::vector<std::string> sens;
        for (int s = 0; s < 4; ++s) sens.push_back(acc + "-s" + std::to_string(s));
        w.sensors.insert(w.sensors.end(), sens.begin(), sens.end());
        for (int i = 0; i < 12; ++i) {
          std::vector<std::pair<std::string, double>> lat{
              {acc, 1}, {metro, u(3, 6)}, {reg, u(10, 15)}, {cloud, u(40, 60)}};
          for (const auto& s : sens) lat.emplace_back(s, u(1, 4));
          add(next("ac-"), acc_path, 4, coin(0.5) ? "aarch64" : "x86_64", {4000, 8192, 64000}, region, lat);
          w.nodes.back().capabilities = {"modbus"};
          w.nodes.back().clusters = {"edge-" + region};
        }
      }
    }
  }
  // Devices: spread over the access sites, each its own leaf site.
  for (std::size_t d = 0; d < devices; ++d) {
    const std::size_t a = d % w.access_sites.size();
    const std::string& acc = w.access_sites[a];
    const std::size_t r = a / 32;  // 32 access sites per region, in creation order
    const std::string metro = w.metro_sites[a / 8];
    const std::string path = "cloud/reg-" + std::to_string(r) + "/" + metro + "/" + acc;
    std::vector<std::pair<std::string, double>> lat{{acc, u(2, 6)}, {metro, u(6, 12)}};
    for (int s = 0; s < 4; ++s) lat.emplace_back(acc + "-s" + std::to_string(s), u(0.5, 8));
    const std::string dev = next("dv-");
    add(dev, path + "/" + dev, 5, coin(0.6) ? "aarch64" : "armv7l", {1000, 1024, 16000},
        w.regions[r], lat);
    if (coin(0.3)) w.nodes.back().capabilities.push_back("camera");
    if (coin(0.5)) w.nodes.back().capabilities.push_back("modbus");
  }
  return w;
}

enum Kind { kSensor, kRealtime, kRegional, kCloudAi, kUnconstrained, kKinds };
const char* kKindName[kKinds] = {"sensor (<=10 ms to a sensor, device tier)",
                                 "real-time (<=25 ms to an access site)",
                                 "regional analytics (region, tiers 2-3)",
                                 "cloud AI (gpu, tiers 1-2)",
                                 "unconstrained (no bound, no preference)"};

std::vector<std::pair<Kind, WorkloadSpec>> make_specs(std::mt19937_64& rng, const World& w,
                                                     std::size_t n) {
  auto pick = [&](const std::vector<std::string>& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng)];
  };
  auto r = [&](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  };
  std::vector<std::pair<Kind, WorkloadSpec>> out;
  for (std::size_t i = 0; i < n; ++i) {
    WorkloadSpec s;
    s.workload_id = "w" + std::to_string(i);
    const auto x = r(0, 99);
    Kind k;
    if (x < 30) {
      k = kSensor;
      s.resources = {r(1, 4) * 50, r(1, 4) * 32, 100};
      s.latency = nova::schemas::LatencyBound{10, pick(w.sensors)};
      if (r(0, 1)) s.capabilities = {"arm64"};
      s.tier_preference = {5, 4};
      s.availability = 0.95;
    } else if (x < 55) {
      k = kRealtime;
      s.resources = {r(1, 8) * 250, r(1, 8) * 256, 1000};
      s.latency = nova::schemas::LatencyBound{25, pick(w.access_sites)};
      s.tier_preference = {4, 3};
      s.availability = 0.99;
    } else if (x < 75) {
      k = kRegional;
      s.resources = {r(2, 8) * 1000, r(2, 16) * 1024, 20000};
      s.region = pick(w.regions);
      s.tier_preference = {2, 3};
      s.availability = 0.999;
    } else if (x < 90) {
      k = kCloudAi;
      s.resources = {r(4, 16) * 1000, r(8, 32) * 1024, 50000};
      s.capabilities = {"gpu"};
      s.tier_preference = {1, 2};
      s.availability = 0.999;
    } else {
      k = kUnconstrained;
      s.resources = {r(1, 4) * 250, r(1, 4) * 256, 0};
      s.availability = 0.9;
    }
    out.emplace_back(k, std::move(s));
  }
  return out;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Same best node and score, same failover list (nodes and scores, in order).
bool same_decision(const Decision& a, const Decision& b) {
  if (a.best.has_value() != b.best.has_value()) return false;
  if (a.best && (a.best->node != b.best->node || a.best->score != b.best->score)) return false;
  if (a.failover.size() != b.failover.size()) return false;
  for (std::size_t i = 0; i < a.failover.size(); ++i) {
    if (a.failover[i].node != b.failover[i].node || a.failover[i].score != b.failover[i].score) {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t decisions = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 50000;
  std::mt19937_64 rng(5);
  const World world = make_world(rng, 10000);
  const auto specs = make_specs(rng, world, 1000);
  std::printf("placement_bench: %zu nodes (40 cloud, 100 regional, 320 metro, 1536 access, %zu devices)\n",
              world.nodes.size(), world.nodes.size() - 1996);

  auto t0 = Clock::now();
  PlacementEngine engine(world.nodes);
  std::printf("index build: %.1f ms\n\n", secs(Clock::now() - t0) * 1e3);

  // 1. Indexed single decisions (place_one with 3 failover candidates, nothing committed).
  std::vector<double> lat_us;
  std::vector<double> kind_time(kKinds, 0), kind_count(kKinds, 0), kind_scored(kKinds, 0);
  std::vector<std::vector<double>> kind_lat(kKinds);
  std::size_t placed = 0, scored = 0;
  lat_us.reserve(decisions);
  const auto start = Clock::now();
  for (std::size_t i = 0; i < decisions; ++i) {
    const auto& [kind, spec] = specs[i % specs.size()];
    const auto a = Clock::now();
    const Decision d = engine.place_one(spec);
    const double us = secs(Clock::now() - a) * 1e6;
    placed += d.best ? 1u : 0u;
    scored += PlacementEngine::last_scored();
    lat_us.push_back(us);
    kind_time[kind] += us;
    kind_count[kind] += 1;
    kind_scored[kind] += static_cast<double>(PlacementEngine::last_scored());
    kind_lat[kind].push_back(us);
  }
  const double engine_s = secs(Clock::now() - start);
  const double engine_rate = static_cast<double>(decisions) / engine_s;
  std::printf("indexed place_one: %zu decisions in %.3f s = %.0f decisions/s; p50 %.1f us, p99 %.1f us, max %.1f us\n",
              decisions, engine_s, engine_rate, pct(lat_us, 0.5), pct(lat_us, 0.99), pct(lat_us, 1.0));
  std::printf("  placed %.1f %%, candidates scored per decision: %.0f of %zu\n",
              100.0 * static_cast<double>(placed) / static_cast<double>(decisions),
              static_cast<double>(scored) / static_cast<double>(decisions), world.nodes.size());
  for (std::size_t k = 0; k < kKinds; ++k) {
    std::printf("  %-44s %6.0f decisions/s  p50 %6.1f us  p99 %6.1f us  scored %5.0f\n", kKindName[k],
                kind_count[k] / kind_time[k] * 1e6, pct(kind_lat[k], 0.5), pct(kind_lat[k], 0.99),
                kind_scored[k] / kind_count[k]);
  }

  // 2. The peer: the reference full scan over all 10,000 candidates, same workloads.
  const std::size_t naive_n = std::min<std::size_t>(1000, decisions);
  std::vector<double> naive_us;
  std::size_t mismatch = 0;
  for (std::size_t i = 0; i < naive_n; ++i) {
    const auto& spec = specs[i % specs.size()].second;
    const auto a = Clock::now();
    const Decision d = place_one(spec, world.nodes);
    naive_us.push_back(secs(Clock::now() - a) * 1e6);
    const Decision e = engine.place_one(spec);
    mismatch += same_decision(d, e) ? 0u : 1u;
  }
  double naive_total = 0;
  for (double x : naive_us) naive_total += x;
  const double naive_rate = static_cast<double>(naive_n) / (naive_total / 1e6);
  std::printf("\nfull-scan place_one (peer): %zu decisions = %.0f decisions/s; p50 %.0f us, p99 %.0f us\n",
              naive_n, naive_rate, pct(naive_us, 0.5), pct(naive_us, 0.99));
  std::printf("  indexed / full scan: %.1fx; decisions that differ: %zu of %zu\n",
              engine_rate / naive_rate, mismatch, naive_n);

  // 3. Decide and commit (reserve on the chosen node), as the cloud does.
  {
    PlacementEngine live = engine;
    const std::size_t n = std::min<std::size_t>(10000, decisions);
    std::size_t ok = 0;
    const auto a = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      const auto& spec = specs[i % specs.size()].second;
      const Decision d = live.place_one(spec);
      if (d.best) {
        live.reserve(d.best->index, spec.resources);
        ++ok;
      }
    }
    const double s = secs(Clock::now() - a);
    std::printf("\ndecide + commit: %zu workloads in %.3f s = %.0f decisions/s (%zu placed)\n", n, s,
                static_cast<double>(n) / s, ok);
    // After the commits (the index re-ordered by usage), against the full scan again.
    std::vector<Candidate> now;
    for (const auto& c : world.nodes) now.push_back(live.candidate(*live.find(c.node)));
    std::size_t differ = 0;
    const std::size_t m = std::min<std::size_t>(200, specs.size());
    for (std::size_t i = 0; i < m; ++i) {
      const auto& spec = specs[i].second;
      differ += same_decision(place_one(spec, now), live.place_one(spec)) ? 0u : 1u;
    }
    std::printf("  after the commits, decisions that differ from the full scan: %zu of %zu\n", differ, m);
  }

  // 4. Batch placement of 1,000 workloads (regret order, greedy, local search, failover).
  {
    std::vector<WorkloadSpec> batch;
    for (const auto& [k, s] : specs) batch.push_back(s);
    const auto a = Clock::now();
    const BatchResult r = engine.place_batch(batch);
    const double s = secs(Clock::now() - a);
    // Compare with committing one at a time in input order.
    PlacementEngine seq = engine;
    double seq_obj = 0;
    std::size_t seq_placed = 0;
    for (const auto& spec : batch) {
      const Decision d = seq.place_one(spec);
      if (!d.best) continue;
      seq.reserve(d.best->index, spec.resources);
      ++seq_placed;
      seq_obj += d.best->score;
    }
    std::size_t unplaced_kind[kKinds] = {};
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!r.decisions[i].best) ++unplaced_kind[specs[i].first];
    }
    std::printf("\nbatch of %zu workloads: %.1f ms (%.0f workloads/s), %zu placed, objective %.1f (mean %.2f)\n",
                batch.size(), s * 1e3, static_cast<double>(batch.size()) / s, r.placed, r.objective,
                r.objective / static_cast<double>(std::max<std::size_t>(1, r.placed)));
    std::printf("  one at a time in input order: %zu placed, sum of scores at decision time %.1f\n", seq_placed,
                seq_obj);
    std::printf("  unplaced by the batch:");
    for (std::size_t k = 0; k < kKinds; ++k) std::printf(" %zu", unplaced_kind[k]);
    std::printf(" (sensor, real-time, regional, cloud AI, unconstrained)\n");
  }
  return 0;
}
