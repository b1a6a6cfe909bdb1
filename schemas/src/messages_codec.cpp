// The typed layer: each message struct to and from a Value, plus the public entry points
// of codec.h. One Codec<T> specialisation per message; its decode() is the schema.

#include <zstd.h>

#include <limits>

#include "cbor_reader.h"
#include "cbor_writer.h"
#include "fields.h"
#include "json_io.h"
#include "nova/schemas/codec.h"
#include "nova/schemas/topic.h"

namespace nova::schemas {
namespace detail {
namespace {

constexpr double kMaxDouble = std::numeric_limits<double>::max();
constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();
constexpr std::size_t kShortText = 256;
constexpr std::size_t kLongText = 4096;

Value ts_value(Timestamp ts) { return Value::uint(ts); }

void put_position(MapWriter& w, const StreamPosition& p) {
  w.put("node", Value::text(p.node)).put("stream", Value::text(p.stream)).put("seq", Value::uint(p.seq));
}

StreamPosition read_position(const MapReader& r) {
  return StreamPosition{r.field("node").id(), r.field("stream").id(), r.field("seq").uint(1)};
}

Value resources_value(const Resources& res) {
  return MapWriter()
      .put("cpu_millis", Value::uint(res.cpu_millis))
      .put("memory_mb", Value::uint(res.memory_mb))
      .put("storage_mb", Value::uint(res.storage_mb))
      .done();
}

Resources read_resources(const Field& f) {
  MapReader r = f.map();
  return Resources{r.field("cpu_millis").uint(), r.field("memory_mb").uint(),
                   r.field("storage_mb").uint()};
}

// Optional collections are omitted when empty, so an absent key and an empty one decode
// alike.
void put_nonempty(MapWriter& w, std::string_view key, const std::vector<std::string>& v) {
  if (!v.empty()) w.put(key, text_list(v));
}
void put_nonempty(MapWriter& w, std::string_view key, const std::map<std::string, double>& v) {
  if (!v.empty()) w.put(key, real_map(v));
}
void put_nonempty(MapWriter& w, std::string_view key, const std::map<std::string, std::string>& v) {
  if (!v.empty()) w.put(key, text_map(v));
}

std::vector<std::string> read_ids(const MapReader& r, std::string_view key, std::size_t max) {
  if (auto f = r.maybe(key)) return f->id_list(0, max);
  return {};
}

std::map<std::string, double> read_reals(const MapReader& r, std::string_view key, std::size_t max) {
  if (auto f = r.maybe(key)) return f->real_map(0, max);
  return {};
}

// A site path such as "cloud/eu/par/acc-01" (topic.h SitePath rules).
std::string read_site_path(const Field& f) {
  constexpr std::size_t kMaxSitePathBytes = topics::kMaxSiteDepth * (topics::kMaxIdBytes + 1);
  std::string text = f.text(kMaxSitePathBytes);
  if (auto p = topics::SitePath::parse(text); !p) f.reject(p.error().reason);
  return text;
}

std::vector<std::string> read_argv(const Field& f) {
  std::vector<std::string> argv;
  f.each(1, 64, [&](const Field& a) { argv.push_back(a.text(kLongText)); });
  return argv;
}

Value optional_text(const std::string& s) { return Value::text(s); }

}  // namespace

template <class T>
struct Codec;

// --- liveness ---------------------------------------------------------------------------

template <>
struct Codec<NodeState> {
  static constexpr std::string_view root = "state";

  static Value encode(const NodeState& m) {
    MapWriter w = versioned();
    w.put("node", Value::text(m.node))
        .put("status", Value::text(m.status == NodeStatus::online    ? "online"
                                   : m.status == NodeStatus::offline ? "offline"
                                                                     : "dead"))
        .put("bdseq", Value::uint(m.bdseq))
        .put("ts", ts_value(m.ts));
    if (m.description) {
      const NodeDescription& d = *m.description;
      w.put("level", Value::uint(d.level))
          .put("site", Value::text(d.site))
          .put("arch", Value::text(d.arch))
          .put("version", Value::text(d.version))
          .put("res", resources_value(d.resources))
          .put_optional("region", d.region, optional_text);
      put_nonempty(w, "caps", d.capabilities);
    }
    return w.done();
  }

  static NodeState decode(const MapReader& r) {
    NodeState m;
    m.node = r.field("node").id();
    m.status = r.field("status").choice<NodeStatus>(
        {{"online", NodeStatus::online}, {"offline", NodeStatus::offline}, {"dead", NodeStatus::dead}});
    m.bdseq = r.field("bdseq").uint();
    m.ts = r.field("ts").uint();
    if (m.status == NodeStatus::online) {
      NodeDescription d;
      d.level = static_cast<std::uint8_t>(r.field("level").uint(1, 5));
      d.site = read_site_path(r.field("site"));
      d.arch = r.field("arch").id();
      d.version = r.field("version").text(kShortText);
      d.capabilities = read_ids(r, "caps", 64);
      d.resources = read_resources(r.field("res"));
      if (auto f = r.maybe("region")) d.region = f->id();
      m.description = std::move(d);
    }
    return m;
  }
};

// --- metrics ----------------------------------------------------------------------------

Value sample_value(const MetricSample& s) {
  MapWriter w;
  w.put("ts", ts_value(s.ts))
      .put("cpu", Value::real(s.cpu_pct))
      .put("mem", Value::real(s.mem_pct))
      .put("disk", Value::real(s.disk_pct))
      .put("load1", Value::real(s.load1))
      .put("net_rx", Value::real(s.net_rx_bps))
      .put("net_tx", Value::real(s.net_tx_bps))
      .put_optional("temp", s.temp_c, Value::real)
      .put_optional("throttled", s.throttled, Value::boolean)
      .put_optional("power", s.power_w, Value::real);
  put_nonempty(w, "extra", s.extra);
  return w.done();
}

MetricSample read_sample(const Field& f) {
  MapReader r = f.map();
  MetricSample s;
  s.ts = r.field("ts").uint();
  s.cpu_pct = r.field("cpu").real(0, 100);
  s.mem_pct = r.field("mem").real(0, 100);
  s.disk_pct = r.field("disk").real(0, 100);
  s.load1 = r.field("load1").real(0, kMaxDouble);
  s.net_rx_bps = r.field("net_rx").real(0, kMaxDouble);
  s.net_tx_bps = r.field("net_tx").real(0, kMaxDouble);
  if (auto t = r.maybe("temp")) s.temp_c = t->real(-100, 250);
  if (auto t = r.maybe("throttled")) s.throttled = t->boolean();
  if (auto p = r.maybe("power")) s.power_w = p->real(0, kMaxDouble);
  s.extra = read_reals(r, "extra", 256);
  return s;
}

constexpr std::size_t kMaxSamples = 4096;

Value samples_value(const std::vector<MetricSample>& samples) {
  Array a;
  a.reserve(samples.size());
  for (const MetricSample& s : samples) a.push_back(sample_value(s));
  return Value::array(std::move(a));
}

template <>
struct Codec<MetricsBatch> {
  static constexpr std::string_view root = "batch";

  static Value encode(const MetricsBatch& m) {
    MapWriter w = versioned();
    put_position(w, m.position);
    Value samples = samples_value(m.samples);
    if (m.encoding == BatchEncoding::plain) {
      w.put("enc", Value::text("plain")).put("samples", std::move(samples));
    } else {
      Bytes raw;
      write_cbor(samples, raw);
      Bytes packed(ZSTD_compressBound(raw.size()));
      const std::size_t n = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), 3);
      packed.resize(ZSTD_isError(n) ? 0 : n);  // cannot fail with a compressBound buffer
      w.put("enc", Value::text("zstd"))
          .put("count", Value::uint(m.samples.size()))
          .put("data", Value::bytes(std::move(packed)));
    }
    return w.done();
  }

  static MetricsBatch decode(const MapReader& r) {
    MetricsBatch m;
    m.position = read_position(r);
    m.encoding = r.field("enc").choice<BatchEncoding>(
        {{"plain", BatchEncoding::plain}, {"zstd", BatchEncoding::zstd}});
    if (m.encoding == BatchEncoding::plain) {
      r.field("samples").each(1, kMaxSamples,
                              [&](const Field& f) { m.samples.push_back(read_sample(f)); });
      return m;
    }
    const std::uint64_t count = r.field("count").uint(1, kMaxSamples);
    Field data = r.field("data");
    const Bytes packed = data.bytes(r.context().limits.max_message_bytes);
    const Bytes raw = inflate(packed, data);
    // The inflated samples are checked exactly like plain ones, with paths as if they
    // had been sent plain: batch.samples[3].cpu.
    const PathNode samples_path = r.path().member("samples");
    const Value samples = read_cbor(raw, unpacked_limits(r.context().limits), samples_path);
    Field(samples, samples_path, r.context()).each(count, count, [&](const Field& f) {
      m.samples.push_back(read_sample(f));
    });
    return m;
  }

  static Limits unpacked_limits(const Limits& limits) {
    Limits l = limits;
    l.max_message_bytes = limits.max_unpacked_bytes;
    return l;
  }

  static Bytes inflate(const Bytes& packed, const Field& at) {
    const unsigned long long size = ZSTD_getFrameContentSize(packed.data(), packed.size());
    if (size == ZSTD_CONTENTSIZE_ERROR) at.reject("not a zstd frame");
    if (size == ZSTD_CONTENTSIZE_UNKNOWN) at.reject("zstd frame does not declare its size");
    const std::size_t limit = at.context().limits.max_unpacked_bytes;
    if (size > limit) {
      at.reject("inflates to " + std::to_string(size) + " bytes, over the limit of " +
                std::to_string(limit));
    }
    Bytes raw(static_cast<std::size_t>(size));
    const std::size_t n = ZSTD_decompress(raw.data(), raw.size(), packed.data(), packed.size());
    if (ZSTD_isError(n)) at.reject(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (n != raw.size()) at.reject("zstd frame is shorter than it declares");
    return raw;
  }
};

// --- sensors ----------------------------------------------------------------------------

template <>
struct Codec<SensorReading> {
  static constexpr std::string_view root = "reading";

  static Value encode(const SensorReading& m) {
    return versioned()
        .put("ts", ts_value(m.ts))
        .put_optional("seq", m.seq, Value::uint)
        .put("values", real_map(m.values))
        .put_optional("unit", m.unit, optional_text)
        .done();
  }

  static SensorReading decode(const MapReader& r) {
    SensorReading m;
    m.ts = r.field("ts").uint();
    if (auto f = r.maybe("seq")) m.seq = f->uint();
    m.values = r.field("values").real_map(1, 32);
    if (auto f = r.maybe("unit")) m.unit = f->text(32);
    return m;
  }
};

template <>
struct Codec<SensorError> {
  static constexpr std::string_view root = "error";

  static Value encode(const SensorError& m) {
    return versioned()
        .put("sensor", Value::text(m.sensor))
        .put("ts", ts_value(m.ts))
        .put("field", Value::text(m.field))
        .put("reason", Value::text(m.reason))
        .done();
  }

  static SensorError decode(const MapReader& r) {
    return SensorError{r.field("sensor").id(), r.field("ts").uint(),
                       r.field("field").text(kShortText, true), r.field("reason").text(kLongText)};
  }
};

// --- tasks ------------------------------------------------------------------------------

constexpr std::uint64_t kWeekMs = 7ull * 24 * 3600 * 1000;

template <>
struct Codec<Task> {
  static constexpr std::string_view root = "task";

  static Value encode(const Task& m) {
    MapWriter w = versioned();
    w.put("task_id", Value::text(m.task_id))
        .put_optional("workload_id", m.workload_id, optional_text)
        .put("argv", text_list(m.argv))
        .put("timeout_ms", Value::uint(m.timeout_ms))
        .put("memory_mb", Value::uint(m.memory_mb))
        .put("cpu_millis", Value::uint(m.cpu_millis))
        .put("priority", Value::uint(m.priority))
        .put("issued_ts", ts_value(m.issued_ts));
    put_nonempty(w, "env", m.env);
    return w.done();
  }

  static Task decode(const MapReader& r) {
    Task m;
    m.task_id = r.field("task_id").id();
    if (auto f = r.maybe("workload_id")) m.workload_id = f->id();
    m.argv = read_argv(r.field("argv"));
    if (auto f = r.maybe("env")) {
      f->entries(0, 64, [&](const std::string& k, const Field& v) { m.env[k] = v.text(kLongText, true); });
    }
    m.timeout_ms = r.field("timeout_ms").uint(1, kWeekMs);
    m.memory_mb = r.field("memory_mb").uint();
    m.cpu_millis = r.field("cpu_millis").uint();
    m.priority = static_cast<std::uint8_t>(r.field("priority").uint(0, 9));
    m.issued_ts = r.field("issued_ts").uint();
    return m;
  }
};

template <>
struct Codec<TaskResult> {
  static constexpr std::string_view root = "result";

  static Value encode(const TaskResult& m) {
    MapWriter w = versioned();
    put_position(w, m.position);
    const char* status = m.status == TaskStatus::ok        ? "ok"
                         : m.status == TaskStatus::failed  ? "failed"
                         : m.status == TaskStatus::timeout ? "timeout"
                         : m.status == TaskStatus::killed  ? "killed"
                                                           : "refused";
    return w.put("task_id", Value::text(m.task_id))
        .put("status", Value::text(status))
        .put_optional("exit_code", m.exit_code, Value::integer)
        .put_optional("started_ts", m.started_ts, Value::uint)
        .put("finished_ts", ts_value(m.finished_ts))
        .put("output", Value::text(m.output))
        .put_optional("reason", m.reason, optional_text)
        .done();
  }

  static TaskResult decode(const MapReader& r) {
    TaskResult m;
    m.position = read_position(r);
    m.task_id = r.field("task_id").id();
    m.status = r.field("status").choice<TaskStatus>({{"ok", TaskStatus::ok},
                                                     {"failed", TaskStatus::failed},
                                                     {"timeout", TaskStatus::timeout},
                                                     {"killed", TaskStatus::killed},
                                                     {"refused", TaskStatus::refused}});
    if (auto f = r.maybe("exit_code")) {
      m.exit_code = f->integer(std::numeric_limits<std::int32_t>::min(),
                               std::numeric_limits<std::int32_t>::max());
    }
    if (auto f = r.maybe("started_ts")) m.started_ts = f->uint();
    m.finished_ts = r.field("finished_ts").uint();
    m.output = r.field("output").text(kLongText, true);
    if (auto f = r.maybe("reason")) m.reason = f->text(kLongText);
    return m;
  }
};

// --- decisions --------------------------------------------------------------------------

template <>
struct Codec<DecisionRecord> {
  static constexpr std::string_view root = "decision";

  static Value encode(const DecisionRecord& m) {
    MapWriter w = versioned();
    put_position(w, m.position);
    w.put("decision_id", Value::text(m.decision_id))
        .put("ts", ts_value(m.ts))
        .put("kind", Value::text(m.kind))
        .put("action", Value::text(m.action))
        .put("confidence", Value::real(m.confidence))
        .put("offline", Value::boolean(m.offline));
    put_nonempty(w, "inputs", m.inputs);
    return w.done();
  }

  static DecisionRecord decode(const MapReader& r) {
    DecisionRecord m;
    m.position = read_position(r);
    m.decision_id = r.field("decision_id").id();
    m.ts = r.field("ts").uint();
    m.kind = r.field("kind").id();
    m.inputs = read_reals(r, "inputs", 64);
    m.action = r.field("action").text(kShortText);
    m.confidence = r.field("confidence").real(0, 1);
    m.offline = r.field("offline").boolean();
    return m;
  }
};

template <>
struct Codec<DecisionVerdict> {
  static constexpr std::string_view root = "verdict";

  static Value encode(const DecisionVerdict& m) {
    const char* verdict = m.verdict == Verdict::accepted     ? "accepted"
                          : m.verdict == Verdict::overridden ? "overridden"
                                                             : "rejected";
    return versioned()
        .put("decision_id", Value::text(m.decision_id))
        .put("node", Value::text(m.node))
        .put("verdict", Value::text(verdict))
        .put_optional("reason", m.reason, optional_text)
        .put("ts", ts_value(m.ts))
        .done();
  }

  static DecisionVerdict decode(const MapReader& r) {
    DecisionVerdict m;
    m.decision_id = r.field("decision_id").id();
    m.node = r.field("node").id();
    m.verdict = r.field("verdict").choice<Verdict>({{"accepted", Verdict::accepted},
                                                    {"overridden", Verdict::overridden},
                                                    {"rejected", Verdict::rejected}});
    if (auto f = r.maybe("reason")) m.reason = f->text(kLongText);
    m.ts = r.field("ts").uint();
    return m;
  }
};

// --- alerts -----------------------------------------------------------------------------

template <>
struct Codec<Alert> {
  static constexpr std::string_view root = "alert";

  static Value encode(const Alert& m) {
    MapWriter w = versioned();
    put_position(w, m.position);
    const char* severity = m.severity == Severity::info      ? "info"
                           : m.severity == Severity::warning ? "warning"
                                                             : "critical";
    return w.put("alert_id", Value::text(m.alert_id))
        .put("ts", ts_value(m.ts))
        .put("severity", Value::text(severity))
        .put("metric", Value::text(m.metric))
        .put("observed", Value::real(m.observed))
        .put("threshold", Value::real(m.threshold))
        .put("message", Value::text(m.message))
        .done();
  }

  static Alert decode(const MapReader& r) {
    Alert m;
    m.position = read_position(r);
    m.alert_id = r.field("alert_id").id();
    m.ts = r.field("ts").uint();
    m.severity = r.field("severity").choice<Severity>(
        {{"info", Severity::info}, {"warning", Severity::warning}, {"critical", Severity::critical}});
    m.metric = r.field("metric").id();
    m.observed = r.field("observed").real(-kMaxDouble, kMaxDouble);
    m.threshold = r.field("threshold").real(-kMaxDouble, kMaxDouble, Infinity::allowed);
    m.message = r.field("message").text(1024, true);
    return m;
  }
};

// --- config and models ------------------------------------------------------------------

Value config_value(const ConfigValue& v) {
  switch (v.index()) {
    case 0: return Value::boolean(std::get<bool>(v));
    case 1: return Value::integer(std::get<std::int64_t>(v));
    case 2: return Value::real(std::get<double>(v));
    default: return Value::text(std::get<std::string>(v));
  }
}

ConfigValue read_config_value(const Field& f) {
  switch (f.value().kind()) {
    case Value::Kind::boolean: return f.boolean();
    case Value::Kind::uint:
    case Value::Kind::negint:
      return f.integer(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max());
    case Value::Kind::real: return f.real(-kMaxDouble, kMaxDouble);
    case Value::Kind::text: return f.text(kLongText, true);
    default:
      f.reject("expected boolean, integer, float or text string, got " +
               std::string(kind_name(f.value().kind())));
  }
}

template <>
struct Codec<Config> {
  static constexpr std::string_view root = "config";

  static Value encode(const Config& m) {
    Object values;
    for (const auto& [k, v] : m.values) values.push_back(Member{k, config_value(v)});
    return versioned()
        .put("revision", Value::uint(m.revision))
        .put("ts", ts_value(m.ts))
        .put("values", Value::map(std::move(values)))
        .done();
  }

  static Config decode(const MapReader& r) {
    Config m;
    m.revision = r.field("revision").uint();
    m.ts = r.field("ts").uint();
    r.field("values").entries(0, 256, [&](const std::string& k, const Field& f) {
      m.values.emplace(k, read_config_value(f));
    });
    return m;
  }
};

template <>
struct Codec<Model> {
  static constexpr std::string_view root = "model";

  static Value encode(const Model& m) {
    MapWriter w = versioned();
    w.put("model_id", Value::text(m.model_id))
        .put("revision", Value::uint(m.revision))
        .put("kind", Value::text(m.kind))
        .put("ts", ts_value(m.ts));
    put_nonempty(w, "params", m.params);
    if (!m.weights.empty()) {
      Array a;
      for (double d : m.weights) a.push_back(Value::real(d));
      w.put("weights", Value::array(std::move(a)));
    }
    return w.done();
  }

  static Model decode(const MapReader& r) {
    Model m;
    m.model_id = r.field("model_id").id();
    m.revision = r.field("revision").uint();
    m.kind = r.field("kind").id();
    m.params = read_reals(r, "params", 64);
    if (auto f = r.maybe("weights")) {
      f->each(0, 4096, [&](const Field& w) { m.weights.push_back(w.real(-kMaxDouble, kMaxDouble)); });
    }
    m.ts = r.field("ts").uint();
    return m;
  }
};

// --- acknowledgements -------------------------------------------------------------------

template <>
struct Codec<Ack> {
  static constexpr std::string_view root = "ack";

  static Value encode(const Ack& m) {
    Object marks;
    for (const auto& [stream, seq] : m.watermarks) marks.push_back(Member{stream, Value::uint(seq)});
    return versioned()
        .put("node", Value::text(m.node))
        .put("ts", ts_value(m.ts))
        .put("watermarks", Value::map(std::move(marks)))
        .done();
  }

  static Ack decode(const MapReader& r) {
    Ack m;
    m.node = r.field("node").id();
    m.ts = r.field("ts").uint();
    r.field("watermarks").entries(1, 64, [&](const std::string& k, const Field& f) {
      m.watermarks.emplace(k, f.uint());
    });
    return m;
  }
};

// --- workloads, placements, clusters ----------------------------------------------------

template <>
struct Codec<WorkloadSpec> {
  static constexpr std::string_view root = "workload";

  static Value encode(const WorkloadSpec& m) {
    MapWriter w = versioned();
    w.put("workload_id", Value::text(m.workload_id))
        .put("name", Value::text(m.name))
        .put("argv", text_list(m.argv))
        .put("res", resources_value(m.resources))
        .put_optional("latency", m.latency,
                      [](const LatencyBound& l) {
                        return MapWriter()
                            .put("max_ms", Value::uint(l.max_ms))
                            .put("to", Value::text(l.to))
                            .done();
                      })
        .put_optional("region", m.region, optional_text)
        .put("availability", Value::real(m.availability))
        .put("timeout_ms", Value::uint(m.timeout_ms));
    put_nonempty(w, "caps", m.capabilities);
    put_nonempty(w, "clusters_in", m.clusters_include);
    put_nonempty(w, "clusters_out", m.clusters_exclude);
    if (!m.tier_preference.empty()) {
      Array tiers;
      for (std::uint8_t t : m.tier_preference) tiers.push_back(Value::uint(t));
      w.put("tiers", Value::array(std::move(tiers)));
    }
    return w.done();
  }

  static WorkloadSpec decode(const MapReader& r) {
    WorkloadSpec m;
    m.workload_id = r.field("workload_id").id();
    m.name = r.field("name").text(kShortText, true);
    m.argv = read_argv(r.field("argv"));
    m.resources = read_resources(r.field("res"));
    if (auto f = r.maybe("latency")) {
      MapReader l = f->map();
      m.latency = LatencyBound{l.field("max_ms").uint(1, kMaxU64), l.field("to").id()};
    }
    m.capabilities = read_ids(r, "caps", 64);
    if (auto f = r.maybe("tiers")) {
      f->each(0, 5, [&](const Field& t) {
        m.tier_preference.push_back(static_cast<std::uint8_t>(t.uint(1, 5)));
      });
    }
    if (auto f = r.maybe("region")) m.region = f->id();
    m.availability = r.field("availability").real(0, 1);
    m.clusters_include = read_ids(r, "clusters_in", 64);
    m.clusters_exclude = read_ids(r, "clusters_out", 64);
    m.timeout_ms = r.field("timeout_ms").uint(1, kWeekMs);
    return m;
  }
};

template <>
struct Codec<Placement> {
  static constexpr std::string_view root = "placement";

  static Value encode(const Placement& m) {
    const ScoreBreakdown& b = m.breakdown;
    MapWriter w = versioned();
    w.put("workload_id", Value::text(m.workload_id))
        .put("node", Value::text(m.node))
        .put("site", Value::text(m.site))
        .put("score", Value::real(m.score))
        .put("breakdown", MapWriter()
                              .put("resource", Value::real(b.resource))
                              .put("latency", Value::real(b.latency))
                              .put("capability", Value::real(b.capability))
                              .put("level", Value::real(b.level))
                              .put("availability", Value::real(b.availability))
                              .done())
        .put("revision", Value::uint(m.revision))
        .put("ts", ts_value(m.ts));
    put_nonempty(w, "failover", m.failover);
    return w.done();
  }

  static Placement decode(const MapReader& r) {
    Placement m;
    m.workload_id = r.field("workload_id").id();
    m.node = r.field("node").id();
    m.site = read_site_path(r.field("site"));
    m.score = r.field("score").real(0, 100);
    MapReader b = r.field("breakdown").map();
    m.breakdown = ScoreBreakdown{b.field("resource").real(0, 100), b.field("latency").real(0, 100),
                                 b.field("capability").real(0, 100), b.field("level").real(0, 100),
                                 b.field("availability").real(0, 100)};
    m.revision = r.field("revision").uint();
    m.ts = r.field("ts").uint();
    m.failover = read_ids(r, "failover", 16);
    return m;
  }
};

template <>
struct Codec<ClusterRecord> {
  static constexpr std::string_view root = "cluster";

  static Value encode(const ClusterRecord& m) {
    MapWriter w = versioned();
    w.put("cluster_id", Value::text(m.cluster_id))
        .put("name", Value::text(m.name))
        .put("role", Value::text(m.role == ClusterRole::primary ? "primary" : "secondary"))
        .put_optional("root_site", m.root_site, optional_text)
        .put_optional("endpoint", m.endpoint, optional_text)
        .put_optional("region", m.region, optional_text);
    put_nonempty(w, "caps", m.capabilities);
    put_nonempty(w, "policies", m.policies);
    return w.done();
  }

  static ClusterRecord decode(const MapReader& r) {
    ClusterRecord m;
    m.cluster_id = r.field("cluster_id").id();
    m.name = r.field("name").text(kShortText, true);
    m.role = r.field("role").choice<ClusterRole>(
        {{"primary", ClusterRole::primary}, {"secondary", ClusterRole::secondary}});
    if (auto f = r.maybe("root_site")) m.root_site = read_site_path(*f);
    if (auto f = r.maybe("endpoint")) m.endpoint = f->text(kShortText);
    m.capabilities = read_ids(r, "caps", 64);
    if (auto f = r.maybe("policies")) {
      f->entries(0, 64, [&](const std::string& k, const Field& v) { m.policies[k] = v.text(kShortText, true); });
    }
    if (auto f = r.maybe("region")) m.region = f->id();
    return m;
  }
};

// Top-level decoding shared by both formats: the version check, then the schema.
template <class T>
Result<T> decode_value(const Value& value, const PathNode& root, const DecodeContext& ctx) {
  MapReader r(value, root, ctx);
  check_version(r);
  return Codec<T>::decode(r);
}

}  // namespace detail

template <class T>
Bytes encode_cbor(const T& message) {
  Bytes out;
  detail::write_cbor(detail::Codec<T>::encode(message), out);
  return out;
}

template <class T>
Result<T> decode_cbor(std::span<const std::uint8_t> input, const Limits& limits) {
  const detail::PathNode root{nullptr, detail::Codec<T>::root, 0, false};
  try {
    const detail::Value value = detail::read_cbor(input, limits, root);
    return detail::decode_value<T>(value, root, detail::DecodeContext{detail::Format::cbor, limits});
  } catch (const detail::DecodeFailure& f) {
    return f.error;
  }
}

template <class T>
std::string encode_json(const T& message) {
  return detail::write_json(detail::Codec<T>::encode(message));
}

template <class T>
Result<T> decode_json(std::string_view input, const Limits& limits) {
  const detail::PathNode root{nullptr, detail::Codec<T>::root, 0, false};
  try {
    const detail::Value value = detail::read_json(input, limits, root);
    return detail::decode_value<T>(value, root, detail::DecodeContext{detail::Format::json, limits});
  } catch (const detail::DecodeFailure& f) {
    return f.error;
  }
}

template <class T>
std::string_view root_name() {
  return detail::Codec<T>::root;
}

#define NOVA_CODEC_INSTANTIATE(T)                                                           \
  template Bytes encode_cbor<T>(const T&);                                                  \
  template Result<T> decode_cbor<T>(std::span<const std::uint8_t>, const Limits&);          \
  template std::string encode_json<T>(const T&);                                            \
  template Result<T> decode_json<T>(std::string_view, const Limits&);                       \
  template std::string_view root_name<T>();

NOVA_CODEC_INSTANTIATE(NodeState)
NOVA_CODEC_INSTANTIATE(MetricsBatch)
NOVA_CODEC_INSTANTIATE(SensorReading)
NOVA_CODEC_INSTANTIATE(SensorError)
NOVA_CODEC_INSTANTIATE(Task)
NOVA_CODEC_INSTANTIATE(TaskResult)
NOVA_CODEC_INSTANTIATE(DecisionRecord)
NOVA_CODEC_INSTANTIATE(DecisionVerdict)
NOVA_CODEC_INSTANTIATE(Alert)
NOVA_CODEC_INSTANTIATE(Config)
NOVA_CODEC_INSTANTIATE(Model)
NOVA_CODEC_INSTANTIATE(Ack)
NOVA_CODEC_INSTANTIATE(WorkloadSpec)
NOVA_CODEC_INSTANTIATE(Placement)
NOVA_CODEC_INSTANTIATE(ClusterRecord)

#undef NOVA_CODEC_INSTANTIATE

}  // namespace nova::schemas
