// Private to tiers/src/placement*.cpp: the scoring pieces shared by the reference scans
// (placement.cpp) and the index (placement_engine.cpp). Both paths call exactly these
// functions with exactly these inputs, so their scores are bit-identical and their
// orderings agree, ties included.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/tiers/placement.h"
#include "nova/tiers/profile.h"

namespace nova::tiers::detail {

inline constexpr double kFitKnee = 0.85;  // best fit up to here, then the >90 % trigger

// The per-node multipliers and inputs that do not depend on the workload.
struct Factors {
  double res_mult = 1;    // thermal x power
  double link = 1;        // 0..1 link quality (stability, bandwidth)
  double down = 0;        // 1 - expected uptime
  double avail_mult = 1;  // maintenance soon x battery x offline capability
};

// A workload spec, preprocessed once per decision.
struct Query {
  const WorkloadSpec* spec = nullptr;
  std::uint64_t req[3] = {0, 0, 0};  // cpu, memory, storage
  std::vector<std::string> caps;     // canonical, sorted, unique
  std::vector<std::string> include, exclude;  // sorted, unique
  bool has_latency = false;
  double max_ms = 0;
  std::string to;
  double need_down = 0;  // 1 - availability need
};

std::string_view canonical_cap(std::string_view name);
std::vector<std::string> canonical_set(const std::vector<std::string>& names);
std::vector<std::string> sorted_set(const std::vector<std::string>& names);

Factors factors_of(const Candidate& c);
Query prepare(const WorkloadSpec& spec);

double resource_component(const std::uint64_t alloc[3], const std::uint64_t post[3],
                          const std::uint64_t req[3], double mult);
double resource_upper(double mult);  // >= resource_component(..., mult) for any inputs
double latency_component(double proximity, double link);
double proximity(double ms, double max_ms);
double capability_component(std::size_t declared, std::size_t matched);
double level_component(const std::vector<std::uint8_t>& pref, std::uint8_t level);
double availability_component(double need_down, double down, double mult);

std::optional<double> latency_to(const Candidate& c, std::string_view to);
std::uint64_t free_of(std::uint64_t alloc, std::uint64_t used);
std::uint64_t sat_add(std::uint64_t a, std::uint64_t b);
void resources_of(const Resources& r, std::uint64_t out[3]);

bool cluster_ok(const Query& q, const std::vector<std::string>& node_clusters_sorted,
                Rejection* why);
// Index in q.caps of the first required capability the node lacks; q.caps.size() if none.
std::size_t missing_cap(const Query& q, const std::vector<std::string>& caps_sorted,
                        std::string_view arch);
std::size_t matched_caps(const Query& q, const std::vector<std::string>& caps_sorted);
Rejection check_resources(const Query& q, const std::uint64_t alloc[3],
                          const std::uint64_t used[3]);

// check() with a prepared query; resources=false skips the cpu/memory/storage checks.
Rejection check_prepared(const Query& q, const Candidate& c, bool resources);
// The components that do not depend on usage (resource left 0).
ScoreBreakdown static_components(const Query& q, const Candidate& c, const Factors& f);
ScoreBreakdown score_prepared(const Query& q, const Candidate& c);

// The total order of candidates: higher score, then smaller node id.
bool better(double sa, const std::string& na, double sb, const std::string& nb);
// Best + failover from every feasible candidate (the reference selection rule).
Decision select(std::vector<Ranked> all, std::size_t k);

}  // namespace nova::tiers::detail
