// check_model (models/include/nova/models/model_check.h): what nova-cloud refuses before
// it pushes a model, with the field named as an agent would name it.
#include <catch2/catch.hpp>

#include "nova/models/local_model.h"
#include "tree_nodes.h"
#include "nova/models/model_check.h"

using namespace nova;

namespace {

schemas::Model zscore(std::map<std::string, double> params) {
  schemas::Model m;
  m.model_id = "z1";
  m.revision = 1;
  m.kind = "zscore";
  m.params = std::move(params);
  return m;
}

std::string problem(const schemas::Model& m) {
  const schemas::Status st = models::check_model(m);
  return st ? std::string() : st.error().message();
}

}  // namespace

TEST_CASE("a zscore model's parameters are checked and read", "[models]") {
  CHECK(problem(zscore({})).empty());
  CHECK(problem(zscore({{"threshold", 0}, {"min_samples", 2}, {"window", 1}})).empty());
  CHECK(problem(zscore({{"threshold", -1}})) == "model.params.threshold: must be >= 0 (0 = off)");
  CHECK(problem(zscore({{"min_samples", 1}})) == "model.params.min_samples: must be a whole number 2..1000000");
  CHECK(problem(zscore({{"window", 2.5}})) == "model.params.window: must be a whole number 1..1000000");
  CHECK(problem(zscore({{"window", 2e6}})) == "model.params.window: must be a whole number 1..1000000");
  CHECK(problem(zscore({{"bias", 1}})) ==
        "model.params.bias: not a parameter of a zscore model (threshold, min_samples, window)");

  const auto read = models::zscore_model(zscore({{"threshold", 5}, {"window", 100}}));
  REQUIRE(read);
  CHECK(read->threshold == 5);
  CHECK_FALSE(read->min_samples.has_value());
  CHECK(read->window == 100u);
}

TEST_CASE("a kind no agent runs is refused and local models are compiled", "[models]") {
  schemas::Model linear = zscore({});
  linear.kind = "linear";
  CHECK(problem(linear) == "model.kind: 'linear' is not one agents run (zscore, logistic, tree_ensemble)");

  schemas::Model lr{"lr", 1, "logistic", {{"bias", -1}, {"threshold", 0.8}}, {0.5}, 0};
  lr.features = {"cpu"};
  CHECK(problem(lr).empty());
  lr.weights.push_back(1);  // two weights for one feature
  CHECK(problem(lr) == "model.weights: 2 weights for 1 features (one each)");

  // A tree whose root points back at itself: the reason LocalModel::compile gives.
  schemas::Model trees{"t", 1, "tree_ensemble", {{"threshold", 1}}, {}, 0};
  trees.features = {"cpu"};
  trees.trees = {{test::split(0, 1, 0, 1), test::leaf(1)}};
  CHECK(problem(trees) == "model.trees[0][0].left: 0 is not after its node 0");
  CHECK(problem(trees) == models::LocalModel::compile(trees).error().message());
}
