#include "nova/models/model_check.h"

#include <cmath>
#include <string>

#include "nova/models/local_model.h"
#include "nova/schemas/codec.h"

namespace nova::models {

schemas::Result<ZScoreModel> zscore_model(const schemas::Model& model) {
  ZScoreModel p;
  // Counts are whole numbers in a range; a fraction or a huge value is a mistake upstream,
  // not something to round.
  auto count = [](double v, double min) -> std::optional<std::uint32_t> {
    if (!(v >= min) || v > 1e6 || v != std::floor(v)) return std::nullopt;
    return static_cast<std::uint32_t>(v);
  };
  for (const auto& [name, value] : model.params) {
    const std::string path = "model.params." + name;
    if (name == "threshold") {
      if (!(value >= 0) || !std::isfinite(value)) return schemas::Error{path, "must be >= 0 (0 = off)"};
      p.threshold = value;
    } else if (name == "min_samples") {
      p.min_samples = count(value, 2);
      if (!p.min_samples) return schemas::Error{path, "must be a whole number 2..1000000"};
    } else if (name == "window") {
      p.window = count(value, 1);
      if (!p.window) return schemas::Error{path, "must be a whole number 1..1000000"};
    } else {
      return schemas::Error{path, "not a parameter of a zscore model (threshold, min_samples, window)"};
    }
  }
  return p;
}

schemas::Status check_model(const schemas::Model& model) {
  if (model.kind == "zscore") {
    auto p = zscore_model(model);
    if (!p) return p.error();
    return schemas::Ok{};
  }
  if (!LocalModel::runs(model.kind)) {
    return schemas::Error{"model.kind", "'" + schemas::printable_utf8(model.kind) +
                                            "' is not one agents run (zscore, logistic, tree_ensemble)"};
  }
  auto compiled = LocalModel::compile(model);
  if (!compiled) return compiled.error();
  return schemas::Ok{};
}

}  // namespace nova::models
