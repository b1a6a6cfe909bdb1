// What the agent does with its pipelines (docs/agent.md, "Pipelines"). Kept apart from
// agent.cpp: pipelines.h is the logic, this is its plumbing.
//
//   - Readings reach the pipelines at arrival (on_sensor_reading), samples once each
//     (add_sample); personal values never do (sensors.h, PrivacyPolicy).
//   - Outputs: `local` events are published on nova/v1/local/<node>/pipeline/<name>
//     (JSON; QoS 1 on the node's own broker, dropped and not retried while it is away:
//     a live view, not a record); `outbox` events become gauges of the next sample.
//   - Every rule decision is a DecisionRecord on the "decisions" stream (kind
//     "rule.<rule>", action the action's name, inputs the operands the rule saw plus
//     "cached" 1 when the decision cache answered and "failed" 1 when the action could
//     not be carried out, offline set when the agent had no session with its broker, as
//     for every decision record), recorded whether or not
//     its action succeeds. The record's id is in the actuator message, so a consumer can
//     match the two.
//   - Analytics gauges in each sample, while pipelines are configured:
//     agent.pipeline.latency_p50_us / latency_p99_us (readings' arrival -> pipelines done,
//     since the previous sample; absent when none came), events_per_s (values that
//     entered a pipeline per second of sample time), cache_hit_ratio (decision cache,
//     since start; absent before its first lookup), decisions_offline and
//     offline_overruled (since start), late (values dropped behind a watermark).
#include <nlohmann/json.hpp>

#include "nova/agent/agent.h"
#include "pipeline_outlet.h"
#include "nova/common/log.h"
#include "nova/schemas/topic.h"

namespace nova::agent {

namespace {

constexpr std::size_t kRememberedOffline = 4096;

std::string gauge_name(const std::string& pipeline, const std::string& stream, Field f) {
  return "pipeline." + pipeline + "." + stream + "." + std::string(field_name(f));
}

}  // namespace

Agent::PipelineOutlet::PipelineOutlet(Agent& a) : a_(a) {}

void Agent::PipelineOutlet::emit(const PipelineSpec& p, const std::string& stream, const Event& e) {
  if (p.outbox) {
    for (std::size_t f = 0; f < kFieldCount; ++f) {
      if (!e.has(static_cast<Field>(f))) continue;
      std::string name = gauge_name(p.name, stream, static_cast<Field>(f));
      // Not an id (over 64 bytes): not sent; the local output still has it.
      if (topics::Id::valid(name) && (a_.pipeline_outbox_.size() < 128 || a_.pipeline_outbox_.count(name) != 0)) {
        a_.pipeline_outbox_[std::move(name)] = e.values[f];
      }
    }
  }
  if (!p.local) return;
  nlohmann::json j{{"pipeline", p.name}, {"stream", stream}, {"ts", e.ts}};
  for (std::size_t f = 0; f < kFieldCount; ++f) {
    if (e.has(static_cast<Field>(f))) j[std::string(field_name(static_cast<Field>(f)))] = e.values[f];
  }
  const std::string topic = topics::local(topics::Id::parse(a_.options_.birth.node).value(), topics::LocalKind::pipeline,
                                          topics::Id::parse(p.name).value());
  a_.uplink_->publish(topic, j.dump(), false);
}

void Agent::PipelineOutlet::decide(const PipelineDecision& d) { a_.act(d); }

void Agent::PipelineOutlet::cleared(const PipelineSpec&, const RuleSpec& rule, const std::string&) {
  if (rule.action.kind != ActionKind::suppress_alert) return;
  auto it = a_.suppressions_.find(rule.action.target);
  if (it != a_.suppressions_.end() && --it->second == 0) a_.suppressions_.erase(it);
}

void Agent::set_pipelines(std::vector<PipelineSpec> specs) {
  suppressions_.clear();
  pipeline_outbox_.clear();
  if (specs.empty()) {
    pipelines_.reset();
    return;
  }
  auto made = Pipelines::make(std::move(specs));
  if (!made) {  // checked by config before; kept as it was
    if (options_.log) options_.log("error", "pipelines_refused", "error=" + common::logfmt_quote(made.error().message()));
    return;
  }
  pipelines_ = std::move(made).value();
  if (!outlet_) outlet_ = std::make_unique<PipelineOutlet>(*this);
  if (options_.log) options_.log("info", "pipelines", "count=" + std::to_string(pipelines_->specs().size()));
}

void Agent::feed_reading(const std::string& sensor, const schemas::SensorReading& reading, Clock::time_point arrival) {
  if (!pipelines_) return;
  const PipelineCounters before = pipelines_->counters();
  pipelines_->on_reading(sensor, reading, [&](const std::string& value) { return options_.privacy.is_personal(sensor, value); },
                         *outlet_);
  latency_.add(Clock::now() - arrival);
  const PipelineCounters after = pipelines_->counters();
  update_counters([&](AgentCounters& c) {
    c.pipeline_readings += after.readings - before.readings;
    c.pipeline_late += after.late - before.late;
  });
}

void Agent::pipeline_sample(schemas::MetricSample& sample) {
  if (!pipelines_) return;
  const PipelineCounters before = pipelines_->counters();
  pipelines_->on_sample(sample, *outlet_);
  const PipelineCounters after = pipelines_->counters();
  update_counters([&](AgentCounters& c) {
    c.pipeline_readings += after.readings - before.readings;
    c.pipeline_late += after.late - before.late;
  });
  auto& extra = sample.extra;
  for (auto& [name, v] : pipeline_outbox_) {
    if (extra.size() >= 256) break;
    extra[name] = v;
  }
  pipeline_outbox_.clear();
  if (latency_.count() > 0) {
    extra["agent.pipeline.latency_p50_us"] = latency_.percentile_us(50);
    extra["agent.pipeline.latency_p99_us"] = latency_.percentile_us(99);
    latency_.reset();
  }
  if (analytics_ts_ && sample.ts > *analytics_ts_) {
    const double seconds = static_cast<double>(sample.ts - *analytics_ts_) / 1000.0;
    extra["agent.pipeline.events_per_s"] = static_cast<double>(after.readings - readings_before_) / seconds;
  }
  analytics_ts_ = sample.ts;
  readings_before_ = after.readings;
  const DecisionCache& cache = pipelines_->cache();
  if (cache.hits() + cache.misses() > 0) {
    extra["agent.pipeline.cache_hit_ratio"] =
        static_cast<double>(cache.hits()) / static_cast<double>(cache.hits() + cache.misses());
  }
  const AgentCounters c = counters();
  extra["agent.pipeline.decisions_offline"] = static_cast<double>(c.decisions_offline);
  extra["agent.pipeline.offline_overruled"] = static_cast<double>(c.offline_overruled);
  extra["agent.pipeline.late"] = static_cast<double>(c.pipeline_late);
}

bool Agent::suppressed(const std::string& metric) const {
  for (const auto& [prefix, n] : suppressions_) {
    if (metric.starts_with(prefix)) return true;
  }
  return false;
}

void Agent::note_decision(const schemas::DecisionRecord& d) {
  if (!d.offline) return;
  update_counters([](AgentCounters& c) { ++c.decisions_offline; });
  if (offline_set_.insert(d.decision_id).second) offline_ids_.push_back(d.decision_id);
  if (offline_ids_.size() > kRememberedOffline) {
    offline_set_.erase(offline_ids_.front());
    offline_ids_.pop_front();
  }
}

void Agent::act(const PipelineDecision& d) {
  const ActionSpec& a = *d.action;
  const schemas::Timestamp now = wall_ms();
  // The record's id, known before the action so the actuator message can carry it
  // (append_record gives the stream's next seq).
  const std::string decision_id = "decision-" + std::to_string(outbox_->next_seq("decisions"));
  const std::string rule = d.pipeline->name + "/" + d.rule->name;
  std::optional<std::string> failure;
  std::optional<std::uint64_t> evicted;
  auto task_outcome = [&](const schemas::Status& st) {
    if (!st) failure = st.error().message();
  };
  switch (a.kind) {
    case ActionKind::publish: {
      nlohmann::json j{{"decision_id", decision_id}, {"rule", d.rule->name},   {"pipeline", d.pipeline->name},
                       {"stream", d.stream},         {"ts", d.ts},             {"clear", d.clear},
                       {"payload", a.payload},       {"offline", offline()}};
      for (const auto& [name, v] : d.inputs) j["inputs"][name] = v;
      const std::string topic = topics::local(topics::Id::parse(options_.birth.node).value(),
                                              topics::LocalKind::actuator, topics::Id::parse(a.target).value());
      if (uplink_->publish(topic, j.dump(), false)) {
        update_counters([](AgentCounters& c) { ++c.actuator_messages; });
      } else {
        failure = "not connected to the local broker";
      }
      break;
    }
    case ActionKind::raise_alert: {
      schemas::Alert alert;
      alert.ts = now;
      alert.severity = a.severity == "critical" ? schemas::Severity::critical
                       : a.severity == "info"   ? schemas::Severity::info
                                                : schemas::Severity::warning;
      alert.metric = a.target.empty() ? "pipeline." + d.pipeline->name : a.target;
      alert.message = "rule " + rule + " on " + d.stream;
      for (const auto& [name, v] : d.inputs) alert.message += " " + name + "=" + std::to_string(v);
      if (alert.message.size() > 1024) alert.message.resize(1024);
      if (suppressed(alert.metric)) {
        update_counters([](AgentCounters& c) { ++c.alerts_suppressed; });
      } else if (append_record("alerts", Priority::alerts, alert)) {
        update_counters([](AgentCounters& c) { ++c.alerts; });
      }
      break;
    }
    case ActionKind::suppress_alert: ++suppressions_[a.target]; break;
    case ActionKind::set_task_priority:
    case ActionKind::pause_task:
    case ActionKind::resume_task:
    case ActionKind::stop_task:
      if (options_.tasks == nullptr) {
        failure = "this agent runs no tasks";
      } else if (a.kind == ActionKind::set_task_priority) {
        task_outcome(options_.tasks->set_priority(a.target, a.priority));
      } else if (a.kind == ActionKind::stop_task) {
        auto cancelled = options_.tasks->cancel(a.target, "rule " + rule, now);
        if (!cancelled) failure = cancelled.error().message();
      } else {
        task_outcome(options_.tasks->pause(a.target, a.kind == ActionKind::pause_task));
      }
      break;
    case ActionKind::evict_cache:
      if (options_.evict_cache) {
        evicted = options_.evict_cache(a.target);
      } else {
        failure = "no cache to evict from";
      }
      break;
    case ActionKind::request_migration: break;  // the record is the request
  }
  schemas::DecisionRecord r;
  r.ts = now;
  r.kind = "rule." + d.rule->name;
  r.action = std::string(action_name(a.kind));
  if (!a.target.empty()) r.target = a.target;
  std::map<std::string, double> inputs(d.inputs.begin(), d.inputs.end());
  if (d.cached) inputs["cached"] = 1;
  if (failure) inputs["failed"] = 1;
  if (evicted) inputs["evicted"] = static_cast<double>(*evicted);
  r.inputs = std::move(inputs);
  r.confidence = 1;
  r.offline = offline();
  const bool recorded = append_record("decisions", Priority::decisions, r);
  if (recorded) note_decision(r);
  update_counters([&](AgentCounters& c) {
    ++c.pipeline_decisions;
    if (recorded) ++c.decisions;
    if (failure) ++c.pipeline_actions_failed;
  });
  update_backlog();
  if (options_.log) {
    options_.log(failure ? "warning" : "info", "rule_action",
                 "rule=" + rule + " stream=" + d.stream + " action=" + r.action + " target=" +
                     common::logfmt_quote(a.target) + " decision=" + r.decision_id + " clear=" +
                     (d.clear ? "true" : "false") + " cached=" + (d.cached ? "true" : "false") +
                     " offline=" + (r.offline ? "true" : "false") +
                     (evicted ? " evicted=" + std::to_string(*evicted) : "") +
                     (failure ? " error=" + common::logfmt_quote(*failure) : ""));
  }
}

}  // namespace nova::agent
