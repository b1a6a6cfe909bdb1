// Pipelines as pure logic: windows and lateness, filters, the anomaly stage, rules with
// hysteresis and cool-down, the decision cache, and config errors naming the key.
#include <catch2/catch.hpp>

#include <cmath>

#include "nova/agent/pipelines.h"

using namespace nova;
using namespace nova::agent;

namespace {

struct Recorder final : PipelineSink {
  std::vector<std::pair<std::string, Event>> events;  // pipeline name, event
  std::vector<PipelineDecision> decisions;
  void emit(const PipelineSpec& p, const std::string&, const Event& e) override { events.emplace_back(p.name, e); }
  void decide(const PipelineDecision& d) override { decisions.push_back(d); }
  void cleared(const PipelineSpec&, const RuleSpec& r, const std::string&) override { cleared_rules.push_back(r.name); }
  std::vector<std::string> cleared_rules;
};

std::unique_ptr<Pipelines> build(const std::string& yaml) {
  auto specs = parse_pipelines(yaml);
  INFO((specs ? "" : specs.error().message()));
  REQUIRE(specs.ok());
  auto p = Pipelines::make(std::move(specs).value());
  REQUIRE(p.ok());
  return std::move(p).value();
}

schemas::SensorReading reading(schemas::Timestamp ts, std::map<std::string, double> values) {
  schemas::SensorReading r;
  r.ts = ts;
  r.values = std::move(values);
  return r;
}

Window window_of(WindowSpec::Kind kind, std::uint64_t size_ms, std::uint64_t hop_ms = 0, std::uint64_t lateness_ms = 0) {
  WindowSpec spec;
  spec.kind = kind;
  spec.size_ms = size_ms;
  spec.hop_ms = hop_ms;
  spec.lateness_ms = lateness_ms;
  return Window(spec);
}

constexpr auto kTakeAll = [](const std::string&) { return false; };

}  // namespace

TEST_CASE("a tumbling window emits its aggregates when the watermark passes its end", "[agent][pipelines]") {
  Window w = window_of(WindowSpec::Kind::tumbling, 1000);
  std::vector<Event> out;
  for (int i = 1; i <= 10; ++i) CHECK(w.add(static_cast<schemas::Timestamp>(i * 90), i, out));  // 90..900
  CHECK(out.empty());
  CHECK(w.add(1000, 100, out));  // the first window [0, 1000) closes
  REQUIRE(out.size() == 1);
  const Event& e = out.front();
  CHECK(e.ts == 1000);
  CHECK(e.get(Field::count) == 10);
  CHECK(e.get(Field::sum) == 55);
  CHECK(e.get(Field::mean) == 5.5);
  CHECK(e.get(Field::min) == 1);
  CHECK(e.get(Field::max) == 10);
  CHECK(e.get(Field::stddev) == Approx(std::sqrt(8.25)));
  CHECK(e.get(Field::p50) == 5);
  CHECK(e.get(Field::p90) == 9);
  CHECK(e.get(Field::p99) == 10);
}

TEST_CASE("a reading behind the watermark is dropped and counted and one within lateness is folded in",
          "[agent][pipelines]") {
  Window w = window_of(WindowSpec::Kind::tumbling, 1000, 0, 500);
  std::vector<Event> out;
  CHECK(w.add(100, 1, out));
  CHECK(w.add(1200, 2, out));  // watermark 700: [0, 1000) stays open
  CHECK(out.empty());
  CHECK(w.add(800, 3, out));   // out of order, within lateness: window [0, 1000)
  CHECK(w.add(1600, 4, out));  // watermark 1100: [0, 1000) closes
  REQUIRE(out.size() == 1);
  CHECK(out[0].get(Field::count) == 2);
  CHECK(out[0].get(Field::sum) == 4);
  CHECK_FALSE(w.add(900, 5, out));  // behind the watermark: late
  CHECK(w.late() == 1);
}

TEST_CASE("a hopping window puts each value in size over hop windows", "[agent][pipelines]") {
  Window w = window_of(WindowSpec::Kind::hopping, 1000, 500);
  std::vector<Event> out;
  CHECK(w.add(700, 1, out));  // windows [0,1000) and [500,1500)
  CHECK(w.add(1200, 2, out)); // [500,1500) and [1000,2000); [0,1000) closes
  REQUIRE(out.size() == 1);
  CHECK(out[0].ts == 1000);
  CHECK(out[0].get(Field::count) == 1);
  CHECK(w.add(2000, 3, out));  // [500,1500) and [1000,2000) close
  REQUIRE(out.size() == 3);
  CHECK(out[1].ts == 1500);
  CHECK(out[1].get(Field::sum) == 3);
  CHECK(out[2].ts == 2000);
  CHECK(out[2].get(Field::sum) == 2);
}

TEST_CASE("a sliding window emits on every value over the values of its span", "[agent][pipelines]") {
  Window w = window_of(WindowSpec::Kind::sliding, 1000, 0, 1000);
  std::vector<Event> out;
  CHECK(w.add(100, 10, out));
  CHECK(w.add(600, 20, out));
  CHECK(w.add(1200, 30, out));  // (200, 1200]: 20 and 30
  REQUIRE(out.size() == 3);
  CHECK(out[2].get(Field::count) == 2);
  CHECK(out[2].get(Field::mean) == 25);
  CHECK(w.add(1100, 40, out));  // out of order: (200, 1200] holds 20, 40, 30
  CHECK(out[3].get(Field::count) == 3);
  CHECK(out[3].get(Field::max) == 40);
}

TEST_CASE("filters drop by range and deadband and rate and predicate and count what they drop", "[agent][pipelines]") {
  auto p = build(R"(
- name: f
  input: {sensor: "t*", value: temp}
  filters:
    - range: {min: -40, max: 150}
    - deadband: 0.5
    - rate: 10
    - where: "rh < 90"
  outputs: [local]
)");
  Recorder r;
  p->on_reading("t1", reading(1000, {{"temp", 20}, {"rh", 50}}), kTakeAll, r);   // kept
  p->on_reading("t1", reading(2000, {{"temp", 200}, {"rh", 50}}), kTakeAll, r);  // range
  p->on_reading("t1", reading(3000, {{"temp", 20.3}, {"rh", 50}}), kTakeAll, r); // deadband
  p->on_reading("t1", reading(4000, {{"temp", 60}, {"rh", 50}}), kTakeAll, r);   // 40/3s > 10/s
  p->on_reading("t1", reading(5000, {{"temp", 21}, {"rh", 95}}), kTakeAll, r);   // where
  p->on_reading("t1", reading(6000, {{"temp", 22}}), kTakeAll, r);               // where: no rh
  p->on_reading("x1", reading(7000, {{"temp", 30}}), kTakeAll, r);               // sensor does not match
  p->on_reading("t1", reading(8000, {{"temp", 25}, {"rh", 50}}), kTakeAll, r);   // kept
  REQUIRE(r.events.size() == 2);
  CHECK(r.events[0].second.get(Field::value) == 20);
  CHECK(r.events[1].second.get(Field::value) == 25);
  CHECK(p->counters().filtered == 5);
  CHECK(p->counters().readings == 7);
}

TEST_CASE("the anomaly stage scores window means and a rule acts on the score", "[agent][pipelines]") {
  auto p = build(R"(
- name: boiler
  input: {sensor: boiler, value: temp}
  window: {kind: tumbling, size_ms: 1000}
  anomaly: {kind: zscore, threshold: 4, min_samples: 10, window: 100}
  rules:
    - name: overheat
      when: ["score >= 4", "mean > 50"]
      action: {do: publish, target: fan, payload: "on"}
)");
  Recorder r;
  schemas::Timestamp ts = 0;
  for (int i = 0; i < 30; ++i, ts += 1000) {
    p->on_reading("boiler", reading(ts, {{"temp", 40 + (i % 3)}}), kTakeAll, r);
  }
  CHECK(r.decisions.empty());
  p->on_reading("boiler", reading(ts, {{"temp", 90}}), kTakeAll, r);
  p->on_reading("boiler", reading(ts + 1000, {{"temp", 41}}), kTakeAll, r);  // closes the 90 window
  REQUIRE(r.decisions.size() == 1);
  const PipelineDecision& d = r.decisions.front();
  CHECK(d.rule->name == "overheat");
  CHECK(d.action->kind == ActionKind::publish);
  CHECK(d.stream == "boiler.temp");
  REQUIRE(d.inputs.size() == 2);
  CHECK(d.inputs[0].first == "score");
  CHECK(d.inputs[0].second >= 4);
  CHECK(d.inputs[1] == std::pair<std::string, double>{"mean", 90});
  CHECK(p->counters().anomalies >= 1);
}

TEST_CASE("hysteresis holds a rule until the value falls past the band and cool-down spaces firings",
          "[agent][pipelines]") {
  auto p = build(R"(
- name: hot
  input: {gauge: temp}
  rules:
    - name: fan
      when: "value > 80"
      hysteresis: 5
      cooldown_ms: 10000
      action: {do: publish, target: fan, payload: "on"}
      on_clear: {do: publish, target: fan, payload: "off"}
)");
  Recorder r;
  auto sample = [&](schemas::Timestamp ts, double temp) {
    schemas::MetricSample s;
    s.ts = ts;
    s.temp_c = temp;
    p->on_sample(s, r);
  };
  sample(1000, 81);  // fires
  sample(2000, 79);  // inside the band: still active
  sample(3000, 82);  // still active: nothing
  REQUIRE(r.decisions.size() == 1);
  CHECK_FALSE(r.decisions[0].clear);
  sample(4000, 75);  // past the band: clears, on_clear acts
  REQUIRE(r.decisions.size() == 2);
  CHECK(r.decisions[1].clear);
  CHECK(r.decisions[1].action->payload == "off");
  sample(5000, 90);  // within the cool-down of the firing at 1000: nothing
  CHECK(r.decisions.size() == 2);
  sample(12000, 90);  // cool-down over
  CHECK(r.decisions.size() == 3);
  CHECK(r.cleared_rules == std::vector<std::string>{"fan"});
}

TEST_CASE("the decision cache answers a repeated situation without evaluating and counts hits",
          "[agent][pipelines]") {
  RuleSpec rule;  // its name plays no part in a step
  rule.when = {parse_comparison("value > 10").value()};
  rule.quantum = 1;
  DecisionCache cache(2);
  RuleState state;
  CHECK(state.step(rule, 0, {5.2}, 1, cache).outcome == RuleState::Outcome::none);
  const auto again = state.step(rule, 0, {4.9}, 2, cache);  // rounds to 5 as well
  CHECK(again.cached);
  CHECK(cache.hits() == 1);
  CHECK(cache.misses() == 1);
  CHECK(state.step(rule, 0, {12}, 3, cache).outcome == RuleState::Outcome::fire);
  CHECK(cache.misses() == 2);
  // Bounded: a third situation pushes out the oldest.
  CHECK(state.step(rule, 0, {30}, 4, cache).outcome == RuleState::Outcome::none);  // active: holds, no clear
  CHECK(cache.size() == 2);
  RuleSpec uncached = rule;
  uncached.quantum = 0;
  RuleState other;
  CHECK_FALSE(other.step(uncached, 1, {5}, 1, cache).cached);
  CHECK_FALSE(other.step(uncached, 1, {5}, 2, cache).cached);
}

TEST_CASE("a pipeline reads another's events and a rule reads host gauges", "[agent][pipelines]") {
  auto p = build(R"(
- name: raw
  input: {sensor: s, value: v}
  window: {kind: tumbling, size_ms: 1000}
- name: smooth
  input: {pipeline: raw, field: max}
  rules:
    - name: busy_and_high
      when: ["value >= 10", "gauge.cpu > 50"]
      action: {do: request_migration, target: w1}
)");
  Recorder r;
  schemas::MetricSample s;
  s.cpu_pct = 70;
  p->on_sample(s, r);
  p->on_reading("s", reading(100, {{"v", 12}}), kTakeAll, r);
  p->on_reading("s", reading(1100, {{"v", 1}}), kTakeAll, r);
  REQUIRE(r.decisions.size() == 1);
  CHECK(r.decisions[0].pipeline->name == "smooth");
  CHECK(r.decisions[0].action->kind == ActionKind::request_migration);
  CHECK(r.decisions[0].inputs[1] == std::pair<std::string, double>{"gauge.cpu", 70});
}

TEST_CASE("bad pipeline config is refused naming the item and key", "[agent][pipelines]") {
  auto error = [](const std::string& yaml) {
    auto r = parse_pipelines(yaml);
    REQUIRE_FALSE(r.ok());
    return r.error().message();
  };
  CHECK(error("- {name: a, input: {sensor: s}, window: {kind: rolling}}") ==
        "pipelines[0].window.kind: expected tumbling, hopping or sliding");
  CHECK(error("- {name: a, input: {pipeline: b}}") ==
        "pipelines[0].input.pipeline: 'b' is not a pipeline declared before this one");
  CHECK(error("- {name: a, input: {gauge: cpu}, rules: [{name: r, when: 'mean >> 3', action: {do: publish, target: x}}]}")
            .starts_with("pipelines[0].rules[0].when: 'mean >> 3': "));
  CHECK(error("- {name: a, input: {gauge: cpu}, rules: [{name: r, when: 'value > 3', action: {do: explode}}]}")
            .starts_with("pipelines[0].rules[0].action.do: 'explode' is not an action"));
  CHECK(error("- {name: a, input: {gauge: cpu}, anomaly: {kind: magic}}") ==
        "pipelines[0].anomaly.kind: unknown detector 'magic' (zscore, mad, seasonal)");
  CHECK(parse_pipelines("- {name: a, input: {gauge: cpu}, anomaly: {kind: mad, threshold: 6}}").ok());
  CHECK(parse_pipelines("- {name: a, input: {gauge: cpu}, anomaly: {kind: seasonal, season: 24}}").ok());
  CHECK(error("- {name: a, input: {gauge: cpu}, anomaly: {kind: seasonal}}").starts_with("pipelines[0].anomaly."));
  CHECK(error("- {name: a, input: {gauge: cpu}, filters: [{range: {min: 3, max: 1}}]}") ==
        "pipelines[0].filters[0].range: min is above max");
  CHECK(error("- {name: a, input: {gauge: cpu}, colour: red}").starts_with("pipelines[0].colour: unknown key"));
  CHECK(parse_pipelines("").ok());
}

TEST_CASE("glob patterns match sensor ids and value names", "[agent][pipelines]") {
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("boiler*", "boiler-2"));
  CHECK(glob_match("*.temp", "a.b.temp"));
  CHECK(glob_match("a*b*c", "aXbYc"));
  CHECK_FALSE(glob_match("a*b*c", "aXbY"));
  CHECK_FALSE(glob_match("boiler", "boiler2"));
}
