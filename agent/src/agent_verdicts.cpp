// What the agent does with the cloud's verdict on one of its decisions (docs/agent.md,
// "Verdicts"). Kept apart from agent.cpp: it is one handler of one down kind.
//
//   accepted    counted, logged; nothing changes.
//   rejected    counted, logged with the cloud's reason. The agent's only action on its own
//               is raising an alert, which cannot be taken back: the record of it stays.
//   overridden  counted; with new threshold levels for a gauge (verdict.gauge), they are put
//               in force at once (DecisionEngine::override_threshold) and a decision record
//               of kind "verdict_applied" naming the decision (applies) goes up on the
//               decisions stream, so the cloud sees that it took effect. A level the
//               verdict leaves out keeps its value. A verdict the engine cannot apply is
//               a bad message: counted and logged with the reason, nothing changes.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "durable_file.h"
#include "nova/agent/agent.h"
#include "nova/common/log.h"
#include "nova/schemas/codec.h"

namespace nova::agent {

namespace {

std::string level(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string log_text(const std::string& text) { return common::logfmt_quote(schemas::printable_utf8(text)); }

// state_dir/threshold_overrides: one line per gauge, "<gauge> <warning> <critical>".
constexpr const char* kOverridesFile = "threshold_overrides";

std::string exact(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

void Agent::on_verdict(const std::string& topic, const std::string& payload, schemas::Timestamp now_ms) {
  auto v = schemas::decode_cbor<schemas::DecisionVerdict>(payload);
  if (!v) return bad_input(topic, v.error().message());
  if (v->node != options_.birth.node) return bad_input(topic, "verdict.node: '" + v->node + "' is not this node");
  const std::string fields = "decision=" + v->decision_id + " reason=" + log_text(v->reason.value_or(""));
  if (v->verdict == schemas::Verdict::accepted) {
    update_counters([](AgentCounters& c) { ++c.verdicts_accepted; });
    if (options_.log) options_.log("debug", "verdict_accepted", fields);
    return;
  }
  // A verdict against a decision taken offline: agent.pipeline.offline_overruled.
  const bool overruled_offline = v->verdict != schemas::Verdict::accepted && offline_set_.count(v->decision_id) != 0;
  if (overruled_offline) update_counters([](AgentCounters& c) { ++c.offline_overruled; });
  if (v->verdict == schemas::Verdict::rejected) {
    update_counters([](AgentCounters& c) { ++c.verdicts_rejected; });
    if (options_.log) options_.log("warning", "verdict_rejected", fields);
    return;
  }
  update_counters([](AgentCounters& c) { ++c.verdicts_overridden; });
  if (!v->gauge) {
    if (options_.log) options_.log("warning", "verdict_overridden", fields + " detail=\"nothing to change\"");
    return;
  }
  const std::optional<ThresholdRule> current = decisions_.threshold(*v->gauge);
  ThresholdRule rule = current.value_or(ThresholdRule{});
  if (v->warning) rule.warning = *v->warning;
  if (v->critical) rule.critical = *v->critical;
  auto before = decisions_.override_threshold(*v->gauge, rule);
  if (!before) return bad_input(topic, before.error().message());
  save_overrides();

  schemas::DecisionRecord d;
  d.ts = now_ms;
  d.kind = "verdict_applied";
  d.applies = v->decision_id;
  d.inputs = {{"warning", rule.warning}, {"critical", rule.critical}};
  d.action = *v->gauge + " levels set to warning " + level(rule.warning) + " critical " + level(rule.critical) +
             " (were " + level(before->warning) + " " + level(before->critical) + ")";
  d.confidence = 1;
  d.offline = offline();
  const bool recorded = append_record("decisions", Priority::decisions, d);
  update_counters([&](AgentCounters& c) {
    ++c.overrides_applied;
    if (recorded) ++c.decisions;
  });
  if (options_.log) options_.log("info", "override_applied", fields + " action=" + log_text(d.action));
  update_backlog();
}

void Agent::save_overrides() {
  std::string text;
  for (const auto& [gauge, rule] : decisions_.threshold_overrides()) {
    text += gauge + " " + exact(rule.warning) + " " + exact(rule.critical) + "\n";
  }
  if (!write_file_durably(options_.state_dir / kOverridesFile, text, 0600) && options_.log) {
    options_.log("error", "overrides_not_kept", "file=" + log_text((options_.state_dir / kOverridesFile).string()));
  }
}

void Agent::restore_overrides() {
  std::ifstream in(options_.state_dir / kOverridesFile);
  if (!in) return;  // none yet
  std::size_t restored = 0;
  std::string gauges;
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    std::istringstream fields(line);
    std::string gauge;
    ThresholdRule rule;
    std::string rest;
    const bool parsed = fields >> gauge >> rule.warning >> rule.critical && !(fields >> rest);
    auto put = parsed ? decisions_.override_threshold(gauge, rule)
                      : schemas::Result<ThresholdRule>(schemas::Error{"", "expected <gauge> <warning> <critical>"});
    if (put) {
      ++restored;
      gauges += (gauges.empty() ? "" : ",") + gauge;
    } else if (options_.log) {
      options_.log("warning", "override_not_restored",
                   "file=" + log_text((options_.state_dir / kOverridesFile).string()) + " line=" + std::to_string(n) +
                       " error=" + log_text(put.error().message()));
    }
  }
  if (restored > 0 && options_.log) {
    options_.log("info", "overrides_restored", "count=" + std::to_string(restored) + " gauges=" + gauges);
  }
}

}  // namespace nova::agent
