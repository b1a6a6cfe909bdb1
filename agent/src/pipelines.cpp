#include "nova/agent/pipelines.h"

#include <cmath>

#include "nova/schemas/topic.h"

namespace nova::agent {

using schemas::Error;

// One stream's state in one pipeline.
struct Pipelines::Stream {
  std::optional<double> last_value;  // the last value kept by the filters
  schemas::Timestamp last_ts = 0;
  std::optional<Window> window;
  std::unique_ptr<Detector> detector;
  std::vector<RuleState> rules;
};

// A pipeline's streams and what its rules read, resolved once.
struct Pipelines::Compiled {
  std::map<std::string, Stream, std::less<>> streams;
  std::vector<std::size_t> downstream;   // pipelines fed by this one's events
  std::uint32_t first_rule_id = 0;       // rule ids in the shared decision cache
  std::vector<std::optional<double>> operands;  // reused
};

Pipelines::Pipelines(std::vector<PipelineSpec> specs) : specs_(std::move(specs)) {}
Pipelines::~Pipelines() = default;

schemas::Result<std::unique_ptr<Pipelines>> Pipelines::make(std::vector<PipelineSpec> specs) {
  std::unique_ptr<Pipelines> p(new Pipelines(std::move(specs)));
  std::uint32_t rule_id = 0;
  for (std::size_t i = 0; i < p->specs_.size(); ++i) {
    const PipelineSpec& s = p->specs_[i];
    const std::string where = "pipelines[" + std::to_string(i) + "]";
    auto c = std::make_unique<Compiled>();
    c->first_rule_id = rule_id;
    rule_id += static_cast<std::uint32_t>(s.rules.size());
    if (s.anomaly) {
      if (auto d = make_detector(*s.anomaly); !d) return Error{where + ".anomaly." + d.error().path, d.error().reason};
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (p->specs_[j].name == s.name) return Error{where + ".name", "'" + s.name + "' is declared twice"};
    }
    if (s.input.kind == InputSpec::Kind::pipeline) {
      std::size_t up = 0;
      while (up < i && p->specs_[up].name != s.input.pipeline) ++up;
      if (up == i) {
        return Error{where + ".input.pipeline", "'" + s.input.pipeline + "' is not a pipeline declared before this one"};
      }
      p->compiled_[up]->downstream.push_back(i);
    }
    p->compiled_.push_back(std::move(c));
  }
  return p;
}

PipelineCounters Pipelines::counters() const { return counters_; }

void Pipelines::on_sample(const schemas::MetricSample& sample, PipelineSink& sink) {
  gauges_.clear();
  gauges_ = {{"cpu", sample.cpu_pct},     {"mem", sample.mem_pct},       {"disk", sample.disk_pct},
             {"load1", sample.load1},     {"net_rx", sample.net_rx_bps}, {"net_tx", sample.net_tx_bps}};
  if (sample.temp_c) gauges_["temp"] = *sample.temp_c;
  if (sample.power_w) gauges_["power"] = *sample.power_w;
  for (const auto& [name, v] : sample.extra) gauges_[name] = v;
  for (std::size_t i = 0; i < specs_.size(); ++i) {
    const InputSpec& in = specs_[i].input;
    if (in.kind != InputSpec::Kind::gauge) continue;
    if (auto it = gauges_.find(in.gauge); it != gauges_.end()) feed(i, in.gauge, sample.ts, it->second, nullptr, sink);
  }
}

void Pipelines::feed(std::size_t i, const std::string& key, schemas::Timestamp ts, double value,
                     const std::map<std::string, double>* reading, PipelineSink& sink) {
  const PipelineSpec& spec = specs_[i];
  Compiled& c = *compiled_[i];
  auto it = c.streams.find(key);
  if (it == c.streams.end()) {
    if (c.streams.size() >= kMaxStreams) {
      ++counters_.overflow;
      return;
    }
    Stream s;
    if (spec.window.kind != WindowSpec::Kind::none) s.window.emplace(spec.window);
    if (spec.anomaly) s.detector = std::move(make_detector(*spec.anomaly)).value();  // checked by make()
    s.rules.resize(spec.rules.size());
    it = c.streams.emplace(key, std::move(s)).first;
  }
  Stream& s = it->second;
  ++counters_.readings;
  for (const FilterSpec& f : spec.filters) {
    bool keep = true;
    switch (f.kind) {
      case FilterSpec::Kind::range: keep = value >= f.min && value <= f.max; break;
      case FilterSpec::Kind::deadband: keep = !s.last_value || std::abs(value - *s.last_value) > f.band; break;
      case FilterSpec::Kind::rate:
        if (s.last_value) {
          const double change = std::abs(value - *s.last_value);
          keep = ts > s.last_ts ? change / (static_cast<double>(ts - s.last_ts) / 1000.0) <= f.max_per_s : change == 0;
        }
        break;
      case FilterSpec::Kind::where: {
        std::optional<double> v;
        if (f.where.operand == "value") {
          v = value;
        } else if (reading != nullptr) {
          if (auto r = reading->find(f.where.operand); r != reading->end()) v = r->second;
        }
        keep = v && f.where.holds(*v);
        break;
      }
    }
    if (!keep) {
      ++counters_.filtered;
      return;
    }
  }
  s.last_value = value;
  s.last_ts = ts;
  if (!s.window) {
    Event e;
    e.ts = ts;
    e.set(Field::value, value);
    return after_window(i, key, s, e, sink);
  }
  std::vector<Event> closed;  // empty (no allocation) unless a window closes
  if (!s.window->add(ts, value, closed)) {
    ++counters_.late;
    return;
  }
  for (Event& e : closed) after_window(i, key, s, e, sink);
}

std::optional<double> Pipelines::operand(const std::string& name, const Event& e) const {
  constexpr std::string_view kGauge = "gauge.";
  if (name.starts_with(kGauge)) {
    auto it = gauges_.find(std::string_view(name).substr(kGauge.size()));
    if (it == gauges_.end()) return std::nullopt;
    return it->second;
  }
  const auto f = field_named(name);  // checked by parse_pipelines
  if (!f || !e.has(*f)) return std::nullopt;
  return e.get(*f);
}

void Pipelines::after_window(std::size_t i, const std::string& key, Stream& s, Event& e, PipelineSink& sink) {
  const PipelineSpec& spec = specs_[i];
  Compiled& c = *compiled_[i];
  ++counters_.events;
  if (s.detector && e.has(spec.anomaly_on)) {
    const Judgement j = s.detector->observe(e.get(spec.anomaly_on));
    e.set(Field::score, j.score);
    e.set(Field::anomalous, j.anomalous ? 1 : 0);
    if (j.anomalous) ++counters_.anomalies;
  }
  if (spec.local || spec.outbox) sink.emit(spec, key, e);
  for (std::size_t r = 0; r < spec.rules.size(); ++r) {
    const RuleSpec& rule = spec.rules[r];
    c.operands.clear();
    for (const Comparison& cmp : rule.when) c.operands.push_back(operand(cmp.operand, e));
    const RuleState::Step step =
        s.rules[r].step(rule, c.first_rule_id + static_cast<std::uint32_t>(r), c.operands, e.ts, cache_);
    if (step.outcome == RuleState::Outcome::none) continue;
    const bool clear = step.outcome == RuleState::Outcome::clear;
    if (clear) sink.cleared(spec, rule, key);
    if (clear && !rule.on_clear) continue;
    ++counters_.decisions;
    PipelineDecision d;
    d.pipeline = &spec;
    d.rule = &rule;
    d.action = clear ? &*rule.on_clear : &rule.action;
    d.clear = clear;
    d.cached = step.cached;
    d.stream = key;
    d.ts = e.ts;
    for (std::size_t k = 0; k < rule.when.size(); ++k) {
      if (c.operands[k]) d.inputs.emplace_back(rule.when[k].operand, *c.operands[k]);
    }
    sink.decide(d);
  }
  for (std::size_t down : c.downstream) {
    const Field f = specs_[down].input.field;
    if (e.has(f)) feed(down, key, e.ts, e.get(f), nullptr, sink);
  }
}

}  // namespace nova::agent
