#include "labelled_series.h"

#include <cmath>
#include <numbers>
#include <random>
#include <stdexcept>

namespace nova::testing {

namespace {

// Uniform in (0, 1) and normal values from mt19937_64 (whose output the standard fixes)
// by our own formulas, so the series are the same with any standard library.
class Noise {
 public:
  explicit Noise(std::uint64_t seed) : rng_(seed) {}
  double uniform() { return (static_cast<double>(rng_() >> 11) + 0.5) * 0x1.0p-53; }
  double normal() {  // Box-Muller
    return std::sqrt(-2 * std::log(uniform())) * std::cos(2 * std::numbers::pi * uniform());
  }
  double laplace() {  // standard deviation 1: scale 1/sqrt(2)
    const double u = uniform() - 0.5;
    return -std::copysign(std::log(1 - 2 * std::abs(u)), u) / std::numbers::sqrt2;
  }
  double sign() { return uniform() < 0.5 ? -1 : 1; }

 private:
  std::mt19937_64 rng_;
};

constexpr double kLevel = 10;

// About 1% of values become spikes of 8..12 sigma, at least 20 values apart, each an event.
void add_spikes(LabelledSeries& s, Noise& n, std::size_t from) {
  for (std::size_t i = from; i < s.values.size(); ++i) {
    if (n.uniform() >= 0.01) continue;
    s.values[i] += n.sign() * (8 + 4 * n.uniform());
    s.events.emplace_back(i, i + 1);
    i += 20;
  }
}

}  // namespace

std::string name_of(Pattern p) {
  switch (p) {
    case Pattern::noise: return "noise";
    case Pattern::heavy_noise: return "heavy_noise";
    case Pattern::spikes: return "spikes";
    case Pattern::level_shift: return "level_shift";
    case Pattern::drift: return "drift";
    case Pattern::seasonal: return "seasonal";
  }
  return "";
}

LabelledSeries make_series(Pattern pattern, std::uint64_t seed, std::size_t length) {
  Noise n(seed);
  LabelledSeries s;
  s.values.resize(length);
  for (double& v : s.values) v = kLevel + (pattern == Pattern::heavy_noise ? n.laplace() : n.normal());
  // Anomalies start after a warm-up of 700 values: every detector has its baseline by then.
  constexpr std::size_t kWarm = 700;
  switch (pattern) {
    case Pattern::noise:
    case Pattern::heavy_noise:
      break;
    case Pattern::spikes:
      add_spikes(s, n, kWarm);
      break;
    case Pattern::level_shift:
      for (std::size_t at = 1000; at < length; at += 1000) {
        const double step = n.sign() * 8;
        for (std::size_t i = at; i < length; ++i) s.values[i] += step;  // every later value
        s.events.emplace_back(at, std::min(at + 300, length));
      }
      break;
    case Pattern::drift: {
      double offset = 0;
      std::size_t ramp_end = 0;
      for (std::size_t i = 0; i < length; ++i) {
        if (i >= 1250 && i % 1250 == 0) {
          ramp_end = i + 300;
          s.events.emplace_back(i, std::min(i + 600, length));
        }
        if (i < ramp_end) offset += 10.0 / 300;
        s.values[i] += offset;
      }
      break;
    }
    case Pattern::seasonal:
      for (std::size_t i = 0; i < length; ++i) {
        if (i % kSeasonalPeriod >= 60 && i % kSeasonalPeriod < 65) s.values[i] += 20;
      }
      add_spikes(s, n, kWarm);
      break;
  }
  return s;
}

void Quality::add(const Quality& q) {
  values += q.values;
  events += q.events;
  detected += q.detected;
  flags += q.flags;
  true_flags += q.true_flags;
}

double Quality::precision() const { return flags == 0 ? 1.0 : static_cast<double>(true_flags) / static_cast<double>(flags); }
double Quality::recall() const { return events == 0 ? 1.0 : static_cast<double>(detected) / static_cast<double>(events); }

Quality judge_series(const agent::DetectorParams& params, const LabelledSeries& series) {
  auto made = agent::make_detector(params);
  if (!made) throw std::invalid_argument(made.error().message());
  agent::Detector& d = *made.value();
  Quality q;
  q.values = series.values.size();
  q.events = series.events.size();
  std::vector<bool> in_event(series.values.size(), false);
  std::vector<bool> hit(series.events.size(), false);
  std::vector<std::size_t> event_of(series.values.size(), 0);
  for (std::size_t e = 0; e < series.events.size(); ++e) {
    for (std::size_t i = series.events[e].first; i < series.events[e].second; ++i) {
      in_event[i] = true;
      event_of[i] = e;
    }
  }
  for (std::size_t i = 0; i < series.values.size(); ++i) {
    if (!d.observe(series.values[i]).anomalous) continue;
    ++q.flags;
    if (in_event[i]) {
      ++q.true_flags;
      hit[event_of[i]] = true;
    }
  }
  for (bool h : hit) q.detected += h ? 1 : 0;
  return q;
}

}  // namespace nova::testing
