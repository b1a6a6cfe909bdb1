#include "nova/agent/latency.h"

#include <bit>
#include <cmath>

namespace nova::agent {
namespace {

std::size_t bucket_of(std::uint64_t us) {
  if (us < 128) return static_cast<std::size_t>(us);
  const unsigned e = std::min(30u, static_cast<unsigned>(std::bit_width(us) - 1));  // 7..30
  const std::uint64_t sub = (us >> (e - 4)) & 15u;
  return std::min<std::size_t>(128 + (e - 7) * 16 + static_cast<std::size_t>(sub), 128 + 24 * 16 - 1);
}

// The largest value (us) that falls into bucket `b`.
double upper_of(std::size_t b) {
  if (b < 128) return static_cast<double>(b);
  const std::size_t e = 7 + (b - 128) / 16;
  const std::size_t sub = (b - 128) % 16;
  const double step = std::ldexp(1.0, static_cast<int>(e) - 4);
  return std::ldexp(1.0, static_cast<int>(e)) + static_cast<double>(sub + 1) * step - 1;
}

}  // namespace

void LatencyHistogram::add(std::chrono::nanoseconds d) {
  const auto us = static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count()) / 1000);
  ++buckets_[bucket_of(us)];
  ++count_;
}

double LatencyHistogram::percentile_us(double p) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < kBuckets; ++b) {
    seen += buckets_[b];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return upper_of(b);
  }
  return upper_of(kBuckets - 1);
}

void LatencyHistogram::reset() {
  buckets_.fill(0);
  count_ = 0;
}

}  // namespace nova::agent
