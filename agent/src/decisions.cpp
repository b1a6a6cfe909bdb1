#include "nova/agent/decisions.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>

#include "nova/schemas/topic.h"

namespace nova::agent {

namespace {

// The core gauges by their wire names (messages.h), built once so looking them up does
// not allocate.
const std::string kCpu = "cpu";
const std::string kMem = "mem";
const std::string kDisk = "disk";
const std::string kLoad1 = "load1";
const std::string kTemp = "temp";

// A threshold condition ends below this fraction of its level (hysteresis).
constexpr double kClearFraction = 0.95;

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

const char* severity_name(schemas::Severity s) {
  switch (s) {
    case schemas::Severity::info: return "info";
    case schemas::Severity::warning: return "warning";
    case schemas::Severity::critical: return "critical";
  }
  return "";
}

}  // namespace

DecisionEngine::DecisionEngine(DecisionOptions options) : options_(std::move(options)) { update_zscore(); }

void DecisionEngine::set_options(const DecisionOptions& options) {
  options_ = options;
  update_zscore();
}

void DecisionEngine::update_zscore() {
  ++generation_;  // every gauge's detector follows at its next value
  zscore_ = options_.zscore;
  if (!model_) return;
  if (model_->threshold) zscore_.threshold = *model_->threshold;
  if (model_->min_samples) zscore_.min_samples = *model_->min_samples;
  if (model_->window) zscore_.window = *model_->window;
}

std::optional<std::string> DecisionEngine::apply_model(const schemas::Model& model) {
  if (models::LocalModel::runs(model.kind)) {
    if (auto refused = local_model_.apply(model)) return refused;
    model_.reset();  // the z-score runs on the config's parameters again
    model_id_ = model.model_id;
    update_zscore();
    return std::nullopt;
  }
  if (model.kind != "zscore") {
    return "model kind '" + model.kind + "' is not supported (this agent runs zscore, logistic and tree_ensemble)";
  }
  auto p = models::zscore_model(model);
  if (!p) return p.error().message();
  model_ = *p;
  model_id_ = model.model_id;
  local_model_.clear();
  update_zscore();
  return std::nullopt;
}

void DecisionEngine::clear_model() {
  local_model_.clear();
  model_.reset();
  model_id_.reset();
  update_zscore();
}

const ThresholdRule* DecisionEngine::configured(std::string_view gauge) const {
  if (gauge == kCpu) return &options_.cpu;
  if (gauge == kMem) return &options_.mem;
  if (gauge == kDisk) return &options_.disk;
  if (gauge == kTemp) return &options_.temp;
  return nullptr;
}

const ThresholdRule& DecisionEngine::in_force(const std::string& gauge, const ThresholdRule& configured) const {
  if (overrides_.empty()) return configured;  // the common case: no lookup
  const auto it = overrides_.find(gauge);
  return it == overrides_.end() ? configured : it->second;
}

std::optional<ThresholdRule> DecisionEngine::threshold(std::string_view gauge) const {
  const ThresholdRule* rule = configured(gauge);
  if (rule == nullptr) return std::nullopt;
  return in_force(std::string(gauge), *rule);
}

schemas::Result<ThresholdRule> DecisionEngine::override_threshold(const std::string& gauge,
                                                                  const ThresholdRule& rule) {
  const std::optional<ThresholdRule> before = threshold(gauge);
  if (!before) return schemas::Error{"verdict.gauge", "'" + gauge + "' has no threshold rule (cpu, mem, disk, temp)"};
  const auto level_ok = [](double v) { return std::isfinite(v) && v >= 0; };
  if (!level_ok(rule.warning)) return schemas::Error{"verdict.warning", "must be a finite level >= 0 (0 = off)"};
  if (!level_ok(rule.critical)) return schemas::Error{"verdict.critical", "must be a finite level >= 0 (0 = off)"};
  if (rule.warning > 0 && rule.critical > 0 && rule.critical < rule.warning) {
    return schemas::Error{"verdict.critical", number(rule.critical) + " is below the warning level " + number(rule.warning)};
  }
  overrides_[gauge] = rule;
  return *before;
}

DecisionEngine::Gauge* DecisionEngine::gauge(const std::string& name) {
  if (auto it = gauges_.find(name); it != gauges_.end()) return &it->second;
  if (gauges_.size() >= kMaxGauges) return nullptr;
  Gauge& g = gauges_[name];
  // Alerts and decision inputs name the gauge, and both need an id. The agent's own
  // outbox gauges step with every batch: they are its bookkeeping, not the host's state.
  g.watched = topics::Id::valid(name) && !name.starts_with("agent.");
  return &g;
}

const StreamRule* DecisionEngine::rule_for(std::string_view gauge) const {
  const auto rule = std::find_if(options_.streams.begin(), options_.streams.end(),
                                 [&](const StreamRule& r) { return matches(r.match, gauge); });
  return rule == options_.streams.end() ? nullptr : &*rule;
}

std::optional<DetectorParams> DecisionEngine::detector_for(std::string_view gauge) const {
  DetectorParams p;
  if (options_.streams.empty()) {
    p.kind = "zscore";
  } else {
    const StreamRule* rule = rule_for(gauge);
    if (rule == nullptr) return std::nullopt;
    p = rule->detector;
  }
  if (p.kind == "zscore") {
    // The z-score parameters in force: the config's (no rules), or the model's.
    if (options_.streams.empty()) {
      p.threshold = zscore_.threshold;
      p.min_samples = zscore_.min_samples;
      p.window = zscore_.window;
    } else if (model_) {
      p.threshold = model_->threshold.value_or(p.threshold);
      p.min_samples = model_->min_samples.value_or(p.min_samples);
      p.window = model_->window.value_or(p.window);
    }
  }
  if (p.threshold <= 0) return std::nullopt;
  return p;
}

Detector* DecisionEngine::detector(const std::string& name, Gauge& g) {
  if (g.generation == generation_) return g.detector.get();
  g.generation = generation_;
  const StreamRule* rule = rule_for(name);
  const std::uint8_t k = rule != nullptr ? rule->persist_k : 1;
  const std::uint8_t n = rule != nullptr ? rule->persist_n : 1;
  if (k != g.persist_k || n != g.persist_n) g.recent = 0;
  g.persist_k = k;
  g.persist_n = n;
  const std::optional<DetectorParams> p = detector_for(name);
  if (!p) {
    g.detector.reset();
  } else if (!g.detector || !g.detector->retune(*p)) {
    // Parameters from config and models are checked where they come in; a detector that
    // cannot be made here leaves the gauge unwatched rather than the agent stopped.
    auto made = make_detector(*p);
    g.detector = made ? std::move(made).value() : nullptr;
  }
  return g.detector.get();
}

bool DecisionEngine::due(const Condition& c, schemas::Timestamp ts) const {
  const auto repeat_ms = static_cast<schemas::Timestamp>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.repeat).count());
  // A clock that went back (a replay, a corrected RTC) must not silence a condition for
  // the length of the jump.
  return ts < c.last_raised || ts - c.last_raised >= repeat_ms;
}

void DecisionEngine::evaluate(const schemas::MetricSample& s, bool offline, std::vector<Firing>& out) {
  struct Core {
    const std::string& name;
    double value;
    const ThresholdRule* rule;
  };
  const Core core[] = {
      {kCpu, s.cpu_pct, &in_force(kCpu, options_.cpu)},
      {kMem, s.mem_pct, &in_force(kMem, options_.mem)},
      {kDisk, s.disk_pct, &in_force(kDisk, options_.disk)},
      {kLoad1, s.load1, nullptr},
  };
  for (const Core& c : core) {
    if (!std::isfinite(c.value)) continue;
    Gauge* g = gauge(c.name);
    if (g == nullptr) continue;
    if (c.rule != nullptr) check_threshold(c.name, *g, *c.rule, c.value, s.ts, offline, out);
    check_anomaly(c.name, *g, c.value, s.ts, offline, out);
  }
  if (s.temp_c && std::isfinite(*s.temp_c)) {
    if (Gauge* g = gauge(kTemp)) {
      check_threshold(kTemp, *g, in_force(kTemp, options_.temp), *s.temp_c, s.ts, offline, out);
      check_anomaly(kTemp, *g, *s.temp_c, s.ts, offline, out);
    }
  }
  for (const auto& [name, value] : s.extra) {
    if (!std::isfinite(value)) continue;
    Gauge* g = gauge(name);
    if (g == nullptr || !g->watched) continue;
    check_anomaly(name, *g, value, s.ts, offline, out);
  }
  const auto repeat_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.repeat).count());
  local_model_.evaluate(s, offline, repeat_ms, out);
}

void DecisionEngine::check_threshold(const std::string& name, Gauge& g, const ThresholdRule& rule, double value,
                                     schemas::Timestamp ts, bool offline, std::vector<Firing>& out) {
  Condition& c = g.threshold;
  const double lowest = rule.warning > 0 ? rule.warning : rule.critical;
  if (lowest <= 0) {  // both levels off (perhaps just now, by a reload): nothing to watch
    c = {};
    return;
  }
  Level now = Level::none;
  if (rule.critical > 0 && value >= rule.critical) {
    now = Level::critical;
  } else if (rule.warning > 0 && value >= rule.warning) {
    now = Level::warning;
  }
  // Hysteresis: once raised, a level holds until the value is clearly below it, and a
  // critical condition falling below that still holds as a warning until the value is
  // clearly below the warning level (else a drop from 100 to 89.5 would "recover" at
  // once, above the warning level's own clear point).
  if (now < c.level) {
    const double level_value = c.level == Level::critical ? rule.critical : rule.warning;
    if (value >= kClearFraction * level_value) {
      now = c.level;
    } else if (c.level == Level::critical && rule.warning > 0 && value >= kClearFraction * rule.warning) {
      now = Level::warning;
    }
  }
  const auto raise = [&](Level level) {
    const bool critical = level == Level::critical;
    const double at = critical ? rule.critical : rule.warning;
    Firing f;
    f.alert.ts = ts;
    f.alert.severity = critical ? schemas::Severity::critical : schemas::Severity::warning;
    f.alert.metric = name;
    f.alert.observed = value;
    f.alert.threshold = at;
    f.alert.message = name + " " + number(value) + " is at or above its " +
                      severity_name(f.alert.severity) + " level " + number(at);
    schemas::DecisionRecord d;
    d.ts = ts;
    d.kind = "threshold_alert";
    // Both levels in force, so the cloud can judge them against its policy (verdicts).
    d.inputs = {{name, value}, {"threshold", at}, {"warning", rule.warning}, {"critical", rule.critical}};
    d.action = "alerted";
    d.confidence = 1;  // a configured rule, applied exactly
    d.offline = offline;
    f.record = std::move(d);
    out.push_back(std::move(f));
    c.last_raised = ts;
  };
  if (now == Level::none) {
    if (c.level != Level::none) {
      Firing f;
      f.alert.ts = ts;
      f.alert.severity = schemas::Severity::info;
      f.alert.metric = name;
      f.alert.observed = value;
      f.alert.threshold = lowest;
      f.alert.message = name + " " + number(value) + " recovered below " + number(kClearFraction * lowest);
      out.push_back(std::move(f));
    }
    c = {};
    return;
  }
  // A new or escalated condition is raised at once; one that lasts, once per repeat.
  if (now > c.level || due(c, ts)) raise(now);
  c.level = now;
}

namespace {

// How an alert names a detector's units and baseline.
struct Wording {
  const char* units;
  const char* baseline;
};
Wording wording_of(std::string_view kind) {
  if (kind == "mad") return {"robust standard deviations", "median"};
  if (kind == "seasonal") return {"robust standard deviations", "seasonal expectation"};
  return {"standard deviations", "mean"};
}

}  // namespace

void DecisionEngine::check_anomaly(const std::string& name, Gauge& g, double value, schemas::Timestamp ts,
                                   bool offline, std::vector<Firing>& out) {
  Detector* d = detector(name, g);
  if (d == nullptr) return;
  const Judgement j = d->observe(value);
  if (!j.judged) return;
  g.recent = (g.recent << 1) | (j.anomalous ? 1U : 0U);
  const std::uint64_t last_n = g.persist_n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << g.persist_n) - 1;
  if (!j.anomalous || std::popcount(g.recent & last_n) < g.persist_k) {
    g.anomaly.level = Level::none;  // last_raised stays: it paces the next one
    return;
  }
  // At most once per repeat per gauge, even when spikes come and go in between: a
  // noisy gauge (disk bytes/s, a busy core) has many short excursions, and each would
  // otherwise be a new condition.
  if (g.anomaly.last_raised == 0 || due(g.anomaly, ts)) {
    const DetectorParams p = *detector_for(name);  // d exists: so do its parameters
    const double z = (value - j.expected) / j.scale;
    const Wording w = wording_of(p.kind);
    Firing f;
    f.alert.ts = ts;
    f.alert.severity = schemas::Severity::warning;
    f.alert.metric = name;
    f.alert.observed = value;
    f.alert.threshold = j.expected + std::copysign(p.threshold * j.scale, z);
    f.alert.message = name + " " + number(value) + " is " + number(j.score) + " " + w.units + " " +
                      (z > 0 ? "above" : "below") + " its " + w.baseline + " " + number(j.expected) +
                      " (" + p.kind + " anomaly at " + number(p.threshold) + ")";
    schemas::DecisionRecord r;
    r.ts = ts;
    r.kind = "anomaly_alert";
    if (p.kind == "zscore") {
      // The z-score's inputs keep their names (verdict consumers read them).
      r.inputs = {{name, value}, {"mean", j.expected}, {"stddev", j.scale}, {"zscore", z}, {"zscore_threshold", p.threshold}};
    } else {
      r.inputs = {{name, value}, {"expected", j.expected}, {"scale", j.scale}, {"score", z},
                  {"score_threshold", p.threshold}, {"window", static_cast<double>(p.window)}};
      if (p.kind == "seasonal") r.inputs.emplace("season", static_cast<double>(p.season));
    }
    r.action = "alerted";
    // Chebyshev: whatever the distribution, |z| >= k has probability at most 1/k^2,
    // so 1 - 1/z^2 is a lower bound on "this is not chance".
    r.confidence = std::clamp(1.0 - 1.0 / (z * z), 0.0, 1.0);
    r.offline = offline;
    f.record = std::move(r);
    out.push_back(std::move(f));
    g.anomaly.last_raised = ts;
  }
  g.anomaly.level = Level::warning;
}

}  // namespace nova::agent
