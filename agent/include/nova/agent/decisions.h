// Local decisions: the agent watches its own metric samples and raises alerts without
// asking anyone (docs/agent.md, "Local decisions"), so a node that has lost its uplink
// still notices a full disk or a runaway process and says so as soon as it can.
//
// Every sample is evaluated in two ways:
//   - threshold rules on the core gauges cpu, mem, disk (%) and temp (degC): a warning
//     and a critical level each, 0 = off (config keys alerts.*);
//   - an anomaly detector per gauge (detectors.h: zscore, mad or seasonal) over the
//     core gauges, load1, and every extra gauge such as "sensor.<sensor>.<name>",
//     except the agent's own "agent.*" bookkeeping, which steps by design. Which
//     detector watches a gauge is the first of `streams` whose pattern matches the
//     gauge's name; a gauge no rule matches is not watched. With no rules at all, every
//     gauge has a z-score detector with the `zscore` parameters (what the agent did
//     before rules existed). A value is judged against the baseline before it is added.
//     The parameters of z-score detectors come from their rule or, when one is in
//     force, from a retained Model of kind "zscore" on the node's down model topic.
//
// Alerts are raised when a condition starts, not on every sample: a condition that goes
// on is raised again at most once per `repeat` (by the samples' own timestamps, so a
// replayed day behaves like a live one), and at once if it escalates from warning to
// critical. A threshold condition ends only when the value falls 5% below its warning
// level (hysteresis: a value wobbling around the level does not raise a storm), and its
// end is reported with an info alert ("recovered"). An anomaly has no end to report:
// the baseline moves towards the new level, and the condition simply stops; and since
// noisy gauges have many short excursions, a gauge's anomalies are raised at most once
// per `repeat` however often they start.
//
// Each warning or critical alert comes with a DecisionRecord (what the agent saw, what
// it did, how sure it is, and whether it was offline), which the cloud may judge with
// a verdict. The caller fills in stream positions and ids (Agent::add_sample).
//
// Pure logic, no I/O, no clock of its own; used on the agent's loop thread only. After
// the gauges have been seen once, evaluating a sample that raises nothing allocates
// nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/agent/model_decisions.h"
#include "nova/agent/detectors.h"
#include "nova/models/model_check.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::agent {

// A gauge's two levels; 0 = that level is off. A value at or above a level is beyond it.
struct ThresholdRule {
  double warning = 0;
  double critical = 0;
  friend bool operator==(const ThresholdRule&, const ThresholdRule&) = default;
};

struct ZScoreParams {
  double threshold = 4;           // |z| at or above this is an anomaly; 0 = detector off
  std::uint32_t min_samples = 60;  // values seen before any is judged (>= 2)
  std::uint32_t window = 600;      // memory of the baseline, in samples (>= 1)
  friend bool operator==(const ZScoreParams&, const ZScoreParams&) = default;
};

// Which detector watches the gauges whose names match `match`.
struct StreamRule {
  // A gauge name, or a pattern in which each '*' matches any run of characters
  // ("sensor.*", "sensor.*.temp", "*").
  std::string match = "*";
  DetectorParams detector;
  // Persistence: an anomaly is raised only when at least `persist_k` of the gauge's last
  // `persist_n` judged values were anomalous (1 of 1: at once). For gauges with heavy
  // tails, where a lone outlier is noise; it misses a lone spike by design.
  std::uint8_t persist_k = 1;
  std::uint8_t persist_n = 1;  // 1..64
  friend bool operator==(const StreamRule&, const StreamRule&) = default;
};

// Whether `name` matches `pattern` (StreamRule::match).
bool matches(std::string_view pattern, std::string_view name);

// A rule as config spells it, one line:
//   <pattern> <kind> [threshold=<number>] [min_samples=<n>] [window=<n>] [season=<n>]
//                    [persist=<k>/<n>]
// e.g. "sensor.* mad threshold=6" or "sensor.*.power seasonal season=1440". A field not
// given is `defaults`'s. The detector's parameters are checked (check_detector_params);
// errors name the field: "season: a seasonal detector needs ...", "threshold: expected a
// number".
schemas::Result<StreamRule> parse_stream_rule(std::string_view text, const DetectorParams& defaults);
// Every line in order; an error names the item: "item 2 ('x y'): kind: unknown ...".
schemas::Result<std::vector<StreamRule>> parse_stream_rules(const std::vector<std::string>& lines,
                                                            const DetectorParams& defaults);

struct DecisionOptions {
  ThresholdRule cpu{90, 97};   // cpu_pct
  ThresholdRule mem{90, 97};   // mem_pct
  ThresholdRule disk{90, 97};  // disk_pct
  ThresholdRule temp{80, 95};  // temp_c (when the sample has one)
  std::chrono::seconds repeat{300};  // a lasting condition is raised again after this
  ZScoreParams zscore;
  // The first rule matching a gauge's name chooses its detector; empty: every gauge has
  // a z-score detector with `zscore`.
  std::vector<StreamRule> streams;
  friend bool operator==(const DecisionOptions&, const DecisionOptions&) = default;
};

// One alert raised, and the decision behind it (none for a recovery).
struct Firing {
  schemas::Alert alert;                           // position and alert_id left empty
  std::optional<schemas::DecisionRecord> record;  // position and decision_id left empty
};

class DecisionEngine {
 public:
  // The most gauges tracked; beyond it, new extra gauges are not watched (a sample holds
  // at most 256 extras, but sensors come and go).
  static constexpr std::size_t kMaxGauges = 512;

  explicit DecisionEngine(DecisionOptions options = {});

  // New options from config (hot). Conditions in progress are kept, and so are the
  // baselines of gauges whose detector keeps its kind, window and season. A model in
  // force keeps overriding the z-score parameters.
  void set_options(const DecisionOptions& options);
  // A model pushed down. Kind "zscore" with params "threshold" (>= 0; 0 = off),
  // "min_samples" (>= 2) and "window" (>= 1), each optional (absent: the config's), is
  // applied and stays in force until cleared or replaced. Kinds "logistic" and
  // "tree_ensemble" are local models (model_decisions.h): they decide on every sample
  // besides the rules and the z-score, which then runs on the config's parameters. One
  // model is in force at a time. Any other kind, or a model that does not validate, is
  // refused whole with the reason; the model in force stays.
  std::optional<std::string> apply_model(const schemas::Model& model);
  // The retained model was removed: config's parameters apply again.
  void clear_model();
  // The cloud overrode a decision (a verdict, docs/agent.md "Verdicts"): `gauge`'s
  // threshold levels are `rule` from now on, whatever the config says (nova-agent keeps
  // them across restarts: Agent::save_overrides). Only gauges with a threshold rule (cpu, mem, disk, temp) can be
  // overridden; anything else, or a level that is negative or not finite, or a critical
  // level below a warning level (both set), is refused whole with the reason. Returns the
  // levels that were in force.
  schemas::Result<ThresholdRule> override_threshold(const std::string& gauge, const ThresholdRule& rule);
  // The threshold levels in force for `gauge` (an override, else the config's); none for
  // a gauge without a threshold rule.
  std::optional<ThresholdRule> threshold(std::string_view gauge) const;
  // Every gauge's overridden levels (the cloud's verdicts), by gauge.
  const std::map<std::string, ThresholdRule, std::less<>>& threshold_overrides() const { return overrides_; }
  // The z-score parameters in force (config's, or the model's).
  const ZScoreParams& zscore() const { return zscore_; }
  // The detector's parameters that watch `gauge` now; none if no rule matches it (or
  // its detector is off: threshold 0).
  std::optional<DetectorParams> detector_for(std::string_view gauge) const;
  const std::optional<std::string>& model_id() const { return model_id_; }
  // The local model's decisions and counts (none in force: model() is null).
  const ModelDecisions& local_model() const { return local_model_; }

  // Evaluates one sample; appends what it raises to `out` (which the caller clears and
  // reuses). `offline`: the uplink is down now, recorded in each decision.
  void evaluate(const schemas::MetricSample& sample, bool offline, std::vector<Firing>& out);

 private:
  enum class Level : std::uint8_t { none, warning, critical };
  struct Condition {
    Level level = Level::none;
    schemas::Timestamp last_raised = 0;
  };
  struct Gauge {
    bool watched = true;  // a name that is an id, and not agent.*
    // Its detector (none: no rule matches, or its threshold is 0), made for the
    // parameters of `generation`; rules and models change, and the next sample
    // follows.
    std::unique_ptr<Detector> detector;
    std::uint64_t generation = 0;
    std::uint8_t persist_k = 1, persist_n = 1;  // its rule's
    std::uint64_t recent = 0;  // whether each of the last 64 judged values was anomalous, newest lowest
    Condition threshold;
    Condition anomaly;
  };

  Gauge* gauge(const std::string& name);
  void check_threshold(const std::string& name, Gauge& g, const ThresholdRule& rule, double value,
                       schemas::Timestamp ts, bool offline, std::vector<Firing>& out);
  void check_anomaly(const std::string& name, Gauge& g, double value, schemas::Timestamp ts,
                     bool offline, std::vector<Firing>& out);
  bool due(const Condition& c, schemas::Timestamp ts) const;

  void update_zscore();
  // The first rule matching `gauge`; null when there is none, or no rules at all.
  const StreamRule* rule_for(std::string_view gauge) const;
  // The detector `gauge` needs now (detector_for), made or retuned if the rules or the
  // model changed since it was made.
  Detector* detector(const std::string& name, Gauge& g);

  // The config's rule for a core gauge, or null.
  const ThresholdRule* configured(std::string_view gauge) const;
  // The rule in force: the cloud's override, else `configured`.
  const ThresholdRule& in_force(const std::string& gauge, const ThresholdRule& configured) const;

  DecisionOptions options_;
  std::map<std::string, ThresholdRule, std::less<>> overrides_;  // by the cloud's verdicts
  std::optional<models::ZScoreModel> model_;  // a zscore model: each unset one is the config's
  std::optional<std::string> model_id_;
  ZScoreParams zscore_;  // options_.zscore, or the model's
  ModelDecisions local_model_;  // a logistic or tree_ensemble model, when one is in force
  std::uint64_t generation_ = 1;  // advanced whenever options_ or model_ change
  std::map<std::string, Gauge, std::less<>> gauges_;
};

}  // namespace nova::agent
