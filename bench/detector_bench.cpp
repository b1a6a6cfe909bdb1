// Anomaly detectors (agent/include/nova/agent/detectors.h): the cost of one observe()
// per kind at the agent's default window (600 values), the z-score (the agent's only
// detector before) as the peer in the same run. docs/benchmarks.md, "Anomaly detectors".
//
//   build/bench/detector_bench
#include <benchmark/benchmark.h>

#include <cmath>

#include "nova/agent/detectors.h"

namespace {

void observe(benchmark::State& state, const char* kind, std::uint32_t season) {
  nova::agent::DetectorParams p;
  p.kind = kind;
  p.threshold = 6;
  p.season = season;
  auto d = nova::agent::make_detector(p).value();
  // A noisy stream with a cycle of 100 values, past every warm-up before timing.
  std::uint64_t i = 0;
  const auto next = [&i] {
    ++i;
    return 20 + 5 * std::sin(static_cast<double>(i % 100) * 0.0628) + static_cast<double>((i * 7919) % 13) * 0.1;
  };
  for (int k = 0; k < 2000; ++k) d->observe(next());
  for (auto _ : state) benchmark::DoNotOptimize(d->observe(next()));
}

}  // namespace

BENCHMARK_CAPTURE(observe, zscore, "zscore", 0);
BENCHMARK_CAPTURE(observe, mad, "mad", 0);
BENCHMARK_CAPTURE(observe, seasonal, "seasonal", 100);

BENCHMARK_MAIN();
