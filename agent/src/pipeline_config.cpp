// parse_pipelines: the `pipelines:` key's text as PipelineSpecs (pipelines.h). Kept
// apart from pipelines.cpp: the engine knows nothing of YAML.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "nova/agent/pipelines.h"
#include "nova/schemas/topic.h"

namespace nova::agent {
namespace {

using schemas::Error;

struct Bad {
  Error error;
};

[[noreturn]] void fail(const std::string& at, const std::string& reason) { throw Bad{Error{at, reason}}; }

// Every key of `map` is one of `known`.
void only(const YAML::Node& map, const std::string& at, std::initializer_list<std::string_view> known) {
  if (!map.IsMap()) fail(at, "expected a mapping");
  for (const auto& kv : map) {
    const std::string k = kv.first.Scalar();
    bool ok = false;
    for (std::string_view n : known) ok = ok || n == k;
    if (!ok) {
      std::string list;
      for (std::string_view n : known) list += (list.empty() ? "" : ", ") + std::string(n);
      fail(at + "." + k, "unknown key (known: " + list + ")");
    }
  }
}

// map[key], which must be there.
YAML::Node need(const YAML::Node& map, const std::string& at, const char* key) {
  const YAML::Node n = map[key];
  if (!n) fail(at + "." + key, "required key is missing");
  return n;
}

double number(const YAML::Node& n, const std::string& at) {
  double v = 0;
  if (!n.IsScalar() || !YAML::convert<double>::decode(n, v) || !std::isfinite(v)) fail(at, "expected a finite number");
  return v;
}

std::uint64_t integer(const YAML::Node& n, const std::string& at, std::uint64_t min, std::uint64_t max) {
  std::int64_t v = 0;
  if (!n.IsScalar() || !YAML::convert<std::int64_t>::decode(n, v) || v < static_cast<std::int64_t>(min) ||
      static_cast<std::uint64_t>(v) > max) {
    fail(at, "expected an integer " + std::to_string(min) + ".." + std::to_string(max));
  }
  return static_cast<std::uint64_t>(v);
}

std::string text(const YAML::Node& n, const std::string& at) {
  if (!n.IsScalar()) fail(at, "expected a string");
  return n.Scalar();
}

std::string id(const YAML::Node& n, const std::string& at) {
  std::string s = text(n, at);
  if (auto parsed = topics::Id::parse(s); !parsed) fail(at, "'" + s + "': " + parsed.error().reason);
  return s;
}

Field field(const YAML::Node& n, const std::string& at) {
  const std::string s = text(n, at);
  auto f = field_named(s);
  if (!f) fail(at, "'" + s + "' is not a field (value, count, sum, mean, min, max, stddev, p50, p90, p95, p99, score, anomalous)");
  return *f;
}

Comparison comparison(const YAML::Node& n, const std::string& at) {
  auto c = parse_comparison(text(n, at));
  if (!c) fail(at, c.error().reason);
  return c.value();
}

InputSpec input(const YAML::Node& n, const std::string& at) {
  only(n, at, {"sensor", "value", "gauge", "pipeline", "field"});
  InputSpec in;
  const int kinds = (n["sensor"] || n["value"] ? 1 : 0) + (n["gauge"] ? 1 : 0) + (n["pipeline"] ? 1 : 0);
  if (kinds != 1) fail(at, "expected exactly one of sensor/value, gauge or pipeline");
  if (n["gauge"]) {
    in.kind = InputSpec::Kind::gauge;
    in.gauge = id(n["gauge"], at + ".gauge");
  } else if (n["pipeline"]) {
    in.kind = InputSpec::Kind::pipeline;
    in.pipeline = id(n["pipeline"], at + ".pipeline");
    if (n["field"]) in.field = field(n["field"], at + ".field");
  } else {
    if (n["sensor"]) in.sensor = text(n["sensor"], at + ".sensor");
    if (n["value"]) in.value = text(n["value"], at + ".value");
  }
  if (n["field"] && in.kind != InputSpec::Kind::pipeline) fail(at + ".field", "only a pipeline input takes a field");
  return in;
}

FilterSpec filter(const YAML::Node& n, const std::string& at) {
  only(n, at, {"range", "deadband", "rate", "where"});
  if (n.size() != 1) fail(at, "expected one of range, deadband, rate or where");
  FilterSpec f;
  if (n["range"]) {
    f.kind = FilterSpec::Kind::range;
    only(n["range"], at + ".range", {"min", "max"});
    if (n["range"]["min"]) f.min = number(n["range"]["min"], at + ".range.min");
    if (n["range"]["max"]) f.max = number(n["range"]["max"], at + ".range.max");
    if (f.min > f.max) fail(at + ".range", "min is above max");
  } else if (n["deadband"]) {
    f.kind = FilterSpec::Kind::deadband;
    f.band = number(n["deadband"], at + ".deadband");
    if (f.band < 0) fail(at + ".deadband", "must be >= 0");
  } else if (n["rate"]) {
    f.kind = FilterSpec::Kind::rate;
    f.max_per_s = number(n["rate"], at + ".rate");
    if (f.max_per_s < 0) fail(at + ".rate", "must be >= 0");
  } else {
    f.kind = FilterSpec::Kind::where;
    f.where = comparison(n["where"], at + ".where");
  }
  return f;
}

WindowSpec window(const YAML::Node& n, const std::string& at) {
  only(n, at, {"kind", "size_ms", "hop_ms", "lateness_ms", "max_values"});
  WindowSpec w;
  const std::string kind = n["kind"] ? text(n["kind"], at + ".kind") : "";
  if (kind == "tumbling") {
    w.kind = WindowSpec::Kind::tumbling;
  } else if (kind == "hopping") {
    w.kind = WindowSpec::Kind::hopping;
  } else if (kind == "sliding") {
    w.kind = WindowSpec::Kind::sliding;
  } else {
    fail(at + ".kind", "expected tumbling, hopping or sliding");
  }
  constexpr std::uint64_t kDay = 86'400'000;
  if (n["size_ms"]) w.size_ms = integer(n["size_ms"], at + ".size_ms", 1, kDay);
  if (n["lateness_ms"]) w.lateness_ms = integer(n["lateness_ms"], at + ".lateness_ms", 0, kDay);
  if (n["max_values"]) w.max_values = static_cast<std::uint32_t>(integer(n["max_values"], at + ".max_values", 1, 1'000'000));
  if (w.kind == WindowSpec::Kind::hopping) {
    if (!n["hop_ms"]) fail(at + ".hop_ms", "a hopping window needs hop_ms");
    w.hop_ms = integer(n["hop_ms"], at + ".hop_ms", 1, w.size_ms - 1 == 0 ? 1 : w.size_ms - 1);
    if (w.hop_ms >= w.size_ms) fail(at + ".hop_ms", "must be below size_ms");
  } else if (n["hop_ms"]) {
    fail(at + ".hop_ms", "only a hopping window takes hop_ms");
  }
  return w;
}

DetectorParams anomaly(const YAML::Node& n, const std::string& at, Field& on, bool windowed) {
  only(n, at, {"kind", "threshold", "min_samples", "window", "season", "on"});
  DetectorParams d;
  if (n["kind"]) d.kind = text(n["kind"], at + ".kind");
  if (n["threshold"]) d.threshold = number(n["threshold"], at + ".threshold");
  if (n["min_samples"]) d.min_samples = static_cast<std::uint32_t>(integer(n["min_samples"], at + ".min_samples", 2, 1'000'000));
  if (n["window"]) d.window = static_cast<std::uint32_t>(integer(n["window"], at + ".window", 1, 1'000'000));
  if (n["season"]) d.season = static_cast<std::uint32_t>(integer(n["season"], at + ".season", 0, 1'000'000));
  on = windowed ? Field::mean : Field::value;
  if (n["on"]) on = field(n["on"], at + ".on");
  if (auto made = make_detector(d); !made) fail(at + "." + made.error().path, made.error().reason);
  return d;
}

ActionSpec action(const YAML::Node& n, const std::string& at) {
  only(n, at, {"do", "target", "payload", "severity", "priority"});
  ActionSpec a;
  const std::string name = text(need(n, at, "do"), at + ".do");
  auto kind = action_named(name);
  if (!kind) {
    fail(at + ".do", "'" + name + "' is not an action (publish, raise_alert, suppress_alert, set_task_priority, "
                     "pause_task, resume_task, stop_task, evict_cache, request_migration)");
  }
  a.kind = *kind;
  if (n["target"]) a.target = text(n["target"], at + ".target");
  if (n["payload"]) a.payload = text(n["payload"], at + ".payload");
  if (n["severity"]) a.severity = text(n["severity"], at + ".severity");
  if (a.severity != "info" && a.severity != "warning" && a.severity != "critical") {
    fail(at + ".severity", "expected info, warning or critical");
  }
  if (n["priority"]) a.priority = static_cast<std::uint8_t>(integer(n["priority"], at + ".priority", 0, 9));
  const bool needs_id = a.kind == ActionKind::publish || a.kind == ActionKind::set_task_priority ||
                        a.kind == ActionKind::pause_task || a.kind == ActionKind::resume_task ||
                        a.kind == ActionKind::stop_task || a.kind == ActionKind::request_migration;
  if (needs_id && !topics::Id::valid(a.target)) fail(at + ".target", "'" + a.target + "': " + name + " needs an id");
  if (!a.target.empty() && !topics::Id::valid(a.target)) fail(at + ".target", "'" + a.target + "' is not an id");
  return a;
}

RuleSpec rule(const YAML::Node& n, const std::string& at) {
  only(n, at, {"name", "when", "hysteresis", "cooldown_ms", "quantum", "action", "on_clear"});
  RuleSpec r;
  r.name = id(need(n, at, "name"), at + ".name");
  if (r.name.size() > 59) fail(at + ".name", "at most 59 bytes (the decision's kind is rule.<name>)");
  const YAML::Node when = need(n, at, "when");
  if (when.IsScalar()) {
    r.when.push_back(comparison(when, at + ".when"));
  } else if (when.IsSequence() && when.size() >= 1 && when.size() <= 16) {
    for (std::size_t k = 0; k < when.size(); ++k) r.when.push_back(comparison(when[k], at + ".when[" + std::to_string(k) + "]"));
  } else {
    fail(at + ".when", "expected a comparison or a list of 1..16");
  }
  for (std::size_t k = 0; k < r.when.size(); ++k) {
    const std::string& o = r.when[k].operand;
    if (!o.starts_with("gauge.") && !field_named(o)) {
      fail(at + ".when[" + std::to_string(k) + "]", "operand '" + o + "' is neither a field nor gauge.<name>");
    }
  }
  if (n["hysteresis"]) r.hysteresis = number(n["hysteresis"], at + ".hysteresis");
  if (r.hysteresis < 0) fail(at + ".hysteresis", "must be >= 0");
  if (n["cooldown_ms"]) r.cooldown_ms = integer(n["cooldown_ms"], at + ".cooldown_ms", 0, 86'400'000);
  if (n["quantum"]) r.quantum = number(n["quantum"], at + ".quantum");
  if (r.quantum < 0) fail(at + ".quantum", "must be >= 0");
  r.action = action(need(n, at, "action"), at + ".action");
  if (n["on_clear"]) r.on_clear = action(n["on_clear"], at + ".on_clear");
  return r;
}

PipelineSpec pipeline(const YAML::Node& n, const std::string& at) {
  only(n, at, {"name", "input", "filters", "window", "anomaly", "outputs", "rules"});
  PipelineSpec p;
  p.name = id(need(n, at, "name"), at + ".name");
  p.input = input(need(n, at, "input"), at + ".input");
  if (const YAML::Node f = n["filters"]) {
    if (!f.IsSequence()) fail(at + ".filters", "expected a list");
    for (std::size_t k = 0; k < f.size(); ++k) p.filters.push_back(filter(f[k], at + ".filters[" + std::to_string(k) + "]"));
  }
  if (n["window"]) p.window = window(n["window"], at + ".window");
  if (n["anomaly"]) p.anomaly = anomaly(n["anomaly"], at + ".anomaly", p.anomaly_on, p.window.kind != WindowSpec::Kind::none);
  if (const YAML::Node o = n["outputs"]) {
    if (!o.IsSequence()) fail(at + ".outputs", "expected a list of local, outbox");
    for (std::size_t k = 0; k < o.size(); ++k) {
      const std::string s = text(o[k], at + ".outputs[" + std::to_string(k) + "]");
      if (s == "local") {
        p.local = true;
      } else if (s == "outbox") {
        p.outbox = true;
      } else {
        fail(at + ".outputs[" + std::to_string(k) + "]", "'" + s + "': expected local or outbox (rules go in rules:)");
      }
    }
  }
  if (const YAML::Node r = n["rules"]) {
    if (!r.IsSequence()) fail(at + ".rules", "expected a list");
    std::set<std::string> names;
    for (std::size_t k = 0; k < r.size(); ++k) {
      p.rules.push_back(rule(r[k], at + ".rules[" + std::to_string(k) + "]"));
      if (!names.insert(p.rules.back().name).second) fail(at + ".rules[" + std::to_string(k) + "].name", "given twice");
    }
  }
  return p;
}

}  // namespace

schemas::Result<std::vector<PipelineSpec>> parse_pipelines(std::string_view text) {
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    std::vector<PipelineSpec> out;
    if (root.IsNull()) return out;
    if (!root.IsSequence()) return Error{"pipelines", "expected a list of pipelines"};
    if (root.size() > 64) return Error{"pipelines", "at most 64 pipelines"};
    for (std::size_t i = 0; i < root.size(); ++i) out.push_back(pipeline(root[i], "pipelines[" + std::to_string(i) + "]"));
    // References between pipelines (and every detector) are checked by building them.
    if (auto built = Pipelines::make(out); !built) return built.error();
    return out;
  } catch (const Bad& b) {
    return b.error;
  } catch (const YAML::Exception& e) {
    return Error{"pipelines", "invalid YAML: " + e.msg};
  }
}

}  // namespace nova::agent
