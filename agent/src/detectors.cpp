#include "nova/agent/detectors.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

namespace nova::agent {

namespace {

// The unit of score below which a stream counts as steady: 1% of its baseline's
// magnitude, at least 0.001 (detectors.h says why).
double spread_floor(double baseline) { return std::max(1e-3, 0.01 * std::abs(baseline)); }

// One normal standard deviation in MADs.
constexpr double kMadToSigma = 1.4826;

Judgement judge(const DetectorParams& p, double value, double expected, double scale) {
  Judgement j;
  j.judged = true;
  j.expected = expected;
  j.scale = scale;
  j.score = std::abs(value - expected) / scale;
  j.anomalous = p.threshold > 0 && j.score >= p.threshold;
  return j;
}

bool same_shape(const DetectorParams& a, const DetectorParams& b) {
  return a.kind == b.kind && a.window == b.window && a.season == b.season;
}

// The median of `values`, reordering them (nth_element: linear time, no allocation).
double median_of(std::span<double> values) {
  const std::size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid), values.end());
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid));
  return (lower + upper) / 2;
}

// The last `capacity` values of a stream, oldest overwritten first.
class Ring {
 public:
  explicit Ring(std::size_t capacity) : values_(capacity) {}
  void push(double v) {
    values_[next_] = v;
    next_ = (next_ + 1) % values_.size();
    size_ = std::min(size_ + 1, values_.size());
  }
  std::size_t size() const { return size_; }
  // The values held, in no particular order.
  std::span<const double> held() const { return {values_.data(), size_}; }

 private:
  std::vector<double> values_;
  std::size_t next_ = 0;
  std::size_t size_ = 0;
};

// Median and MAD of a window of values, with a scratch buffer of the window's size made
// once, so that estimating allocates nothing.
class RobustWindow {
 public:
  explicit RobustWindow(std::size_t capacity) : ring_(capacity), scratch_(capacity) {}
  void push(double v) { ring_.push(v); }
  std::size_t size() const { return ring_.size(); }
  struct Estimate {
    double median;
    double scale;  // 1.4826 MAD, floored
  };
  // Precondition: size() > 0.
  Estimate estimate() {
    const std::span<const double> held = ring_.held();
    const std::span<double> work(scratch_.data(), held.size());
    std::copy(held.begin(), held.end(), work.begin());
    const double median = median_of(work);
    for (double& v : work) v = std::abs(v - median);  // work holds the same values, reordered
    const double mad = median_of(work);
    return {median, std::max(kMadToSigma * mad, spread_floor(median))};
  }

 private:
  Ring ring_;
  std::vector<double> scratch_;
};

// What every detector shares: its parameters, of which threshold and min_samples may
// change under it.
class Tunable : public Detector {
 public:
  explicit Tunable(const DetectorParams& p) : p_(p) {}
  bool retune(const DetectorParams& p) override {
    if (!same_shape(p, p_)) return false;
    p_ = p;
    return true;
  }

 protected:
  DetectorParams p_;
};

class ZScore final : public Tunable {
 public:
  explicit ZScore(const DetectorParams& p) : Tunable(p) {}
  Judgement observe(double value) override {
    Judgement j;
    if (n_ >= p_.min_samples) {
      // Judged against the baseline before this value joins it, or a spike would widen
      // the very spread it is measured by.
      j = judge(p_, value, mean_, std::max(std::sqrt(var_), spread_floor(mean_)));
    }
    // Welford for the first `window` values, then an exponentially weighted mean and
    // variance with weight 1/window: one update formula for both (alpha = 1/min(n, window)).
    ++n_;
    const double alpha = 1.0 / static_cast<double>(std::min<std::uint64_t>(n_, std::max<std::uint32_t>(p_.window, 1)));
    const double diff = value - mean_;
    const double step = alpha * diff;
    mean_ += step;
    var_ = (1 - alpha) * (var_ + diff * step);
    return j;
  }

 private:
  std::uint64_t n_ = 0;
  double mean_ = 0;
  double var_ = 0;  // population variance
};

class Mad final : public Tunable {
 public:
  explicit Mad(const DetectorParams& p) : Tunable(p), window_(p.window) {}
  Judgement observe(double value) override {
    Judgement j;
    if (n_ >= p_.min_samples && window_.size() > 0) {
      const auto e = window_.estimate();
      j = judge(p_, value, e.median, e.scale);
    }
    ++n_;
    window_.push(value);
    return j;
  }

 private:
  std::uint64_t n_ = 0;
  RobustWindow window_;
};

class Seasonal final : public Tunable {
 public:
  // Each phase keeps its last `cycles` values: at least 3 (a median that one odd cycle
  // cannot move), at most 15 or what `window` holds.
  static std::uint32_t cycles_of(const DetectorParams& p) { return std::clamp<std::uint32_t>(p.window / p.season, 3, 15); }

  explicit Seasonal(const DetectorParams& p)
      : Tunable(p), cycles_(cycles_of(p)), phases_(std::size_t{p.season} * cycles_), phase_scratch_(cycles_),
        residuals_(p.window) {}

  Judgement observe(double value) override {
    const auto phase = static_cast<std::size_t>(n_ % p_.season);
    const std::uint64_t seen = n_ / p_.season;  // earlier values of this phase
    Judgement j;
    if (seen > 0) {
      const auto held = static_cast<std::size_t>(std::min<std::uint64_t>(seen, cycles_));
      const std::span<double> work(phase_scratch_.data(), held);
      std::copy_n(phases_.begin() + static_cast<std::ptrdiff_t>(phase * cycles_), held, work.begin());
      const double expected = median_of(work);
      const double residual = value - expected;
      // Two cycles before any judgement: one cycle's values are their own expectation.
      if (n_ >= p_.min_samples && seen >= 2 && residuals_.size() > 0) {
        const auto e = residuals_.estimate();
        // The floor follows the stream's magnitude, not the residuals' (which hover at 0).
        const double scale = std::max(e.scale, spread_floor(expected));
        j = judge(p_, value, expected + e.median, scale);
      }
      residuals_.push(residual);
    }
    phases_[phase * cycles_ + static_cast<std::size_t>(seen % cycles_)] = value;
    ++n_;
    return j;
  }

 private:
  std::uint32_t cycles_;
  std::uint64_t n_ = 0;
  std::vector<double> phases_;  // phase-major: the last `cycles_` values of each phase
  std::vector<double> phase_scratch_;
  RobustWindow residuals_;
};

}  // namespace

schemas::Status check_detector_params(const DetectorParams& p) {
  using schemas::Error;
  const bool zscore = p.kind == "zscore";
  const bool mad = p.kind == "mad";
  const bool seasonal = p.kind == "seasonal";
  if (!zscore && !mad && !seasonal) return Error{"kind", "unknown detector '" + p.kind + "' (zscore, mad, seasonal)"};
  if (!(p.threshold >= 0) || !std::isfinite(p.threshold)) return Error{"threshold", "must be a finite score >= 0 (0 = off)"};
  if (p.min_samples < 2) return Error{"min_samples", "must be at least 2 (a baseline needs two values)"};
  if (p.window < 1) return Error{"window", "must be at least 1"};
  if (!zscore && p.window > kMaxDetectorWindow) {
    return Error{"window", "at most " + std::to_string(kMaxDetectorWindow) + " for " + p.kind + " (it holds every value)"};
  }
  if (seasonal) {
    if (p.season < 2) return Error{"season", "a seasonal detector needs a period of at least 2 values"};
    if (p.season > kMaxDetectorWindow) return Error{"season", "at most " + std::to_string(kMaxDetectorWindow) + " values"};
  } else if (p.season != 0) {
    return Error{"season", "only a seasonal detector has a season (kind is " + p.kind + ")"};
  }
  return schemas::Ok{};
}

schemas::Result<std::unique_ptr<Detector>> make_detector(const DetectorParams& p) {
  if (auto checked = check_detector_params(p); !checked) return checked.error();
  if (p.kind == "zscore") return std::unique_ptr<Detector>(std::make_unique<ZScore>(p));
  if (p.kind == "mad") return std::unique_ptr<Detector>(std::make_unique<Mad>(p));
  return std::unique_ptr<Detector>(std::make_unique<Seasonal>(p));
}

}  // namespace nova::agent
