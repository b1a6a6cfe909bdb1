// Labelled series for judging anomaly detectors (detectors.h): synthetic streams whose
// anomalies are known, made from a seed so that every run sees the same values, and the
// precision and recall of a detector on them.
//
// One value per second, 5,000 values, noise of standard deviation 1 around 10:
//   noise        Gaussian noise only: every flag is a false positive
//   heavy_noise  Laplace noise (heavier tails, like many real idle gauges), no anomaly
//   spikes       noise, and about 1% of values replaced by a spike of 8..12 sigma
//                (either sign), at least 20 values apart; each spike is one event
//   level_shift  noise, and every 1,000 values the level steps by 8 sigma (either
//                sign); an event lasts 300 values from the step (the new level is
//                normal once it has held that long)
//   drift        noise, and every 1,250 values a ramp of 300 values adds 10 sigma in
//                all; an event is the ramp and the 300 values after it
//   seasonal     noise, and a "busy hour": 5 values of every 100 are 20 sigma higher
//                (normal, not an event), and 1% spikes of 8..12 sigma as above
//
// Scoring: a flag inside an event is a true positive, any other a false positive; an
// event is detected if any of its values is flagged. Precision is true flags / flags,
// recall is detected events / events.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nova/agent/detectors.h"

namespace nova::testing {

enum class Pattern { noise, heavy_noise, spikes, level_shift, drift, seasonal };
inline constexpr Pattern kPatterns[] = {Pattern::noise,       Pattern::heavy_noise, Pattern::spikes,
                                        Pattern::level_shift, Pattern::drift,       Pattern::seasonal};
inline constexpr std::size_t kSeasonalPeriod = 100;  // of the seasonal pattern

std::string name_of(Pattern p);

struct LabelledSeries {
  std::vector<double> values;
  std::vector<std::pair<std::size_t, std::size_t>> events;  // [begin, end) of each anomaly
};

LabelledSeries make_series(Pattern pattern, std::uint64_t seed, std::size_t length = 5000);

struct Quality {
  std::size_t values = 0;
  std::size_t events = 0;
  std::size_t detected = 0;    // events with at least one flag
  std::size_t flags = 0;       // values judged anomalous
  std::size_t true_flags = 0;  // of them, inside an event
  void add(const Quality& q);
  double precision() const;  // 1 when nothing was flagged
  double recall() const;     // 1 when there was no event
  std::size_t false_flags() const { return flags - true_flags; }
};

// Runs a fresh detector made from `params` over `series`.
Quality judge_series(const agent::DetectorParams& params, const LabelledSeries& series);

}  // namespace nova::testing
