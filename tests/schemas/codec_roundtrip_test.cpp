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

// "first" (the lowest seq the sender still holds) is optional in every stream position:
// absent it is not written at all, present it survives both codecs.
TEST_CASE("stream position first round trips, absent or present", "[codec]") {
  // qdelta quantizes the samples, so only the position is compared for it.
  auto check = [](const auto& original, bool exact = true) {
    using T = std::decay_t<decltype(original)>;
    const Bytes cbor = encode_cbor(original);
    auto decoded = decode_cbor<T>(std::span<const std::uint8_t>(cbor));
    INFO(std::string(root_name<T>()) << (decoded ? "" : ": " + decoded.error().message()));
    REQUIRE(decoded.ok());
    CHECK(decoded->position == original.position);
    if (exact) CHECK(*decoded == original);
    CHECK(encode_cbor(*decoded) == cbor);
    auto from_json = decode_json<T>(encode_json(original));
    REQUIRE(from_json.ok());
    CHECK(from_json->position == original.position);
    if (exact) CHECK(*from_json == original);
    const std::string text = encode_json(original);
    CHECK((text.find("\"first\"") != std::string::npos) == original.position.first.has_value());
  };
  for (BatchEncoding enc : {BatchEncoding::plain, BatchEncoding::zstd, BatchEncoding::qdelta}) {
    MetricsBatch b = nova::test::batch_of(5, enc);
    CHECK_FALSE(b.position.first.has_value());
    const bool exact = enc != BatchEncoding::qdelta;
    check(b, exact);
    for (std::uint64_t first : {std::uint64_t{1}, b.position.seq - 1, b.position.seq}) {
      b.position.first = first;
      check(b, exact);
    }
  }
  TaskResult r = full<TaskResult>();
  check(r);
  r.position.first = r.position.seq;
  check(r);
  Alert a = full<Alert>();
  a.position.first = 1;
  check(a);
  DecisionRecord d = full<DecisionRecord>();
  d.position.first = d.position.seq;
  check(d);
}
