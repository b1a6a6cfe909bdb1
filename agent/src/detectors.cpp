#include "nova/agent/detectors.h"

#include <algorithm>
#include <cmath>

namespace nova::agent {
namespace {

using schemas::Error;

// Welford's mean and variance for the first `window` values, then an exponentially
// weighted average with weight 1/window (decisions.h explains why).
class ZScore final : public Detector {
 public:
  explicit ZScore(const DetectorParams& p) : p_(p) {}

  Judgement observe(double value) override {
    Judgement j;
    if (n_ >= p_.min_samples) {
      j.judged = true;
      const double sd = std::sqrt(std::max(var_, 0.0));
      // A flat baseline (sd 0) still has a scale: a step off it is an anomaly, equality is not.
      const double scale = std::max(sd, 1e-9 * std::max(1.0, std::abs(mean_)));
      j.score = std::abs(value - mean_) / scale;
      j.anomalous = p_.threshold > 0 && j.score >= p_.threshold;
    }
    learn(value);
    return j;
  }

 private:
  void learn(double v) {
    ++n_;
    if (n_ <= p_.window) {
      const double delta = v - mean_;
      mean_ += delta / static_cast<double>(n_);
      m2_ += delta * (v - mean_);
      var_ = m2_ / static_cast<double>(n_);
      return;
    }
    const double a = 1.0 / static_cast<double>(p_.window);
    const double delta = v - mean_;
    mean_ += a * delta;
    var_ = (1 - a) * (var_ + a * delta * delta);
  }

  DetectorParams p_;
  std::uint64_t n_ = 0;
  double mean_ = 0, m2_ = 0, var_ = 0;
};

}  // namespace

schemas::Result<std::unique_ptr<Detector>> make_detector(const DetectorParams& params) {
  if (!std::isfinite(params.threshold) || params.threshold < 0) {
    return Error{"threshold", "must be a finite number >= 0"};
  }
  if (params.min_samples < 2) return Error{"min_samples", "must be >= 2"};
  if (params.window < 1) return Error{"window", "must be >= 1"};
  if (params.kind == "zscore") return std::unique_ptr<Detector>(std::make_unique<ZScore>(params));
  return Error{"kind", "unknown detector '" + params.kind + "' (known: zscore)"};
}

}  // namespace nova::agent
