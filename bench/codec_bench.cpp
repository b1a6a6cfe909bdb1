// Codec speed: encode and decode of a 60-sample metrics batch and of one sensor reading,
// next to two peers decoding the same bytes in the same run:
//   - nlohmann::json::from_cbor: a general-purpose DOM decoder (no schema checks)
//   - libcbor cbor_load: libcbor's own DOM loader (no schema checks; unsafe on untrusted
//     input, see docs/codec.md)
// Our decoders do strictly more work (limits, UTF-8, schema, typed structs), so a ratio
// near or below 1 means validation is close to free.
//
// Run: build/bench/codec_bench [--benchmark_repetitions=N]
#include <benchmark/benchmark.h>
#include <cbor.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "nova/schemas/codec.h"
#include "sample_messages.h"

namespace {

using namespace nova::schemas;

const MetricsBatch kPlainBatch = nova::test::batch_of(60, BatchEncoding::plain);
const MetricsBatch kZstdBatch = nova::test::batch_of(60, BatchEncoding::zstd);
const SensorReading kReading{1732650000000, 991, {{"temp", 21.5}}, "degC"};

template <class T>
void BM_Encode(benchmark::State& state, const T& message) {
  std::size_t bytes = 0;
  for (auto _ : state) {
    Bytes b = encode_cbor(message);
    bytes = b.size();
    benchmark::DoNotOptimize(b);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}

template <class T>
void BM_Decode(benchmark::State& state, const T& message) {
  const Bytes b = encode_cbor(message);
  for (auto _ : state) {
    auto r = decode_cbor<T>(std::span<const std::uint8_t>(b));
    if (!r.ok()) state.SkipWithError(r.error().message().c_str());
    benchmark::DoNotOptimize(r);
  }
}

template <class T>
void BM_DecodeJson(benchmark::State& state, const T& message) {
  const std::string j = encode_json(message);
  for (auto _ : state) {
    auto r = decode_json<T>(j);
    if (!r.ok()) state.SkipWithError(r.error().message().c_str());
    benchmark::DoNotOptimize(r);
  }
}

template <class T>
void BM_PeerNlohmann(benchmark::State& state, const T& message) {
  const Bytes b = encode_cbor(message);
  for (auto _ : state) {
    auto j = nlohmann::json::from_cbor(b);
    benchmark::DoNotOptimize(j);
  }
}

template <class T>
void BM_PeerLibcbor(benchmark::State& state, const T& message) {
  const Bytes b = encode_cbor(message);
  for (auto _ : state) {
    cbor_load_result result;
    cbor_item_t* item = cbor_load(b.data(), b.size(), &result);
    benchmark::DoNotOptimize(item);
    if (item != nullptr) cbor_decref(&item);
  }
}

// Records each benchmark's mean time so main() can print peer ratios after the table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Iteration || r.aggregate_name == "mean") {
        ns_[r.run_name.function_name + "/" + r.run_name.args] = r.GetAdjustedRealTime();
      }
    }
  }
  double ns(const std::string& name) const {
    for (const auto& [k, v] : ns_) {
      if (k.rfind(name, 0) == 0) return v;
    }
    return 0;
  }

 private:
  std::map<std::string, double> ns_;
};

}  // namespace

BENCHMARK_CAPTURE(BM_Encode, reading, kReading);
BENCHMARK_CAPTURE(BM_Decode, reading, kReading);
BENCHMARK_CAPTURE(BM_DecodeJson, reading, kReading);
BENCHMARK_CAPTURE(BM_PeerNlohmann, reading, kReading);
BENCHMARK_CAPTURE(BM_PeerLibcbor, reading, kReading);
BENCHMARK_CAPTURE(BM_Encode, batch60_plain, kPlainBatch);
BENCHMARK_CAPTURE(BM_Decode, batch60_plain, kPlainBatch);
BENCHMARK_CAPTURE(BM_PeerNlohmann, batch60_plain, kPlainBatch);
BENCHMARK_CAPTURE(BM_PeerLibcbor, batch60_plain, kPlainBatch);
BENCHMARK_CAPTURE(BM_Encode, batch60_zstd, kZstdBatch);
BENCHMARK_CAPTURE(BM_Decode, batch60_zstd, kZstdBatch);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  auto ratio = [&](const char* label, const char* ours, const char* peer) {
    const double a = reporter.ns(ours), b = reporter.ns(peer);
    if (a > 0 && b > 0) std::printf("ratio %-40s %.2f  (%.0f ns vs %.0f ns)\n", label, a / b, a, b);
  };
  std::printf("\n# ours / peer (below 1: we are faster)\n");
  ratio("reading decode / nlohmann from_cbor", "BM_Decode/reading", "BM_PeerNlohmann/reading");
  ratio("reading decode / libcbor cbor_load", "BM_Decode/reading", "BM_PeerLibcbor/reading");
  ratio("batch60 decode / nlohmann from_cbor", "BM_Decode/batch60_plain", "BM_PeerNlohmann/batch60_plain");
  ratio("batch60 decode / libcbor cbor_load", "BM_Decode/batch60_plain", "BM_PeerLibcbor/batch60_plain");
  const double reading_ns = reporter.ns("BM_Decode/reading");
  std::printf("target: one sensor reading decodes in <= 1000 ns: %.0f ns, %s\n", reading_ns,
              reading_ns <= 1000 ? "met" : "MISSED");
  return 0;
}
