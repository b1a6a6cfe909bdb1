// Strict decoding: each kind of malformed input is refused with an error naming the field.
// Inputs are crafted with nlohmann-json's own CBOR encoder (independent of ours) or by
// hand, byte by byte.
#include <catch2/catch.hpp>
#include <cmath>
#include <nlohmann/json.hpp>

#include "nova/schemas/codec.h"
#include "sample_messages.h"

using namespace nova::schemas;
using json = nlohmann::json;

namespace {

template <class T>
std::string cbor_error(const Bytes& input, const Limits& limits = {}) {
  auto r = decode_cbor<T>(std::span<const std::uint8_t>(input), limits);
  if (r.ok()) return "(accepted)";
  return r.error().message();
}

template <class T>
std::string cbor_error(const json& j) {
  const std::vector<std::uint8_t> bytes = json::to_cbor(j);
  return cbor_error<T>(Bytes(bytes.begin(), bytes.end()));
}

template <class T>
std::string json_error(std::string_view text) {
  auto r = decode_json<T>(text);
  return r.ok() ? "(accepted)" : r.error().message();
}

json batch_json() { return json::parse(encode_json(nova::test::batch_of(5, BatchEncoding::plain))); }
json reading_json() { return json::parse(encode_json(nova::test::full<SensorReading>())); }

}  // namespace

TEST_CASE("wrong major type names the field path", "[codec][reject]") {
  json b = batch_json();
  b["samples"][3]["cpu"] = "hot";
  CHECK(cbor_error<MetricsBatch>(b) == "batch.samples[3].cpu: expected float, got text string");
  CHECK(json_error<MetricsBatch>(b.dump()) ==
        "batch.samples[3].cpu: expected float, got text string");

  json r = reading_json();
  r["values"] = json::array({1, 2});
  CHECK(cbor_error<SensorReading>(r) == "reading.values: expected map, got array");
  r = reading_json();
  r["ts"] = -5;
  CHECK(cbor_error<SensorReading>(r) == "reading.ts: expected unsigned integer, got negative integer");
}

TEST_CASE("truncated input is refused at every cut, never read past the end", "[codec][reject]") {
  const Bytes whole = encode_cbor(nova::test::batch_of(5, BatchEncoding::plain));
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    const Bytes prefix(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(cut));
    auto r = decode_cbor<MetricsBatch>(std::span<const std::uint8_t>(prefix));
    REQUIRE_FALSE(r.ok());
    if (cut > 0) {
      CHECK_THAT(r.error().reason,
                 Catch::Contains("truncated") || Catch::Contains("bytes remain"));
    }
  }
  // A cut inside the samples array names where it happened.
  const Bytes cut(whole.begin(), whole.end() - 3);
  CHECK_THAT(cbor_error<MetricsBatch>(cut), Catch::StartsWith("batch.samples[4]"));
}

TEST_CASE("declared lengths larger than the input or the limits are refused", "[codec][reject]") {
  // libcbor's cbor_load would try to allocate ~2.6e9 elements for these 8 bytes.
  const Bytes bomb{0x9a, 0x9a, 0x9a, 0x9a, 0x9a, 0x9a, 0x9a, 0x53};
  CHECK(cbor_error<SensorReading>(bomb) == "reading: declares 2593823386 items, over the limit of 8192");

  // A map declaring 100 entries with 2 bytes behind it.
  const Bytes short_map{0xb8, 0x64, 0x61, 0x76};
  CHECK(cbor_error<SensorReading>(short_map) == "reading: declares 100 items but only 2 bytes remain");

  // A text string declaring 4 GiB.
  const Bytes huge_text{0xa1, 0x61, 0x76, 0x7a, 0xff, 0xff, 0xff, 0xff, 0x61};
  CHECK(cbor_error<SensorReading>(huge_text) == "reading.v: truncated input");

  // Within the limits of the input, but over the configured ones.
  json r = reading_json();
  r["unit"] = std::string(100, 'x');
  Limits tight;
  tight.max_string_bytes = 64;
  const std::vector<std::uint8_t> bytes = json::to_cbor(r);
  CHECK(cbor_error<SensorReading>(Bytes(bytes.begin(), bytes.end()), tight) ==
        "reading.unit: string of 100 bytes is over the limit of 64");
  r["unit"] = std::string(33, 'x');
  CHECK(cbor_error<SensorReading>(r) == "reading.unit: text of 33 bytes is over the limit of 32");

  json b = batch_json();
  b["samples"] = json::array();
  CHECK(cbor_error<MetricsBatch>(b) == "batch.samples: has 0 elements, expected 1..4096");

  Limits small;
  small.max_message_bytes = 16;
  const Bytes whole = encode_cbor(nova::test::full<SensorReading>());
  CHECK_THAT(cbor_error<SensorReading>(whole, small), Catch::Contains("over the limit of 16"));
}

TEST_CASE("nesting beyond the limit is refused, even in unknown fields", "[codec][reject]") {
  json deep = 1;
  for (int i = 0; i < 40; ++i) deep = json::array({deep});
  json r = reading_json();
  r["future"] = deep;
  const std::string expected_prefix = "reading.future[0][0][0][0][0][0][0][0][0][0][0][0][0][0]";
  CHECK_THAT(cbor_error<SensorReading>(r), Catch::StartsWith(expected_prefix) &&
                                               Catch::EndsWith("nesting deeper than 16 levels"));
  CHECK_THAT(json_error<SensorReading>(r.dump()), Catch::StartsWith(expected_prefix) &&
                                                      Catch::EndsWith("nesting deeper than 16 levels"));
}

TEST_CASE("invalid UTF-8 is refused", "[codec][reject]") {
  // Built by hand: a NodeState whose "node" is the bytes "gw\xff".
  json s = json::parse(encode_json(nova::test::minimal<NodeState>()));
  std::vector<std::uint8_t> bytes = json::to_cbor(s);
  const std::string needle = "gw-01";
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  REQUIRE(it != bytes.end());
  *(it + 2) = 0xff;
  CHECK(cbor_error<NodeState>(Bytes(bytes.begin(), bytes.end())) ==
        "state.node: text string is not valid UTF-8");
  // Overlong encoding of '/' and a UTF-16 surrogate.
  for (std::string bad : {std::string("\xc0\xaf"), std::string("\xed\xa0\x80")}) {
    bytes = json::to_cbor(s);
    it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
    std::copy(bad.begin(), bad.end(), it + 1);
    CHECK(cbor_error<NodeState>(Bytes(bytes.begin(), bytes.end())) ==
          "state.node: text string is not valid UTF-8");
  }
  CHECK_THAT(json_error<NodeState>("{\"v\":1,\"node\":\"gw\xff\"}"), Catch::Contains("invalid JSON"));
}

TEST_CASE("NaN and infinity only where the schema allows them", "[codec][reject]") {
  json r = reading_json();
  r["values"]["temp"] = std::nan("");
  CHECK(cbor_error<SensorReading>(r) == "reading.values.temp: NaN is not allowed");
  r["values"]["temp"] = HUGE_VAL;
  CHECK(cbor_error<SensorReading>(r) == "reading.values.temp: infinity is not allowed");

  // Alert thresholds may be one-sided (infinite), observed values may not.
  Alert a = nova::test::full<Alert>();
  a.threshold = HUGE_VAL;
  auto ok = decode_cbor<Alert>(std::span<const std::uint8_t>(encode_cbor(a)));
  REQUIRE(ok.ok());
  CHECK(std::isinf(ok->threshold));
  a.threshold = std::nan("");
  CHECK(cbor_error<Alert>(encode_cbor(a)) == "alert.threshold: NaN is not allowed");
  a.threshold = 1;
  a.observed = -HUGE_VAL;
  CHECK(cbor_error<Alert>(encode_cbor(a)) == "alert.observed: infinity is not allowed");
}

TEST_CASE("schema rules: required fields, ranges, ids, enumerations, version", "[codec][reject]") {
  json r = reading_json();
  r.erase("values");
  CHECK(cbor_error<SensorReading>(r) == "reading.values: missing required field");

  json b = batch_json();
  b["samples"][0]["cpu"] = 150.5;
  CHECK(cbor_error<MetricsBatch>(b) == "batch.samples[0].cpu: value 150.5 is out of range 0..100");
  b = batch_json();
  b["node"] = "gw/01";
  CHECK(cbor_error<MetricsBatch>(b) == "batch.node: '/' is not allowed in an id");
  b = batch_json();
  b["enc"] = "lz4";
  CHECK(cbor_error<MetricsBatch>(b) == "batch.enc: unknown value 'lz4' (expected one of: plain, zstd, qdelta)");
  b = batch_json();
  b["v"] = 2;
  CHECK(cbor_error<MetricsBatch>(b) == "batch.v: unsupported schema version 2 (this decoder reads 1)");

  json s = json::parse(encode_json(nova::test::full<NodeState>()));
  s["site"] = "cloud//par";
  CHECK(cbor_error<NodeState>(s) == "state.site: site 2: empty id");
  s = json::parse(encode_json(nova::test::full<NodeState>()));
  s["level"] = 9;
  CHECK(cbor_error<NodeState>(s) == "state.level: value 9 is out of range 1..5");

  CHECK(cbor_error<SensorReading>(json::array({1})) == "reading: expected map, got array");
}

TEST_CASE("stream position first must be 1..seq", "[codec][reject]") {
  json b = batch_json();
  const std::uint64_t seq = b["seq"].get<std::uint64_t>();
  b["first"] = seq + 1;
  CHECK(cbor_error<MetricsBatch>(b) ==
        "batch.first: first " + std::to_string(seq + 1) + " is above seq " + std::to_string(seq));
  CHECK(json_error<MetricsBatch>(b.dump()) ==
        "batch.first: first " + std::to_string(seq + 1) + " is above seq " + std::to_string(seq));
  b["first"] = 0;
  CHECK(cbor_error<MetricsBatch>(b) == "batch.first: value 0 is out of range 1..18446744073709551615");
  b["first"] = -1;
  CHECK(cbor_error<MetricsBatch>(b) == "batch.first: expected unsigned integer, got negative integer");
  b["first"] = "1";
  CHECK(cbor_error<MetricsBatch>(b) == "batch.first: expected unsigned integer, got text string");
  b["first"] = seq;  // the bounds themselves are accepted
  CHECK(cbor_error<MetricsBatch>(b) == "(accepted)");
  b["first"] = 1;
  CHECK(cbor_error<MetricsBatch>(b) == "(accepted)");

  json r = json::parse(encode_json(nova::test::full<TaskResult>()));
  r["first"] = r["seq"].get<std::uint64_t>() + 1;
  CHECK(cbor_error<TaskResult>(r).rfind("result.first: first ", 0) == 0);
}

TEST_CASE("structural CBOR errors", "[codec][reject]") {
  Bytes valid = encode_cbor(nova::test::minimal<SensorReading>());
  Bytes trailing = valid;
  trailing.push_back(0x00);
  CHECK(cbor_error<SensorReading>(trailing) == "reading: 1 trailing bytes after the message");
  CHECK(cbor_error<SensorReading>(Bytes{}) == "reading: empty input");
  CHECK(cbor_error<SensorReading>(Bytes{0xf7}) == "reading: undefined is not allowed");
  CHECK(cbor_error<SensorReading>(Bytes{0xff}) ==
        "reading: unexpected break outside an indefinite-length item");
  CHECK(cbor_error<SensorReading>(Bytes{0xa1, 0x01, 0x01}) ==
        "reading: map key must be a text string, got unsigned integer");
  CHECK(cbor_error<SensorReading>(Bytes{0xa2, 0x61, 0x76, 0x01, 0x61, 0x76, 0x01}) ==
        "reading.v: duplicate map key");
  CHECK(cbor_error<SensorReading>(Bytes{0x1c}) == "reading: malformed CBOR at byte 0");
  CHECK(json_error<SensorReading>(R"({"v":1,"v":1})") == "reading.v: duplicate map key");
  CHECK_THAT(json_error<SensorReading>(R"({"v":1,)"), Catch::StartsWith("reading: invalid JSON"));
}

TEST_CASE("indefinite lengths and tags are decoded like their definite forms", "[codec]") {
  // {_ "v": 1, "ts": 5, "values": {_ "t": 1.5 }, "unit": (_ "de", "gC") } with a tag 1000
  // in front of the ts.
  const Bytes indefinite{0xbf, 0x61, 0x76, 0x01, 0x62, 0x74, 0x73, 0xd9, 0x03, 0xe8, 0x05,
                         0x66, 0x76, 0x61, 0x6c, 0x75, 0x65, 0x73, 0xbf, 0x61, 0x74, 0xf9,
                         0x3e, 0x00, 0xff, 0x64, 0x75, 0x6e, 0x69, 0x74, 0x7f, 0x62, 0x64,
                         0x65, 0x62, 0x67, 0x43, 0xff, 0xff};
  auto r = decode_cbor<SensorReading>(std::span<const std::uint8_t>(indefinite));
  INFO((r ? "" : r.error().message()));
  REQUIRE(r.ok());
  CHECK(r->ts == 5);
  CHECK(r->values.at("t") == 1.5);
  CHECK(r->unit == "degC");
}

TEST_CASE("errors inside a compressed batch name the sample", "[codec][reject]") {
  // Re-pack the samples of a zstd batch with one bad value, using the public codec only:
  // a plain batch with the defect cannot be encoded, so build the samples array by hand.
  json b = batch_json();
  b["samples"][2]["mem"] = -1.0;
  const std::vector<std::uint8_t> plain = json::to_cbor(b);
  CHECK(cbor_error<MetricsBatch>(Bytes(plain.begin(), plain.end())) ==
        "batch.samples[2].mem: value -1 is out of range 0..100");

  MetricsBatch zb = nova::test::batch_of(5, BatchEncoding::zstd);
  json z = json::parse(encode_json(zb));
  z["count"] = 6;
  // "data" travels as base64 text in JSON; to_cbor keeps it text, so decode from JSON.
  CHECK(json_error<MetricsBatch>(z.dump()) == "batch.samples: has 5 elements, expected 6..6");
  z = json::parse(encode_json(zb));
  z["data"] = "AAAA";
  CHECK(json_error<MetricsBatch>(z.dump()) == "batch.data: not a zstd frame");
}

TEST_CASE("an error reason quoting invalid UTF-8 input is itself valid UTF-8", "[codec][reject]") {
  // nlohmann quotes the last bytes read; the 0xff byte, inside a string or after the
  // document, must not reach the reason raw (an error reply encoding it would throw).
  for (std::string_view input : {std::string_view("{\"v\":1,\"ts\":1,\"values\":{\"t\xff\":1}}"),
                                 std::string_view("{\"v\":1,\"ts\":1,\"values\":{\"t\":1}}\xff")}) {
    auto r = decode_json<SensorReading>(input);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().whole_input);
    CHECK(printable_utf8(r.error().reason) == r.error().reason);
    CHECK_THAT(r.error().reason, Catch::Contains("\\xff"));
    SensorError reply{"s", 1, "", r.error().reason};
    CHECK(decode_json<SensorError>(encode_json(reply)).ok());
  }
}

TEST_CASE("printable_utf8 keeps UTF-8 and escapes every other byte", "[codec]") {
  CHECK(printable_utf8("clé ok") == "clé ok");
  CHECK(printable_utf8("a\xff" "b") == "a\\xffb");
  CHECK(printable_utf8("\xc3") == "\\xc3");           // a sequence cut short
  CHECK(printable_utf8("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate
  CHECK(printable_utf8("line\n") == "line\\x0a");
}

TEST_CASE("an encoder never throws on text that is not UTF-8", "[codec]") {
  SensorError bad{"s", 1, "reading", "raw \xff byte"};
  const std::string json_text = encode_json(bad);  // nlohmann would throw type_error 316
  CHECK(decode_json<SensorError>(json_text).ok());
}

TEST_CASE("input that is not a well-formed document is flagged whole_input, a bad member is not", "[codec][reject]") {
  auto whole = [](const Bytes& b) { return decode_cbor<SensorReading>(std::span<const std::uint8_t>(b)).error().whole_input; };
  CHECK(whole(Bytes{}));
  CHECK(whole(Bytes{0xa1, 0x61, 0x76}));  // truncated inside "v"
  CHECK(whole(Bytes{0x1c}));
  CHECK(decode_json<SensorReading>(R"({"v":1,)").error().whole_input);
  CHECK_FALSE(decode_json<SensorReading>(R"({"v":1,"ts":1,"values":{"t":"warm"}})").error().whole_input);
  CHECK_FALSE(decode_json<SensorReading>(R"([1])").error().whole_input);
}

TEST_CASE("an update offer names a bundle by 64 lower-case hex digits and a size of 1 byte to 256 MiB",
          "[codec][reject]") {
  const std::string sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  const json ok = {{"v", 1}, {"version", "2.0.0"}, {"sha256", sha}, {"size", 3}, {"ts", 1}};
  CHECK(cbor_error<UpdateOffer>(ok) == "(accepted)");
  json upper = ok;
  upper["sha256"] = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
  CHECK(cbor_error<UpdateOffer>(upper) ==
        "update.sha256: '9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08' is not 64 lower-case "
        "hex digits");
  json short_sha = ok;
  short_sha["sha256"] = "9f86";
  CHECK(cbor_error<UpdateOffer>(short_sha) == "update.sha256: '9f86' is not 64 lower-case hex digits");
  json empty = ok;
  empty["size"] = 0;
  CHECK(cbor_error<UpdateOffer>(empty) == "update.size: value 0 is out of range 1..268435456");
  json huge = ok;
  huge["size"] = 268435457;
  CHECK(cbor_error<UpdateOffer>(huge) == "update.size: value 268435457 is out of range 1..268435456");
  json no_version = ok;
  no_version["version"] = "";
  CHECK(cbor_error<UpdateOffer>(no_version) == "update.version: must not be empty");
}

TEST_CASE("a model's features and trees are refused naming the node and member", "[codec][reject]") {
  json m = json::parse(R"({"v": 1, "model_id": "t", "revision": 1, "kind": "tree_ensemble", "ts": 1,
                            "features": ["cpu"], "trees": [[{"feature": 0, "split": 1.0, "left": 1, "right": 2},
                                                            {"leaf": 0.0}, {"leaf": 1.0}]]})");
  CHECK(cbor_error<Model>(m) == "(accepted)");
  json bad = m;
  bad["trees"][0][1] = json{{"leaf", 1.0}, {"split", 2.0}};
  CHECK(cbor_error<Model>(bad) == "model.trees[0][1]: a leaf has no 'split'");
  bad = m;
  bad["trees"][0][0].erase("right");
  CHECK(cbor_error<Model>(bad) == "model.trees[0][0].right: missing required field");
  bad = m;
  bad["trees"][0][0]["missing"] = "up";
  CHECK(cbor_error<Model>(bad) == "model.trees[0][0].missing: unknown value 'up' (expected one of: left, right)");
  bad = m;
  bad["trees"][0][0]["left"] = -1;
  CHECK_THAT(cbor_error<Model>(bad), Catch::StartsWith("model.trees[0][0].left: "));
  bad = m;
  bad["trees"] = json::array({json::array()});
  CHECK_THAT(cbor_error<Model>(bad), Catch::StartsWith("model.trees[0]: "));
  bad = m;
  bad["trees"] = json::array();
  for (int i = 0; i < 65; ++i) bad["trees"].push_back(json::array({json{{"leaf", 1.0}}}));
  CHECK_THAT(cbor_error<Model>(bad), Catch::StartsWith("model.trees: "));
  bad = m;
  bad["features"] = json::array();
  for (int i = 0; i < 62; ++i) bad["features"].push_back("g" + std::to_string(i));
  CHECK_THAT(cbor_error<Model>(bad), Catch::StartsWith("model.features: "));
  bad = m;
  bad["combine"] = "max";
  CHECK(cbor_error<Model>(bad) == "model.combine: unknown value 'max' (expected one of: sum, mean)");
  bad = m;
  bad["action"] = std::string(129, 'a');
  CHECK_THAT(cbor_error<Model>(bad), Catch::StartsWith("model.action: "));
}

TEST_CASE("service fields: ranges, enumerations and a task that asks for a service's", "[codec][reject][services]") {
  const json service = {{"v", 1},           {"workload_id", "web"},
                        {"name", "web"},    {"argv", {"/bin/sh"}},
                        {"res", {{"cpu_millis", 0}, {"memory_mb", 0}, {"storage_mb", 0}}},
                        {"availability", 0.9}, {"timeout_ms", 1000},
                        {"kind", "service"}, {"replicas", 2},
                        {"health_check", {{"command", {"/bin/true"}}}}};
  CHECK(json_error<WorkloadSpec>(service.dump()) == "(accepted)");
  auto with = [&](const std::string& key, const json& value) {
    json j = service;
    j[key] = value;
    return json_error<WorkloadSpec>(j.dump());
  };
  CHECK(with("replicas", 0) == "workload.replicas: value 0 is out of range 1..64");
  CHECK(with("replicas", 65) == "workload.replicas: value 65 is out of range 1..64");
  CHECK(with("kind", "daemon") == "workload.kind: unknown value 'daemon' (expected one of: task, service)");
  CHECK(with("restart_policy", "sometimes") ==
        "workload.restart_policy: unknown value 'sometimes' (expected one of: always, on-failure, never)");
  CHECK(with("health_check", {{"command", {"/bin/true"}}, {"interval_s", 0}}) ==
        "workload.health_check.interval_s: value 0 is out of range 1..3600");
  CHECK(with("health_check", {{"command", {"/bin/true"}}, {"failure_threshold", 101}}) ==
        "workload.health_check.failure_threshold: value 101 is out of range 1..100");
  CHECK(with("health_check", {{"interval_s", 5}}) == "workload.health_check.command: missing required field");
  // A task runs once per placement: no replicas, restarts or checks.
  CHECK(with("kind", "task") == "workload.replicas: only a service (kind \"service\") takes replicas");
  json task = service;
  task.erase("kind");
  task.erase("replicas");
  CHECK(json_error<WorkloadSpec>(task.dump()) ==
        "workload.health_check: only a service (kind \"service\") takes health_check");
  task["replicas"] = 1;  // the default: harmless
  task.erase("health_check");
  CHECK(json_error<WorkloadSpec>(task.dump()) == "(accepted)");
}

TEST_CASE("a running result must say the service's state", "[codec][reject][services]") {
  json r = {{"v", 1},          {"node", "dev-a"}, {"stream", "results"}, {"seq", 3}, {"task_id", "web.0.r1"},
            {"status", "running"}, {"finished_ts", 5}, {"output", ""}};
  CHECK(json_error<TaskResult>(r.dump()) == "result.service: missing required field");
  r["service"] = {{"state", "crashing"}, {"restarts", 0}, {"health_failures", 0}};
  CHECK(json_error<TaskResult>(r.dump()) ==
        "result.service.state: unknown value 'crashing' (expected one of: running, restarting, unhealthy)");
  r["service"]["state"] = "restarting";
  CHECK(json_error<TaskResult>(r.dump()) == "(accepted)");
}
