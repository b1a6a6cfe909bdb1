// The agent's side of verdicts: DecisionEngine::override_threshold, and a signed verdict
// delivered to a real Agent (no broker) -- counted by kind, an override put in force and
// recorded upward with the decision it applies, a verdict it cannot apply refused with
// the field named.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "nova/agent/agent.h"
#include "nova/schemas/codec.h"
#include "nova/testing/signer.h"
#include "nova/testing/temp_dir.h"

using namespace nova;

namespace {

constexpr schemas::Timestamp kT0 = 1732650000000;
constexpr const char* kVerdictTopic = "nova/v1/down/cloud/eu/par/par-a1/gw-1/verdict";

schemas::MetricSample sample(int i, double cpu) {
  schemas::MetricSample s;
  s.ts = kT0 + static_cast<schemas::Timestamp>(i) * 1000;
  s.cpu_pct = cpu;
  s.mem_pct = 40;
  s.disk_pct = 50;
  s.load1 = 0.5;
  return s;
}

agent::DecisionOptions thresholds_only() {
  agent::DecisionOptions o;
  o.zscore.threshold = 0;
  return o;
}

std::string signed_verdict(const schemas::DecisionVerdict& v) {
  const schemas::Bytes b = schemas::encode_cbor(v);
  return testing::test_signer().sign(kVerdictTopic, std::string(b.begin(), b.end()));
}

schemas::DecisionVerdict verdict(schemas::Verdict kind, const std::string& decision_id) {
  schemas::DecisionVerdict v;
  v.decision_id = decision_id;
  v.node = "gw-1";
  v.verdict = kind;
  v.reason = "test";
  v.ts = kT0;
  return v;
}

// An agent of node gw-1 on `dir`, trusting the test signer, thresholds only; run() is
// never called, so its broker is never reached.
agent::AgentOptions agent_options(const testing::TempDir& dir) {
  agent::AgentOptions o;
  o.birth.node = "gw-1";
  o.birth.description = schemas::NodeDescription{4, "cloud/eu/par/par-a1", "x86_64", "test", {}, {1000, 512, 1024}, std::nullopt};
  o.broker_uri = "tcp://127.0.0.1:1";
  o.outbox.dir = dir.path / "outbox";
  o.state_dir = dir.path / "state";
  o.control.keys = {testing::test_signer().verify_key()};
  o.decisions = thresholds_only();
  return o;
}

}  // namespace

TEST_CASE("an overridden threshold is in force for its gauge whatever the config says", "[agent][decisions][verdicts]") {
  agent::DecisionEngine e(thresholds_only());  // cpu 90/97
  std::vector<agent::Firing> out;
  e.evaluate(sample(0, 85), false, out);
  CHECK(out.empty());
  auto before = e.override_threshold("cpu", {80, 85});
  REQUIRE(before.ok());
  CHECK(before.value() == agent::ThresholdRule{90, 97});
  CHECK(e.threshold("cpu") == agent::ThresholdRule{80, 85});
  e.evaluate(sample(1, 85), false, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].alert.severity == schemas::Severity::critical);
  CHECK(out[0].alert.threshold == 85);
  CHECK(out[0].record->inputs.at("warning") == 80);  // what the cloud judges next time
  // A config reload keeps the cloud's levels.
  e.set_options(thresholds_only());
  CHECK(e.threshold("cpu") == agent::ThresholdRule{80, 85});

  auto unknown = e.override_threshold("load1", {1, 2});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message() == "verdict.gauge: 'load1' has no threshold rule (cpu, mem, disk, temp)");
  auto inverted = e.override_threshold("mem", {90, 80});
  REQUIRE_FALSE(inverted.ok());
  CHECK(inverted.error().message() == "verdict.critical: 80 is below the warning level 90");
  CHECK(e.threshold("mem") == agent::ThresholdRule{90, 97});
}

TEST_CASE("a signed verdict: counted by kind, an override applied and recorded upward, a bad one refused",
          "[agent][verdicts]") {
  testing::TempDir dir("nova-agent-verdicts");
  auto created = agent::Agent::create(agent_options(dir), nullptr);
  REQUIRE(created.ok());
  agent::Agent& a = *created.value();

  a.add_sample(sample(0, 85));  // below 90: nothing
  CHECK(a.counters().alerts == 0);

  a.deliver(kVerdictTopic, signed_verdict(verdict(schemas::Verdict::accepted, "decisions-1")));
  a.deliver(kVerdictTopic, signed_verdict(verdict(schemas::Verdict::rejected, "decisions-2")));
  auto override = verdict(schemas::Verdict::overridden, "decisions-3");
  override.gauge = "cpu";
  override.warning = 80;  // critical left out: keeps 97
  a.deliver(kVerdictTopic, signed_verdict(override));
  auto c = a.counters();
  CHECK(c.verdicts_accepted == 1);
  CHECK(c.verdicts_rejected == 1);
  CHECK(c.verdicts_overridden == 1);
  CHECK(c.overrides_applied == 1);
  CHECK(c.decisions == 1);  // the record of the override
  CHECK(c.bad_messages == 0);
  CHECK(a.outbox().stats().at("decisions").count == 1);

  // The same value as before now crosses the overridden level.
  a.add_sample(sample(1, 85));
  CHECK(a.counters().alerts == 1);

  // A verdict it cannot apply, or for another node: a bad message naming the field.
  auto wrong_gauge = verdict(schemas::Verdict::overridden, "decisions-4");
  wrong_gauge.gauge = "load1";
  wrong_gauge.warning = 3;
  a.deliver(kVerdictTopic, signed_verdict(wrong_gauge));
  auto elsewhere = verdict(schemas::Verdict::accepted, "decisions-5");
  elsewhere.node = "gw-2";
  a.deliver(kVerdictTopic, signed_verdict(elsewhere));
  c = a.counters();
  CHECK(c.bad_messages == 2);
  CHECK(c.overrides_applied == 1);
  CHECK(c.verdicts_accepted == 1);
}

TEST_CASE("the cloud's overrides outlive an agent restart and a bad line in their file is named and skipped",
          "[agent][verdicts][restart]") {
  testing::TempDir dir("nova-agent-overrides");
  std::vector<std::string> lines;
  auto options = [&] {
    agent::AgentOptions o = agent_options(dir);
    o.log = [&](const char* level, const std::string& event, const std::string& fields) {
      lines.push_back(std::string(level) + " " + event + " " + fields);
    };
    return o;
  };
  {
    auto created = agent::Agent::create(options(), nullptr);
    REQUIRE(created.ok());
    auto override = verdict(schemas::Verdict::overridden, "decisions-1");
    override.gauge = "cpu";
    override.warning = 80.5;
    override.critical = 85;
    created.value()->deliver(kVerdictTopic, signed_verdict(override));
    REQUIRE(created.value()->counters().overrides_applied == 1);
  }  // the agent stops; its state stays on disk

  // Started again on the same state: 85 crosses the cloud's critical level, not the config's 97.
  {
    auto again = agent::Agent::create(options(), nullptr);
    REQUIRE(again.ok());
    CHECK(std::find(lines.begin(), lines.end(), "info overrides_restored count=1 gauges=cpu") != lines.end());
    again.value()->add_sample(sample(0, 85));
    CHECK(again.value()->counters().alerts == 1);
  }

  // A line that cannot be read (or applied) is logged with its number; the others stand.
  std::ofstream(dir.path / "state" / "threshold_overrides") << "cpu 80.5 85\nmem ninety 97\ndisk 95 90\n";
  lines.clear();
  auto third = agent::Agent::create(options(), nullptr);
  REQUIRE(third.ok());
  CHECK(std::find(lines.begin(), lines.end(), "info overrides_restored count=1 gauges=cpu") != lines.end());
  const std::string file = (dir.path / "state" / "threshold_overrides").string();
  INFO([&] {
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    return all;
  }());
  CHECK(std::find(lines.begin(), lines.end(), "warning override_not_restored file=\"" + file + "\"" +
                                                  " line=2 error=\"expected <gauge> <warning> <critical>\"") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "warning override_not_restored file=\"" + file + "\"" +
                                                  " line=3 error=\"verdict.critical: 90 is below the warning level 95\"") !=
        lines.end());
}
