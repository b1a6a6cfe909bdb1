// The local model (local_model.h, model_decisions.h): scores against references worked
// out by hand, every refusal naming its field, random models that never crash, the
// decisions a model takes (raised once, repeated, recovered, skipped), and evaluation
// without allocation.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <optional>
#include <random>

#include "nova/agent/decisions.h"
#include "../models/tree_nodes.h"
#include "nova/models/local_model.h"
#include "nova/schemas/codec.h"

#include "alloc_count.h"

using namespace nova;
using namespace nova::agent;
using namespace nova::models;

namespace {

constexpr schemas::Timestamp kT0 = 1732650000000;

schemas::MetricSample sample(double cpu, std::map<std::string, double> extra = {}, schemas::Timestamp ts = kT0) {
  schemas::MetricSample s;
  s.ts = ts;
  s.cpu_pct = cpu;
  s.mem_pct = 40;
  s.disk_pct = 50;
  s.load1 = 0.5;
  s.extra = std::move(extra);
  return s;
}

// The golden vector "logistic" (schemas/vectors/model.json).
schemas::Model logistic() {
  schemas::Model m{"overheat-lr", 7, "logistic", {{"bias", -12.5}, {"threshold", 0.8}}, {0.25, 1.5}, kT0};
  m.features = {"cpu", "sensor.s1.temp"};
  m.action = "cooling requested";
  return m;
}

using test::leaf;
using test::split;

// The golden vector "tree_ensemble": three trees, mean, sigmoid.
schemas::Model trees() {
  schemas::Model m{"vib-trees", 2, "tree_ensemble", {{"threshold", 0.5}}, {}, kT0};
  m.features = {"sensor.pump.vib", "load1"};
  schemas::TreeNode t1 = split(1, 0.75, 1, 2);
  t1.missing = schemas::MissingGoes::right;
  m.trees = {{split(0, 3.5, 1, 2), leaf(-1), leaf(2)}, {t1, leaf(-0.5), leaf(1.25)}, {leaf(0.1)}};
  m.combine = schemas::TreeCombine::mean;
  m.output = schemas::ModelOutput::sigmoid;
  return m;
}

double score(const schemas::Model& m, const schemas::MetricSample& s) {
  auto compiled = LocalModel::compile(m);
  REQUIRE(compiled.ok());
  const LocalModel::Evaluation e = compiled.value().evaluate(s);
  REQUIRE(e.status == LocalModel::Status::scored);
  return e.score;
}

std::string refusal(const schemas::Model& m) {
  auto compiled = LocalModel::compile(m);
  return compiled.ok() ? "(compiled)" : compiled.error().message();
}

}  // namespace

TEST_CASE("a logistic model scores the sigmoid of its weighted features", "[agent][model]") {
  // z = -12.5 + 0.25 * 20 + 1.5 * 5 = 0, so the score is 1/2.
  CHECK(score(logistic(), sample(20, {{"sensor.s1.temp", 5}})) == Approx(0.5));
  // z = -12.5 + 0.25 * 20 + 1.5 * 6 = 1.5: 1 / (1 + e^-1.5) = 0.8175744762.
  CHECK(score(logistic(), sample(20, {{"sensor.s1.temp", 6}})) == Approx(0.8175744762));
  // z = -12.5 + 0.25 * 10 + 1.5 * 2 = -7: 1 / (1 + e^7) = 0.000911051194.
  CHECK(score(logistic(), sample(10, {{"sensor.s1.temp", 2}})) == Approx(0.000911051194));

  auto compiled = LocalModel::compile(logistic());
  REQUIRE(compiled.ok());
  LocalModel m = std::move(compiled).value();
  // Without the sensor's gauge the sample is not scored.
  CHECK(m.evaluate(sample(20)).status == LocalModel::Status::missing_feature);
  CHECK(std::isnan(m.feature_values()[1]));
  CHECK(m.feature_values()[0] == 20);
  // A sum that overflows is no score.
  schemas::Model huge = logistic();
  huge.weights = {1e308, 1e308};
  huge.params["bias"] = -1e308;
  auto h = LocalModel::compile(huge);
  REQUIRE(h.ok());
  CHECK(h.value().evaluate(sample(1e300, {{"sensor.s1.temp", -1e300}})).status == LocalModel::Status::not_finite);
}

TEST_CASE("a tree ensemble walks each tree and combines the leaves", "[agent][model]") {
  // vib 4 >= 3.5 goes right (2); load1 0.5 < 0.75 goes left (-0.5); the lone leaf 0.1:
  // mean (2 - 0.5 + 0.1) / 3 = 0.5333, sigmoid 0.6302.
  CHECK(score(trees(), sample(20, {{"sensor.pump.vib", 4}})) == Approx(1 / (1 + std::exp(-1.6 / 3))));
  CHECK(score(trees(), sample(20, {{"sensor.pump.vib", 4}})) == Approx(0.6302552));
  // A value equal to the split goes right.
  CHECK(score(trees(), sample(20, {{"sensor.pump.vib", 3.5}})) == Approx(1 / (1 + std::exp(-1.6 / 3))));
  // vib missing: tree 0 goes left by default (-1): (-1 - 0.5 + 0.1) / 3.
  CHECK(score(trees(), sample(20)) == Approx(1 / (1 + std::exp(1.4 / 3))));
  // load1 missing is impossible (a core gauge), so make tree 1 read the sensor instead:
  // its "missing: right" sends the sample to 1.25: (-1 + 1.25 + 0.1) / 3.
  schemas::Model m = trees();
  m.trees[1][0].feature = 0;
  CHECK(score(m, sample(20)) == Approx(1 / (1 + std::exp(-0.35 / 3))));

  // Sum, raw, with a base: a depth-3 tree. cpu 95 >= 90 right (2); mem 40 < 50 left (3);
  // disk 50 >= 10 right (6) = 4; the second tree: 0.5. 1 + 4 + 0.5 = 5.5.
  schemas::Model raw{"deep", 1, "tree_ensemble", {{"threshold", 3}, {"base", 1}}, {}, kT0};
  raw.features = {"cpu", "mem", "disk"};
  raw.trees = {{split(0, 90, 1, 2), leaf(0), split(1, 50, 3, 4), split(2, 10, 5, 6), leaf(9), leaf(-4), leaf(4)},
               {leaf(0.5)}};
  CHECK(score(raw, sample(95)) == Approx(5.5));
  CHECK(score(raw, sample(50)) == Approx(1.5));
}

TEST_CASE("a model that does not validate is refused whole naming the field", "[agent][model]") {
  using Edit = std::function<void(schemas::Model&)>;
  const std::pair<Edit, std::string> logistic_cases[] = {
      {[](schemas::Model& m) { m.weights.pop_back(); }, "model.weights: 1 weights for 2 features (one each)"},
      {[](schemas::Model& m) { m.features.clear(); }, "model.features: 0 features, expected 1..61"},
      {[](schemas::Model& m) { m.features.assign(62, "x"); }, "model.features: 62 features, expected 1..61"},
      {[](schemas::Model& m) { m.features[1] = "cpu"; }, "model.features[1]: 'cpu' is repeated (features[0])"},
      {[](schemas::Model& m) { m.features[1] = "score"; }, "model.features[1]: 'score' is reserved"},
      {[](schemas::Model& m) { m.features[0] = "no space"; }, "model.features[0]: 'no space' is not an id"},
      {[](schemas::Model& m) { m.params.erase("threshold"); }, "model.params.threshold: required"},
      {[](schemas::Model& m) { m.params["threshold"] = 1.5; }, "model.params.threshold: 1.5 is outside 0..1"},
      {[](schemas::Model& m) { m.params["clear"] = 0.9; }, "model.params.clear: 0.9 is above the threshold 0.8"},
      {[](schemas::Model& m) { m.params["base"] = 1; }, "model.params.base: not a parameter of a logistic model"},
      {[](schemas::Model& m) { m.trees = {{leaf(1)}}; }, "model.trees: a logistic model has no trees"},
      {[](schemas::Model& m) { m.combine = schemas::TreeCombine::sum; }, "model.combine: a logistic model has no trees"},
      {[](schemas::Model& m) { m.output = schemas::ModelOutput::raw; }, "model.output: a logistic model's score is always a sigmoid"},
      {[](schemas::Model& m) { m.model_id = std::string(59, 'm'); }, "model.model_id: at most 58 bytes"},
      {[](schemas::Model& m) { m.weights[1] = std::nan(""); }, "model.weights[1]: not a finite number"},
      {[](schemas::Model& m) { m.params["bias"] = -INFINITY; }, "model.params.bias: not a finite number"},
  };
  for (const auto& [edit, expected] : logistic_cases) {
    schemas::Model m = logistic();
    edit(m);
    CHECK_THAT(refusal(m), Catch::StartsWith(expected));
  }
  const std::pair<Edit, std::string> tree_cases[] = {
      {[](schemas::Model& m) { m.trees[0][0].feature = 2; }, "model.trees[0][0].feature: 2 is not below the number of features (2)"},
      {[](schemas::Model& m) { m.trees[1][0].left = 3; }, "model.trees[1][0].left: 3 is not a node of this tree (it has 3)"},
      {[](schemas::Model& m) { m.trees[1][0].right = 0; }, "model.trees[1][0].right: 0 is not after its node 0"},
      {[](schemas::Model& m) { m.trees[0][0].right = 1; }, "model.trees[0][0].right: node 1 is already the child of another node"},
      {[](schemas::Model& m) { m.trees[0].push_back(leaf(3)); }, "model.trees[0][3]: not reachable from the root"},
      {[](schemas::Model& m) { m.trees.clear(); }, "model.trees: 0 trees, expected 1..64"},
      {[](schemas::Model& m) { m.trees.assign(65, {leaf(1)}); }, "model.trees: 65 trees, expected 1..64"},
      {[](schemas::Model& m) { m.trees[2].clear(); }, "model.trees[2]: 0 nodes, expected 1..255"},
      {[](schemas::Model& m) { m.trees[2].assign(256, leaf(1)); }, "model.trees[2]: 256 nodes, expected 1..255"},
      {[](schemas::Model& m) { m.trees.assign(17, std::vector<schemas::TreeNode>(255, leaf(1))); },
       "model.trees: 4335 nodes in all, at most 4096"},
      {[](schemas::Model& m) { m.weights = {1}; }, "model.weights: a tree_ensemble has no weights"},
      {[](schemas::Model& m) { m.params["bias"] = 1; }, "model.params.bias: not a parameter of a tree_ensemble model"},
      {[](schemas::Model& m) { m.trees[0][0].split = INFINITY; }, "model.trees[0][0].split: not a finite number"},
      {[](schemas::Model& m) { m.trees[1][2].leaf = std::nan(""); }, "model.trees[1][2].leaf: not a finite number"},
  };
  for (const auto& [edit, expected] : tree_cases) {
    schemas::Model m = trees();
    edit(m);
    CHECK_THAT(refusal(m), Catch::StartsWith(expected));
  }
  // A chain of 17 splits is one too deep; 16 is the most.
  for (const std::size_t splits : {16u, 17u}) {
    schemas::Model m = trees();
    m.trees = {{}};
    // Node 2i is the split at depth i; its left 2i+1 is a leaf, its right 2i+2 the next.
    for (std::size_t i = 0; i < splits; ++i) {
      m.trees[0].push_back(split(0, 1, 2 * i + 1, 2 * i + 2));
      m.trees[0].push_back(leaf(1));
    }
    m.trees[0].push_back(leaf(2));
    if (splits == 16) {
      CHECK(refusal(m) == "(compiled)");
    } else {
      CHECK(refusal(m) == "model.trees[0][32].left: more than 16 splits from the root to node 33");
    }
  }
  // Through the codec: a model whose node is both leaf and split is refused there.
  const std::string json = R"({"v":1,"model_id":"t","revision":1,"kind":"tree_ensemble","ts":1,)"
                           R"("features":["cpu"],"trees":[[{"leaf":1.0,"left":1}]]})";
  auto decoded = schemas::decode_json<schemas::Model>(json);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().message() == "model.trees[0][0]: a leaf has no 'left'");
}

TEST_CASE("random models never crash and the valid ones score finite or say why not", "[agent][model]") {
  std::mt19937_64 rng(20261205);
  std::uniform_real_distribution<double> unit(0, 1);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  // Mostly plausible numbers, now and then an extreme one.
  auto number = [&] {
    const std::size_t k = pick(20);
    if (k == 0) return 1e308 * (unit(rng) < 0.5 ? -1 : 1);
    if (k == 1) return 5e-324;
    return (unit(rng) - 0.5) * 200;
  };
  const std::string names[] = {"cpu", "mem", "disk", "load1", "net_rx", "temp", "power", "throttled", "sensor.a.x", "sensor.b.y"};
  std::size_t valid = 0, scored = 0;
  for (int round = 0; round < 3000; ++round) {
    schemas::Model m{"r" + std::to_string(round), 1, pick(2) ? "logistic" : "tree_ensemble", {}, {}, kT0};
    const std::size_t nf = 1 + pick(4);
    for (std::size_t i = 0; i < nf; ++i) m.features.push_back(names[pick(std::size(names))]);
    if (pick(4) != 0) m.params["threshold"] = unit(rng);
    if (pick(8) == 0) m.params["clear"] = unit(rng);
    if (m.kind == "logistic") {
      for (std::size_t i = 0; i < nf + (pick(8) == 0 ? 1 : 0); ++i) m.weights.push_back(number());
      m.params["bias"] = number();
    } else {
      const std::size_t nt = 1 + pick(4);
      for (std::size_t t = 0; t < nt; ++t) {
        const std::size_t n = 1 + pick(15);
        std::vector<schemas::TreeNode> tree;
        for (std::size_t i = 0; i < n; ++i) {
          if (pick(3) == 0) {
            tree.push_back(leaf(number()));
          } else {
            // Children mostly after the node and in range, sometimes not.
            schemas::TreeNode s = split(pick(nf + 1), number(), i + 1 + pick(4), i + 1 + pick(4));
            if (pick(10) == 0) s.left = pick(n);
            if (pick(2) == 0) s.missing = schemas::MissingGoes::right;
            tree.push_back(s);
          }
        }
        m.trees.push_back(std::move(tree));
      }
      if (pick(2)) m.output = schemas::ModelOutput::sigmoid;
      if (pick(2)) m.combine = schemas::TreeCombine::mean;
    }
    // Every model the codec takes round-trips, whether or not it validates.
    const schemas::Bytes wire = schemas::encode_cbor(m);
    auto back = schemas::decode_cbor<schemas::Model>(std::span<const std::uint8_t>(wire));
    REQUIRE(back.ok());
    REQUIRE(back.value() == m);

    auto compiled = LocalModel::compile(m);
    if (!compiled.ok()) {
      CHECK_FALSE(compiled.error().path.empty());
      continue;
    }
    ++valid;
    LocalModel lm = std::move(compiled).value();
    for (int k = 0; k < 5; ++k) {
      schemas::MetricSample s = sample((unit(rng) - 0.5) * 200);
      if (pick(2)) s.extra["sensor.a.x"] = (unit(rng) - 0.5) * 200;
      if (pick(2)) s.extra["sensor.b.y"] = (unit(rng) - 0.5) * 200;
      if (pick(2)) s.temp_c = unit(rng) * 100;
      if (pick(2)) s.power_w = unit(rng) * 10;
      if (pick(2)) s.throttled = pick(2) == 0;
      const LocalModel::Evaluation e = lm.evaluate(s);
      if (e.status == LocalModel::Status::scored) {
        ++scored;
        CHECK(std::isfinite(e.score));
        if (lm.sigmoid()) CHECK((e.score >= 0 && e.score <= 1));
      }
    }
  }
  // The generator makes both kinds of outcome often enough to mean something.
  CHECK(valid > 300);
  CHECK(scored > 500);
}

TEST_CASE("a model decides when its score reaches the threshold, once per repeat, until it clears", "[agent][model]") {
  ModelDecisions d;
  schemas::Model m = logistic();
  m.params["clear"] = 0.5;
  REQUIRE_FALSE(d.apply(m));
  std::vector<Firing> out;
  const std::uint64_t repeat = 300'000;
  auto at = [&](int second, double temp) {
    out.clear();
    d.evaluate(sample(20, {{"sensor.s1.temp", temp}}, kT0 + static_cast<schemas::Timestamp>(second) * 1000), second > 100,
               repeat, out);
    return out.size();
  };
  CHECK(at(0, 5) == 0);   // 0.5: below the threshold
  REQUIRE(at(1, 6) == 1);  // 0.818: the condition starts
  const Firing& f = out[0];
  CHECK(f.alert.severity == schemas::Severity::warning);
  CHECK(f.alert.metric == "model.overheat-lr");
  CHECK(f.alert.observed == Approx(0.8175744762));
  CHECK(f.alert.threshold == 0.8);
  CHECK(f.alert.message == "model overheat-lr revision 7 scored 0.817574 (threshold 0.8): cooling requested");
  REQUIRE(f.record);
  CHECK(f.record->kind == "model_decision");
  CHECK(f.record->action == "model overheat-lr: cooling requested");
  CHECK(f.record->inputs == std::map<std::string, double>{{"cpu", 20}, {"sensor.s1.temp", 6}, {"score", f.alert.observed},
                                                          {"threshold", 0.8}, {"model_revision", 7}});
  CHECK(f.record->confidence == f.alert.observed);
  CHECK_FALSE(f.record->offline);
  CHECK(at(2, 7) == 0);      // lasts: not again before the repeat
  CHECK(at(3, 5.2) == 0);    // 0.57: below the threshold, above clear: still on
  CHECK(at(200, 6) == 0);    // lasting, 199 s after: not yet
  REQUIRE(at(301, 6) == 1);  // 300 s after the first: again, offline now
  CHECK(out[0].record->offline);
  REQUIRE(at(302, 4) == 1);  // 0.18: below clear, recovered
  CHECK(out[0].alert.severity == schemas::Severity::info);
  CHECK_FALSE(out[0].record);
  CHECK(out[0].alert.message == "model overheat-lr score 0.182426 recovered below 0.5");
  REQUIRE(at(303, 6) == 1);  // a new condition: at once
  // A sample without the sensor's gauge is skipped and changes nothing.
  out.clear();
  d.evaluate(sample(20), false, repeat, out);
  CHECK(out.empty());
  CHECK(d.counters().evaluations == 8);
  CHECK(d.counters().positives == 3);
  CHECK(d.counters().skipped == 1);
}

TEST_CASE("the decision engine runs a local model beside its rules and refuses a bad one keeping the last", "[agent][model]") {
  DecisionOptions o;
  o.zscore = {4, 60, 600};
  DecisionEngine e(o);
  REQUIRE_FALSE(e.apply_model({"m-z", 1, "zscore", {{"threshold", 2.5}}, {}, kT0}));
  CHECK(e.zscore().threshold == 2.5);
  // A logistic model replaces the zscore model: the detector is back on the config's.
  REQUIRE_FALSE(e.apply_model(logistic()));
  CHECK(e.zscore() == o.zscore);
  CHECK(e.model_id() == "overheat-lr");
  REQUIRE(e.local_model().model() != nullptr);
  // A broken tree model is refused; the logistic one stays in force.
  schemas::Model bad = trees();
  bad.trees[0][0].left = 0;
  auto refused = e.apply_model(bad);
  REQUIRE(refused);
  CHECK(*refused == "model.trees[0][0].left: 0 is not after its node 0");
  CHECK(e.model_id() == "overheat-lr");
  std::vector<Firing> out;
  e.evaluate(sample(20, {{"sensor.s1.temp", 6}}), true, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].record->kind == "model_decision");
  CHECK(out[0].record->offline);
  // An unknown kind names the kinds this agent runs.
  auto unknown = e.apply_model({"m-lin", 1, "linear", {}, {}, kT0});
  REQUIRE(unknown);
  CHECK(*unknown == "model kind 'linear' is not supported (this agent runs zscore, logistic and tree_ensemble)");
  // Cleared: no local model any more.
  e.clear_model();
  CHECK(e.local_model().model() == nullptr);
  out.clear();
  e.evaluate(sample(20, {{"sensor.s1.temp", 6}}, kT0 + 1000), false, out);
  CHECK(out.empty());
}

TEST_CASE("evaluating a model allocates nothing", "[agent][model]") {
  for (const schemas::Model& m : {logistic(), trees()}) {
    std::optional<LocalModel> lm;
    // The count sees what compiling allocates.
    CHECK(allocations_during([&] {
            auto compiled = LocalModel::compile(m);
            REQUIRE(compiled.ok());
            lm = std::move(compiled).value();
          }) > 0);
    const schemas::MetricSample s = sample(20, {{"sensor.s1.temp", 6}, {"sensor.pump.vib", 4}, {"other", 1}});
    double total = 0;
    CHECK(allocations_during([&] {
            for (int i = 0; i < 1000; ++i) total += lm->evaluate(s).score;
          }) == 0);
    CHECK(total > 0);
  }
}

TEST_CASE("the largest model the agent accepts fits the codec's message limit", "[agent][model]") {
  // 16 full trees of 255 nodes (4,080 of the 4,096 allowed), every number a double, every
  // split sending missing values right, 61 features of 64-byte names, the longest action.
  schemas::Model m{std::string(58, 'm'), ~std::uint64_t{0}, "tree_ensemble", {{"threshold", 0.1234567890123}}, {}, ~std::uint64_t{0}};
  for (int i = 0; i < 61; ++i) m.features.push_back("sensor." + std::string(53, 'a') + "." + std::to_string(100 + i));
  m.action = std::string(128, 'x');
  for (int t = 0; t < 16; ++t) {
    std::vector<schemas::TreeNode> tree;
    for (std::uint64_t i = 0; i < 255; ++i) {
      if (i < 127) {
        schemas::TreeNode s = split(60, 0.1 + static_cast<double>(i) / 3, 2 * i + 1, 2 * i + 2);
        s.missing = schemas::MissingGoes::right;
        tree.push_back(s);
      } else {
        tree.push_back(leaf(0.2 + static_cast<double>(i) / 7));
      }
    }
    m.trees.push_back(std::move(tree));
  }
  REQUIRE(refusal(m) == "(compiled)");
  const schemas::Bytes wire = schemas::encode_cbor(m);
  // Room left for the signed envelope (topic claims, signature) within the 256 KiB a
  // message may have (codec.h Limits; every broker's max_packet_size adds 4 KiB).
  CHECK(wire.size() < schemas::Limits{}.max_message_bytes - 8 * 1024);
  auto back = schemas::decode_cbor<schemas::Model>(std::span<const std::uint8_t>(wire));
  REQUIRE(back.ok());
  CHECK(back.value() == m);
  // Its JSON, as POST /api/v1/models takes it, fits the same limit.
  CHECK(schemas::encode_json(m).size() < schemas::Limits{}.max_message_bytes);
  WARN("largest model: " << wire.size() << " bytes of CBOR, " << schemas::encode_json(m).size() << " of JSON");
}
