// Every message type survives CBOR and JSON round trips unchanged, in its fully populated
// and its minimal form, and the CBOR is deterministic.
#include <catch2/catch.hpp>

#include "nova/schemas/codec.h"
#include "sample_messages.h"

using namespace nova::schemas;
using nova::test::full;
using nova::test::minimal;

#define NOVA_ALL_MESSAGES                                                                 \
  NodeState, MetricsBatch, SensorReading, SensorError, Task, TaskResult, DecisionRecord, \
      DecisionVerdict, Alert, Config, Model, Ack, WorkloadSpec, Placement, ClusterRecord

TEMPLATE_TEST_CASE("CBOR round trip", "[codec]", NOVA_ALL_MESSAGES) {
  for (const TestType& original : {full<TestType>(), minimal<TestType>()}) {
    const Bytes cbor = encode_cbor(original);
    auto decoded = decode_cbor<TestType>(std::span<const std::uint8_t>(cbor));
    INFO(std::string(root_name<TestType>()) << (decoded ? "" : ": " + decoded.error().message()));
    REQUIRE(decoded.ok());
    CHECK(*decoded == original);
    CHECK(encode_cbor(*decoded) == cbor);  // deterministic: same value, same bytes
  }
}

TEMPLATE_TEST_CASE("JSON round trip", "[codec]", NOVA_ALL_MESSAGES) {
  for (const TestType& original : {full<TestType>(), minimal<TestType>()}) {
    const std::string json = encode_json(original);
    auto decoded = decode_json<TestType>(json);
    INFO(json << (decoded ? "" : "\n" + decoded.error().message()));
    REQUIRE(decoded.ok());
    CHECK(*decoded == original);
  }
}

TEST_CASE("a compressed batch is much smaller than a plain one", "[codec]") {
  const Bytes plain = encode_cbor(nova::test::batch_of(60, BatchEncoding::plain));
  const Bytes packed = encode_cbor(nova::test::batch_of(60, BatchEncoding::zstd));
  INFO("plain " << plain.size() << " bytes, zstd " << packed.size() << " bytes");
  CHECK(packed.size() * 3 < plain.size());
}

TEST_CASE("floats take the shortest exact width", "[codec]") {
  SensorReading r{0, std::nullopt, {{"a", 1.5}}, std::nullopt};
  auto tail = [&](double v) {
    r.values["a"] = v;
    Bytes b = encode_cbor(r);
    // Layout: ... "values" {"a": <float>}; the float is the last item.
    return b;
  };
  CHECK(tail(1.5).size() + 2 == tail(100000.5).size());   // half vs single
  CHECK(tail(100000.5).size() + 4 == tail(0.1).size());   // single vs double
}

TEST_CASE("unknown fields are tolerated for forward compatibility", "[codec]") {
  auto r = decode_json<SensorReading>(
      R"({"v":1,"ts":5,"values":{"t":1.5},"added_in_v1_3":{"nested":[1,2,3]}})");
  REQUIRE(r.ok());
  CHECK(r->values.at("t") == 1.5);
}

TEST_CASE("float fields accept integers, integer fields refuse floats", "[codec]") {
  CHECK(decode_json<SensorReading>(R"({"v":1,"ts":5,"values":{"t":21}})").ok());
  auto r = decode_json<SensorReading>(R"({"v":1,"ts":5.0,"values":{"t":21}})");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "reading.ts: expected unsigned integer, got float");
}
