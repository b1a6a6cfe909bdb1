#include "nova/agent/window.h"

#include <algorithm>
#include <cmath>

namespace nova::agent {
namespace {

constexpr std::array<std::string_view, kFieldCount> kFieldNames{
    "value", "count", "sum", "mean", "min", "max", "stddev", "p50", "p90", "p95", "p99", "score", "anomalous",
};

// Nearest-rank percentile of `v` (not empty), reordering it.
double percentile(std::vector<double>& v, double p) {
  const std::size_t rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  const std::size_t k = std::min(v.size() - 1, rank == 0 ? 0 : rank - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

std::string_view field_name(Field f) { return kFieldNames[static_cast<std::size_t>(f)]; }

std::optional<Field> field_named(std::string_view name) {
  for (std::size_t i = 0; i < kFieldCount; ++i) {
    if (kFieldNames[i] == name) return static_cast<Field>(i);
  }
  return std::nullopt;
}

schemas::Timestamp Window::watermark() const {
  if (!newest_) return 0;
  return *newest_ > spec_.lateness_ms ? *newest_ - spec_.lateness_ms : 0;
}

void Window::fold(Acc& a, double v) {
  if (a.count == 0) a.min = a.max = v;
  ++a.count;
  const double delta = v - a.mean;
  a.mean += delta / static_cast<double>(a.count);
  a.m2 += delta * (v - a.mean);
  a.sum += v;
  a.min = std::min(a.min, v);
  a.max = std::max(a.max, v);
  if (a.values.size() < spec_.max_values) {
    a.values.push_back(v);
  } else {
    ++truncated_;
  }
}

Event Window::emit(Acc& a, schemas::Timestamp end) {
  Event e;
  e.ts = end;
  e.set(Field::count, static_cast<double>(a.count));
  e.set(Field::sum, a.sum);
  e.set(Field::mean, a.mean);
  e.set(Field::min, a.min);
  e.set(Field::max, a.max);
  e.set(Field::stddev, std::sqrt(std::max(0.0, a.m2 / static_cast<double>(a.count))));
  e.set(Field::p50, percentile(a.values, 50));
  e.set(Field::p90, percentile(a.values, 90));
  e.set(Field::p95, percentile(a.values, 95));
  e.set(Field::p99, percentile(a.values, 99));
  return e;
}

bool Window::add(schemas::Timestamp ts, double value, std::vector<Event>& out) {
  if (newest_ && ts < watermark()) {
    ++late_;
    return false;
  }
  newest_ = std::max(newest_.value_or(ts), ts);
  if (spec_.kind == WindowSpec::Kind::sliding) {
    add_sliding(ts, value, out);
    return true;
  }
  const std::uint64_t size = spec_.size_ms;
  const std::uint64_t hop = spec_.kind == WindowSpec::Kind::hopping ? spec_.hop_ms : size;
  // Every window [start, start + size) with start a multiple of hop that holds ts. None
  // of them was emitted: each ends after ts, and ts is not behind the watermark.
  for (std::uint64_t start = ts - ts % hop;; start -= hop) {
    fold(open_[start], value);
    if (start < hop || start - hop + size <= ts) break;
  }
  const schemas::Timestamp mark = watermark();
  while (!open_.empty() && open_.begin()->first + size <= mark) {
    auto node = open_.extract(open_.begin());
    out.push_back(emit(node.mapped(), node.key() + size));
  }
  return true;
}

void Window::add_sliding(schemas::Timestamp ts, double value, std::vector<Event>& out) {
  auto at = std::upper_bound(recent_.begin(), recent_.end(), ts,
                             [](schemas::Timestamp t, const auto& e) { return t < e.first; });
  recent_.insert(at, {ts, value});
  const schemas::Timestamp newest = *newest_;
  while (!recent_.empty() && recent_.front().first + spec_.size_ms <= newest) recent_.pop_front();
  scratch_.count = 0;
  scratch_.mean = scratch_.m2 = scratch_.sum = 0;
  scratch_.values.clear();
  for (const auto& [t, v] : recent_) fold(scratch_, v);
  out.push_back(emit(scratch_, newest));
}

}  // namespace nova::agent
