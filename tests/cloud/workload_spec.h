// The workload the cloud integration tests submit over REST: `/bin/sh -c <script>` on a
// device (tier 5), as JSON for POST /api/v1/workloads.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace nova::test {

// cpu_millis 0: an agent defers a task while host CPU plus the task's share exceeds
// limits.max_cpu_pct (at most 100), and a shared test machine is often near 100 %; with
// 100 millis on two cores a task waited for the host to fall below 95 %, and tests
// timed out waiting for its result.
inline std::string workload_spec(const std::string& id, const std::string& script,
                                 std::uint64_t timeout_ms = 600'000) {
  const nlohmann::json spec = {{"v", 1},
                               {"workload_id", id},
                               {"name", id},
                               {"argv", {"/bin/sh", "-c", script}},
                               {"res", {{"cpu_millis", 0}, {"memory_mb", 16}, {"storage_mb", 0}}},
                               {"caps", nlohmann::json::array()},
                               {"tiers", {5}},
                               {"availability", 0.9},
                               {"clusters_in", nlohmann::json::array()},
                               {"clusters_out", nlohmann::json::array()},
                               {"timeout_ms", timeout_ms}};
  return spec.dump();
}

}  // namespace nova::test
