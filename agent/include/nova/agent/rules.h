// Rules that act (docs/agent.md, "Pipelines", "Rules"): a rule watches the events of
// one pipeline stream and, when its condition starts to hold, takes an action.
//
// Condition: every comparison of `when` holds, each "<operand> <op> <number>" with op
// one of > >= < <= == !=. An operand is a field of the pipeline's event ("mean",
// "p99", "score", ...: window.h) or a host gauge of the latest metric sample
// ("gauge.cpu_pct", "gauge.sensor.t1.temp"). An operand the event or sample lacks makes
// the condition false.
//
// Hysteresis: once a rule fired it stays active, and fires nothing more, until some
// comparison is false by more than `hysteresis` (for "mean > 80" with hysteresis 2:
// until mean <= 78); then it clears, and takes its `on_clear` action if it has one.
// For == and != hysteresis does not apply.
// Cool-down: a rule that fired does not fire again within `cooldown_ms` of event time,
// even if it cleared meanwhile (a flapping input cannot flood the actuator or the
// uplink). Its clear is not delayed.
//
// Decision cache: a rule's answer (does the condition hold, given whether the rule is
// active) depends only on its operands. With `quantum` > 0 each operand is rounded to a
// multiple of quantum, and a situation seen before (rule, active, rounded operands) is
// answered from a bounded cache without evaluating the comparisons again; its hit and
// miss counts feed agent.pipeline.cache_hit_ratio. Rounding is the price: values within
// a quantum of a comparison's number are answered as their rounded value would be.
// quantum 0 caches nothing.
//
// Pure logic, no I/O, no clock: event time comes from the events.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nova/schemas/result.h"

namespace nova::agent {

struct Comparison {
  enum class Op : std::uint8_t { gt, ge, lt, le, eq, ne };
  std::string operand;
  Op op = Op::gt;
  double number = 0;
  friend bool operator==(const Comparison&, const Comparison&) = default;

  bool holds(double v) const;
  // False by more than `margin` (the hysteresis band); == and != ignore the margin.
  bool clearly_false(double v, double margin) const;
};
// "<operand> <op> <number>"; the error says what is wrong with it.
schemas::Result<Comparison> parse_comparison(std::string_view text);

// What a rule does (docs/agent.md lists what each takes).
enum class ActionKind : std::uint8_t {
  publish,            // a JSON message on nova/v1/local/<node>/actuator/<target>
  raise_alert,        // an alert on metric <target> (pipeline.<name> if empty), at severity
  suppress_alert,     // the agent's own alerts whose metric starts with <target> are not raised while active
  set_task_priority,  // task <target> gets priority <priority> (0..9)
  pause_task,         // SIGSTOP to task <target>'s process group
  resume_task,        // SIGCONT to it
  stop_task,          // cancel task <target> (TaskRunner::cancel)
  evict_cache,        // evict cache entries whose key starts with <target> (the cache's hook)
  request_migration,  // nothing locally: the decision record asks the cloud to move <target>
};
std::string_view action_name(ActionKind k);
std::optional<ActionKind> action_named(std::string_view name);

struct ActionSpec {
  ActionKind kind = ActionKind::publish;
  std::string target;
  std::string payload;            // publish: put in the message as "payload"
  std::string severity = "warning";  // raise_alert: info, warning or critical
  std::uint8_t priority = 5;      // set_task_priority
  friend bool operator==(const ActionSpec&, const ActionSpec&) = default;
};

struct RuleSpec {
  std::string name;  // an id, unique in its pipeline
  std::vector<Comparison> when;
  double hysteresis = 0;
  std::uint64_t cooldown_ms = 0;
  double quantum = 0;
  ActionSpec action;
  std::optional<ActionSpec> on_clear;
  friend bool operator==(const RuleSpec&, const RuleSpec&) = default;
};

// The answers of rules to situations seen before, bounded (oldest out first).
class DecisionCache {
 public:
  explicit DecisionCache(std::size_t capacity = 4096) : capacity_(capacity) {}
  // The key of a situation: rule, active, operands rounded to `quantum`.
  static std::string key(std::uint32_t rule, bool active, const std::vector<double>& operands, double quantum);
  std::optional<bool> find(const std::string& key);  // counts a hit or a miss
  void put(std::string key, bool answer);

  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }
  std::size_t size() const { return answers_.size(); }

 private:
  std::size_t capacity_;
  std::unordered_map<std::string, bool> answers_;
  std::deque<std::string> order_;  // insertion order, for eviction
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
};

// One rule's state for one stream.
class RuleState {
 public:
  enum class Outcome : std::uint8_t { none, fire, clear };
  struct Step {
    Outcome outcome = Outcome::none;
    bool cached = false;  // the condition was answered by the cache
  };
  // `operands` are the values of spec.when's operands, in order; nullopt for one the
  // event lacks. `id` names the rule in the cache (unique per pipeline set and stream).
  Step step(const RuleSpec& spec, std::uint32_t id, const std::vector<std::optional<double>>& operands,
            std::uint64_t ts, DecisionCache& cache);
  bool active() const { return active_; }

 private:
  bool active_ = false;
  std::optional<std::uint64_t> fired_at_;
  std::vector<double> scratch_;
};

}  // namespace nova::agent
