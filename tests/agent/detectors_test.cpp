// Anomaly detectors (detectors.h): parameters refused by field, each detector's
// behaviour on small hand-made streams, retuning, and their quality on labelled series
// (labelled_series.h), whose figures docs/benchmarks.md ("Anomaly detectors") quotes.
#include <catch2/catch.hpp>

#include <cstdio>
#include <map>

#include "labelled_series.h"
#include "nova/agent/detectors.h"

using namespace nova;
using namespace nova::agent;
using nova::testing::Pattern;

namespace {

DetectorParams params(std::string kind, double threshold, std::uint32_t season = 0) {
  DetectorParams p;
  p.kind = std::move(kind);
  p.threshold = threshold;
  p.season = season;
  return p;
}

std::unique_ptr<Detector> make(const DetectorParams& p) {
  auto d = make_detector(p);
  INFO((d ? "" : d.error().message()));
  REQUIRE(d.ok());
  return std::move(d).value();
}

// The field a refusal names.
std::string refused_field(const DetectorParams& p) {
  auto d = make_detector(p);
  return d ? "(accepted)" : d.error().path;
}

}  // namespace

TEST_CASE("make_detector refuses bad parameters naming the field", "[agent][detectors]") {
  CHECK(refused_field(params("linear", 4)) == "kind");
  CHECK_THAT(make_detector(params("linear", 4)).error().message(), Catch::Contains("unknown detector 'linear'"));
  CHECK(refused_field(params("mad", -1)) == "threshold");
  CHECK(refused_field(params("mad", std::nan(""))) == "threshold");
  CHECK(refused_field(params("seasonal", 4)) == "season");
  CHECK(refused_field(params("seasonal", 4, 1)) == "season");
  CHECK(refused_field(params("seasonal", 4, kMaxDetectorWindow + 1)) == "season");
  CHECK(refused_field(params("mad", 4, 24)) == "season");
  auto p = params("mad", 4);
  p.window = kMaxDetectorWindow + 1;
  CHECK(refused_field(p) == "window");
  p.kind = "zscore";  // holds no values: any window
  CHECK(refused_field(p) == "(accepted)");
  p.min_samples = 1;
  CHECK(refused_field(p) == "min_samples");
  CHECK(refused_field(params("seasonal", 0, 24)) == "(accepted)");  // threshold 0: off
}

TEST_CASE("the z-score detector judges nothing before min_samples and keeps its old baseline", "[agent][detectors]") {
  auto d = make(params("zscore", 4));
  for (int i = 0; i < 60; ++i) CHECK_FALSE(d->observe(21 + 0.1 * (i % 5)).judged);
  const Judgement j = d->observe(40);
  CHECK(j.judged);
  CHECK(j.anomalous);
  CHECK(j.expected == Approx(21.2).margin(0.01));
  CHECK(j.score == Approx((40 - j.expected) / j.scale));
  // A steady stream: the floor (1% of the mean) keeps one small step from being infinite.
  auto steady = make(params("zscore", 4));
  for (int i = 0; i < 60; ++i) steady->observe(50);
  CHECK(steady->observe(50.1).score == Approx(0.2));
  CHECK(steady->observe(60).anomalous);
}

TEST_CASE("the robust detector is not blinded by the spikes it has seen", "[agent][detectors]") {
  auto mad = make(params("mad", 6));
  auto z = make(params("zscore", 6));
  // Noise of +-0.5 around 20, then ten spikes of +15 one after another: the z-score's
  // spread grows with each, the median and MAD hardly move.
  for (int i = 0; i < 300; ++i) {
    const double v = 20 + 0.5 * ((i * 7) % 5 - 2) / 2.0;
    mad->observe(v);
    z->observe(v);
  }
  int mad_flags = 0, z_flags = 0;
  for (int i = 0; i < 10; ++i) {
    mad_flags += mad->observe(35).anomalous ? 1 : 0;
    z_flags += z->observe(35).anomalous ? 1 : 0;
  }
  CHECK(mad_flags == 10);
  CHECK(z_flags < 10);
  // A flat signal: the MAD is 0, and the floor (1% of the median) keeps a small step small.
  auto flat = make(params("mad", 6));
  for (int i = 0; i < 100; ++i) flat->observe(50);
  const Judgement small = flat->observe(50.1);
  CHECK(small.judged);
  CHECK(small.scale == Approx(0.5));
  CHECK_FALSE(small.anomalous);
  CHECK(flat->observe(60).anomalous);
}

TEST_CASE("the seasonal detector learns a busy hour and flags a spike inside it", "[agent][detectors]") {
  constexpr int kSeason = 50;
  auto seasonal = make(params("seasonal", 6, static_cast<std::uint32_t>(kSeason)));
  auto mad = make(params("mad", 6));
  // A quiet level of 10 (+-0.2) with 5 busy values of 40 in every season.
  const auto value = [](int i) { return (i % kSeason >= 20 && i % kSeason < 25 ? 40.0 : 10.0) + 0.2 * ((i * 7) % 3 - 1); };
  int i = 0;
  for (; i < 2 * kSeason; ++i) CHECK_FALSE(seasonal->observe(value(i)).judged);  // two seasons first
  int seasonal_flags = 0, mad_flags = 0;
  for (; i < 20 * kSeason; ++i) {
    seasonal_flags += seasonal->observe(value(i)).anomalous ? 1 : 0;
    mad_flags += mad->observe(value(i)).anomalous ? 1 : 0;
  }
  CHECK(seasonal_flags == 0);
  CHECK(mad_flags > 0);  // without seasons, every busy hour is an anomaly
  // A spike of +10 inside the busy hour (where 50 is within the non-seasonal spread)...
  while (i % kSeason != 22) seasonal->observe(value(i++));
  const Judgement j = seasonal->observe(value(i++) + 10);
  CHECK(j.anomalous);
  CHECK(j.expected == Approx(40).margin(0.5));
  // ...and a busy hour that did not come.
  while (i % kSeason != 21) seasonal->observe(value(i++));
  CHECK(seasonal->observe(10).anomalous);
}

TEST_CASE("retune keeps the baseline for a new threshold and refuses a new shape", "[agent][detectors]") {
  for (const char* kind : {"zscore", "mad"}) {
    INFO(kind);
    auto d = make(params(kind, 4));
    for (int i = 0; i < 100; ++i) d->observe(10 + (i % 2));
    CHECK(d->observe(14).anomalous);
    REQUIRE(d->retune(params(kind, 50)));
    const Judgement j = d->observe(14);
    CHECK(j.judged);  // still has its baseline
    CHECK_FALSE(j.anomalous);
    auto other = params(kind, 50);
    other.window = 100;
    CHECK_FALSE(d->retune(other));
    CHECK_FALSE(d->retune(params(std::string(kind) == "mad" ? "zscore" : "mad", 50)));
  }
}

TEST_CASE("detector quality on labelled series", "[agent][detectors]") {
  // The detectors as the agent configures them, each at the thresholds that matter.
  struct Candidate {
    std::string label;
    DetectorParams params;
  };
  const std::vector<Candidate> candidates{
      {"zscore 4", params("zscore", 4)},
      {"mad 4", params("mad", 4)},
      {"mad 6", params("mad", 6)},
      {"seasonal 6", params("seasonal", 6, nova::testing::kSeasonalPeriod)},
  };
  constexpr std::uint64_t kSeeds = 5;
  std::map<std::pair<std::string, Pattern>, nova::testing::Quality> q;
  for (const Pattern pattern : nova::testing::kPatterns) {
    for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
      const auto series = nova::testing::make_series(pattern, seed);
      for (const Candidate& c : candidates) q[{c.label, pattern}].add(nova::testing::judge_series(c.params, series));
    }
  }
  // The table for docs/benchmarks.md: precision / recall per pattern, and for the
  // series without anomalies the false flags per 10,000 values.
  std::printf("| detector | noise: false flags / 10k | heavy noise: false flags / 10k | spikes P / R | "
              "level shifts P / R | drifts P / R | seasonal P / R |\n|---|---|---|---|---|---|---|\n");
  for (const Candidate& c : candidates) {
    const auto per10k = [&](Pattern p) {
      const auto& x = q[{c.label, p}];
      return 10000.0 * static_cast<double>(x.false_flags()) / static_cast<double>(x.values);
    };
    std::printf("| %s | %.1f | %.1f |", c.label.c_str(), per10k(Pattern::noise), per10k(Pattern::heavy_noise));
    for (const Pattern p : {Pattern::spikes, Pattern::level_shift, Pattern::drift, Pattern::seasonal}) {
      const auto& x = q[{c.label, p}];
      std::printf(" %.2f / %.2f |", x.precision(), x.recall());
    }
    std::printf("\n");
  }
  const auto& mad_spikes = q[{"mad 6", Pattern::spikes}];
  CHECK(mad_spikes.events > 150);  // 5 seeds of about 38 spikes
  CHECK(mad_spikes.recall() >= 0.9);
  CHECK(mad_spikes.precision() >= 0.9);
  CHECK(q[{"mad 6", Pattern::noise}].flags <= 2);  // on 25,000 values of Gaussian noise
  CHECK(q[{"mad 6", Pattern::level_shift}].recall() >= 0.9);
  CHECK(q[{"mad 6", Pattern::level_shift}].precision() >= 0.9);
  // On a seasonal stream the seasonal detector flags fewer normal values than the
  // z-score and the robust detector, and still finds the spikes.
  const auto& seasonal = q[{"seasonal 6", Pattern::seasonal}];
  CHECK(seasonal.false_flags() < q[{"zscore 4", Pattern::seasonal}].false_flags());
  CHECK(seasonal.false_flags() < q[{"mad 6", Pattern::seasonal}].false_flags());
  CHECK(seasonal.recall() >= 0.9);
  CHECK(seasonal.precision() >= 0.9);
}
