// nova-cloud's placement decisions per second over 10,000 nodes, in one run:
//   engine   cloud::Workloads::submit, what POST /api/v1/workloads runs: the engine
//            brought up to date (usage; node views only when the topology's revision
//            moved, which it does not here), the indexed decision, the placement record
//            and task.
//   peer     the work the replaced code did per decision, and nothing else: a
//            tiers::Candidate built for every node from its view, then the reference
//            full scan (tiers::place_one over the span).
// Both place the same mix on equal copies of the same 10,000 devices (128 access sites
// in 4 regions x 4 metros x 8; every second workload bound to 25 ms from one of 8 access
// sites). The engine keeps a latency for every target named so far, so the first
// decision naming a new target rebuilds it: the max column shows that cost.
// A plain main; prints figures, checks nothing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "nova/cloud/workloads.h"
#include "nova/tiers/placement.h"

using namespace nova;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kNodes = 10'000;
constexpr std::size_t kDecisions = 1'000;

std::string access_id(std::size_t i) { return "a-" + std::to_string(i / 32) + "-" + std::to_string(i / 8 % 4) + "-" + std::to_string(i % 8); }

std::vector<cloud::NodeView> devices() {
  std::vector<cloud::NodeView> out;
  for (std::size_t n = 0; n < kNodes; ++n) {
    const std::size_t a = n % 128;
    cloud::NodeView v;
    v.id = "dev-" + std::to_string(n);
    v.description = schemas::NodeDescription{5,
                                             "cloud/r" + std::to_string(a / 32) + "/m" + std::to_string(a / 8 % 4) + "/" + access_id(a),
                                             n % 3 == 0 ? "x86_64" : "aarch64",
                                             "1",
                                             {},
                                             {4000, 4096, 10000},
                                             std::nullopt};
    v.liveness = cloud::Liveness::alive;
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<schemas::WorkloadSpec> mix() {
  std::mt19937 rng(7);
  std::vector<schemas::WorkloadSpec> out;
  for (std::size_t i = 0; i < kDecisions; ++i) {
    schemas::WorkloadSpec s;
    s.workload_id = "w" + std::to_string(i);
    s.name = s.workload_id;
    s.argv = {"/bin/true"};
    s.resources = {100 + rng() % 400, 64 + rng() % 192, 0};
    s.tier_preference = {5};
    if (i % 2 == 0) s.latency = schemas::LatencyBound{25, access_id(16 * (rng() % 8))};
    s.timeout_ms = 60'000;
    out.push_back(std::move(s));
  }
  return out;
}

// The peer's per-decision Candidate: what the replaced code filled from a view (no
// clusters in this run), with a latency to the spec's target by site.
tiers::Candidate from_view(const cloud::NodeView& v, const schemas::WorkloadSpec& spec, const tiers::Resources& used) {
  tiers::Candidate c = cloud::birth_candidate(v);
  c.used = used;
  if (spec.latency) c.latency_ms[spec.latency->to] = v.description->site.ends_with("/" + spec.latency->to) ? 1.5 : 31.5;
  return c;
}

struct Figures {
  double per_s = 0, p50_us = 0, p99_us = 0, max_us = 0;
};

Figures figures(std::vector<double> us) {
  double total = 0;
  for (double x : us) total += x;
  std::sort(us.begin(), us.end());
  return {static_cast<double>(us.size()) / (total / 1e6), us[us.size() / 2], us[us.size() * 99 / 100], us.back()};
}

}  // namespace

int main() {
  const auto views = devices();
  const auto specs = mix();

  cloud::Workloads workloads([](const std::string&, const std::vector<std::uint8_t>&, bool) { return true; },
                             [&views] { return views; }, nullptr);
  // As CloudService wires it: the topology's revision (nothing changes here).
  workloads.set_topology_revision([] { return std::uint64_t{1}; });
  workloads.tick(1'795'780'800'000);
  std::vector<double> engine_us;
  std::size_t engine_placed = 0;
  for (const auto& s : specs) {
    const auto t0 = Clock::now();
    auto r = workloads.submit(s, 1'795'780'800'000);
    engine_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (r.ok() && r->placement) ++engine_placed;
  }

  std::map<std::string, tiers::Resources> used;
  std::vector<double> peer_us;
  std::size_t peer_placed = 0;
  for (const auto& s : specs) {
    const auto t0 = Clock::now();
    std::vector<tiers::Candidate> cands;
    cands.reserve(views.size());
    for (const auto& v : views) cands.push_back(from_view(v, s, used[v.id]));
    const tiers::Decision d = tiers::place_one(s, cands);
    peer_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (d.best) {
      ++peer_placed;
      tiers::Resources& u = used[d.best->node];
      u.cpu_millis += s.resources.cpu_millis;
      u.memory_mb += s.resources.memory_mb;
    }
  }

  const Figures e = figures(engine_us), p = figures(peer_us);
  std::printf("%zu nodes, %zu decisions (half bound to 25 ms from one of 8 access sites)\n", kNodes, kDecisions);
  std::printf("engine (Workloads::submit)     %8.0f decisions/s  p50 %8.1f us  p99 %8.1f us  max %9.1f us  placed %zu\n",
              e.per_s, e.p50_us, e.p99_us, e.max_us, engine_placed);
  std::printf("peer (candidates + full scan)  %8.0f decisions/s  p50 %8.1f us  p99 %8.1f us  max %9.1f us  placed %zu\n",
              p.per_s, p.p50_us, p.p99_us, p.max_us, peer_placed);
  std::printf("ratio engine/peer                   %8.2f\n", e.per_s / p.per_s);
  return 0;
}
