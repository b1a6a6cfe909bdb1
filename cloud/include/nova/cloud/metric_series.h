// Gauges over time for the operator's view, computed from what the store holds (pure
// functions over samples; no I/O).
//
// Gauge names: the core ones of a MetricSample ("cpu", "mem", "disk", "load1", "net_rx",
// "net_tx", "temp", "power") and any extra gauge by its full name ("sensor.s1.temp",
// "agent.outbox_records").
//
// Why extra gauges are not in the store's 1-minute aggregates: an erasure of one
// sensor's data (erasures.h) rewrites the raw batches and decisions and relies on the
// aggregates holding no sensor gauge, and an aggregate row would grow from 8 to up to
// 264 gauges per node and minute. Their minute series is computed here from the raw
// batches instead, so it reaches back `store.raw_retention` (24 h by default), not
// `store.downsampled_retention`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/schemas/messages.h"

namespace nova::cloud {

using schemas::Timestamp;

// The gauge's value in `s`, or none when the sample does not carry it.
std::optional<double> gauge_value(const schemas::MetricSample& s, std::string_view name);
bool is_core_gauge(std::string_view name);

// One bucket of a gauge: [ts, ts + step) with the count/min/mean/max of its values.
struct SeriesPoint {
  Timestamp ts = 0;
  std::uint64_t count = 0;
  double min = 0, max = 0, mean = 0;
};

// The gauge over `samples` (any order), in buckets of `step_ms` (>= 1) aligned to the
// epoch, oldest first; buckets without a value are left out.
std::vector<SeriesPoint> bucket_series(const std::vector<schemas::MetricSample>& samples, std::string_view gauge,
                                       std::uint64_t step_ms);

// Several series (one per node of a site) merged into one: per bucket, the mean of the
// series' means, min of mins, max of maxes, count = how many series had the bucket.
std::vector<SeriesPoint> merge_series(const std::vector<std::vector<SeriesPoint>>& series);

// What an agent's outbox did over a window, from the gauges every sample carries
// (agent.outbox_records, agent.outbox_bytes, agent.outbox_evicted; agent.cpp):
//   backlog_*    the last sample's outbox (records and bytes waiting for the cloud's ack)
//   peak_*       the largest backlog seen
//   evicted      records the outbox dropped at its disk cap in the window (increase of the
//                cumulative agent.outbox_evicted; a restart that resets it counts from 0)
//   drained      records that left the outbox acknowledged: every fall of
//                outbox_records between two samples, less what eviction took in that step
// `samples` in time order. Samples without the gauges are skipped; `samples_used` says
// how many carried them (0: nothing is known).
struct OutboxStats {
  double backlog_records = 0, backlog_bytes = 0;
  double peak_records = 0, peak_bytes = 0;
  double drained = 0, evicted = 0;
  std::uint64_t samples_used = 0;
  Timestamp last_ts = 0;
};
OutboxStats outbox_stats(const std::vector<schemas::MetricSample>& samples);

}  // namespace nova::cloud
