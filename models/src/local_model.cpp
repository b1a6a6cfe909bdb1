#include "nova/models/local_model.h"

#include <cmath>
#include <cstdio>
#include <string_view>
#include <utility>

#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"

namespace nova::models {

namespace {

constexpr std::string_view kLogistic = "logistic";
constexpr std::string_view kTreeEnsemble = "tree_ensemble";
// A decision's inputs hold these beside the features (model_decisions.cpp).
constexpr std::string_view kReservedInputs[] = {"score", "threshold", "model_revision"};
// "model." + model_id must be an id (an alert's metric).
constexpr std::size_t kMaxModelIdBytes = topics::kMaxIdBytes - 6;

schemas::Error refuse(std::string path, std::string reason) { return schemas::Error{std::move(path), std::move(reason)}; }

// 1 / (1 + e^-z) without overflow for either sign of z.
double logistic_function(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

}  // namespace

std::string score_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

bool LocalModel::runs(const std::string& kind) { return kind == kLogistic || kind == kTreeEnsemble; }

schemas::Result<LocalModel> LocalModel::compile(const schemas::Model& m) {
  LocalModel out;
  if (!runs(m.kind)) return refuse("model.kind", "'" + m.kind + "' is not logistic or tree_ensemble");
  out.logistic_ = m.kind == kLogistic;
  if (m.model_id.size() > kMaxModelIdBytes) {
    return refuse("model.model_id", "at most " + std::to_string(kMaxModelIdBytes) +
                                        " bytes for a model that decides (its alerts' metric is model.<model_id>)");
  }
  // Features.
  if (m.features.empty() || m.features.size() > kMaxFeatures) {
    return refuse("model.features", std::to_string(m.features.size()) + " features, expected 1.." +
                                        std::to_string(kMaxFeatures));
  }
  for (std::size_t i = 0; i < m.features.size(); ++i) {
    const std::string& name = m.features[i];
    const std::string path = "model.features[" + std::to_string(i) + "]";
    if (!topics::Id::valid(name)) return refuse(path, "'" + schemas::printable_utf8(name) + "' is not an id");
    for (std::string_view reserved : kReservedInputs) {
      if (name == reserved) return refuse(path, "'" + name + "' is reserved (a decision's inputs hold it beside the features)");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (m.features[j] == name) return refuse(path, "'" + name + "' is repeated (features[" + std::to_string(j) + "])");
    }
    static constexpr std::pair<std::string_view, Source> kCore[] = {
        {"cpu", Source::cpu},       {"mem", Source::mem},       {"disk", Source::disk},
        {"load1", Source::load1},   {"net_rx", Source::net_rx}, {"net_tx", Source::net_tx},
        {"temp", Source::temp},     {"power", Source::power},   {"throttled", Source::throttled}};
    Source source = Source::extra;
    for (const auto& [core, s] : kCore) {
      if (name == core) source = s;
    }
    out.sources_.push_back(source);
  }
  out.features_ = m.features;
  out.values_.assign(m.features.size(), std::nan(""));

  // Params.
  const std::string_view offset_param = out.logistic_ ? "bias" : "base";
  std::optional<double> threshold, clear;
  for (const auto& [name, value] : m.params) {
    if (!std::isfinite(value)) return refuse("model.params." + name, "not a finite number");
    if (name == "threshold") {
      threshold = value;
    } else if (name == "clear") {
      clear = value;
    } else if (name == offset_param) {
      out.bias_ = value;
    } else {
      return refuse("model.params." + name, "not a parameter of a " + m.kind + " model (threshold, clear, " +
                                                std::string(offset_param) + ")");
    }
  }
  if (!threshold) return refuse("model.params.threshold", "required: the score at which the model decides");
  out.threshold_ = *threshold;
  out.clear_ = clear.value_or(*threshold);
  if (out.clear_ > out.threshold_) {
    return refuse("model.params.clear", score_text(out.clear_) + " is above the threshold " + score_text(out.threshold_));
  }

  // Shape.
  if (out.logistic_) {
    if (!m.trees.empty()) return refuse("model.trees", "a logistic model has no trees");
    if (m.combine) return refuse("model.combine", "a logistic model has no trees to combine");
    if (m.output && *m.output != schemas::ModelOutput::sigmoid) {
      return refuse("model.output", "a logistic model's score is always a sigmoid");
    }
    if (m.weights.size() != m.features.size()) {
      return refuse("model.weights", std::to_string(m.weights.size()) + " weights for " +
                                         std::to_string(m.features.size()) + " features (one each)");
    }
    for (std::size_t i = 0; i < m.weights.size(); ++i) {
      if (!std::isfinite(m.weights[i])) return refuse("model.weights[" + std::to_string(i) + "]", "not a finite number");
    }
    out.weights_ = m.weights;
  } else {
    if (!m.weights.empty()) return refuse("model.weights", "a tree_ensemble has no weights");
    if (m.trees.empty() || m.trees.size() > kMaxTrees) {
      return refuse("model.trees", std::to_string(m.trees.size()) + " trees, expected 1.." + std::to_string(kMaxTrees));
    }
    out.mean_ = m.combine == schemas::TreeCombine::mean;
    out.sigmoid_ = m.output == schemas::ModelOutput::sigmoid;
    std::size_t total = 0;
    for (const auto& tree : m.trees) total += tree.size();
    if (total > kMaxNodes) {
      return refuse("model.trees", std::to_string(total) + " nodes in all, at most " + std::to_string(kMaxNodes));
    }
    out.nodes_.reserve(total);
    std::vector<std::uint8_t> parents;
    std::vector<std::uint8_t> depth;
    for (std::size_t t = 0; t < m.trees.size(); ++t) {
      const auto& tree = m.trees[t];
      const std::string tree_path = "model.trees[" + std::to_string(t) + "]";
      if (tree.empty() || tree.size() > kMaxTreeNodes) {
        return refuse(tree_path, std::to_string(tree.size()) + " nodes, expected 1.." + std::to_string(kMaxTreeNodes));
      }
      out.tree_starts_.push_back(static_cast<std::uint32_t>(out.nodes_.size()));
      parents.assign(tree.size(), 0);
      depth.assign(tree.size(), 0);
      for (std::size_t i = 0; i < tree.size(); ++i) {
        const schemas::TreeNode& n = tree[i];
        const std::string node_path = tree_path + "[" + std::to_string(i) + "]";
        Node c;
        const double value = n.leaf ? *n.leaf : n.split;
        if (!std::isfinite(value)) return refuse(node_path + (n.leaf ? ".leaf" : ".split"), "not a finite number");
        if (n.leaf) {
          c.leaf = true;
          c.value = *n.leaf;
          out.nodes_.push_back(c);
          continue;
        }
        if (n.feature >= m.features.size()) {
          return refuse(node_path + ".feature", std::to_string(n.feature) + " is not below the number of features (" +
                                                    std::to_string(m.features.size()) + ")");
        }
        // Children come after their parent: depth only grows along a path, so no path
        // can come back to a node, and one forward pass sees each parent before its children.
        for (const auto& [key, child_index] : {std::pair{"left", n.left}, std::pair{"right", n.right}}) {
          const std::string path = node_path + "." + key;
          if (child_index >= tree.size()) {
            return refuse(path, std::to_string(child_index) + " is not a node of this tree (it has " +
                                    std::to_string(tree.size()) + ")");
          }
          const auto child = static_cast<std::size_t>(child_index);  // < tree.size(): fits a size_t
          if (child <= i) return refuse(path, std::to_string(child) + " is not after its node " + std::to_string(i));
          if (++parents[child] > 1) {
            return refuse(path, "node " + std::to_string(child) + " is already the child of another node");
          }
          depth[child] = static_cast<std::uint8_t>(depth[i] + 1);
          if (depth[child] > kMaxDepth) {
            return refuse(path, "more than " + std::to_string(kMaxDepth) + " splits from the root to node " +
                                    std::to_string(child));
          }
        }
        c.value = n.split;
        c.feature = static_cast<std::uint32_t>(n.feature);
        c.left = static_cast<std::uint16_t>(n.left);
        c.right = static_cast<std::uint16_t>(n.right);
        c.missing_right = n.missing == schemas::MissingGoes::right;
        out.nodes_.push_back(c);
      }
      for (std::size_t i = 1; i < tree.size(); ++i) {
        if (parents[i] == 0) return refuse(tree_path + "[" + std::to_string(i) + "]", "not reachable from the root");
      }
    }
    out.tree_starts_.push_back(static_cast<std::uint32_t>(out.nodes_.size()));
  }
  if (out.sigmoid_ && !(out.threshold_ >= 0 && out.threshold_ <= 1)) {
    return refuse("model.params.threshold", score_text(out.threshold_) + " is outside 0..1, where a sigmoid score lies");
  }
  out.model_id_ = m.model_id;
  out.revision_ = m.revision;
  out.kind_ = m.kind;
  out.action_ = m.action.value_or("alerted");
  return out;
}

bool LocalModel::read_features(const schemas::MetricSample& s) {
  bool complete = true;
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    std::optional<double> v;
    switch (sources_[i]) {
      case Source::cpu: v = s.cpu_pct; break;
      case Source::mem: v = s.mem_pct; break;
      case Source::disk: v = s.disk_pct; break;
      case Source::load1: v = s.load1; break;
      case Source::net_rx: v = s.net_rx_bps; break;
      case Source::net_tx: v = s.net_tx_bps; break;
      case Source::temp: v = s.temp_c; break;
      case Source::power: v = s.power_w; break;
      case Source::throttled:
        if (s.throttled) v = *s.throttled ? 1.0 : 0.0;
        break;
      case Source::extra:
        if (const auto it = s.extra.find(features_[i]); it != s.extra.end()) v = it->second;
        break;
    }
    const bool present = v && std::isfinite(*v);
    values_[i] = present ? *v : std::nan("");
    complete = complete && present;
  }
  return complete;
}

double LocalModel::tree_leaf(std::size_t first, std::size_t tree_end) const {
  std::size_t i = first;
  // At most kMaxDepth steps (compile), and each step moves forward within the tree.
  while (i < tree_end && !nodes_[i].leaf) {
    const Node& n = nodes_[i];
    const double x = values_[n.feature];
    const bool right = std::isnan(x) ? n.missing_right : !(x < n.value);
    i = first + (right ? n.right : n.left);
  }
  return nodes_[i].value;
}

LocalModel::Evaluation LocalModel::evaluate(const schemas::MetricSample& sample) {
  const bool complete = read_features(sample);
  double z = bias_;
  if (logistic_) {
    if (!complete) return {Status::missing_feature, 0};
    for (std::size_t i = 0; i < weights_.size(); ++i) z += weights_[i] * values_[i];
  } else {
    double sum = 0;
    const std::size_t trees = tree_starts_.size() - 1;
    for (std::size_t t = 0; t < trees; ++t) sum += tree_leaf(tree_starts_[t], tree_starts_[t + 1]);
    z += mean_ ? sum / static_cast<double>(trees) : sum;
  }
  const double score = sigmoid_ ? logistic_function(z) : z;
  if (std::isnan(z) || !std::isfinite(score)) return {Status::not_finite, 0};
  return {Status::scored, score};
}

}  // namespace nova::models
