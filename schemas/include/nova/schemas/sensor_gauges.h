// The gauges a sensor's readings become (docs/agent.md, "Third-party sensors"):
// "sensor.<sensor>.<value>" in a sample's extra gauges. The agent writes them, and an
// erasure of one sensor removes them from the agent's and nova-cloud's stored records,
// so the name rule and its removal have this one home.
//
// A sensor id may hold '.', so a sensor whose id extends another's with '.' ("cam1.x")
// shares its prefix with it ("sensor.cam1.") and is removed with it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nova/schemas/messages.h"

namespace nova::schemas {

// "sensor.<sensor>.": the start of every gauge name of `sensor`.
std::string sensor_gauge_prefix(std::string_view sensor);

// Removes the gauges whose names start with `prefix` from every sample of `batch` (and
// their precisions), or from a decision record's inputs; returns how many went.
std::size_t drop_gauges(MetricsBatch& batch, std::string_view prefix);
std::size_t drop_gauges(DecisionRecord& record, std::string_view prefix);

}  // namespace nova::schemas
