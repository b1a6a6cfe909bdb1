// The nova-cloud config and agents' pipeline of the requested-migration tests: no dwell,
// no re-optimiser, and on each device a rule that asks nova-cloud to move `workload` off
// it when its probe reads above 80 (docs/cloud.md, Migration, trigger "requested").
#pragma once

#include <string>

namespace nova::test {

inline constexpr const char* kRequestedMigrationCloudYaml = "migration: {min_dwell_s: 0}\nreoptimiser: {interval_s: 0}\n";

inline std::string guard_pipeline(const std::string& workload) {
  return "pipelines:\n"
         "  - name: guard\n"
         "    input: {sensor: probe, value: temp}\n"
         "    rules:\n"
         "      - {name: too_hot, when: \"value > 80\", action: {do: request_migration, target: " + workload + "}}\n";
}

}  // namespace nova::test
