#include "nova/schemas/sensor_gauges.h"

#include <map>

namespace nova::schemas {
namespace {

template <class Map>
std::size_t drop_prefixed(Map& gauges, std::string_view prefix) {
  return std::erase_if(gauges, [&](const auto& entry) { return entry.first.starts_with(prefix); });
}

}  // namespace

std::string sensor_gauge_prefix(std::string_view sensor) { return "sensor." + std::string(sensor) + "."; }

std::size_t drop_gauges(MetricsBatch& batch, std::string_view prefix) {
  std::size_t dropped = 0;
  for (MetricSample& s : batch.samples) dropped += drop_prefixed(s.extra, prefix);
  drop_prefixed(batch.extra_decimals, prefix);
  return dropped;
}

std::size_t drop_gauges(DecisionRecord& record, std::string_view prefix) { return drop_prefixed(record.inputs, prefix); }

}  // namespace nova::schemas
