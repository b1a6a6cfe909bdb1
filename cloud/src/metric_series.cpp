#include "nova/cloud/metric_series.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace nova::cloud {

bool is_core_gauge(std::string_view name) {
  for (const char* core : {"cpu", "mem", "disk", "load1", "net_rx", "net_tx", "temp", "power"}) {
    if (name == core) return true;
  }
  return false;
}

std::optional<double> gauge_value(const schemas::MetricSample& s, std::string_view name) {
  if (name == "cpu") return s.cpu_pct;
  if (name == "mem") return s.mem_pct;
  if (name == "disk") return s.disk_pct;
  if (name == "load1") return s.load1;
  if (name == "net_rx") return s.net_rx_bps;
  if (name == "net_tx") return s.net_tx_bps;
  if (name == "temp") return s.temp_c;
  if (name == "power") return s.power_w;
  const auto it = s.extra.find(std::string(name));
  if (it == s.extra.end()) return std::nullopt;
  return it->second;
}

namespace {

struct Acc {
  std::uint64_t count = 0;
  double min = 0, max = 0, sum = 0;
  void add(double v) {
    if (!std::isfinite(v)) return;
    min = count == 0 ? v : std::min(min, v);
    max = count == 0 ? v : std::max(max, v);
    sum += v;
    ++count;
  }
};

}  // namespace

std::vector<SeriesPoint> bucket_series(const std::vector<schemas::MetricSample>& samples, std::string_view gauge,
                                       std::uint64_t step_ms) {
  step_ms = std::max<std::uint64_t>(step_ms, 1);
  std::map<Timestamp, Acc> buckets;
  for (const auto& s : samples) {
    if (const auto v = gauge_value(s, gauge)) buckets[s.ts - s.ts % step_ms].add(*v);
  }
  std::vector<SeriesPoint> out;
  for (const auto& [ts, a] : buckets) {
    if (a.count > 0) out.push_back({ts, a.count, a.min, a.max, a.sum / static_cast<double>(a.count)});
  }
  return out;
}

std::vector<SeriesPoint> merge_series(const std::vector<std::vector<SeriesPoint>>& series) {
  std::map<Timestamp, SeriesPoint> merged;
  std::map<Timestamp, double> sums;
  for (const auto& one : series) {
    for (const SeriesPoint& p : one) {
      SeriesPoint& m = merged[p.ts];
      if (m.count == 0) {
        m = {p.ts, 0, p.min, p.max, 0};
      } else {
        m.min = std::min(m.min, p.min);
        m.max = std::max(m.max, p.max);
      }
      ++m.count;
      sums[p.ts] += p.mean;
    }
  }
  std::vector<SeriesPoint> out;
  for (auto& [ts, m] : merged) {
    m.mean = sums[ts] / static_cast<double>(m.count);
    out.push_back(m);
  }
  return out;
}

OutboxStats outbox_stats(const std::vector<schemas::MetricSample>& samples) {
  OutboxStats st;
  std::optional<double> prev_records, prev_evicted;
  for (const auto& s : samples) {
    const auto records = gauge_value(s, "agent.outbox_records");
    const auto bytes = gauge_value(s, "agent.outbox_bytes");
    const auto evicted = gauge_value(s, "agent.outbox_evicted");
    if (!records || !bytes) continue;
    ++st.samples_used;
    st.backlog_records = *records;
    st.backlog_bytes = *bytes;
    st.peak_records = std::max(st.peak_records, *records);
    st.peak_bytes = std::max(st.peak_bytes, *bytes);
    st.last_ts = s.ts;
    double evicted_step = 0;
    if (evicted) {
      // A restarted agent counts from 0 again: its new count is all new evictions.
      if (prev_evicted) evicted_step = *evicted >= *prev_evicted ? *evicted - *prev_evicted : *evicted;
      st.evicted += evicted_step;
      prev_evicted = evicted;
    }
    if (prev_records && *records < *prev_records) {
      st.drained += std::max(0.0, *prev_records - *records - evicted_step);
    }
    prev_records = records;
  }
  return st;
}

}  // namespace nova::cloud
