// DecisionEngine: threshold alerts raised once and repeated by sample time, hysteresis
// and recovery, the z-score detector, models, and the offline flag.
#include <catch2/catch.hpp>

#include <cmath>

#include "alloc_count.h"
#include "nova/agent/decisions.h"
#include "nova/schemas/codec.h"

using namespace nova;
using namespace nova::agent;
using namespace std::chrono_literals;

namespace {

constexpr schemas::Timestamp kT0 = 1732650000000;

// A quiet host at second `i` (cpu wobbling 20..22 %), with what the test overrides.
schemas::MetricSample quiet(int i) {
  schemas::MetricSample s;
  s.ts = kT0 + static_cast<schemas::Timestamp>(i) * 1000;
  s.cpu_pct = 20 + (i % 3);
  s.mem_pct = 40;
  s.disk_pct = 50;
  s.load1 = 0.5;
  return s;
}

DecisionOptions thresholds_only() {
  DecisionOptions o;
  o.zscore.threshold = 0;
  return o;
}

// The field a stream rule's refusal names, or "(accepted)".
std::string field(std::string_view rule) {
  auto r = parse_stream_rule(rule, {});
  return r ? std::string("(accepted)") : r.error().path;
}

std::vector<Firing> run(DecisionEngine& e, const schemas::MetricSample& s, bool offline = false) {
  std::vector<Firing> out;
  e.evaluate(s, offline, out);
  return out;
}

}  // namespace

TEST_CASE("a threshold alert fires when the condition starts, then once per repeat_s", "[agent][decisions]") {
  DecisionEngine e(thresholds_only());  // cpu 90/97, repeat 300 s
  CHECK(run(e, quiet(0)).empty());

  auto s = quiet(1);
  s.cpu_pct = 93;
  auto fired = run(e, s);
  REQUIRE(fired.size() == 1);
  const Firing& f = fired[0];
  CHECK(f.alert.severity == schemas::Severity::warning);
  CHECK(f.alert.metric == "cpu");
  CHECK(f.alert.observed == 93);
  CHECK(f.alert.threshold == 90);
  CHECK(f.alert.ts == s.ts);
  CHECK_THAT(f.alert.message, Catch::Contains("cpu 93") && Catch::Contains("warning level 90"));
  REQUIRE(f.record);
  CHECK(f.record->kind == "threshold_alert");
  CHECK(f.record->action == "alerted");
  CHECK(f.record->inputs.at("cpu") == 93);
  CHECK(f.record->inputs.at("threshold") == 90);
  CHECK(f.record->confidence == 1);
  CHECK_FALSE(f.record->offline);

  // Lasting: silent until 300 s of sample time have passed, then once more.
  for (int i = 2; i < 301; ++i) {
    s = quiet(i);
    s.cpu_pct = 94;
    INFO(i);
    CHECK(run(e, s).empty());
  }
  s = quiet(301);
  s.cpu_pct = 94;
  CHECK(run(e, s).size() == 1);
  s = quiet(302);
  s.cpu_pct = 94;
  CHECK(run(e, s).empty());

  // Escalation to critical is raised at once.
  s = quiet(303);
  s.cpu_pct = 98;
  fired = run(e, s);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].alert.severity == schemas::Severity::critical);
  CHECK(fired[0].alert.threshold == 97);
}

TEST_CASE("a threshold condition ends 5% below its level, with an info alert", "[agent][decisions]") {
  DecisionEngine e(thresholds_only());
  auto s = quiet(0);
  s.disk_pct = 91;
  REQUIRE(run(e, s).size() == 1);
  // Wobbling just under the level is still the same condition (hysteresis).
  for (int i = 1; i < 10; ++i) {
    s = quiet(i);
    s.disk_pct = i % 2 ? 89 : 90.5;
    CHECK(run(e, s).empty());
  }
  s = quiet(10);
  s.disk_pct = 80;
  auto fired = run(e, s);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].alert.severity == schemas::Severity::info);
  CHECK(fired[0].alert.metric == "disk");
  CHECK_THAT(fired[0].alert.message, Catch::Contains("recovered"));
  CHECK_FALSE(fired[0].record);  // a recovery is no decision
  // And a new excursion is a new condition, raised at once.
  s = quiet(11);
  s.disk_pct = 92;
  CHECK(run(e, s).size() == 1);
}

TEST_CASE("a critical condition falls back to warning before it recovers", "[agent][decisions]") {
  // Seen in a benchmark: cpu 100 (critical) then 89.5 reported "recovered below 85.5".
  DecisionEngine e(thresholds_only());
  auto s = quiet(0);
  s.cpu_pct = 100;
  REQUIRE(run(e, s).size() == 1);
  s = quiet(1);
  s.cpu_pct = 89.5;  // below critical's clear point (92.15), above warning's (85.5)
  CHECK(run(e, s).empty());  // a warning that goes on: no new alert, no recovery
  s = quiet(2);
  s.cpu_pct = 80;
  const auto fired = run(e, s);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].alert.severity == schemas::Severity::info);
  CHECK(fired[0].alert.message == "cpu 80 recovered below 85.5");
}

TEST_CASE("a level of 0 is off, temp is judged only when the sample has it", "[agent][decisions]") {
  DecisionOptions o = thresholds_only();
  o.cpu = {0, 0};
  DecisionEngine e(o);
  auto s = quiet(0);
  s.cpu_pct = 100;
  CHECK(run(e, s).empty());
  s = quiet(1);
  s.temp_c = 85;
  auto fired = run(e, s);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].alert.metric == "temp");
}

TEST_CASE("the z-score detector fires on a spike after min_samples, not before", "[agent][decisions]") {
  DecisionOptions o;
  o.cpu = o.mem = o.disk = o.temp = {0, 0};
  o.zscore = {4, 60, 600};
  DecisionEngine e(o);

  // Before min_samples a spike is not judged: there is no baseline yet.
  for (int i = 0; i < 30; ++i) {
    auto s = quiet(i);
    s.extra["sensor.t1.temp"] = 21 + 0.1 * (i % 5);
    CHECK(run(e, s).empty());
  }
  auto s = quiet(30);
  s.extra["sensor.t1.temp"] = 60;
  CHECK(run(e, s).empty());
  // A fresh engine, so the early spike is not in the baseline.
  DecisionEngine fresh(o);
  for (int i = 0; i < 60; ++i) {
    s = quiet(i);
    s.extra["sensor.t1.temp"] = 21 + 0.1 * (i % 5);
    s.extra["agent.outbox_records"] = i;  // the agent's own gauges are never judged
    REQUIRE(run(fresh, s).empty());
  }
  s = quiet(60);
  s.extra["sensor.t1.temp"] = 40;
  s.extra["agent.outbox_records"] = 100000;
  auto fired = run(fresh, s, true);
  REQUIRE(fired.size() == 1);
  const Firing& f = fired[0];
  CHECK(f.alert.metric == "sensor.t1.temp");
  CHECK(f.alert.severity == schemas::Severity::warning);
  CHECK(f.alert.observed == 40);
  CHECK(f.alert.threshold > 21.2);
  CHECK(f.alert.threshold < 40);
  REQUIRE(f.record);
  CHECK(f.record->kind == "anomaly_alert");
  CHECK(f.record->inputs.at("zscore") >= 4);
  CHECK(f.record->inputs.at("zscore_threshold") == 4);
  CHECK(f.record->confidence > 0.9);
  CHECK(f.record->confidence <= 1);
  CHECK(f.record->offline);
  // The records are valid for the wire (ids filled in as the agent does).
  schemas::Alert a = f.alert;
  a.position = {"n1", "alerts", 1};
  a.alert_id = "alert-1";
  CHECK(schemas::decode_cbor<schemas::Alert>(schemas::encode_cbor(a)).ok());
  schemas::DecisionRecord d = *f.record;
  d.position = {"n1", "decisions", 1};
  d.decision_id = "decision-1";
  CHECK(schemas::decode_cbor<schemas::DecisionRecord>(schemas::encode_cbor(d)).ok());

  // The spike lasting is one condition, not an alert per sample.
  s = quiet(61);
  s.extra["sensor.t1.temp"] = 41;
  CHECK(run(fresh, s).empty());
  // Nor is a second short spike within repeat_s: one anomaly alert per gauge per 300 s.
  for (int i = 62; i < 70; ++i) {
    s = quiet(i);
    s.extra["sensor.t1.temp"] = 21;
    run(fresh, s);
  }
  s = quiet(70);
  s.extra["sensor.t1.temp"] = 90;
  CHECK(run(fresh, s).empty());
  s = quiet(400);
  s.extra["sensor.t1.temp"] = 200;
  CHECK(run(fresh, s).size() == 1);
}

TEST_CASE("a zscore model replaces the parameters, an unknown kind is refused", "[agent][decisions]") {
  DecisionOptions o;
  o.cpu = o.mem = o.disk = o.temp = {0, 0};
  o.zscore = {4, 60, 600};
  DecisionEngine e(o);

  schemas::Model bad{"m-lin", 1, "linear", {{"slope", 1}}, {}, kT0};
  auto refused = e.apply_model(bad);
  REQUIRE(refused);
  CHECK_THAT(*refused, Catch::Contains("linear"));
  CHECK(e.zscore() == o.zscore);
  CHECK(e.apply_model({"m-z", 1, "zscore", {{"min_samples", 2.5}}, {}, kT0}));
  CHECK(e.apply_model({"m-z", 1, "zscore", {{"bogus", 1}}, {}, kT0}));
  CHECK(e.zscore() == o.zscore);

  REQUIRE_FALSE(e.apply_model({"m-z", 2, "zscore", {{"threshold", 2.5}, {"min_samples", 10}}, {}, kT0}));
  CHECK(e.zscore().threshold == 2.5);
  CHECK(e.zscore().min_samples == 10);
  CHECK(e.zscore().window == 600);  // not in the model: the config's
  CHECK(e.model_id() == "m-z");
  // A config reload keeps the model's parameters in force, and takes the rest.
  o.zscore.window = 100;
  e.set_options(o);
  CHECK(e.zscore().threshold == 2.5);
  CHECK(e.zscore().window == 100);

  // With the model's min_samples 10, a spike after 10 samples fires.
  for (int i = 0; i < 10; ++i) REQUIRE(run(e, quiet(i)).empty());
  auto s = quiet(10);
  s.load1 = 5;
  auto fired = run(e, s);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].alert.metric == "load1");

  e.clear_model();
  CHECK(e.zscore() == o.zscore);
  CHECK_FALSE(e.model_id());
}

TEST_CASE("every decision records whether the uplink was down", "[agent][decisions]") {
  DecisionEngine e(thresholds_only());
  auto s = quiet(0);
  s.mem_pct = 95;
  auto fired = run(e, s, true);
  REQUIRE(fired.size() == 1);
  REQUIRE(fired[0].record);
  CHECK(fired[0].record->offline);
  s = quiet(400);
  s.mem_pct = 95;
  fired = run(e, s, false);
  REQUIRE(fired.size() == 1);
  CHECK_FALSE(fired[0].record->offline);
}

TEST_CASE("stream rules match gauge names with stars", "[agent][decisions]") {
  CHECK(matches("*", "cpu"));
  CHECK(matches("cpu", "cpu"));
  CHECK_FALSE(matches("cpu", "cpu.user"));
  CHECK(matches("sensor.*", "sensor.t1.temp"));
  CHECK_FALSE(matches("sensor.*", "sensors"));
  CHECK(matches("sensor.*.temp", "sensor.t1.temp"));
  CHECK_FALSE(matches("sensor.*.temp", "sensor.t1.humidity"));
  CHECK(matches("*.rx_bps", "net.eth0.rx_bps"));
  CHECK(matches("s*n*r.*", "sensor.a"));
}

TEST_CASE("a stream rule that cannot be used is refused naming its field", "[agent][decisions]") {
  const DetectorParams d;
  CHECK(field("sensor.* mad threshold=6") == "(accepted)");
  CHECK(field("sensor.*.power seasonal season=1440 window=20000 min_samples=100") == "(accepted)");
  CHECK(field("sensor.* linear") == "kind");
  CHECK(field("sensor.* seasonal") == "season");
  CHECK(field("sensor.* mad season=3") == "season");
  CHECK(field("sensor.* mad threshold=six") == "threshold");
  CHECK(field("sensor.* mad threshold") == "threshold");
  CHECK(field("sensor.* mad window=-1") == "window");
  CHECK(field("sensor.* mad colour=red") == "colour");
  CHECK(field("sensor/# mad") == "match");
  CHECK(field("sensor.*") == "");
  auto r = parse_stream_rule("sensor.* mad window=100", d);
  REQUIRE(r.ok());
  CHECK(r->match == "sensor.*");
  CHECK(r->detector.kind == "mad");
  CHECK(r->detector.window == 100);
  CHECK(r->detector.threshold == d.threshold);  // not given: the defaults'
  auto all = parse_stream_rules({"a mad", "b seasonal"}, d);
  REQUIRE_FALSE(all.ok());
  CHECK(all.error().message() == "item 1 ('b seasonal'): season: a seasonal detector needs a period of at least 2 values");
}

TEST_CASE("the first matching rule chooses each gauge's detector", "[agent][decisions]") {
  DecisionOptions o = thresholds_only();
  o.cpu = o.mem = o.disk = o.temp = {0, 0};
  o.streams = parse_stream_rules({"sensor.*.temp zscore threshold=4", "sensor.* mad threshold=6"}, {}).value();
  DecisionEngine e(o);
  CHECK(e.detector_for("sensor.t1.temp")->kind == "zscore");
  CHECK(e.detector_for("sensor.t1.humidity")->kind == "mad");
  CHECK_FALSE(e.detector_for("cpu"));  // no rule: not watched
  for (int i = 0; i < 100; ++i) {
    auto s = quiet(i);
    s.cpu_pct = 20;
    s.extra["sensor.t1.humidity"] = 50 + 0.5 * (i % 3);
    REQUIRE(run(e, s).empty());
  }
  auto s = quiet(100);
  s.cpu_pct = 99;  // a core gauge no rule watches: no anomaly
  s.extra["sensor.t1.humidity"] = 80;
  const auto fired = run(e, s);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0].alert.metric == "sensor.t1.humidity");
  CHECK_THAT(fired[0].alert.message, Catch::Contains("robust standard deviations above its median 50.5"));
  REQUIRE(fired[0].record);
  CHECK(fired[0].record->inputs.at("expected") == 50.5);
  CHECK(fired[0].record->inputs.at("score") >= 6);
  CHECK(fired[0].record->inputs.at("score_threshold") == 6);
  CHECK(fired[0].alert.threshold == Approx(50.5 + 6 * fired[0].record->inputs.at("scale")));
}

TEST_CASE("a reload keeps a gauge's baseline unless its detector changes shape", "[agent][decisions]") {
  DecisionOptions o = thresholds_only();
  o.cpu = o.mem = o.disk = o.temp = {0, 0};
  o.streams = parse_stream_rules({"sensor.* mad threshold=6"}, {}).value();
  DecisionEngine e(o);
  int i = 0;
  const auto feed = [&](int n) {
    for (int k = 0; k < n; ++k, ++i) {
      auto s = quiet(i);
      s.extra["sensor.t1.level"] = 10 + 0.1 * (i % 3);
      REQUIRE(run(e, s).empty());
    }
  };
  const auto spike = [&] {
    auto s = quiet(i += 400);  // beyond repeat_s: each spike may raise
    s.extra["sensor.t1.level"] = 30;
    return run(e, s).size();
  };
  feed(100);
  // A new threshold: the same detector, retuned; the baseline it has judges at once.
  o.streams = parse_stream_rules({"sensor.* mad threshold=8"}, {}).value();
  e.set_options(o);
  CHECK(spike() == 1);
  // A new window: a new detector, which has seen nothing yet.
  o.streams = parse_stream_rules({"sensor.* mad threshold=8 window=300"}, {}).value();
  e.set_options(o);
  CHECK(spike() == 0);
  // No rule for it any more: not watched; back again: a fresh baseline.
  o.streams = parse_stream_rules({"cpu zscore"}, {}).value();
  e.set_options(o);
  CHECK_FALSE(e.detector_for("sensor.t1.level"));
  CHECK(spike() == 0);
}

TEST_CASE("a zscore model tunes the z-score rules and leaves the robust ones alone", "[agent][decisions]") {
  DecisionOptions o = thresholds_only();
  o.streams = parse_stream_rules({"load1 zscore threshold=4", "sensor.* mad threshold=6"}, {}).value();
  DecisionEngine e(o);
  REQUIRE_FALSE(e.apply_model({"m-z", 1, "zscore", {{"threshold", 9}, {"window", 50}}, {}, kT0}));
  CHECK(e.detector_for("load1")->threshold == 9);
  CHECK(e.detector_for("load1")->window == 50);
  CHECK(e.detector_for("sensor.t1.temp")->threshold == 6);
  CHECK(e.detector_for("sensor.t1.temp")->window == 600);
  e.clear_model();
  CHECK(e.detector_for("load1")->threshold == 4);
}

TEST_CASE("judging a sample allocates nothing once every gauge has its detector", "[agent][decisions]") {
  DecisionOptions o = thresholds_only();
  o.streams = parse_stream_rules({"cpu zscore", "mem mad", "sensor.*.power seasonal season=10", "sensor.* mad"}, {}).value();
  DecisionEngine e(o);
  std::vector<Firing> out;
  out.reserve(16);
  auto s = quiet(0);
  s.extra["sensor.m1.power"] = 100;
  s.extra["sensor.t1.temp"] = 21;
  for (int i = 0; i < 700; ++i) {  // past every warm-up and window
    s.ts = quiet(i).ts;
    s.extra["sensor.m1.power"] = 100 + (i % 10) + 0.1 * (i % 3);
    e.evaluate(s, false, out);
  }
  REQUIRE(out.empty());
  const std::size_t allocations = allocations_during([&] {
    for (int i = 700; i < 800; ++i) {
      s.ts = quiet(i).ts;
      s.extra["sensor.m1.power"] = 100 + (i % 10) + 0.1 * (i % 3);
      e.evaluate(s, false, out);
    }
  });
  CHECK(out.empty());
  CHECK(allocations == 0);
}

TEST_CASE("persistence raises an anomaly only when k of the last n values were anomalous", "[agent][decisions]") {
  CHECK(field("sensor.* mad persist=2/3") == "(accepted)");
  CHECK(field("sensor.* mad persist=64/64") == "(accepted)");
  CHECK(field("sensor.* mad persist=3/2") == "persist");
  CHECK(field("sensor.* mad persist=0/2") == "persist");
  CHECK(field("sensor.* mad persist=2") == "persist");
  CHECK(field("sensor.* mad persist=1/65") == "persist");

  DecisionOptions o = thresholds_only();
  o.cpu = o.mem = o.disk = o.temp = {0, 0};
  o.repeat = std::chrono::seconds(1);  // every raise shows
  o.streams = parse_stream_rules({"sensor.* mad threshold=6 persist=2/3"}, {}).value();
  DecisionEngine e(o);
  int i = 0;
  const auto feed = [&](double v) {
    auto s = quiet(i++);
    s.extra["sensor.t1.level"] = v;
    return run(e, s).size();
  };
  for (int k = 0; k < 100; ++k) REQUIRE(feed(10 + 0.1 * (k % 3)) == 0);
  CHECK(feed(30) == 0);  // one outlier: not yet
  CHECK(feed(10) == 0);
  CHECK(feed(10.1) == 0);
  CHECK(feed(10) == 0);
  CHECK(feed(30) == 0);  // the last one fell out of the last 3
  CHECK(feed(10.1) == 0);
  CHECK(feed(30) == 1);  // 2 of the last 3
}
