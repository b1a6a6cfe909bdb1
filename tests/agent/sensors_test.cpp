// SensorIngest: format detection, error replies naming the field, gauges in the sample.
#include <catch2/catch.hpp>

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

TEST_CASE("sensor gauges are capped and never push a sample past 256 extras", "[agent][sensors]") {
  SensorIngest ingest(2);
  CHECK_FALSE(ingest.accept("s", R"({"v":1,"ts":1,"values":{"a":1,"b":2,"c":3}})", 1));
  std::map<std::string, double> extra;
  for (int i = 0; i < 255; ++i) extra["g" + std::to_string(i)] = i;
  ingest.merge_into(extra);
  CHECK(extra.size() == 256);
}
