// The local model's cost per sample (models/include/nova/models/local_model.h), next to
// its peer in the same run: what the agent already does with every sample, the decision
// engine's threshold rules and z-score over the same sample (config defaults, 24 gauges,
// nothing raised). A ratio well below 1 means a model adds little to a sample's decisions.
//
//   - logistic over 8 gauges;
//   - a tree ensemble of 8 trees of depth 3 (a small model);
//   - a tree ensemble of 32 full trees of depth 6 (4,064 nodes: near the 4,096-node cap);
//   - decoding and validating that big model once (what its arrival costs).
//
// Run: build/bench/model_bench [--benchmark_repetitions=N]
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "nova/agent/decisions.h"
#include "nova/models/local_model.h"
#include "nova/schemas/codec.h"

namespace {

using namespace nova;

// A host sample with 20 extra gauges, 8 of which the models read.
schemas::MetricSample host_sample() {
  schemas::MetricSample s;
  s.ts = 1732650000000;
  s.cpu_pct = 21;
  s.mem_pct = 40;
  s.disk_pct = 50;
  s.load1 = 0.5;
  s.temp_c = 45;
  for (int i = 0; i < 20; ++i) s.extra["sensor.s" + std::to_string(i) + ".v"] = 10.0 + i;
  return s;
}

std::vector<std::string> features() {
  std::vector<std::string> f = {"cpu", "mem", "load1", "temp"};
  for (int i = 0; i < 4; ++i) f.push_back("sensor.s" + std::to_string(i * 5) + ".v");
  return f;
}

// `trees` full binary trees of `depth` splits, in breadth-first order (children of i at
// 2i+1 and 2i+2, which come after i), each split on feature i mod 8.
schemas::Model ensemble(std::size_t trees, std::size_t depth) {
  schemas::Model m{"bench-trees", 1, "tree_ensemble", {{"threshold", 0.99}}, {}, 1};
  m.features = features();
  const std::size_t splits = (std::size_t{1} << depth) - 1;
  for (std::size_t t = 0; t < trees; ++t) {
    std::vector<schemas::TreeNode> nodes;
    for (std::size_t i = 0; i < 2 * splits + 1; ++i) {
      schemas::TreeNode n;
      if (i < splits) {
        n.feature = (i + t) % 8;
        n.split = 20.0 + static_cast<double>(i % 7);
        n.left = 2 * i + 1;
        n.right = 2 * i + 2;
      } else {
        n.leaf = 0.01 * static_cast<double>(i % 5);
      }
      nodes.push_back(n);
    }
    m.trees.push_back(std::move(nodes));
  }
  m.output = schemas::ModelOutput::sigmoid;
  return m;
}

schemas::Model logistic() {
  schemas::Model m{"bench-lr", 1, "logistic", {{"threshold", 0.99}, {"bias", -30}}, {}, 1};
  m.features = features();
  m.weights = {0.1, 0.05, 0.5, 0.02, 0.01, 0.01, 0.01, 0.01};
  return m;
}

void BM_DecisionEngine(benchmark::State& state) {
  agent::DecisionEngine engine;
  const schemas::MetricSample s = host_sample();
  std::vector<agent::Firing> out;
  schemas::MetricSample next = s;
  for (auto _ : state) {
    out.clear();
    next.ts += 1000;
    engine.evaluate(next, false, out);
    benchmark::DoNotOptimize(out.data());
  }
}

void BM_Model(benchmark::State& state, const schemas::Model& model) {
  auto compiled = models::LocalModel::compile(model);
  if (!compiled) {
    state.SkipWithError(compiled.error().message().c_str());
    return;
  }
  models::LocalModel m = std::move(compiled).value();
  const schemas::MetricSample s = host_sample();
  double sum = 0;
  for (auto _ : state) {
    sum += m.evaluate(s).score;
    benchmark::DoNotOptimize(sum);
  }
}

void BM_Arrival(benchmark::State& state, const schemas::Model& model) {
  const schemas::Bytes wire = schemas::encode_cbor(model);
  for (auto _ : state) {
    auto decoded = schemas::decode_cbor<schemas::Model>(std::span<const std::uint8_t>(wire));
    auto compiled = models::LocalModel::compile(decoded.value());
    benchmark::DoNotOptimize(compiled.ok());
  }
  state.counters["bytes"] = static_cast<double>(wire.size());
}

const schemas::Model kLogistic = logistic();
const schemas::Model kSmall = ensemble(8, 3);
const schemas::Model kBig = ensemble(32, 6);

BENCHMARK(BM_DecisionEngine);
BENCHMARK_CAPTURE(BM_Model, logistic_8_features, kLogistic);
BENCHMARK_CAPTURE(BM_Model, trees_8_depth_3, kSmall);
BENCHMARK_CAPTURE(BM_Model, trees_32_depth_6, kBig);
BENCHMARK_CAPTURE(BM_Arrival, trees_32_depth_6, kBig);

}  // namespace

BENCHMARK_MAIN();
