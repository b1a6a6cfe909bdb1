// The typed layer: each message struct to and from a Value, plus the public entry points
// of codec.h. One Codec<T> specialisation per message; its decode() is the schema.

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

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
  w.put_optional("first", p.first, Value::uint);
}

StreamPosition read_position(const MapReader& r) {
  StreamPosition p{r.field("node").id(), r.field("stream").id(), r.field("seq").uint(1), std::nullopt};
  if (auto f = r.maybe("first")) {
    p.first = f->uint(1);
    if (*p.first > p.seq) f->reject("first " + std::to_string(*p.first) + " is above seq " + std::to_string(p.seq));
  }
  return p;
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
      put_nonempty(w, "refused", m.refused);
      w.put_optional("config_revision", m.config_revision, Value::uint);
      w.put_optional("model_revision", m.model_revision, Value::uint);
      w.put_optional("model_id", m.model_id, optional_text);
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
      if (auto f = r.maybe("refused")) {
        f->each(1, 16, [&](const Field& filter) { m.refused.push_back(filter.text(1024)); });
      }
      if (auto f = r.maybe("config_revision")) m.config_revision = f->uint();
      if (auto f = r.maybe("model_revision")) m.model_revision = f->uint();
      if (auto f = r.maybe("model_id")) m.model_id = f->id();
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

// --- qdelta: quantized, column-wise, delta-encoded batches ------------------------------

namespace {
//
// Each value becomes an integer number of steps of its field's precision (10^-decimals),
// rounded half away from zero; a column holds the first value and then the difference
// to the previous value present, null where a sample lacks the field. Steps are bounded
// by 2^50: then steps / 10^d * 10^d is within 0.25 of the steps, so a decoded value
// quantizes back to the same steps and re-encoding a decoded batch is exact.

constexpr std::int64_t kMaxSteps = std::int64_t{1} << 50;
constexpr int kMaxDecimals = 9;
constexpr int kAutoDecimals = 3;  // extra gauges without declared places
constexpr double kPow10[kMaxDecimals + 1] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

// Decimal places of the fixed fields (timestamps are whole milliseconds already).
constexpr int kPctDecimals = 1, kLoadDecimals = 2, kNetDecimals = 0,
              kTempDecimals = 1, kPowerDecimals = 2;

std::optional<std::int64_t> to_steps(double x, int decimals) {
  if (!std::isfinite(x)) return std::nullopt;
  const double r = std::round(x * kPow10[decimals]);
  if (!(std::fabs(r) <= static_cast<double>(kMaxSteps))) return std::nullopt;
  return static_cast<std::int64_t>(r);
}

double from_steps(std::int64_t steps, int decimals) {
  return static_cast<double>(steps) / kPow10[decimals];
}

// The places an extra gauge gets in this batch (see MetricsBatch::extra_decimals), or
// nullopt when one of its values fits no places at all.
std::optional<int> extra_places(const MetricsBatch& m, const std::string& name) {
  auto each_value = [&](auto fn) {
    for (const MetricSample& s : m.samples) {
      if (auto it = s.extra.find(name); it != s.extra.end() && !fn(it->second)) return false;
    }
    return true;
  };
  int d = kAutoDecimals;
  if (auto it = m.extra_decimals.find(name); it != m.extra_decimals.end()) {
    d = std::min<int>(it->second, kMaxDecimals);
  } else {
    for (int c = 0; c < kAutoDecimals; ++c) {
      if (each_value([&](double x) {
            auto q = to_steps(x, c);
            return q && from_steps(*q, c) == x;
          })) {
        d = c;
        break;
      }
    }
  }
  while (!each_value([&](double x) { return to_steps(x, d).has_value(); })) {
    if (d == 0) return std::nullopt;
    --d;
  }
  return d;
}

std::set<std::string> extra_names(const MetricsBatch& m) {
  std::set<std::string> names;
  for (const MetricSample& s : m.samples) {
    for (const auto& [k, v] : s.extra) names.insert(k);
  }
  return names;
}

class ColumnWriter {
 public:
  explicit ColumnWriter(std::size_t n) { items_.reserve(n); }
  void push(std::optional<std::int64_t> steps) {
    if (!steps) {
      items_.push_back(Value());
      return;
    }
    items_.push_back(Value::integer(any_ ? *steps - prev_ : *steps));
    prev_ = *steps;
    any_ = true;
  }
  bool any() const { return any_; }
  Value done() { return Value::array(std::move(items_)); }

 private:
  Array items_;
  std::int64_t prev_ = 0;
  bool any_ = false;
};

// The columns map, or nullopt when some value cannot be quantized: not finite, or
// beyond 2^50 steps (then the batch goes as "zstd").
std::optional<Value> qdelta_columns(const MetricsBatch& m) {
  const std::size_t n = m.samples.size();
  bool ok = true;
  auto steps = [&](double x, int d) {
    auto q = to_steps(x, d);
    ok &= q.has_value();
    return q;
  };
  MapWriter w;
  auto required = [&](std::string_view key, auto get, int d) {
    ColumnWriter c(n);
    for (const MetricSample& s : m.samples) c.push(steps(get(s), d));
    w.put(key, c.done());
  };
  auto optional = [&](std::string_view key, auto get, int d) {
    ColumnWriter c(n);
    for (const MetricSample& s : m.samples) {
      const std::optional<double> v = get(s);
      c.push(v ? steps(*v, d) : std::nullopt);
    }
    if (c.any()) w.put(key, c.done());
  };
  ColumnWriter ts(n);
  for (const MetricSample& s : m.samples) {
    if (s.ts > static_cast<std::uint64_t>(kMaxSteps)) return std::nullopt;
    ts.push(static_cast<std::int64_t>(s.ts));
  }
  w.put("ts", ts.done());
  required("cpu", [](const MetricSample& s) { return s.cpu_pct; }, kPctDecimals);
  required("mem", [](const MetricSample& s) { return s.mem_pct; }, kPctDecimals);
  required("disk", [](const MetricSample& s) { return s.disk_pct; }, kPctDecimals);
  required("load1", [](const MetricSample& s) { return s.load1; }, kLoadDecimals);
  required("net_rx", [](const MetricSample& s) { return s.net_rx_bps; }, kNetDecimals);
  required("net_tx", [](const MetricSample& s) { return s.net_tx_bps; }, kNetDecimals);
  optional("temp", [](const MetricSample& s) { return s.temp_c; }, kTempDecimals);
  optional("throttled", [](const MetricSample& s) {
    return s.throttled ? std::optional<double>(*s.throttled ? 1 : 0) : std::nullopt;
  }, 0);
  optional("power", [](const MetricSample& s) { return s.power_w; }, kPowerDecimals);
  MapWriter extra;
  bool any_extra = false;
  for (const std::string& name : extra_names(m)) {
    const std::optional<int> d = extra_places(m, name);
    if (!d) return std::nullopt;
    ColumnWriter c(n);
    for (const MetricSample& s : m.samples) {
      auto it = s.extra.find(name);
      c.push(it == s.extra.end() ? std::nullopt : to_steps(it->second, *d));
    }
    extra.put(name, Value::array(Array{Value::uint(static_cast<std::uint64_t>(*d)), c.done()}));
    any_extra = true;
  }
  if (any_extra) w.put("extra", extra.done());
  if (!ok) return std::nullopt;
  return w.done();
}

// Reads one column of exactly `count` cells; calls fn(index, steps, cell) for each value
// present. A required column may not hold null; an optional one must hold some value.
template <class Fn>
void read_column(const Field& f, std::size_t count, bool optional, Fn fn) {
  std::size_t i = 0;
  std::int64_t prev = 0;
  bool any = false;
  f.each(count, count, [&](const Field& cell) {
    const std::size_t index = i++;
    if (cell.value().is(Value::Kind::null)) {
      if (!optional) cell.reject("null in a column every sample must have");
      return;
    }
    // |prev| <= 2^50 and |delta| <= 2^51: the sum cannot overflow.
    const std::int64_t v = cell.integer(-2 * kMaxSteps, 2 * kMaxSteps);
    const std::int64_t q = any ? prev + v : v;
    if (q < -kMaxSteps || q > kMaxSteps) {
      cell.reject("value of " + std::to_string(q) + " steps is beyond 2^50");
    }
    prev = q;
    any = true;
    fn(index, q, cell);
  });
  if (optional && !any) f.reject("column holds no value (an absent field is left out)");
}

// The value `steps` stands for, checked like the plain field (range, no infinity).
double checked(const Field& cell, std::int64_t steps, int decimals, double min, double max) {
  const Value v = Value::real(from_steps(steps, decimals));
  return Field(v, cell.path(), cell.context()).real(min, max);
}

void read_qdelta_columns(const Field& data, const Value& body, std::size_t count,
                         MetricsBatch& m) {
  const DecodeContext& ctx = data.context();
  MapReader b(body, data.path(), ctx);
  m.samples.assign(count, MetricSample{});
  auto& ss = m.samples;
  read_column(b.field("ts"), count, false, [&](std::size_t i, std::int64_t q, const Field& c) {
    if (q < 0) c.reject("timestamp " + std::to_string(q) + " is negative");
    ss[i].ts = static_cast<Timestamp>(q);
  });
  auto real_column = [&](std::string_view key, bool optional, int d, double lo, double hi, auto set) {
    auto read = [&](const Field& f) {
      read_column(f, count, optional, [&](std::size_t i, std::int64_t q, const Field& c) {
        set(ss[i], checked(c, q, d, lo, hi));
      });
    };
    if (!optional) {
      read(b.field(key));
    } else if (auto f = b.maybe(key)) {
      read(*f);
    }
  };
  real_column("cpu", false, kPctDecimals, 0, 100, [](MetricSample& s, double x) { s.cpu_pct = x; });
  real_column("mem", false, kPctDecimals, 0, 100, [](MetricSample& s, double x) { s.mem_pct = x; });
  real_column("disk", false, kPctDecimals, 0, 100, [](MetricSample& s, double x) { s.disk_pct = x; });
  real_column("load1", false, kLoadDecimals, 0, kMaxDouble, [](MetricSample& s, double x) { s.load1 = x; });
  real_column("net_rx", false, kNetDecimals, 0, kMaxDouble, [](MetricSample& s, double x) { s.net_rx_bps = x; });
  real_column("net_tx", false, kNetDecimals, 0, kMaxDouble, [](MetricSample& s, double x) { s.net_tx_bps = x; });
  real_column("temp", true, kTempDecimals, -100, 250, [](MetricSample& s, double x) { s.temp_c = x; });
  real_column("power", true, kPowerDecimals, 0, kMaxDouble, [](MetricSample& s, double x) { s.power_w = x; });
  if (auto f = b.maybe("throttled")) {
    read_column(*f, count, true, [&](std::size_t i, std::int64_t q, const Field& c) {
      if (q != 0 && q != 1) c.reject("throttled must be 0 or 1, got " + std::to_string(q));
      ss[i].throttled = q == 1;
    });
  }
  if (auto f = b.maybe("extra")) {
    // Bound the values before making any: a small inflated body of nulls could otherwise
    // stand for 256 gauges in each of 4096 samples.
    const std::size_t limit = ctx.limits.max_unpacked_bytes / 16;
    if (f->value().is(Value::Kind::map) && f->value().as_map().size() * count > limit) {
      f->reject(std::to_string(f->value().as_map().size()) + " gauges x " + std::to_string(count) +
                " samples is over the limit of " + std::to_string(limit) + " values");
    }
    f->entries(1, 256, [&](const std::string& name, const Field& g) {
      std::optional<int> d;
      g.each(2, 2, [&](const Field& e) {
        if (!d) {
          d = static_cast<int>(e.integer(0, kMaxDecimals));
          return;
        }
        read_column(e, count, true, [&](std::size_t i, std::int64_t q, const Field& c) {
          ss[i].extra[name] = checked(c, q, *d, -kMaxDouble, kMaxDouble);
        });
      });
      m.extra_decimals[name] = static_cast<std::uint8_t>(*d);
    });
  }
}

}  // namespace

MetricsBatch quantize_batch(const MetricsBatch& in) {
  MetricsBatch m = in;
  m.extra_decimals.clear();
  if (!qdelta_columns(in)) {
    m.encoding = BatchEncoding::zstd;
    return m;
  }
  m.encoding = BatchEncoding::qdelta;
  for (const std::string& name : extra_names(in)) {
    m.extra_decimals[name] = static_cast<std::uint8_t>(*extra_places(in, name));
  }
  auto q = [](double x, int d) { return from_steps(*to_steps(x, d), d); };
  for (MetricSample& s : m.samples) {
    s.cpu_pct = q(s.cpu_pct, kPctDecimals);
    s.mem_pct = q(s.mem_pct, kPctDecimals);
    s.disk_pct = q(s.disk_pct, kPctDecimals);
    s.load1 = q(s.load1, kLoadDecimals);
    s.net_rx_bps = q(s.net_rx_bps, kNetDecimals);
    s.net_tx_bps = q(s.net_tx_bps, kNetDecimals);
    if (s.temp_c) s.temp_c = q(*s.temp_c, kTempDecimals);
    if (s.power_w) s.power_w = q(*s.power_w, kPowerDecimals);
    for (auto& [name, x] : s.extra) x = q(x, m.extra_decimals.at(name));
  }
  return m;
}


template <>
struct Codec<MetricsBatch> {
  static constexpr std::string_view root = "batch";

  static Value encode(const MetricsBatch& m) {
    MapWriter w = versioned();
    put_position(w, m.position);
    if (m.encoding == BatchEncoding::plain) {
      w.put("enc", Value::text("plain")).put("samples", samples_value(m.samples));
      return w.done();
    }
    std::optional<Value> columns;
    if (m.encoding == BatchEncoding::qdelta) columns = qdelta_columns(m);
    Bytes raw;
    write_cbor(columns ? *columns : samples_value(m.samples), raw);
    w.put("enc", Value::text(columns ? "qdelta" : "zstd"))
        .put("count", Value::uint(m.samples.size()))
        .put("data", Value::bytes(deflate(raw)));
    return w.done();
  }

  static Bytes deflate(const Bytes& raw) {
    Bytes packed(ZSTD_compressBound(raw.size()));
    const std::size_t n = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), 3);
    packed.resize(ZSTD_isError(n) ? 0 : n);  // cannot fail with a compressBound buffer
    return packed;
  }

  static MetricsBatch decode(const MapReader& r) {
    MetricsBatch m;
    m.position = read_position(r);
    m.encoding = r.field("enc").choice<BatchEncoding>(
        {{"plain", BatchEncoding::plain}, {"zstd", BatchEncoding::zstd}, {"qdelta", BatchEncoding::qdelta}});
    if (m.encoding == BatchEncoding::plain) {
      r.field("samples").each(1, kMaxSamples,
                              [&](const Field& f) { m.samples.push_back(read_sample(f)); });
      return m;
    }
    // At most kMaxSamples: a size_t on 32-bit devices too.
    const auto count = static_cast<std::size_t>(r.field("count").uint(1, kMaxSamples));
    Field data = r.field("data");
    const Bytes packed = data.bytes(r.context().limits.max_message_bytes);
    const Bytes raw = inflate(packed, data);
    if (m.encoding == BatchEncoding::qdelta) {
      // Paths name the columns: batch.data.cpu[3]. No container in the columns may
      // hold more than `count` cells (or the 256 extra gauges), checked before any is
      // allocated.
      Limits l = unpacked_limits(r.context().limits);
      l.max_items = std::min(l.max_items, std::max<std::size_t>(count, 256));
      const Value columns = read_cbor(raw, l, data.path());
      read_qdelta_columns(data, columns, count, m);
      return m;
    }
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

const char* restart_name(RestartPolicy p) {
  return p == RestartPolicy::always ? "always" : p == RestartPolicy::on_failure ? "on-failure" : "never";
}

RestartPolicy read_restart(const Field& f) {
  return f.choice<RestartPolicy>(
      {{"always", RestartPolicy::always}, {"on-failure", RestartPolicy::on_failure}, {"never", RestartPolicy::never}});
}

// Members at their defaults are omitted, so one check has one encoding.
Value health_value(const HealthCheck& h) {
  const HealthCheck defaults;
  MapWriter w;
  w.put("command", text_list(h.command));
  auto put = [&](std::string_view key, std::uint32_t v, std::uint32_t fallback) {
    if (v != fallback) w.put(key, Value::uint(v));
  };
  put("interval_s", h.interval_s, defaults.interval_s);
  put("timeout_s", h.timeout_s, defaults.timeout_s);
  put("failure_threshold", h.failure_threshold, defaults.failure_threshold);
  put("initial_delay_s", h.initial_delay_s, defaults.initial_delay_s);
  return w.done();
}

// Every member but the command has a default, so {"command": [...]} is a whole check.
HealthCheck read_health(const Field& f) {
  MapReader r = f.map();
  HealthCheck h;
  h.command = read_argv(r.field("command"));
  auto u32 = [&](std::string_view key, std::uint32_t fallback, std::uint64_t min, std::uint64_t max) {
    auto v = r.maybe(key);
    return v ? static_cast<std::uint32_t>(v->uint(min, max)) : fallback;
  };
  h.interval_s = u32("interval_s", h.interval_s, 1, 3600);
  h.timeout_s = u32("timeout_s", h.timeout_s, 1, 3600);
  h.failure_threshold = u32("failure_threshold", h.failure_threshold, 1, 100);
  h.initial_delay_s = u32("initial_delay_s", h.initial_delay_s, 0, 3600);
  return h;
}

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
        .put("issued_ts", ts_value(m.issued_ts))
        .put_optional("service", m.service, [](const ServiceSpec& sv) {
          return MapWriter()
              .put("restart_policy", Value::text(restart_name(sv.restart)))
              .put_optional("health_check", sv.health, health_value)
              .done();
        });
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
    if (auto f = r.maybe("service")) {
      MapReader sv = f->map();
      ServiceSpec spec;
      spec.restart = read_restart(sv.field("restart_policy"));
      if (auto h = sv.maybe("health_check")) spec.health = read_health(*h);
      m.service = std::move(spec);
    }
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
                         : m.status == TaskStatus::refused ? "refused"
                         : m.status == TaskStatus::running ? "running"
                                                           : "cancelled";
    return w.put("task_id", Value::text(m.task_id))
        .put("status", Value::text(status))
        .put_optional("exit_code", m.exit_code, Value::integer)
        .put_optional("started_ts", m.started_ts, Value::uint)
        .put("finished_ts", ts_value(m.finished_ts))
        .put("output", Value::text(m.output))
        .put_optional("reason", m.reason, optional_text)
        .put_optional("service", m.service, [](const ServiceStatus& sv) {
          const char* state = sv.state == ServiceState::running      ? "running"
                              : sv.state == ServiceState::restarting ? "restarting"
                                                                     : "unhealthy";
          return MapWriter()
              .put("state", Value::text(state))
              .put("restarts", Value::uint(sv.restarts))
              .put_optional("last_exit", sv.last_exit, Value::integer)
              .put("health_failures", Value::uint(sv.health_failures))
              .done();
        })
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
                                                     {"refused", TaskStatus::refused},
                                                     {"cancelled", TaskStatus::cancelled},
                                                     {"running", TaskStatus::running}});
    if (auto f = r.maybe("exit_code")) {
      m.exit_code = f->integer(std::numeric_limits<std::int32_t>::min(),
                               std::numeric_limits<std::int32_t>::max());
    }
    if (auto f = r.maybe("started_ts")) m.started_ts = f->uint();
    m.finished_ts = r.field("finished_ts").uint();
    m.output = r.field("output").text(kLongText, true);
    if (auto f = r.maybe("reason")) m.reason = f->text(kLongText);
    if (auto f = r.maybe("service")) {
      MapReader sv = f->map();
      ServiceStatus st;
      st.state = sv.field("state").choice<ServiceState>({{"running", ServiceState::running},
                                                         {"restarting", ServiceState::restarting},
                                                         {"unhealthy", ServiceState::unhealthy}});
      st.restarts = sv.field("restarts").uint();
      if (auto e = sv.maybe("last_exit")) {
        st.last_exit = e->integer(std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max());
      }
      st.health_failures = static_cast<std::uint32_t>(sv.field("health_failures").uint(0, 100));
      m.service = st;
    }
    if (m.status == TaskStatus::running && !m.service) r.field("service");  // "missing required field"
    return m;
  }
};

template <>
struct Codec<TaskCancel> {
  static constexpr std::string_view root = "cancel";

  static Value encode(const TaskCancel& m) {
    return versioned()
        .put("task_id", Value::text(m.task_id))
        .put_optional("reason", m.reason, optional_text)
        .put("issued_ts", ts_value(m.issued_ts))
        .done();
  }

  static TaskCancel decode(const MapReader& r) {
    TaskCancel m;
    m.task_id = r.field("task_id").id();
    if (auto f = r.maybe("reason")) m.reason = f->text(kLongText);
    m.issued_ts = r.field("issued_ts").uint();
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
        .put("offline", Value::boolean(m.offline))
        .put_optional("applies", m.applies, optional_text)
        .put_optional("target", m.target, optional_text);
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
    if (auto f = r.maybe("applies")) m.applies = f->id();
    if (auto f = r.maybe("target")) m.target = f->id();
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
        .put_optional("gauge", m.gauge, optional_text)
        .put_optional("warning", m.warning, Value::real)
        .put_optional("critical", m.critical, Value::real)
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
    if (auto f = r.maybe("gauge")) m.gauge = f->id();
    if (auto f = r.maybe("warning")) m.warning = f->real(-kMaxDouble, kMaxDouble);
    if (auto f = r.maybe("critical")) m.critical = f->real(-kMaxDouble, kMaxDouble);
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

Value tree_node_value(const TreeNode& n) {
  if (n.leaf) return MapWriter().put("leaf", Value::real(*n.leaf)).done();
  MapWriter w;
  w.put("feature", Value::uint(n.feature))
      .put("split", Value::real(n.split))
      .put("left", Value::uint(n.left))
      .put("right", Value::uint(n.right));
  if (n.missing) w.put("missing", Value::text(*n.missing == MissingGoes::left ? "left" : "right"));
  return w.done();
}

// A node is a leaf or a split, never both: a map with "leaf" and a split's member is
// refused rather than read as either.
TreeNode read_tree_node(const Field& f) {
  MapReader r = f.map();
  TreeNode n;
  if (auto leaf = r.maybe("leaf")) {
    for (const char* key : {"feature", "split", "left", "right", "missing"}) {
      if (r.maybe(key)) f.reject(std::string("a leaf has no '") + key + "'");
    }
    n.leaf = leaf->real(-kMaxDouble, kMaxDouble);
    return n;
  }
  n.feature = r.field("feature").uint();
  n.split = r.field("split").real(-kMaxDouble, kMaxDouble);
  n.left = r.field("left").uint();
  n.right = r.field("right").uint();
  if (auto m = r.maybe("missing")) {
    n.missing = m->choice<MissingGoes>({{"left", MissingGoes::left}, {"right", MissingGoes::right}});
  }
  return n;
}

template <>
struct Codec<Model> {
  static constexpr std::string_view root = "model";
  static constexpr std::size_t kMaxFeatures = 61;  // + score, threshold, model_revision = a decision's 64 inputs
  static constexpr std::size_t kMaxTrees = 64;
  static constexpr std::size_t kMaxTreeNodes = 255;
  static constexpr std::size_t kMaxAction = 128;

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
    put_nonempty(w, "features", m.features);
    if (!m.trees.empty()) {
      Array trees;
      for (const std::vector<TreeNode>& t : m.trees) {
        Array nodes;
        for (const TreeNode& n : t) nodes.push_back(tree_node_value(n));
        trees.push_back(Value::array(std::move(nodes)));
      }
      w.put("trees", Value::array(std::move(trees)));
    }
    if (m.combine) w.put("combine", Value::text(*m.combine == TreeCombine::sum ? "sum" : "mean"));
    if (m.output) w.put("output", Value::text(*m.output == ModelOutput::raw ? "raw" : "sigmoid"));
    w.put_optional("action", m.action, optional_text);
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
    m.features = read_ids(r, "features", kMaxFeatures);
    if (auto f = r.maybe("trees")) {
      f->each(0, kMaxTrees, [&](const Field& tree) {
        std::vector<TreeNode>& nodes = m.trees.emplace_back();
        tree.each(1, kMaxTreeNodes, [&](const Field& node) { nodes.push_back(read_tree_node(node)); });
      });
    }
    if (auto f = r.maybe("combine")) {
      m.combine = f->choice<TreeCombine>({{"sum", TreeCombine::sum}, {"mean", TreeCombine::mean}});
    }
    if (auto f = r.maybe("output")) {
      m.output = f->choice<ModelOutput>({{"raw", ModelOutput::raw}, {"sigmoid", ModelOutput::sigmoid}});
    }
    if (auto f = r.maybe("action")) m.action = f->text(kMaxAction);
    return m;
  }
};

template <>
struct Codec<UpdateOffer> {
  static constexpr std::string_view root = "update";
  static constexpr std::uint64_t kMaxBundleBytes = 256ull << 20;

  static Value encode(const UpdateOffer& m) {
    return versioned()
        .put("version", Value::text(m.version))
        .put("sha256", Value::text(m.sha256))
        .put("size", Value::uint(m.size))
        .put("ts", ts_value(m.ts))
        .done();
  }

  static UpdateOffer decode(const MapReader& r) {
    UpdateOffer m;
    m.version = r.field("version").text(256);
    const Field sha = r.field("sha256");
    m.sha256 = sha.text(64);
    if (m.sha256.size() != 64 ||
        m.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
      sha.reject("'" + m.sha256 + "' is not 64 lower-case hex digits");
    }
    const Field size = r.field("size");
    m.size = size.uint(1, kMaxBundleBytes);
    m.ts = r.field("ts").uint();
    return m;
  }
};

// --- erasure ----------------------------------------------------------------------------

template <>
struct Codec<ErasureRequest> {
  static constexpr std::string_view root = "erasure";

  static Value encode(const ErasureRequest& m) {
    return versioned()
        .put("erasure_id", Value::text(m.erasure_id))
        .put("node", Value::text(m.node))
        .put_optional("sensor", m.sensor, optional_text)
        .put("ts", ts_value(m.ts))
        .done();
  }

  static ErasureRequest decode(const MapReader& r) {
    ErasureRequest m;
    m.erasure_id = r.field("erasure_id").id();
    m.node = r.field("node").id();
    if (auto f = r.maybe("sensor")) m.sensor = f->id();
    m.ts = r.field("ts").uint();
    return m;
  }
};

template <>
struct Codec<ErasureReport> {
  static constexpr std::string_view root = "erasure_report";

  static Value encode(const ErasureReport& m) {
    MapWriter w = versioned();
    put_position(w, m.position);
    Object counts;
    for (const auto& [store, n] : m.counts) counts.push_back(Member{store, Value::uint(n)});
    return w.put("erasure_id", Value::text(m.erasure_id))
        .put("ts", ts_value(m.ts))
        .put("counts", Value::map(std::move(counts)))
        .done();
  }

  static ErasureReport decode(const MapReader& r) {
    ErasureReport m;
    m.position = read_position(r);
    m.erasure_id = r.field("erasure_id").id();
    m.ts = r.field("ts").uint();
    r.field("counts").entries(0, 16, [&](const std::string& k, const Field& f) { m.counts.emplace(k, f.uint()); });
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
    if (m.kind == WorkloadKind::service) w.put("kind", Value::text("service"));
    if (m.replicas != 1) w.put("replicas", Value::uint(m.replicas));
    w.put_optional("restart_policy", m.restart_policy, [](RestartPolicy p) { return Value::text(restart_name(p)); })
        .put_optional("health_check", m.health_check, health_value);
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
    if (auto f = r.maybe("kind")) {
      m.kind = f->choice<WorkloadKind>({{"task", WorkloadKind::task}, {"service", WorkloadKind::service}});
    }
    if (auto f = r.maybe("replicas")) m.replicas = static_cast<std::uint32_t>(f->uint(1, 64));
    if (auto f = r.maybe("restart_policy")) m.restart_policy = read_restart(*f);
    if (auto f = r.maybe("health_check")) m.health_check = read_health(*f);
    // A task runs once per placement: replicas, restarts and health checks are a service's.
    if (m.kind == WorkloadKind::task) {
      for (const char* key : {"replicas", "restart_policy", "health_check"}) {
        if (auto f = r.maybe(key); f && !(std::string_view(key) == "replicas" && m.replicas == 1)) {
          f->reject("only a service (kind \"service\") takes " + std::string(key));
        }
      }
    }
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
NOVA_CODEC_INSTANTIATE(TaskCancel)
NOVA_CODEC_INSTANTIATE(DecisionRecord)
NOVA_CODEC_INSTANTIATE(DecisionVerdict)
NOVA_CODEC_INSTANTIATE(Alert)
NOVA_CODEC_INSTANTIATE(Config)
NOVA_CODEC_INSTANTIATE(Model)
NOVA_CODEC_INSTANTIATE(Ack)
NOVA_CODEC_INSTANTIATE(UpdateOffer)
NOVA_CODEC_INSTANTIATE(ErasureRequest)
NOVA_CODEC_INSTANTIATE(ErasureReport)
NOVA_CODEC_INSTANTIATE(WorkloadSpec)
NOVA_CODEC_INSTANTIATE(Placement)
NOVA_CODEC_INSTANTIATE(ClusterRecord)

#undef NOVA_CODEC_INSTANTIATE

MetricsBatch quantize(const MetricsBatch& batch) { return detail::quantize_batch(batch); }

}  // namespace nova::schemas
