// Anomaly detectors: one per stream of values (a gauge, a pipeline's output), each
// judging a value against what the stream did before, then learning it.
//
//   zscore    |x - mean| / stddev. The running mean and variance are Welford's for the
//             first `window` values and an exponentially weighted average with weight
//             1/window after that, so the baseline follows slow drift but not a spike.
//             Cheap (no memory per value), but a spike or a skewed stream inflates the
//             spread it is measured by.
//   mad       robust: |x - median| / (1.4826 MAD) over the last `window` values (MAD, the
//             median absolute deviation, is one standard deviation of normal noise when
//             scaled by 1.4826). A spike moves neither the median nor the MAD, so one
//             spike does not hide the next; a level shift is the new normal once it has
//             held for half the window.
//   seasonal  for a stream that repeats every `season` values (a daily cycle at a fixed
//             sampling interval): the expected value at each phase of the season is the
//             median of that phase in the last cycles, and the residual (value minus
//             expected) is judged like `mad` over the last `window` residuals. A busy
//             hour that comes every day is then normal, and a spike inside it is not.
//             Phases count values, not time: the stream must be sampled regularly.
//
// Every detector has a floor on its unit of score (1% of the baseline's magnitude, at
// least 0.001): a stream that has never moved (a constant disk %, a sensor reporting the
// same reading) would otherwise call its first change by one quantisation step an
// anomaly of infinite score.
//
// Memory is bounded and allocated when a detector is made: zscore holds three numbers,
// mad `window` values twice (the values and a scratch copy to select the median from),
// seasonal the last 3..15 values of each phase (`season` x that) and `window` residuals
// twice. observe() allocates nothing (a test counts allocations).
// Not thread-safe: one owner calls observe().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "nova/schemas/result.h"

namespace nova::agent {

struct DetectorParams {
  std::string kind = "zscore";      // "zscore", "mad" (robust), "seasonal"
  double threshold = 4;             // score at or above which a value is anomalous; 0 = off
  std::uint32_t min_samples = 60;   // values seen before any is judged
  std::uint32_t window = 600;       // baseline memory, in values
  std::uint32_t season = 0;         // "seasonal": period in values (>= 2)
  friend bool operator==(const DetectorParams&, const DetectorParams&) = default;
};

struct Judgement {
  bool judged = false;     // false until min_samples values were seen
  double score = 0;        // |deviation| in the detector's units (z, robust z, ...)
  bool anomalous = false;  // judged && threshold > 0 && score >= threshold
  // What the value was judged against, for alerts and decision records (when judged):
  // score == |value - expected| / scale.
  double expected = 0;  // the baseline's value: mean, median, or the season's expectation
  double scale = 0;     // one unit of score, in the value's units (> 0)
};

class Detector {
 public:
  virtual ~Detector() = default;
  // Judges `value` against the baseline, then learns it.
  virtual Judgement observe(double value) = 0;
  // Takes `params` keeping what was learnt, if only threshold and min_samples differ
  // from the detector's (a hot reload of a threshold must not forget a day's baseline);
  // false if the change needs a new detector.
  virtual bool retune(const DetectorParams& params) = 0;
};

// The largest `window` of "mad" and "seasonal", and `season` of "seasonal" (each value
// held costs 8 bytes, twice for a window).
inline constexpr std::uint32_t kMaxDetectorWindow = 100000;

// Errors name the field ("kind: unknown detector 'x'", "season: ...").
schemas::Result<std::unique_ptr<Detector>> make_detector(const DetectorParams& params);
// make_detector's checks alone, for validating a configuration without holding the
// memory a detector takes.
schemas::Status check_detector_params(const DetectorParams& params);

}  // namespace nova::agent
