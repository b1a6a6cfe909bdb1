// Anomaly detectors over one stream of values (docs/agent.md, "Pipelines": the
// "anomaly" stage). A detector judges each value against the baseline of the values
// before it, then learns it: a spike is judged against what came before the spike.
//
//   "zscore"    |value - mean| / standard deviation. The mean and variance are
//               Welford's for the first `window` values and an exponentially weighted
//               average with weight 1/window after that (the baseline follows slow drift,
//               not a spike), like DecisionEngine's per-gauge z-score.
//   "mad", "seasonal"  robust and seasonal detectors (another branch builds them; here
//               they are refused as unknown until it lands).
//
// Pure logic, no I/O, no clock; one detector per stream, used on one thread.
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
};

class Detector {
 public:
  virtual ~Detector() = default;
  // Judges `value` against the baseline, then learns it.
  virtual Judgement observe(double value) = 0;
};

// Errors name the field ("kind: unknown detector 'x'", "season: ...").
schemas::Result<std::unique_ptr<Detector>> make_detector(const DetectorParams& params);

}  // namespace nova::agent
