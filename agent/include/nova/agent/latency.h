// A histogram of processing latencies, read as percentiles (agent.pipeline.latency_*).
// Buckets are 1 us wide below 128 us and 1/16 of a power of two above (at most 6.25 %
// too high), up to 2^31 us; a percentile is its bucket's upper bound, so it is never
// below the true value. 400 buckets, no allocation.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace nova::agent {

class LatencyHistogram {
 public:
  void add(std::chrono::nanoseconds d);
  std::uint64_t count() const { return count_; }
  // The latency in microseconds at or below which `p` percent of the values fall; 0
  // when there are none.
  double percentile_us(double p) const;
  void reset();

 private:
  static constexpr std::size_t kBuckets = 128 + 24 * 16;
  std::array<std::uint32_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
};

}  // namespace nova::agent
