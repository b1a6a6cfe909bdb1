// A local model the agent runs on every metric sample (docs/agent.md, "Local model"):
// a logistic regression or a small tree ensemble, delivered as a retained Model
// (schemas/cddl/model.cddl) and used whether or not the uplink is there.
//
// compile() checks everything the codec could not, and refuses the model whole with the
// first problem, naming the field as the codec's error paths do
// ("model.trees[3][7].left: 5 is not after its node 7"):
//   - kind "logistic": features (1..61), exactly one weight per feature, no trees;
//   - kind "tree_ensemble": features (1..61), 1..64 trees, no weights; in each tree
//     every split's feature index below the number of features, its children after it
//     and inside the tree (so no cycle can be written), every node but the root the
//     child of exactly one split, at most 16 splits on any path, 4096 nodes in all;
//   - params: "threshold" required; "bias" (logistic), "base" (tree_ensemble) and
//     "clear" (<= threshold; default the threshold) optional; nothing else; "combine"
//     and "output" only on a tree ensemble;
//   - feature names are ids, not repeated, and not "score", "threshold" or
//     "model_revision" (a decision's inputs hold them beside the features);
//   - the model id fits in an alert's metric "model.<model id>" (an id: <= 58 bytes).
//   - every number finite (the codec refuses NaN and the infinities already; a model
//     built in memory is checked here too).
//
// evaluate() reads each feature from a sample: the core gauges by their wire names
// ("cpu", "mem", "disk", "load1", "net_rx", "net_tx", "temp", "power", "throttled" as
// 0/1; the optional ones only when the sample has them) and every other name from the
// sample's extra gauges (sensor gauges "sensor.<sensor>.<name>" among them). A feature
// the sample does not hold (or holds as a non-finite value) is missing:
//   - logistic: the sample is not scored (Status::missing_feature);
//   - tree ensemble: each split on it sends the sample to its "missing" child (left
//     unless the node says right), as gradient-boosting libraries do.
// A score that is not finite (a sum that overflowed) is Status::not_finite and decides
// nothing. Scores:
//   logistic       sigmoid(bias + sum_i weights[i] * x[i])
//   tree_ensemble  output(base + combine_t leaf_t(x)), combine sum (default) or mean,
//                  output raw (default) or sigmoid
// with sigmoid(z) = 1 / (1 + e^-z). A split sends x < split left and x >= split right.
//
// Pure logic: no I/O, no clock. evaluate() allocates nothing: the feature values go to a
// buffer sized by compile(), and names are looked up without building strings.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::models {

// A score or threshold as messages and logs write it (%.6g).
std::string score_text(double v);

class LocalModel {
 public:
  static constexpr std::size_t kMaxFeatures = 61;
  static constexpr std::size_t kMaxTrees = 64;
  static constexpr std::size_t kMaxTreeNodes = 255;
  static constexpr std::size_t kMaxNodes = 4096;  // in all the trees together
  static constexpr std::size_t kMaxDepth = 16;    // splits on a path from the root

  // Whether `kind` is one this class runs ("logistic", "tree_ensemble").
  static bool runs(const std::string& kind);
  // The model ready to evaluate, or the first reason it is refused (path: the field).
  static schemas::Result<LocalModel> compile(const schemas::Model& model);

  enum class Status { scored, missing_feature, not_finite };
  struct Evaluation {
    Status status = Status::scored;
    double score = 0;  // when scored
  };
  // Scores one sample. Afterwards feature_values() holds what was read (a missing one
  // as NaN).
  Evaluation evaluate(const schemas::MetricSample& sample);

  const std::string& model_id() const { return model_id_; }
  std::uint64_t revision() const { return revision_; }
  const std::string& kind() const { return kind_; }
  double threshold() const { return threshold_; }
  double clear() const { return clear_; }  // the score below which a decision ends
  const std::vector<std::string>& features() const { return features_; }
  std::span<const double> feature_values() const { return values_; }
  bool sigmoid() const { return sigmoid_; }  // the score is a sigmoid's, in 0..1
  // What a decision says it did: the model's "action", or "alerted".
  const std::string& action() const { return action_; }

 private:
  // Where a feature's value comes from: a core field of the sample, or an extra gauge.
  enum class Source : std::uint8_t { cpu, mem, disk, load1, net_rx, net_tx, temp, power, throttled, extra };
  struct Node {
    double value = 0;     // split: the split value; leaf: the leaf value
    std::uint32_t feature = 0;
    std::uint16_t left = 0;   // relative to the tree's first node; 0 on a leaf
    std::uint16_t right = 0;
    bool leaf = false;
    bool missing_right = false;
  };

  bool read_features(const schemas::MetricSample& sample);  // false: one is missing
  double tree_leaf(std::size_t first, std::size_t tree_end) const;

  std::string model_id_;
  std::uint64_t revision_ = 0;
  std::string kind_;
  bool logistic_ = true;
  std::vector<std::string> features_;
  std::vector<Source> sources_;
  std::vector<double> values_;   // one per feature, refilled by each evaluation
  std::vector<double> weights_;  // logistic
  double bias_ = 0;              // logistic "bias", tree ensemble "base"
  std::vector<Node> nodes_;      // tree ensemble: every tree's nodes, one after another
  std::vector<std::uint32_t> tree_starts_;  // the first node of each tree, then nodes_.size()
  bool mean_ = false;
  bool sigmoid_ = true;
  double threshold_ = 0;
  double clear_ = 0;
  std::string action_;
};

}  // namespace nova::models
