// Pipelines (issue 14): from a reading's arrival at the agent (its payload, before
// decoding) to its decision, through a three-stage pipeline -- range filter, 1 s
// tumbling window (mean, p99, ...), rule on the window's mean -- the code nova-agent runs
// (SensorIngest's codec, Pipelines). Prints p50/p99/p99.9 of that latency, one value
// timed at a time, and readings per second on one core (a batch timed whole), for JSON
// and CBOR readings; beside it, in the same run, decoding alone, so the pipeline's own
// share is visible. eKuiper's figure is its published one (about 12,000 msg/s for a
// filter rule on a Raspberry Pi 3B+), not measured here.
//
// Run: build/bench/pipeline_bench [readings]   (default 1,000,000)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numbers>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nova/agent/pipelines.h"
#include "nova/schemas/codec.h"

namespace {

using namespace nova;
using Clock = std::chrono::steady_clock;

constexpr const char* kPipeline = R"(
- name: bench
  input: {sensor: "boiler*", value: temp}
  filters:
    - range: {min: -40, max: 500}
  window: {kind: tumbling, size_ms: 1000}
  rules:
    - name: hot
      when: "mean > 80"
      hysteresis: 5
      action: {do: publish, target: fan, payload: "on"}
      on_clear: {do: publish, target: fan, payload: "off"}
)";

struct Count final : agent::PipelineSink {
  std::uint64_t decisions = 0;
  void emit(const agent::PipelineSpec&, const std::string&, const agent::Event&) override {}
  void decide(const agent::PipelineDecision&) override { ++decisions; }
  void cleared(const agent::PipelineSpec&, const agent::RuleSpec&, const std::string&) override {}
};

// Readings 10 ms apart, a sine of period 100 s between 40 and 120: the rule fires and
// clears every period, and a window closes every 100 readings.
std::vector<std::string> payloads(std::size_t n, bool json) {
  std::vector<std::string> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    schemas::SensorReading r;
    r.ts = 1'700'000'000'000 + i * 10;
    r.values = {{"temp", 80 + 40 * std::sin(static_cast<double>(i) * 2 * std::numbers::pi / 10'000)}};
    if (json) {
      out.push_back(schemas::encode_json(r));
    } else {
      const schemas::Bytes b = schemas::encode_cbor(r);
      out.emplace_back(b.begin(), b.end());
    }
  }
  return out;
}

struct Figures {
  double p50_us, p99_us, p999_us, per_s;
  std::uint64_t decisions;
};

template <class Step>
Figures measure(const std::vector<std::string>& in, Step step) {
  // Latency: each reading timed alone.
  std::vector<double> ns;
  ns.reserve(in.size());
  for (const std::string& p : in) {
    const auto t0 = Clock::now();
    step(p);
    ns.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  }
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { return ns[std::min(ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ns.size())))] / 1000.0; };
  // Throughput: the whole batch timed once.
  const auto t0 = Clock::now();
  for (const std::string& p : in) step(p);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return {at(0.50), at(0.99), at(0.999), static_cast<double>(in.size()) / s, 0};
}

void print(const char* what, const Figures& f) {
  std::printf("%-34s p50 %6.2f us  p99 %6.2f us  p99.9 %6.2f us  %10.0f readings/s/core\n", what, f.p50_us, f.p99_us,
              f.p999_us, f.per_s);
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  std::printf("pipeline_bench: %zu readings, filter -> tumbling window -> rule, one thread\n", n);
  for (bool json : {true, false}) {
    const std::vector<std::string> in = payloads(n, json);
    const char* format = json ? "JSON" : "CBOR";
    auto decode = [&](const std::string& p) {
      return json ? schemas::decode_json<schemas::SensorReading>(p) : schemas::decode_cbor<schemas::SensorReading>(p);
    };
    // Fresh pipelines for each pass (measure runs two): event time starts over.
    Count sink;
    std::unique_ptr<agent::Pipelines> pipelines;
    auto fresh = [&] { pipelines = agent::Pipelines::make(agent::parse_pipelines(kPipeline).value()).value(); };
    fresh();
    auto skip = [](const std::string&) { return false; };
    std::size_t pass_reading = 0;
    const Figures full = measure(in, [&](const std::string& p) {
      if (pass_reading++ == in.size()) fresh();
      auto r = decode(p);
      pipelines->on_reading("boiler-1", r.value(), skip, sink);
    });
    const Figures only = measure(in, [&](const std::string& p) {
      auto r = decode(p);
      if (!r) std::abort();
    });
    char label[64];
    std::snprintf(label, sizeof label, "%s decode + pipeline", format);
    print(label, full);
    std::snprintf(label, sizeof label, "%s decode only (same run)", format);
    print(label, only);
    std::printf("  decisions taken: %llu over two passes; pipeline's share of the time: %.0f %%\n",
                static_cast<unsigned long long>(sink.decisions), 100.0 * (1.0 - full.per_s / only.per_s));
  }
  std::printf("eKuiper (published figure, not measured here): about 12,000 msg/s for a filter rule on a Raspberry Pi 3B+\n");
  return 0;
}
