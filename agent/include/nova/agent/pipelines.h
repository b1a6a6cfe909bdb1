// Stream pipelines declared in config (docs/agent.md, "Pipelines"): readings flow
// input -> filters -> window -> anomaly -> outputs and rules, at arrival.
//
// Input: sensor readings (sensor and value name matched by glob patterns, '*' any run
// of characters), a host gauge of each metric sample ("cpu_pct", "load1", any extra
// gauge), or one field of another pipeline's events (declared before it, so there is
// no cycle). Each matching source is its own stream with its own state (filters,
// window, detector, rules), keyed "<sensor>.<value>", the gauge's name, or the
// upstream pipeline's stream key; at most kMaxStreams per pipeline (more are counted
// in `overflow` and dropped).
//
// Filters, in order; a reading a filter drops is counted in `filtered`:
//   range      keep min <= value <= max
//   deadband   keep a value that differs from the last kept one by more than the band
//   rate       keep a value whose change per second from the last kept one is at most
//              max_per_s (a reading with the same or an earlier ts than the last kept
//              one is judged by its change alone: kept only if it is the same value)
//   where      keep a reading for which a comparison (rules.h) over "value" or another
//              value of the same reading holds (a reading that lacks it is dropped)
// Window: window.h (none: every reading is an event with field "value").
// Anomaly: a detector (detectors.h) over one field of the events ("value", or "mean"
// with a window), which adds "score" (0 until judged) and "anomalous" (0 or 1).
// Outputs: `local` publishes each event on nova/v1/local/<node>/pipeline/<name>;
// `outbox` puts its fields into the next metric sample as gauges
// "pipeline.<name>.<stream key>.<field>" (upward, acknowledged); rules (rules.h).
//
// Pure logic, no I/O, no clock: the agent passes readings and samples in and receives
// what happens through PipelineSink.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nova/agent/detectors.h"
#include "nova/agent/glob.h"
#include "nova/agent/rules.h"
#include "nova/agent/window.h"
#include "nova/schemas/messages.h"
#include "nova/schemas/result.h"

namespace nova::agent {

struct InputSpec {
  enum class Kind : std::uint8_t { sensor, gauge, pipeline };
  Kind kind = Kind::sensor;
  std::string sensor = "*";  // sensor: glob on the sensor id
  std::string value = "*";   // sensor: glob on the value name
  std::string gauge;         // gauge: the gauge's name
  std::string pipeline;      // pipeline: the upstream pipeline
  Field field = Field::mean; // pipeline: which field of its events
  friend bool operator==(const InputSpec&, const InputSpec&) = default;
};

struct FilterSpec {
  enum class Kind : std::uint8_t { range, deadband, rate, where };
  Kind kind = Kind::range;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  double band = 0;       // deadband
  double max_per_s = 0;  // rate
  Comparison where;      // where
  friend bool operator==(const FilterSpec&, const FilterSpec&) = default;
};

struct PipelineSpec {
  std::string name;  // an id
  InputSpec input;
  std::vector<FilterSpec> filters;
  WindowSpec window;
  std::optional<DetectorParams> anomaly;
  Field anomaly_on = Field::value;  // "mean" by default when there is a window
  bool local = false;
  bool outbox = false;
  std::vector<RuleSpec> rules;
  friend bool operator==(const PipelineSpec&, const PipelineSpec&) = default;
};

// `pipelines:`'s text (a YAML or JSON sequence) as specs. Errors name the item and key:
// "pipelines[1].window.size_ms: expected an integer >= 1". Empty text: none.
schemas::Result<std::vector<PipelineSpec>> parse_pipelines(std::string_view text);


// A rule that fired or cleared, with what it saw.
struct PipelineDecision {
  const PipelineSpec* pipeline = nullptr;
  const RuleSpec* rule = nullptr;
  const ActionSpec* action = nullptr;  // the rule's action, or its on_clear
  bool clear = false;
  bool cached = false;
  std::string stream;  // the stream key
  schemas::Timestamp ts = 0;  // the event's time
  std::vector<std::pair<std::string, double>> inputs;  // each operand seen, in rule order
};

class PipelineSink {
 public:
  virtual ~PipelineSink() = default;
  // An event of a pipeline with a local or outbox output.
  virtual void emit(const PipelineSpec& pipeline, const std::string& stream, const Event& event) = 0;
  virtual void decide(const PipelineDecision& decision) = 0;
  // A rule cleared (before its on_clear decision, if it has one).
  virtual void cleared(const PipelineSpec& pipeline, const RuleSpec& rule, const std::string& stream) = 0;
};

struct PipelineCounters {
  std::uint64_t readings = 0;   // values that entered a pipeline
  std::uint64_t filtered = 0;   // dropped by a filter
  std::uint64_t late = 0;       // dropped behind a window's watermark
  std::uint64_t events = 0;     // events out of the window stage
  std::uint64_t anomalies = 0;  // events judged anomalous
  std::uint64_t decisions = 0;  // rules fired or cleared
  std::uint64_t overflow = 0;   // values of a stream over kMaxStreams
};

class Pipelines {
 public:
  static constexpr std::size_t kMaxStreams = 64;

  // Checks references between pipelines (an upstream declared before) and builds each.
  static schemas::Result<std::unique_ptr<Pipelines>> make(std::vector<PipelineSpec> specs);
  ~Pipelines();

  // A sensor reading accepted by SensorIngest: each value goes to every pipeline whose
  // input matches. `skip(value name)` true: the value is not taken (personal data).
  template <class Skip>
  void on_reading(const std::string& sensor, const schemas::SensorReading& reading, Skip skip, PipelineSink& sink);
  // A metric sample: its gauges feed gauge inputs, and rules read them as gauge.<name>.
  void on_sample(const schemas::MetricSample& sample, PipelineSink& sink);

  const std::vector<PipelineSpec>& specs() const { return specs_; }
  PipelineCounters counters() const;
  const DecisionCache& cache() const { return cache_; }

 private:
  struct Stream;
  struct Compiled;
  explicit Pipelines(std::vector<PipelineSpec> specs);
  void feed(std::size_t pipeline, const std::string& key, schemas::Timestamp ts, double value,
            const std::map<std::string, double>* reading, PipelineSink& sink);
  void after_window(std::size_t pipeline, const std::string& key, Stream& s, Event& e, PipelineSink& sink);
  std::optional<double> operand(const std::string& name, const Event& e) const;

  std::vector<PipelineSpec> specs_;
  std::vector<std::unique_ptr<Compiled>> compiled_;
  std::map<std::string, double, std::less<>> gauges_;  // of the latest sample
  DecisionCache cache_;
  PipelineCounters counters_;
  std::vector<Event> events_;  // reused
};

template <class Skip>
void Pipelines::on_reading(const std::string& sensor, const schemas::SensorReading& reading, Skip skip,
                           PipelineSink& sink) {
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const InputSpec& in = specs_[i].input;
    if (in.kind != InputSpec::Kind::sensor || !glob_match(in.sensor, sensor)) continue;
    for (const auto& [name, value] : reading.values) {
      if (!glob_match(in.value, name) || skip(name)) continue;
      feed(i, sensor + "." + name, reading.ts, value, &reading.values, sink);
    }
  }
}

}  // namespace nova::agent
