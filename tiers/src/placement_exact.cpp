// exact_batch() with GLPK (placement_exact.h).
#include "placement_exact.h"

#include <glpk.h>

#include <array>
#include <map>
#include <memory>
#include <optional>

namespace nova::tiers::detail {

namespace {

struct ProbDeleter {
  void operator()(glp_prob* p) const { glp_delete_prob(p); }
};

struct Set {
  std::uint32_t node;
  std::vector<std::uint32_t> members;  // ascending
  double score;
};

std::uint32_t rep(const Packing& p, std::uint32_t n) { return p.twin_of.empty() ? n : p.twin_of[n]; }

// Every set of workloads that fits on each node together, or false when there are more
// than `limit`. A superset of a set that does not fit does not fit either, so the
// depth-first enumeration stops there.
bool enumerate(const Packing& p, std::size_t limit, std::vector<Set>& out) {
  const std::size_t N = p.room.size();
  std::vector<std::vector<std::uint32_t>> on(N);  // the workloads that may use each node
  for (std::uint32_t w = 0; w < p.options.size(); ++w) {
    for (std::uint32_t n : p.options[w]) on[n].push_back(w);
  }
  for (std::uint32_t n = 0; n < N; ++n) {
    if (rep(p, n) != n) continue;  // its class's first node answers for it
    std::vector<std::uint32_t> cur;
    std::array<std::uint64_t, 3> load{0, 0, 0};
    bool over = false;
    auto grow = [&](auto&& self, std::size_t from) -> void {
      for (std::size_t i = from; i < on[n].size() && !over; ++i) {
        const std::uint32_t w = on[n][i];
        bool fits = true;
        for (std::size_t d = 0; d < 3; ++d) fits = fits && load[d] + p.req[w][d] <= p.room[n][d];
        if (!fits) continue;
        if (out.size() >= limit) {
          over = true;
          return;
        }
        for (std::size_t d = 0; d < 3; ++d) load[d] += p.req[w][d];
        cur.push_back(w);
        out.push_back({n, cur, 0.0});
        self(self, i + 1);
        cur.pop_back();
        for (std::size_t d = 0; d < 3; ++d) load[d] -= p.req[w][d];
      }
    };
    grow(grow, 0);
    if (over) return false;
  }
  return true;
}

// What the branch and cut's callback needs: the incumbent to offer it once (1-based per
// set, empty: none) and the node limit.
struct Control {
  std::vector<double> incumbent;
  bool offered = false;
  int max_nodes = 0;
};

void control(glp_tree* tree, void* info) {
  auto* c = static_cast<Control*>(info);
  switch (glp_ios_reason(tree)) {
    case GLP_IHEUR:
      if (!c->offered && !c->incumbent.empty()) glp_ios_heur_sol(tree, c->incumbent.data());
      c->offered = true;
      break;
    case GLP_ISELECT: {
      int active = 0, current = 0, total = 0;
      glp_ios_tree_size(tree, &active, &current, &total);
      if (total > c->max_nodes) glp_ios_terminate(tree);  // a limit that does not depend on the machine's load
      break;
    }
    default: break;
  }
}

// Solves the set-packing program over `sets` with the objective `coef` (1-based per set)
// and, when min_placed > 0, at least that many workloads placed, from the incumbent
// `start` (chosen sets; it must satisfy the constraints). The chosen sets, or nothing
// when GLPK did not prove optimality within the limits.
std::optional<std::vector<std::size_t>> solve(const Packing& p, const std::vector<Set>& sets,
                                              const std::vector<double>& coef, std::size_t min_placed,
                                              const std::vector<std::size_t>& start, const PackingLimits& limits) {
  std::unique_ptr<glp_prob, ProbDeleter> lp(glp_create_prob());
  glp_set_obj_dir(lp.get(), GLP_MAX);
  const int W = static_cast<int>(p.req.size()), N = static_cast<int>(p.room.size());
  // Rows: one per node (at most one set), one per workload (in at most one chosen set),
  // and the placed count when it is bounded.
  glp_add_rows(lp.get(), N + W + (min_placed > 0 ? 1 : 0));
  // A node row bounds its class: as many sets as the class has nodes.
  std::vector<double> members_of(static_cast<std::size_t>(N), 0.0);
  for (std::uint32_t n = 0; n < static_cast<std::uint32_t>(N); ++n) members_of[rep(p, n)] += 1.0;
  for (int r = 1; r <= N; ++r) {
    const double k = members_of[static_cast<std::size_t>(r - 1)];
    if (k > 0) glp_set_row_bnds(lp.get(), r, GLP_UP, 0.0, k);
    else glp_set_row_bnds(lp.get(), r, GLP_FX, 0.0, 0.0);
  }
  for (int r = N + 1; r <= N + W; ++r) glp_set_row_bnds(lp.get(), r, GLP_UP, 0.0, 1.0);
  if (min_placed > 0) glp_set_row_bnds(lp.get(), N + W + 1, GLP_LO, static_cast<double>(min_placed), 0.0);
  const int cols = static_cast<int>(sets.size());
  glp_add_cols(lp.get(), cols);
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  for (int j = 1; j <= cols; ++j) {
    const Set& s = sets[static_cast<std::size_t>(j - 1)];
    glp_set_col_kind(lp.get(), j, GLP_BV);
    glp_set_obj_coef(lp.get(), j, coef[static_cast<std::size_t>(j)]);
    ia.push_back(static_cast<int>(s.node) + 1);
    ja.push_back(j);
    ar.push_back(1.0);
    for (std::uint32_t w : s.members) {
      ia.push_back(N + static_cast<int>(w) + 1);
      ja.push_back(j);
      ar.push_back(1.0);
    }
    if (min_placed > 0) {
      ia.push_back(N + W + 1);
      ja.push_back(j);
      ar.push_back(static_cast<double>(s.members.size()));
    }
  }
  glp_load_matrix(lp.get(), static_cast<int>(ia.size() - 1), ia.data(), ja.data(), ar.data());
  // The LP relaxation first: without glp_intopt's presolver the callback sees our own
  // columns, so the incumbent can be offered as it is.
  glp_smcp sm;
  glp_init_smcp(&sm);
  sm.msg_lev = GLP_MSG_OFF;
  sm.tm_lim = limits.time_ms;
  if (glp_simplex(lp.get(), &sm) != 0 || glp_get_status(lp.get()) != GLP_OPT) return std::nullopt;
  Control ctl;
  ctl.max_nodes = limits.max_nodes;
  if (!start.empty()) {
    ctl.incumbent.assign(sets.size() + 1, 0.0);
    for (std::size_t j : start) ctl.incumbent[j + 1] = 1.0;
  }
  glp_iocp io;
  glp_init_iocp(&io);
  io.msg_lev = GLP_MSG_OFF;
  io.tm_lim = limits.time_ms;
  io.presolve = GLP_OFF;
  io.clq_cuts = GLP_ON;  // set packing: clique cuts
  io.cb_func = control;
  io.cb_info = &ctl;
  const int rc = glp_intopt(lp.get(), &io);
  if (rc != 0 || glp_mip_status(lp.get()) != GLP_OPT) return std::nullopt;
  std::vector<std::size_t> chosen;
  for (int j = 1; j <= cols; ++j) {
    if (glp_mip_col_val(lp.get(), j) > 0.5) chosen.push_back(static_cast<std::size_t>(j - 1));
  }
  return chosen;
}

}  // namespace

PackingResult exact_batch(const Packing& p, const PackingLimits& limits) {
  PackingResult out;
  std::vector<Set> sets;
  if (!enumerate(p, limits.max_sets, sets)) {
    out.status = PackingResult::Status::too_large;
    out.sets = sets.size();
    return out;
  }
  out.sets = sets.size();
  out.assign.assign(p.req.size(), kUnplaced);
  if (sets.empty()) {
    out.status = PackingResult::Status::optimal;
    return out;
  }
  glp_term_out(GLP_OFF);  // GLPK prints to stdout by default; the daemons log structured lines
  std::vector<double> coef(sets.size() + 1, 0.0);
  for (std::size_t j = 0; j < sets.size(); ++j) coef[j + 1] = static_cast<double>(sets[j].members.size());
  // The incumbent: the caller's assignment, as the set each node takes.
  std::map<std::pair<std::uint32_t, std::vector<std::uint32_t>>, std::size_t> index;
  for (std::size_t j = 0; j < sets.size(); ++j) index[{sets[j].node, sets[j].members}] = j;
  std::vector<std::vector<std::uint32_t>> taken(p.room.size());
  for (std::uint32_t w = 0; w < p.start.size(); ++w) {
    if (p.start[w] != kUnplaced) taken[p.start[w]].push_back(w);  // ascending, as enumerated
  }
  std::vector<std::size_t> start;
  for (std::uint32_t n = 0; n < taken.size(); ++n) {
    if (taken[n].empty()) continue;
    auto it = index.find({rep(p, n), taken[n]});
    if (it == index.end()) {  // not a set that fits: no incumbent
      start.clear();
      break;
    }
    start.push_back(it->second);
  }
  const auto by_count = solve(p, sets, coef, 0, start, limits);
  if (!by_count) {
    out.status = PackingResult::Status::failed;
    out.assign.clear();
    return out;
  }
  std::size_t most = 0;
  for (std::size_t j : *by_count) most += sets[j].members.size();
  // The chosen sets of a class go to its nodes in order.
  auto take = [&](const std::vector<std::size_t>& chosen) {
    out.assign.assign(p.req.size(), kUnplaced);
    out.placed = 0;
    out.score = 0;
    std::vector<std::uint32_t> next(p.room.size());  // per class: its next node to fill
    for (std::uint32_t n = 0; n < p.room.size(); ++n) next[n] = n;
    for (std::size_t j : chosen) {
      std::uint32_t& node = next[sets[j].node];
      while (node < p.room.size() && rep(p, node) != sets[j].node) ++node;  // the class's next member
      if (node >= p.room.size()) return false;  // more sets than nodes: never, the rows bound it
      for (std::uint32_t w : sets[j].members) out.assign[w] = node;
      ++node;
      out.placed += sets[j].members.size();
      out.score += sets[j].score;
    }
    return true;
  };
  for (Set& s : sets) s.score = p.value(s.node, s.members);
  if (!take(*by_count)) {
    out.status = PackingResult::Status::failed;
    out.assign.clear();
    return out;
  }
  out.status = PackingResult::Status::count_only;
  if (most == 0) {
    out.status = PackingResult::Status::optimal;
    return out;
  }
  for (std::size_t j = 0; j < sets.size(); ++j) coef[j + 1] = sets[j].score;
  const auto by_score = solve(p, sets, coef, most, *by_count, limits);
  if (by_score && take(*by_score)) {
    out.status = PackingResult::Status::optimal;
  } else {
    take(*by_count);
  }
  return out;
}

}  // namespace nova::tiers::detail
