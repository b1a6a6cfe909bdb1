// Placement quality on tight capacity against an exact MILP optimum (issue 13, item 5).
//
// Generates seeded instances whose workloads ask for more than the nodes have free, so
// placing one blocks others. The exact optimum of the batch objective (docs/placement.md,
// "Objective": most placed workloads first, then the highest total score, each workload
// scored on its node's final state) is not linear in an assignment, because a workload's
// resource score depends on everything else on its node. So the bench writes a
// set-packing model instead: one binary per (node, feasible subset of workloads), whose
// value is that subset's exact total score on that node; each node takes at most one
// subset, each workload is in at most one chosen subset. The bench enumerates every
// feasible subset itself (the hard constraints and capacity checked by tiers::check on
// the node's final state), writes an LP file and solves it with cbc (Debian coinor-cbc)
// twice: first the most workloads that can be placed, then the highest score with at
// least that many placed. It then reports, per class, the ratio to that optimum of
//   greedy  each workload placed on arrival (PlacementEngine::place_one + reserve, in
//           input order), which is what one POST /api/v1/workloads at a time gets
//   batch   PlacementEngine::place_batch over the whole set
//   cloud   through nova-cloud's workload manager (cloud::Workloads, what the REST routes
//           call, with a node table and a publisher in memory): every workload submitted
//           one at a time as POST /api/v1/workloads does, then re-optimiser rounds
//           (reoptimise(), budget 2 moves a round, each past the dwell time) until a round
//           changes nothing; and, apart, the whole set through submit_batch() (POST
//           /api/v1/workloads:batch), which must equal `batch`
// and checks each for overcommits and hard-constraint violations (the subset of every
// node must be one the enumeration found feasible) and for feasible workloads left
// pending (fewer placed than the optimum). A plain main; deterministic (seeded).
//
//   build/bench/placement_optimality_bench [instances per class] [work dir]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "nova/cloud/workloads.h"
#include "nova/schemas/codec.h"
#include "nova/tiers/placement.h"

using namespace nova::tiers;

namespace {

struct Instance {
  std::vector<Candidate> nodes;
  std::vector<WorkloadSpec> workloads;
};

struct Class {
  const char* name;
  std::size_t nodes_lo, nodes_hi;
  double demand;      // total cpu asked / total cpu free
  bool constrained;   // capabilities, latency bounds, tier preferences
  // Only what nova-cloud knows of a node from its birth (level, site, arch, capabilities,
  // allocatable; nothing used, default edge factors), so the cloud's view equals ours.
  bool cloud_shaped;
};

Instance generate(std::mt19937_64& rng, const Class& k) {
  auto u = [&](std::uint64_t lo, std::uint64_t hi) { return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng); };
  auto d = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  auto coin = [&](double p) { return d(0, 1) < p; };
  Instance in;
  const std::size_t n = u(k.nodes_lo, k.nodes_hi);
  std::uint64_t free_cpu = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Candidate c;
    c.node = "n" + std::to_string(i);
    c.site = "cloud/eu/m" + std::to_string(i % 4) + "/a" + std::to_string(i);
    c.level = static_cast<std::uint8_t>(u(2, 5));
    c.arch = coin(0.5) ? "x86_64" : "aarch64";
    if (coin(0.25)) c.capabilities.emplace_back("gpu");
    if (coin(0.25)) c.capabilities.emplace_back("camera");
    c.allocatable = {u(8, 24) * 250, u(8, 24) * 256, 0};
    c.used = {u(0, 4) * 250, u(0, 4) * 256, 0};
    c.latency_ms["s1"] = d(1, 40);
    c.bandwidth_mbps = d(10, 500);
    c.connection_stability = d(0.7, 1);
    c.power_headroom = d(0.4, 1);
    c.thermal_throttled = coin(0.1);
    c.offline_hours = d(0, 48);
    if (coin(0.6)) c.reliability = d(0.95, 1);
    if (k.cloud_shaped) {
      Candidate plain;
      plain.node = c.node;
      plain.site = c.site;
      plain.level = c.level;
      plain.arch = c.arch;
      plain.capabilities = c.capabilities;
      plain.allocatable = c.allocatable;
      c = plain;
    }
    free_cpu += c.allocatable.cpu_millis - c.used.cpu_millis;
    in.nodes.push_back(std::move(c));
  }
  std::uint64_t asked = 0;
  for (std::size_t i = 0; asked < static_cast<std::uint64_t>(k.demand * static_cast<double>(free_cpu)); ++i) {
    WorkloadSpec w;
    w.workload_id = "w" + std::to_string(i);
    w.resources = {u(3, 12) * 250, u(2, 12) * 256, 0};
    w.argv = {"/bin/true"};
    w.availability = d(0.9, 0.999);
    if (k.constrained) {
      if (coin(0.2)) w.capabilities.emplace_back(coin(0.5) ? "gpu" : "camera");
      if (coin(0.3)) w.latency = nova::schemas::LatencyBound{u(15, 40), "s1"};
      if (coin(0.5)) w.tier_preference = {static_cast<std::uint8_t>(u(2, 5))};
    }
    asked += w.resources.cpu_millis;
    in.workloads.push_back(std::move(w));
  }
  return in;
}

// A workload subset on one node, feasible as a whole, with its exact total score.
struct Column {
  std::size_t node;
  std::vector<std::size_t> members;  // ascending
  double score;
};

// The score of `members` together on node `n` (each on the node's final state), or
// nothing when one of them breaks a hard constraint or the node is overcommitted.
std::optional<double> subset_value(const Instance& in, std::size_t n, const std::vector<std::size_t>& members) {
  Resources load;
  for (std::size_t w : members) {
    load.cpu_millis += in.workloads[w].resources.cpu_millis;
    load.memory_mb += in.workloads[w].resources.memory_mb;
    load.storage_mb += in.workloads[w].resources.storage_mb;
  }
  double v = 0;
  for (std::size_t w : members) {
    Candidate c = in.nodes[n];  // with every other member on it
    c.used.cpu_millis += load.cpu_millis - in.workloads[w].resources.cpu_millis;
    c.used.memory_mb += load.memory_mb - in.workloads[w].resources.memory_mb;
    c.used.storage_mb += load.storage_mb - in.workloads[w].resources.storage_mb;
    if (check(in.workloads[w], c) != Rejection::none) return std::nullopt;
    v += total(score(in.workloads[w], c));
  }
  return v;
}

std::vector<Column> enumerate(const Instance& in) {
  std::vector<Column> out;
  for (std::size_t n = 0; n < in.nodes.size(); ++n) {
    // Depth-first over workloads in index order; a superset of an infeasible set is
    // infeasible (every constraint but capacity is per workload, and capacity only grows).
    std::vector<std::size_t> cur;
    auto grow = [&](auto&& self, std::size_t from) -> void {
      for (std::size_t w = from; w < in.workloads.size(); ++w) {
        cur.push_back(w);
        if (auto v = subset_value(in, n, cur)) {
          out.push_back({n, cur, *v});
          self(self, w + 1);
        }
        cur.pop_back();
      }
    };
    grow(grow, 0);
  }
  return out;
}

// Writes the set-packing model; `min_placed` > 0 adds "at least that many placed" and
// maximises the score, else it maximises the number placed.
void write_lp(const std::string& path, const Instance& in, const std::vector<Column>& cols, long min_placed) {
  std::ofstream f(path);
  f.precision(17);
  f << "Maximize\n obj:";
  for (std::size_t j = 0; j < cols.size(); ++j) {
    const double c = min_placed > 0 ? cols[j].score : static_cast<double>(cols[j].members.size());
    f << "\n + " << c << " y" << j;  // a term a line: cbc's LP reader refuses very long lines
  }
  f << "\nSubject To\n";
  std::vector<std::vector<std::size_t>> by_node(in.nodes.size()), by_workload(in.workloads.size());
  for (std::size_t j = 0; j < cols.size(); ++j) {
    by_node[cols[j].node].push_back(j);
    for (std::size_t w : cols[j].members) by_workload[w].push_back(j);
  }
  auto at_most_one = [&](const char* name, std::size_t i, const std::vector<std::size_t>& js) {
    if (js.empty()) return;
    f << " " << name << i << ":";
    for (std::size_t j : js) f << "\n + y" << j;
    f << " <= 1\n";
  };
  for (std::size_t n = 0; n < by_node.size(); ++n) at_most_one("node", n, by_node[n]);
  for (std::size_t w = 0; w < by_workload.size(); ++w) at_most_one("wl", w, by_workload[w]);
  if (min_placed > 0) {
    f << " placed:";
    for (std::size_t j = 0; j < cols.size(); ++j) f << "\n + " << cols[j].members.size() << " y" << j;
    f << " >= " << min_placed << "\n";
  }
  f << "Binary\n";
  for (std::size_t j = 0; j < cols.size(); ++j) f << " y" << j << "\n";
  f << "End\n";
}

// Runs cbc on the model; the chosen columns, or nothing when cbc did not prove optimality.
std::optional<std::vector<std::size_t>> solve(const std::string& lp, const std::string& sol) {
  const std::string cmd = "cbc " + lp + " ratioGap 0 allowableGap 1e-9 solve solution " + sol + " > /dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) return std::nullopt;
  std::ifstream f(sol);
  std::string first;
  std::getline(f, first);
  if (first.rfind("Optimal", 0) != 0) return std::nullopt;
  std::vector<std::size_t> chosen;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::string idx, name;
    double value = 0;
    if (!(is >> idx >> name >> value)) continue;
    if (name.size() > 1 && name[0] == 'y' && value > 0.5) chosen.push_back(std::stoul(name.substr(1)));
  }
  return chosen;
}

struct Outcome {
  std::size_t placed = 0;
  double score = 0;
  bool violation = false;
};

// Evaluates an assignment (node index per workload, or nothing) on the batch objective.
Outcome evaluate(const Instance& in, const std::vector<std::optional<std::size_t>>& where) {
  Outcome o;
  std::vector<std::vector<std::size_t>> members(in.nodes.size());
  for (std::size_t w = 0; w < where.size(); ++w) {
    if (where[w]) members[*where[w]].push_back(w);
  }
  for (std::size_t n = 0; n < members.size(); ++n) {
    if (members[n].empty()) continue;
    const auto v = subset_value(in, n, members[n]);
    if (!v) {
      o.violation = true;
      continue;
    }
    o.placed += members[n].size();
    o.score += *v;
  }
  return o;
}

std::vector<std::optional<std::size_t>> greedy_arrival(const Instance& in) {
  PlacementEngine e(in.nodes);
  std::vector<std::optional<std::size_t>> where(in.workloads.size());
  for (std::size_t w = 0; w < in.workloads.size(); ++w) {
    const Decision d = e.place_one(in.workloads[w]);
    if (!d.best) continue;
    e.reserve(d.best->index, in.workloads[w].resources);
    where[w] = d.best->index;
  }
  return where;
}

std::vector<std::optional<std::size_t>> batch(const Instance& in, double& objective) {
  const BatchResult r = PlacementEngine(in.nodes).place_batch(in.workloads);
  objective = r.objective;
  std::vector<std::optional<std::size_t>> where(in.workloads.size());
  for (std::size_t w = 0; w < in.workloads.size(); ++w) {
    if (r.decisions[w].best) where[w] = r.decisions[w].best->index;
  }
  return where;
}

// nova-cloud's workload manager over the instance's nodes. Its agents are simulated as
// far as the re-optimiser needs them: every cancel it publishes (a migration's fence,
// fence.h) is answered with the run's "cancelled" result at the next answer_cancels(),
// as nova-agent answers a cancel, so the old run's room is freed.
struct Cloud {
  std::vector<nova::cloud::NodeView> views;
  std::size_t published = 0;
  std::vector<nova::schemas::TaskResult> cancelled;  // answers not yet delivered
  nova::cloud::Workloads workloads;
  explicit Cloud(const Instance& in)
      : workloads([this](const std::string& topic, const std::vector<std::uint8_t>& payload, bool) {
                    ++published;
                    if (topic.size() > 7 && topic.compare(topic.size() - 7, 7, "/cancel") == 0) {
                      if (auto c = nova::schemas::decode_cbor<nova::schemas::TaskCancel>(payload)) {
                        nova::schemas::TaskResult r;
                        r.position.node = topic.substr(0, topic.size() - 7);
                        r.position.node = r.position.node.substr(r.position.node.rfind('/') + 1);
                        r.task_id = c->task_id;
                        r.status = nova::schemas::TaskStatus::cancelled;
                        r.reason = c->reason;
                        cancelled.push_back(std::move(r));
                      }
                    }
                    return true;
                  },
                  [this] { return views; }, nullptr) {
    for (const Candidate& c : in.nodes) {
      nova::cloud::NodeView v;
      v.id = c.node;
      v.description = nova::schemas::NodeDescription{c.level, c.site, c.arch, "1", c.capabilities, c.allocatable, std::nullopt};
      views.push_back(std::move(v));
    }
  }
  void answer_cancels(nova::schemas::Timestamp now) {
    auto answers = std::move(cancelled);
    cancelled.clear();
    for (auto& r : answers) {
      r.finished_ts = now;
      workloads.on_result(r, now);
    }
  }
  std::vector<std::optional<std::size_t>> where(const Instance& in) const {
    std::vector<std::optional<std::size_t>> out(in.workloads.size());
    for (std::size_t w = 0; w < in.workloads.size(); ++w) {
      const auto state = workloads.get(in.workloads[w].workload_id);
      if (!state || state->phase != nova::cloud::Phase::running || !state->placement) continue;
      for (std::size_t n = 0; n < in.nodes.size(); ++n) {
        if (in.nodes[n].node == state->placement->node) out[w] = n;
      }
    }
    return out;
  }
};

constexpr nova::schemas::Timestamp kStart = 1'800'000'000'000;

// How the re-optimiser got there: rounds that changed something and migrations.
struct Rounds {
  std::size_t rounds = 0, moves = 0;
  std::size_t overcommits = 0;  // states between rounds where the runs on a node exceeded it
};

// Whether the runs that hold a node now exceed it: a running workload's current run
// (unless it waits behind a fence) and every old run not yet known stopped.
bool overcommitted(const Cloud& c) {
  std::map<std::string, Resources> held;
  auto add = [&](const std::string& node, const Resources& r) {
    Resources& h = held[node];
    h.cpu_millis += r.cpu_millis;
    h.memory_mb += r.memory_mb;
    h.storage_mb += r.storage_mb;
  };
  for (const auto& w : c.workloads.list()) {
    if (w.stopping) add(w.stopping->node, w.spec.resources);
    const bool waits = w.stopping && w.stopping->next;
    if (w.phase == nova::cloud::Phase::running && w.placement && !waits) add(w.placement->node, w.spec.resources);
  }
  for (const auto& v : c.views) {
    const Resources& h = held[v.id];
    const Resources& a = v.description->resources;
    if (h.cpu_millis > a.cpu_millis || h.memory_mb > a.memory_mb || h.storage_mb > a.storage_mb) return true;
  }
  return false;
}

// Re-optimiser rounds (the default policy: 2 moves a round) until two rounds in a row
// change nothing (the first may only have waited for a fence), at most kMaxRounds. Each round
// is past the dwell time and the per-node window, and the agents answer the cancels
// between rounds.
constexpr std::size_t kMaxRounds = 40;
Rounds reoptimise_until_stable(Cloud& c) {
  const nova::cloud::MigrationPolicy policy;
  c.workloads.set_migration_policy(policy);
  Rounds r;
  nova::schemas::Timestamp now = kStart;
  for (std::size_t idle = 0, i = 0; idle < 2 && i < kMaxRounds; ++i) {
    now += std::max(policy.min_dwell_ms, policy.node_window_ms);
    c.answer_cancels(now);
    now += 1000;
    const std::size_t steps = c.workloads.reoptimise(now);
    if (overcommitted(c)) ++r.overcommits;
    if (steps == 0) {
      ++idle;
    } else {
      idle = 0;
      ++r.rounds;
    }
  }
  r.moves = c.workloads.counters().reoptimiser_migrations;
  return r;
}

// One at a time, as POST /api/v1/workloads, then re-optimiser rounds.
std::vector<std::optional<std::size_t>> arrival_then_reoptimiser(const Instance& in, Rounds& r) {
  Cloud c(in);
  for (const auto& w : in.workloads) (void)c.workloads.submit(w, kStart);
  r = reoptimise_until_stable(c);
  return c.where(in);
}

// The whole set through POST /api/v1/workloads:batch; with `rounds`, re-optimiser rounds
// after it (which must keep the optimum).
std::vector<std::optional<std::size_t>> batch_route(const Instance& in, Rounds* rounds) {
  Cloud c(in);
  (void)c.workloads.submit_batch(in.workloads, kStart);
  if (rounds) *rounds = reoptimise_until_stable(c);
  return c.where(in);
}

struct Tally {
  double sum = 0, min = 1;
  std::size_t count = 0, pending = 0, violations = 0, optimal = 0;
  void add(const Outcome& got, std::size_t best_placed, double best_score) {
    const double ratio = best_score > 0 ? got.score / best_score : 1.0;
    sum += ratio;
    min = std::min(min, ratio);
    ++count;
    if (got.placed < best_placed) ++pending;
    if (got.violation) ++violations;
    if (got.placed == best_placed && ratio >= 1 - 1e-9) ++optimal;
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::size_t per_class = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 20;
  std::string dir = argc > 2 ? argv[2] : "";
  if (dir.empty()) {
    char tmpl[] = "/tmp/nova-placement-opt.XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    dir = tmpl;
  }
  const Class classes[] = {
      {"tight, plain (6-10 nodes, demand 1.2x)", 6, 10, 1.2, false, false},
      {"tight, constrained (6-10 nodes, demand 1.2x)", 6, 10, 1.2, true, false},
      {"just enough (8-12 nodes, demand 0.95x)", 8, 12, 0.95, true, false},
      {"larger (14-20 nodes, demand 1.1x)", 14, 20, 1.1, true, false},
      {"cloud-shaped, tight (6-10 nodes, demand 1.2x)", 6, 10, 1.2, false, true},
      {"cloud-shaped, just enough (8-12 nodes, 0.95x)", 8, 12, 0.95, false, true},
  };
  std::mt19937_64 rng(20261205);
  std::printf("placement against the exact optimum (cbc), %zu instances per class\n", per_class);
  std::printf("%-46s %9s %8s | %-34s | %-34s\n", "class", "workloads", "columns", "greedy arrival: mean min pend viol",
              "batch placer: mean min pend viol");
  int bad = 0;
  for (const Class& k : classes) {
    Tally greedy, batched, cloud, route;
    std::size_t route_moves = 0, objective_differs = 0, overcommits = 0;
    std::size_t rounds_sum = 0, moves_sum = 0, route_differs = 0;
    double batch_ms_sum = 0, batch_ms_max = 0;
    std::size_t workloads = 0, columns = 0, solved = 0;
    for (std::size_t i = 0; i < per_class; ++i) {
      const Instance in = generate(rng, k);
      const std::vector<Column> cols = enumerate(in);
      const std::string base = dir + "/" + std::to_string(&k - classes) + "-" + std::to_string(i);
      write_lp(base + "-count.lp", in, cols, 0);
      const auto by_count = solve(base + "-count.lp", base + "-count.sol");
      if (!by_count) {
        std::fprintf(stderr, "cbc did not solve %s-count.lp\n", base.c_str());
        ++bad;
        continue;
      }
      long most = 0;
      for (std::size_t j : *by_count) most += static_cast<long>(cols[j].members.size());
      write_lp(base + "-score.lp", in, cols, std::max(most, 1L));
      double best = 0;
      if (most > 0) {
        const auto by_score = solve(base + "-score.lp", base + "-score.sol");
        if (!by_score) {
          std::fprintf(stderr, "cbc did not solve %s-score.lp\n", base.c_str());
          ++bad;
          continue;
        }
        for (std::size_t j : *by_score) best += cols[j].score;
      }
      ++solved;
      workloads += in.workloads.size();
      columns += cols.size();
      const auto most_placed = static_cast<std::size_t>(most);
      greedy.add(evaluate(in, greedy_arrival(in)), most_placed, best);
      const auto t0 = std::chrono::steady_clock::now();
      double claimed = 0;
      const auto by_batch = batch(in, claimed);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      batch_ms_sum += ms;
      batch_ms_max = std::max(batch_ms_max, ms);
      const Outcome got = evaluate(in, by_batch);
      batched.add(got, most_placed, best);
      // The placer's own objective must be the one the bench scores (and cbc optimises).
      if (std::abs(claimed - got.score) > 1e-6 * std::max(1.0, got.score)) ++objective_differs;
      if (k.cloud_shaped) {
        Rounds r;
        cloud.add(evaluate(in, arrival_then_reoptimiser(in, r)), most_placed, best);
        rounds_sum += r.rounds;
        moves_sum += r.moves;
        overcommits += r.overcommits;
        if (batch_route(in, nullptr) != by_batch) ++route_differs;
        Rounds after;
        route.add(evaluate(in, batch_route(in, &after)), most_placed, best);
        route_moves += after.moves;
        overcommits += after.overcommits;
      }
    }
    if (solved == 0) continue;
    std::printf("%-46s %9.1f %8.0f | %6.4f %6.4f %4zu %4zu (opt %3zu) | %6.4f %6.4f %4zu %4zu (opt %3zu)\n", k.name,
                static_cast<double>(workloads) / static_cast<double>(solved),
                static_cast<double>(columns) / static_cast<double>(solved), greedy.sum / static_cast<double>(greedy.count),
                greedy.min, greedy.pending, greedy.violations, greedy.optimal,
                batched.sum / static_cast<double>(batched.count), batched.min, batched.pending, batched.violations,
                batched.optimal);
    std::printf("%-46s %9s %8s | batch placer time: mean %.1f ms, max %.1f ms; its objective differs from the "
                "bench's scoring in %zu\n", "", "", "", batch_ms_sum / static_cast<double>(solved), batch_ms_max,
                objective_differs);
    if (objective_differs != 0) ++bad;
    if (k.cloud_shaped) {
      std::printf("%-46s %9s %8s | one at a time + re-optimiser: mean %6.4f min %6.4f pend %zu viol %zu (opt %zu), "
                  "%.1f rounds, %.1f moves; batch route differs from the batch placer in %zu\n",
                  "", "", "", cloud.sum / static_cast<double>(cloud.count), cloud.min, cloud.pending, cloud.violations,
                  cloud.optimal, static_cast<double>(rounds_sum) / static_cast<double>(solved),
                  static_cast<double>(moves_sum) / static_cast<double>(solved), route_differs);
      std::printf("%-46s %9s %8s | batch route + re-optimiser: mean %6.4f min %6.4f pend %zu viol %zu (opt %zu), "
                  "%.1f moves; states overcommitting a node between rounds: %zu\n", "", "", "",
                  route.sum / static_cast<double>(route.count), route.min, route.pending, route.violations,
                  route.optimal, static_cast<double>(route_moves) / static_cast<double>(solved), overcommits);
      if (overcommits != 0) ++bad;
    }
  }
  std::printf("models and solutions in %s\n", dir.c_str());
  std::printf("(pend: instances with a feasible workload left pending; viol: overcommits or broken constraints;\n"
              " opt: instances at the optimum)\n");
  return bad == 0 ? 0 : 1;
}
