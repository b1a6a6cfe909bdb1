// SensorIngest: format detection, error replies naming the field, gauges in the sample.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "nova/agent/sensors.h"
#include "nova/schemas/codec.h"

using namespace nova;
using namespace nova::agent;

TEST_CASE("a JSON reading becomes sensor gauges of the next sample once", "[agent][sensors]") {
  SensorIngest ingest;
  CHECK_FALSE(ingest.accept("t1", R"(  {"v":1,"ts":1732650000000,"values":{"temp":21.5,"rh":40}})", 1));
  std::map<std::string, double> extra{{"cpu.user", 3}};
  ingest.merge_into(extra);
  CHECK(extra.at("sensor.t1.temp") == 21.5);
  CHECK(extra.at("sensor.t1.rh") == 40);
  std::map<std::string, double> next;
  ingest.merge_into(next);
  CHECK(next.empty());
  CHECK(ingest.counters().accepted == 1);
}

TEST_CASE("a CBOR reading is accepted and a bad one refused in CBOR naming the field", "[agent][sensors]") {
  SensorIngest ingest;
  schemas::SensorReading r;
  r.ts = 1732650000000;
  r.values = {{"co2", 612}};
  const auto bytes = schemas::encode_cbor(r);
  CHECK_FALSE(ingest.accept("c1", std::string(bytes.begin(), bytes.end()), 1));
  auto refused = ingest.accept("c1", "\xa1\x61v", 7);  // a map cut short
  REQUIRE(refused);
  CHECK(refused->error.sensor == "c1");
  CHECK(refused->error.ts == 7);
  auto back = schemas::decode_cbor<schemas::SensorError>(refused->payload);
  REQUIRE(back.ok());
  CHECK(back.value() == refused->error);
}

TEST_CASE("a JSON reading with a wrong value type gets a JSON reply naming the value", "[agent][sensors]") {
  SensorIngest ingest;
  auto refused = ingest.accept("t1", R"({"v":1,"ts":1732650000000,"values":{"temp":"warm"}})", 9);
  REQUIRE(refused);
  CHECK(refused->error.field.find("values.temp") != std::string::npos);
  CHECK_FALSE(refused->error.reason.empty());
  auto back = schemas::decode_json<schemas::SensorError>(refused->payload);
  REQUIRE(back.ok());
  CHECK(back->field == refused->error.field);
  CHECK(ingest.counters().refused == 1);
  CHECK(ingest.accept("t1", "", 9));  // empty: refused, not a crash
}

TEST_CASE("a reading over the gauge cap is refused with a reply, not dropped in silence", "[agent][sensors]") {
  SensorIngest ingest(2);
  auto refused = ingest.accept("s", R"({"v":1,"ts":1,"values":{"a":1,"b":2,"c":3}})", 1);
  REQUIRE(refused);
  CHECK(refused->error.field == "reading.values");
  CHECK_THAT(refused->error.reason, Catch::Contains("at most 2"));
  CHECK_FALSE(ingest.accept("s", R"({"v":1,"ts":1,"values":{"a":1,"b":2}})", 1));
  CHECK_FALSE(ingest.accept("s", R"({"v":1,"ts":2,"values":{"a":5}})", 2));  // a known gauge: updated
  std::map<std::string, double> extra;
  for (int i = 0; i < 255; ++i) extra["g" + std::to_string(i)] = i;
  ingest.merge_into(extra);
  CHECK(extra.size() == 256);  // a sample never holds more than 256 extras
}

TEST_CASE("a noisy sensor fills only its own share: a quiet sensor's reading is still taken", "[agent][sensors]") {
  SensorIngest ingest;  // 128 in all, 32 per sensor
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string reading = R"({"v":1,"ts":1,"values":{"n)" + std::to_string(i) + R"(":1}})";
    if (ingest.accept("noisy", reading, 1)) ++refused;
  }
  CHECK(refused == 200 - 32);
  CHECK_FALSE(ingest.accept("quiet", R"({"v":1,"ts":1,"values":{"temp":20.5}})", 1));
  std::map<std::string, double> extra;
  ingest.merge_into(extra);
  CHECK(extra.at("sensor.quiet.temp") == 20.5);
}

TEST_CASE("a gauge name over 64 bytes is refused at the edge naming the value", "[agent][sensors]") {
  SensorIngest ingest;
  const std::string sensor(40, 's');
  const std::string name(40, 'n');  // both legal ids; "sensor.<sensor>.<name>" is 88 bytes
  auto refused = ingest.accept(sensor, R"({"v":1,"ts":1,"values":{"ok":1,")" + name + R"(":2}})", 1);
  REQUIRE(refused);
  CHECK(refused->error.field == "reading.values." + name);
  CHECK_THAT(refused->error.reason, Catch::Contains("88 bytes"));
  std::map<std::string, double> extra;
  ingest.merge_into(extra);
  CHECK(extra.empty());  // taken whole or refused whole: "ok" was not kept either
}

TEST_CASE("the whole payload at fault is field \"\", a member at fault is its path", "[agent][sensors]") {
  SensorIngest ingest;
  const std::pair<std::string, std::string> cases[] = {
      {"\xa1\x61v", ""},                       // CBOR cut short inside "v"
      {"\x1c", ""},                              // malformed CBOR
      {"", ""},                                  // empty
      {R"({"v":1,)", ""},                        // invalid JSON
      {"[1]", ""},                               // not a map
      {R"({"v":1,"ts":1,"values":{"t":"warm"}})", "reading.values.t"},
  };
  for (const auto& [payload, field] : cases) {
    auto refused = ingest.accept("s1", payload, 3);
    REQUIRE(refused);
    CHECK(refused->error.field == field);
  }
}

TEST_CASE("a JSON reading with an invalid UTF-8 byte gets a JSON reply that decodes", "[agent][sensors]") {
  SensorIngest ingest;
  for (std::string payload : {std::string("{\"v\":1,\"ts\":1,\"values\":{\"t\xff\":1}}"),
                              std::string("{\"v\":1,\"ts\":1,\"values\":{\"t\":1}}\xff"),
                              std::string("{\"v\":1,\"ts\":1,\"unit\":\"\xc3\",\"values\":{\"t\":1}}")}) {
    std::optional<SensorIngest::Refusal> refused;
    REQUIRE_NOTHROW(refused = ingest.accept("s1", payload, 3));
    REQUIRE(refused);
    CHECK(refused->error.field.empty());
    auto back = schemas::decode_json<schemas::SensorError>(refused->payload);
    REQUIRE(back.ok());
    CHECK(back.value() == refused->error);
  }
}

TEST_CASE("an error reply fits its schema whatever it quotes", "[agent][sensors]") {
  const std::string long_field = "reading.values." + std::string(400, 'k');
  const std::string long_reason = std::string(5000, 'r') + "\xff";
  for (bool json : {true, false}) {
    auto r = sensor_refusal("s1", 1, long_field, long_reason, json);
    CHECK(r.error.field.size() <= 256);
    CHECK(r.error.reason.size() <= 4096);
    auto back = json ? schemas::decode_json<schemas::SensorError>(r.payload)
                     : schemas::decode_cbor<schemas::SensorError>(r.payload);
    CHECK(back.ok());
  }
}

TEST_CASE("replies wait per sensor, go out sensors in turn, and a full sensor's newest is dropped", "[agent][sensors]") {
  SensorReplies replies(3);
  for (int i = 0; i < 5; ++i) replies.push("noisy", {"t/noisy", std::to_string(i)});
  replies.push("quiet", {"t/quiet", "q"});
  CHECK(replies.waiting() == 4);
  CHECK(replies.dropped() == 2);
  std::vector<std::string> order;
  while (const auto* r = replies.next()) {
    order.push_back(r->payload);
    replies.pop();
  }
  CHECK(order == std::vector<std::string>{"0", "q", "1", "2"});
  CHECK(replies.waiting() == 0);
}

TEST_CASE("property: whatever readings are accepted, the batch they go up in decodes", "[agent][sensors][property]") {
  std::mt19937_64 rng(20261204);
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  const std::string charset = "ABCXYZabcxyz0189_.-";
  auto random_id = [&](std::size_t max_len) {
    std::string s(1, charset[pick(14)]);  // a letter, digit or '_' first
    const std::size_t len = 1 + pick(max_len);
    while (s.size() < len) s += charset[pick(charset.size())];
    return s;
  };
  auto random_value = [&]() -> double {
    switch (pick(6)) {
      case 0: return 0;
      case 1: return static_cast<double>(static_cast<std::int64_t>(rng())) / 1e3;
      case 2: return std::ldexp(static_cast<double>(rng() % 1000), static_cast<int>(pick(2000)) - 1000);
      case 3: return pick(2) != 0 ? 1.7976931348623157e308 : -1.7976931348623157e308;
      case 4: return 4.9e-324;
      default: return static_cast<double>(pick(100000)) / 7.0;
    }
  };
  const schemas::BatchEncoding encodings[] = {schemas::BatchEncoding::plain, schemas::BatchEncoding::zstd,
                                               schemas::BatchEncoding::qdelta};
  std::size_t accepted_total = 0;
  for (int round = 0; round < 60; ++round) {
    SensorIngest ingest;
    schemas::MetricsBatch batch;
    batch.position = {"gw-1", "metrics", 1};
    batch.encoding = encodings[round % 3];
    for (int sample = 0; sample < 20; ++sample) {
      for (int n = 0; n < 12; ++n) {
        schemas::SensorReading r;
        r.ts = 1732650000000;
        const std::size_t values = 1 + pick(32);
        for (std::size_t v = 0; v < values; ++v) r.values[random_id(64)] = random_value();
        const schemas::Bytes b = schemas::encode_cbor(r);
        if (!ingest.accept(random_id(pick(2) != 0 ? 64 : 8), std::string(b.begin(), b.end()), 1)) ++accepted_total;
      }
      schemas::MetricSample s;
      s.ts = 1732650000000 + static_cast<std::uint64_t>(sample) * 1000;
      for (int g = 0; g < 120; ++g) s.extra["host.g" + std::to_string(g)] = g;  // the collector's own
      ingest.merge_into(s.extra);
      batch.samples.push_back(std::move(s));
    }
    const schemas::Bytes wire = schemas::encode_cbor(batch);
    auto decoded = schemas::decode_cbor<schemas::MetricsBatch>(wire);
    INFO("round " << round);
    REQUIRE(decoded.ok());
  }
  CHECK(accepted_total > 1000);  // the property was exercised on accepted readings
}

TEST_CASE("the agent's error replies are the golden vectors of sensor_error", "[agent][sensors]") {
  std::ifstream in(NOVA_SOURCE_DIR "/schemas/vectors/sensor_error.json");
  const auto doc = nlohmann::json::parse(in);
  // The reading each vector answers (its description quotes it).
  const std::map<std::string, std::string> readings = {
      {"whole_payload", "\xa1\x61\x76"},
      {"field_path", R"({"v":1,"ts":1732650000000,"values":{"temp":"warm"}})"},
  };
  std::size_t checked = 0;
  for (const auto& v : doc.at("vectors")) {
    auto it = readings.find(v.at("name").get<std::string>());
    if (it == readings.end()) continue;
    const auto& expected = v.at("value");
    SensorIngest ingest;
    auto refused = ingest.accept(expected.at("sensor"), it->second, expected.at("ts").get<std::uint64_t>());
    REQUIRE(refused);
    INFO(v.at("name"));
    CHECK(refused->error.field == expected.at("field").get<std::string>());
    CHECK(refused->error.reason == expected.at("reason").get<std::string>());
    ++checked;
  }
  CHECK(checked == readings.size());
}

TEST_CASE("a personal value goes up only as its window's count, mean, min and max", "[agent][sensors][privacy]") {
  const std::vector<std::string> items{"cam1/face_count", "badge"};
  auto policy = PrivacyPolicy::parse(items, 60'000, 1);
  REQUIRE(policy.ok());
  SensorIngest ingest(128, 32, policy.value());
  CHECK_FALSE(ingest.accept("cam1", R"({"v":1,"ts":1,"values":{"face_count":3,"lux":200}})", 1'000));
  CHECK_FALSE(ingest.accept("badge", R"({"v":1,"ts":1,"values":{"id":4711}})", 1'000));
  std::map<std::string, double> early;
  ingest.merge_into(early, 2'000);
  CHECK(early.at("sensor.cam1.lux") == 200);  // not personal: as read
  CHECK(early.size() == 1);                    // the personal windows are still open
  CHECK_FALSE(ingest.accept("cam1", R"({"v":1,"ts":1,"values":{"face_count":5}})", 30'000));
  CHECK_FALSE(ingest.accept("cam1", R"({"v":1,"ts":1,"values":{"face_count":10}})", 50'000));
  std::map<std::string, double> closed;
  ingest.merge_into(closed, 61'000);
  CHECK(closed.count("sensor.cam1.face_count") == 0);
  CHECK(closed.at("sensor.cam1.face_count.count") == 3);
  CHECK(closed.at("sensor.cam1.face_count.mean") == 6);
  CHECK(closed.at("sensor.cam1.face_count.min") == 3);
  CHECK(closed.at("sensor.cam1.face_count.max") == 10);
  CHECK(closed.count("sensor.badge.id") == 0);  // a whole personal sensor
  CHECK(closed.at("sensor.badge.id.count") == 1);
  std::map<std::string, double> after;
  ingest.merge_into(after, 200'000);
  CHECK(after.empty());
}

TEST_CASE("a personal value's window counts four gauges and its aggregate names must be ids",
          "[agent][sensors][privacy]") {
  const std::vector<std::string> items{"s"};
  SensorIngest ingest(128, 8, PrivacyPolicy::parse(items, 1000, 1).value());
  CHECK_FALSE(ingest.accept("s", R"({"v":1,"ts":1,"values":{"a":1,"b":2}})", 1));
  auto refused = ingest.accept("s", R"({"v":1,"ts":1,"values":{"c":1}})", 1);
  REQUIRE(refused);
  CHECK(refused->error.field == "reading.values");
  // "sensor.s." + 52 bytes is 61, an id; with ".count" it is 67, not one.
  const std::string name(52, 'n');
  SensorIngest other(128, 32, PrivacyPolicy::parse(items, 1000, 1).value());
  auto too_long = other.accept("s", R"({"v":1,"ts":1,"values":{")" + name + R"(":1}})", 1);
  REQUIRE(too_long);
  CHECK(too_long->error.field == "reading.values." + name);
}

TEST_CASE("privacy items are a sensor id or sensor/value, and errors name the item", "[agent][sensors][privacy]") {
  CHECK_FALSE(personal_item_problem("cam1"));
  CHECK_FALSE(personal_item_problem("cam1/face_count"));
  const std::vector<std::string> bad{"cam1", "cam1/"};
  auto p = PrivacyPolicy::parse(bad, 1000, 1);
  REQUIRE_FALSE(p.ok());
  CHECK(p.error().path == "privacy.personal");
  CHECK(p.error().reason.starts_with("item 1: 'cam1/': value '': "));
  // A sensor named alone stays personal whole when one of its values is named as well.
  const std::vector<std::string> both{"cam1/face_count", "cam1"};
  CHECK(PrivacyPolicy::parse(both, 1000, 1)->is_personal("cam1", "lux"));
}

TEST_CASE("a personal window of fewer than min_readings readings sends its count only", "[agent][sensors][privacy]") {
  const std::vector<std::string> items{"badge"};
  SensorIngest ingest(128, 32, PrivacyPolicy::parse(items, 1000, 3).value());
  CHECK_FALSE(ingest.accept("badge", R"({"v":1,"ts":1,"values":{"id":4711}})", 1));
  CHECK_FALSE(ingest.accept("badge", R"({"v":1,"ts":1,"values":{"id":4712}})", 2));
  std::map<std::string, double> extra;
  ingest.merge_into(extra, 5000);
  CHECK(extra == std::map<std::string, double>{{"sensor.badge.id.count", 2}});
}
