// "qdelta" metrics batches: quantized to each field's precision, column-wise,
// delta-encoded, zstd-compressed. The round trip is exact after quantization:
// decode(encode(b)) == quantize(b), and quantize(b) is within half a step of b.
// Malformed columns are crafted with nlohmann-json's CBOR encoder and libzstd, not ours.
#include <zstd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"
#include "sample_messages.h"

using namespace nova::schemas;
using json = nlohmann::json;

namespace {

// A minute of agent-like samples: 6 required gauges, temp in most samples, throttled
// and power in some, and about 22 extra gauges, one of which comes and goes.
MetricsBatch agent_batch(std::size_t n = 60) {
  MetricsBatch b;
  b.position = {"gw-01", "metrics", 7};
  b.encoding = BatchEncoding::qdelta;
  b.extra_decimals = {{"cpu.user", 1}, {"cpu.system", 1}, {"mem.available_mb", 0}, {"self.rss_kb", 0}};
  for (std::size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i);
    MetricSample s;
    s.ts = 1732650000000 + i * 1000 + (i % 7);  // jittered
    s.cpu_pct = 10 + 5 * std::sin(t / 3) + 0.0123 * t;
    s.mem_pct = 41.122006999487767 + t / 997;
    s.disk_pct = 21.049085011232325;
    s.load1 = 0.7100000000000001 + t / 100;
    s.net_rx_bps = 1234.5678 * (1 + std::cos(t));
    s.net_tx_bps = 800 + t * 3.3;
    if (i % 10 != 3) s.temp_c = 45.05 + t / 7;
    if (i % 4 == 0) s.throttled = i % 8 == 0;
    if (i % 5 == 0) s.power_w = 3.256 + t / 33;
    for (const char* k : {"cpu.user", "cpu.system", "cpu.iowait", "cpu.irq", "cpu.softirq",
                          "cpu.steal", "cpu.idle", "swap.used_pct", "self.cpu_pct"}) {
      s.extra[k] = std::fmod(t * 1.37 + static_cast<double>(std::string(k).size()), 50.0);
    }
    s.extra["mem.available_mb"] = 15000.25 - t * 1.5;
    s.extra["mem.cached_mb"] = 3000.0 + t;
    s.extra["disk.read_bps"] = i % 3 == 0 ? 4096.0 : 0.0;
    s.extra["disk.write_bps"] = 81920.0 * static_cast<double>(i % 2);
    s.extra["load5"] = 0.65 + t / 1000;
    s.extra["load15"] = 0.5;
    s.extra["self.rss_kb"] = 11340.0 + t;
    s.extra["net.eth0.rx_bps"] = 1234.5678 * (1 + std::cos(t));
    s.extra["net.eth0.tx_bps"] = 800 + t * 3.3;
    s.extra["agent.outbox_records"] = 3;
    s.extra["agent.outbox_bytes"] = 16282;
    s.extra["agent.outbox_evicted"] = 0;
    if (i % 2 == 1) s.extra["temp.x86_pkg_temp"] = 51.123;  // comes and goes
    b.samples.push_back(std::move(s));
  }
  return b;
}

Bytes zstd(const std::vector<std::uint8_t>& raw) {
  Bytes out(ZSTD_compressBound(raw.size()));
  out.resize(ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 3));
  return out;
}

// A qdelta batch carrying `columns` (as JSON, encoded by nlohmann's CBOR encoder).
Bytes qdelta_with(const json& columns, std::uint64_t count) {
  json b = {{"v", 1}, {"node", "gw-01"}, {"stream", "metrics"}, {"seq", 1},
            {"enc", "qdelta"}, {"count", count},
            {"data", json::binary(zstd(json::to_cbor(columns)))}};
  const auto bytes = json::to_cbor(b);
  return Bytes(bytes.begin(), bytes.end());
}

json good_columns() {
  return {{"ts", {1732650000000, 1000, 1000}}, {"cpu", {123, -3, 0}}, {"mem", {400, 0, 1}},
          {"disk", {210, 0, 0}}, {"load1", {71, -1, 2}}, {"net_rx", {1000, 5, -5}},
          {"net_tx", {0, 0, 0}}, {"temp", {nullptr, 455, -5}},
          {"extra", {{"cpu.user", {1, {77, nullptr, -7}}}}}};
}

std::string error_of(const Bytes& b, const Limits& limits = {}) {
  auto r = decode_cbor<MetricsBatch>(std::span<const std::uint8_t>(b), limits);
  return r.ok() ? "(accepted)" : r.error().message();
}

}  // namespace

TEST_CASE("qdelta round trip is exact after quantization, in CBOR and JSON", "[codec][qdelta]") {
  const MetricsBatch original = agent_batch();
  const MetricsBatch expected = quantize(original);
  REQUIRE(expected.encoding == BatchEncoding::qdelta);
  CHECK(quantize(expected) == expected);  // quantizing is idempotent

  const Bytes cbor = encode_cbor(original);
  auto decoded = decode_cbor<MetricsBatch>(std::span<const std::uint8_t>(cbor));
  INFO((decoded ? "" : decoded.error().message()));
  REQUIRE(decoded.ok());
  CHECK(*decoded == expected);
  CHECK(encode_cbor(*decoded) == cbor);  // deterministic, and stable under re-encoding

  auto from_json = decode_json<MetricsBatch>(encode_json(original));
  REQUIRE(from_json.ok());
  CHECK(*from_json == expected);

  // Declared places are kept; undeclared ones are the fewest that are exact, else 3.
  CHECK(decoded->extra_decimals.at("cpu.user") == 1);
  CHECK(decoded->extra_decimals.at("self.rss_kb") == 0);
  CHECK(decoded->extra_decimals.at("agent.outbox_bytes") == 0);  // integers
  CHECK(decoded->extra_decimals.at("load15") == 1);               // 0.5
  CHECK(decoded->extra_decimals.at("load5") == 3);                // 0.65 + t/1000 is inexact
}

TEST_CASE("qdelta quantization error is at most half a step", "[codec][qdelta]") {
  const MetricsBatch original = agent_batch();
  const MetricsBatch q = quantize(original);
  auto within = [](double got, double want, int places) {
    const double half_step = 0.5 / std::pow(10.0, places);
    return std::fabs(got - want) <= half_step * (1 + 1e-9) + 1e-12 * std::fabs(want);
  };
  REQUIRE(q.samples.size() == original.samples.size());
  for (std::size_t i = 0; i < q.samples.size(); ++i) {
    const MetricSample& a = original.samples[i];
    const MetricSample& b = q.samples[i];
    INFO("sample " << i);
    CHECK(b.ts == a.ts);
    CHECK(within(b.cpu_pct, a.cpu_pct, 1));
    CHECK(within(b.mem_pct, a.mem_pct, 1));
    CHECK(within(b.disk_pct, a.disk_pct, 1));
    CHECK(within(b.load1, a.load1, 2));
    CHECK(within(b.net_rx_bps, a.net_rx_bps, 0));
    CHECK(within(b.net_tx_bps, a.net_tx_bps, 0));
    // Optional fields and extra gauges keep their presence per sample.
    REQUIRE(b.temp_c.has_value() == a.temp_c.has_value());
    if (a.temp_c) CHECK(within(*b.temp_c, *a.temp_c, 1));
    CHECK(b.throttled == a.throttled);
    REQUIRE(b.power_w.has_value() == a.power_w.has_value());
    if (a.power_w) CHECK(within(*b.power_w, *a.power_w, 2));
    REQUIRE(b.extra.size() == a.extra.size());
    for (const auto& [k, v] : a.extra) {
      REQUIRE(b.extra.count(k) == 1);
      CHECK(within(b.extra.at(k), v, q.extra_decimals.at(k)));
    }
  }
  // Rounding is half away from zero, on the double's own value.
  MetricsBatch one = nova::test::batch_of(1, BatchEncoding::qdelta);
  one.samples[0].cpu_pct = 0.25;
  one.samples[0].net_rx_bps = 1234.5;
  one.samples[0].load1 = 0.7100000000000001;
  const MetricsBatch r = quantize(one);
  CHECK(r.samples[0].cpu_pct == 0.3);
  CHECK(r.samples[0].net_rx_bps == 1235);
  CHECK(r.samples[0].load1 == 0.71);
}

TEST_CASE("qdelta keeps optional fields absent per sample", "[codec][qdelta]") {
  MetricsBatch b = nova::test::batch_of(12, BatchEncoding::qdelta);  // mixed optionals
  b.samples[11].extra = {{"only.here", -3.25}};
  auto d = decode_cbor<MetricsBatch>(encode_cbor(b));
  REQUIRE(d.ok());
  CHECK(*d == quantize(b));
  for (std::size_t i = 0; i < b.samples.size(); ++i) {
    CHECK(d->samples[i].temp_c.has_value() == b.samples[i].temp_c.has_value());
    CHECK(d->samples[i].throttled == b.samples[i].throttled);
    CHECK(d->samples[i].power_w.has_value() == b.samples[i].power_w.has_value());
    CHECK(d->samples[i].extra.size() == b.samples[i].extra.size());
  }
  CHECK(d->samples[11].extra.at("only.here") == -3.25);
}

TEST_CASE("a batch that cannot be quantized goes as zstd, losslessly", "[codec][qdelta]") {
  MetricsBatch b = nova::test::batch_of(3, BatchEncoding::qdelta);
  b.samples[1].net_rx_bps = 1e300;  // beyond 2^50 steps
  CHECK(quantize(b).encoding == BatchEncoding::zstd);
  auto d = decode_cbor<MetricsBatch>(encode_cbor(b));
  REQUIRE(d.ok());
  CHECK(d->encoding == BatchEncoding::zstd);
  CHECK(d->samples == b.samples);

  // A large extra gauge loses places instead, while it fits.
  MetricsBatch e = nova::test::batch_of(2, BatchEncoding::qdelta);
  e.samples[0].extra = {{"big", 1e14 + 0.5}};
  e.extra_decimals = {{"big", 6}};
  CHECK(quantize(e).extra_decimals.at("big") == 1);  // 1e15 steps <= 2^50
  auto de = decode_cbor<MetricsBatch>(encode_cbor(e));
  REQUIRE(de.ok());
  CHECK(*de == quantize(e));
}

TEST_CASE("qdelta is much smaller than zstd for agent samples", "[codec][qdelta]") {
  MetricsBatch b = agent_batch();
  const std::size_t q = encode_cbor(b).size();
  b.encoding = BatchEncoding::zstd;
  const std::size_t z = encode_cbor(b).size();
  b.encoding = BatchEncoding::plain;
  const std::size_t p = encode_cbor(b).size();
  WARN("60 agent-like samples of " << 7 + agent_batch().samples[0].extra.size()
       << " values: plain " << p << " B, zstd " << z << " B, qdelta " << q << " B ("
       << static_cast<double>(q) / 60 << " B/sample)");
  CHECK(q * 2 < z);
}

TEST_CASE("hand-made qdelta columns decode, malformed ones are refused naming the cell", "[codec][qdelta][reject]") {
  auto ok = decode_cbor<MetricsBatch>(qdelta_with(good_columns(), 3));
  INFO((ok ? "" : ok.error().message()));
  REQUIRE(ok.ok());
  CHECK(ok->samples[1].cpu_pct == 12.0);
  CHECK(ok->samples[2].ts == 1732650002000);
  CHECK(!ok->samples[0].temp_c);
  CHECK(ok->samples[2].temp_c == 45.0);
  CHECK(ok->samples[1].extra.empty());
  CHECK(ok->samples[2].extra.at("cpu.user") == 7.0);

  auto with = [](const std::function<void(json&)>& change, std::uint64_t count = 3) {
    json c = good_columns();
    change(c);
    return error_of(qdelta_with(c, count));
  };
  CHECK(with([](json& c) { c.erase("mem"); }) == "batch.data.mem: missing required field");
  CHECK(with([](json& c) { c["cpu"] = {123, -3}; }) == "batch.data.cpu: has 2 elements, expected 3..3");
  CHECK(with([](json&) {}, 4) == "batch.data.ts: has 3 elements, expected 4..4");
  CHECK(with([](json& c) { c["cpu"][1] = nullptr; }) ==
        "batch.data.cpu[1]: null in a column every sample must have");
  CHECK(with([](json& c) { c["cpu"][2] = 900; }) ==
        "batch.data.cpu[2]: value 102 is out of range 0..100");
  CHECK(with([](json& c) { c["cpu"][1] = 1.5; }) == "batch.data.cpu[1]: expected integer, got float");
  CHECK(with([](json& c) { c["ts"][1] = -1732650000001; }) ==
        "batch.data.ts[1]: timestamp -1 is negative");
  CHECK(with([](json& c) { c["net_rx"][1] = std::int64_t{1} << 51; }) ==
        "batch.data.net_rx[1]: value of 2251799813686248 steps is beyond 2^50");
  CHECK(with([](json& c) { c["net_rx"][1] = (std::int64_t{1} << 51) + 1; }) ==
        "batch.data.net_rx[1]: value 2251799813685249 is out of range -2251799813685248..2251799813685248");
  CHECK(with([](json& c) { c["temp"] = {nullptr, nullptr, nullptr}; }) ==
        "batch.data.temp: column holds no value (an absent field is left out)");
  CHECK(with([](json& c) { c["throttled"] = {0, 2, nullptr}; }) ==
        "batch.data.throttled[1]: throttled must be 0 or 1, got 2");
  CHECK(with([](json& c) { c["extra"]["cpu.user"][0] = 10; }) ==
        "batch.data.extra.cpu.user[0]: value 10 is out of range 0..9");
  CHECK(with([](json& c) { c["extra"]["cpu.user"] = {1}; }) ==
        "batch.data.extra.cpu.user: has 1 elements, expected 2..2");
  CHECK(with([](json& c) { c["extra"]["bad/name"] = {1, {1, 2, 3}}; }) ==
        "batch.data.extra.bad/name: invalid key: '/' is not allowed in an id");
  CHECK(with([](json& c) { c["extra"] = json::object(); }) ==
        "batch.data.extra: has 0 entries, expected 1..256");
  CHECK(with([](json& c) { c = json::array({1}); }) == "batch.data: expected map, got array");
}

TEST_CASE("qdelta bombs are refused before allocating", "[codec][qdelta][reject]") {
  // A column declaring more cells than the batch has samples: refused at its head.
  std::vector<std::uint8_t> raw = json::to_cbor(good_columns());
  // Replace the body by a map whose "ts" array head declares 2^32-1 cells.
  const std::vector<std::uint8_t> bomb = {0xa1, 0x62, 't', 's', 0x9a, 0xff, 0xff, 0xff, 0xff, 0x00};
  json b = {{"v", 1}, {"node", "gw-01"}, {"stream", "metrics"}, {"seq", 1},
            {"enc", "qdelta"}, {"count", 3}, {"data", json::binary(zstd(bomb))}};
  auto bytes = json::to_cbor(b);
  CHECK(error_of(Bytes(bytes.begin(), bytes.end())) ==
        "batch.data.ts: declares 4294967295 items, over the limit of 256");

  // 256 gauges of nulls in 4096 samples inflate from a few kB to a million cells.
  json cols = {{"ts", json::array()}, {"cpu", json::array()}, {"mem", json::array()},
               {"disk", json::array()}, {"load1", json::array()}, {"net_rx", json::array()},
               {"net_tx", json::array()}, {"extra", json::object()}};
  for (const char* k : {"ts", "cpu", "mem", "disk", "load1", "net_rx", "net_tx"}) {
    cols[k] = json(std::vector<int>(4096, 0));
  }
  const json nulls = json(std::vector<std::nullptr_t>(4096, nullptr));
  for (int g = 0; g < 256; ++g) cols["extra"]["g" + std::to_string(g)] = {0, nulls};
  CHECK(error_of(qdelta_with(cols, 4096)) ==
        "batch.data.extra: 256 gauges x 4096 samples is over the limit of 262144 values");

  // Truncated: every cut of a valid qdelta batch is refused.
  const Bytes whole = encode_cbor(agent_batch(5));
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    const Bytes prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut));
    REQUIRE_FALSE(decode_cbor<MetricsBatch>(std::span<const std::uint8_t>(prefix)).ok());
  }
}

TEST_CASE("qdelta values at the step limit re-encode to the same steps", "[codec][qdelta]") {
  // The fuzz targets' invariant: what decodes re-encodes to something that decodes equal.
  const std::int64_t top = std::int64_t{1} << 50;
  for (std::int64_t q : {top, top - 1, -top, top - 12345}) {
    json c = good_columns();
    const std::int64_t a = q < 0 ? -q : q;
    c["power"] = {a, nullptr, 0};  // 0.01 W steps
    c["load1"] = {a, -a, a};
    c["extra"]["cpu.user"] = {9, {q, -2 * q, nullptr}};
    auto d = decode_cbor<MetricsBatch>(qdelta_with(c, 3));
    INFO(q << (d ? "" : ": " + d.error().message()));
    REQUIRE(d.ok());
    auto again = decode_cbor<MetricsBatch>(encode_cbor(*d));
    REQUIRE(again.ok());
    CHECK(*again == *d);
    CHECK(quantize(*d) == *d);
  }
}
